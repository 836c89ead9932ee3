"""`python -m s2sext`: a short tour of the kernels on a built-in default problem."""

from .demo import main

raise SystemExit(main())
