"""The ``s2sext train`` outputs (--out, --checkpoint) are checked before training starts, leaving
nothing behind: directories, missing or unwritable folders, FIFOs, symlinks, one file named twice.

Commands run in-process through ``main(argv)`` (output read with capsys) unless a test says
otherwise; the shared helpers are in cli_support.py and the shared tiny model in conftest.py.
"""
import os
import stat

import pytest


from cli_support import TINY, assert_one_error_line, run


# ---------------------------------------------------------------------------------------------
# Outputs are checked before training starts, leaving nothing behind


def test_out_that_is_a_directory_is_refused_before_training(capsys, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    rc, out, err = run(capsys, "train", *TINY, "--epochs", "1", "--out", folder)
    assert_one_error_line(rc, err, f"--out {folder}: is a directory")
    assert out == "" and "epoch" not in err
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("option", ["--out", "--checkpoint"])
def test_output_in_a_file_not_a_directory_is_refused(capsys, tmp_path, option):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    argv = ["--out", tmp_path / "m.s2s", "--checkpoint", tmp_path / "ck.s2s"]
    argv[argv.index(option) + 1] = a_file / "m.s2s"
    rc, out, err = run(capsys, "train", *TINY, "--epochs", "1", *argv)
    assert_one_error_line(rc, err, f"{option} {a_file / 'm.s2s'}: the directory {a_file} is not a directory")
    assert out == "" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("option", ["--out", "--checkpoint"])
def test_unwritable_output_directory_is_refused_before_training(capsys, monkeypatch, tmp_path, option):
    """An unwritable --out/--checkpoint was once found only when the first epoch was saved. The
    probe is made to fail (as it would in a read-only directory for a user other than root)."""
    import errno
    import tempfile

    locked = tmp_path / "locked"
    locked.mkdir()
    probe = tempfile.TemporaryFile

    def denied_in_locked(*args, dir=None, **kwargs):
        if os.path.realpath(dir) == os.path.realpath(locked):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return probe(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", denied_in_locked)
    path = locked / "m.s2s"
    argv = ["--out", tmp_path / "best.s2s", "--checkpoint", tmp_path / "ck.s2s"]
    argv[argv.index(option) + 1] = path
    rc, out, err = run(capsys, "train", *TINY, "--epochs", "1", *argv)
    assert_one_error_line(rc, err, f"{option} {path}: cannot write in {locked} ({os.strerror(errno.EACCES)})")
    assert out == "" and "epoch" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["locked"] and list(locked.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root may write in a read-only directory")
def test_read_only_output_directory_is_refused_before_training(capsys, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        rc, out, err = run(capsys, "train", *TINY, "--epochs", "1", "--checkpoint", folder / "ck.s2s",
                           "--out", tmp_path / "m.s2s")
        assert_one_error_line(rc, err, f"--checkpoint {folder / 'ck.s2s'}: cannot write in {folder}")
        assert "epoch" not in err and list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_out_and_checkpoint_the_same_file_is_refused(capsys, tmp_path):
    path = tmp_path / "m.s2s"
    rc, _, err = run(capsys, "train", *TINY, "--epochs", "1", "--out", path, "--checkpoint", path)
    assert_one_error_line(rc, err, "--out and --checkpoint are the same file")
    assert not path.exists()


def test_checked_outputs_leave_nothing_behind(capsys, tmp_path):
    rc, _, err = run(capsys, "train", *TINY, "--epochs", "1", "--out", tmp_path / "m.s2s",
                     "--checkpoint", tmp_path / "ck.s2s")
    assert rc == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.s2s", "m.s2s"]


def test_output_through_a_symlink_checks_the_target_directory(capsys, tmp_path):
    link = tmp_path / "link.s2s"
    link.symlink_to(tmp_path / "gone" / "m.s2s")
    rc, _, err = run(capsys, "train", *TINY, "--epochs", "1", "--out", link)
    assert_one_error_line(rc, err, f"--out {link}: the directory {tmp_path / 'gone'} does not exist")


# ---------------------------------------------------------------------------------------------


def test_output_that_is_a_fifo_is_refused_and_kept(capsys, tmp_path):
    """--out naming a FIFO or a device (run as root: --out /dev/null) once replaced it with a
    regular file; only a FIFO in a temporary folder is used here."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "link.s2s"
    link.symlink_to(fifo)
    for option, path in (("--out", fifo), ("--checkpoint", link)):
        argv = ["--out", tmp_path / "m.s2s", "--checkpoint", tmp_path / "ck.s2s"]
        argv[argv.index(option) + 1] = path
        rc, out, err = run(capsys, "train", *TINY, "--epochs", "1", *argv)
        assert_one_error_line(rc, err, f"{option} {path}: is a FIFO, not a regular file")
        assert out == "" and "epoch" not in err
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.s2s", "pipe"]
