"""Helpers shared by the tests of the ``s2sext`` command (tests/cli/): running ``main(argv)``
in-process and checking the error contract -- bad arguments and bad data end in one
``s2sext: error: ...`` line on stderr with exit status 2, never a traceback.
"""

import pytest

from s2sext.cli import main


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# The tiny model every training run here uses (epochs are given per call).
TINY = ["--task", "reverse", "--task-size", "300", "--hidden", "16", "--embed", "8",
        "--batch-size", "32", "--no-progress"]


# ---------------------------------------------------------------------------------------------
# Helpers and fixtures


def run(capsys, *argv):
    """main(argv) in-process -> (exit status, stdout, stderr)."""
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def run_argparse_error(capsys, *argv):
    """A call that argparse rejects: SystemExit(2); returns stderr."""
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert info.value.code == 2, (out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("s2sext: error: "), err  # one line, as the README says
    return err


def assert_one_error_line(rc, err, *fragments):
    """Exit status 2 and exactly one ``s2sext: error: ...`` line holding every fragment."""
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one error line, got {lines!r}"
    line = lines[0]
    assert line.startswith("s2sext: error: "), line
    for fragment in fragments:
        assert str(fragment) in line, f"{fragment!r} not in {line!r}"
    return line


def write_tsv_pairs(path, pairs):
    path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    return path
