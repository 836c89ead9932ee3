"""`python -m s2sext`: the `s2sext` command (see `s2sext --help`)."""

from .cli import main

raise SystemExit(main())
