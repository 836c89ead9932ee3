"""The model file (s2sext.serialize, specified in docs/model-format.md): exact round trips, the
byte layout a C++ reader relies on, and writing: validation, atomic writes, symlinks, nothing left
behind by a failed or killed writer.

The model file's fixture (`model_path`) is in conftest.py, the shared helpers in serialize_support.py.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import zlib

import numpy as np
import pytest

from s2sext.serialize import read_model_file, write_model_file

from serialize_support import HEADER, make_tensors, parse_layout


# ---------------------------------------------------------------------------------------------
# Round trips


def test_round_trip_is_bit_exact(tmp_path, rng):
    tensors = make_tensors(rng)
    path = tmp_path / "m.s2sx"
    write_model_file(path, HEADER, tensors)
    header, loaded = read_model_file(path)

    assert header == HEADER
    assert json.dumps(header) == json.dumps(HEADER)  # same key order, -0.0 stays -0.0
    assert list(loaded) == list(tensors)  # the order written
    for name, arr in tensors.items():
        got = loaded[name]
        assert got.dtype == arr.dtype, name
        assert got.shape == arr.shape, name
        assert got.tobytes() == arr.tobytes(), name  # bit-exact, NaN payloads included
        assert got.flags.c_contiguous and got.flags.writeable and got.flags.owndata, name
        assert got.dtype.isnative, name


def test_read_accepts_str_and_pathlike(model_path):
    header_a, tensors_a = read_model_file(model_path)
    header_b, tensors_b = read_model_file(str(model_path))
    assert header_a == header_b == HEADER
    assert list(tensors_a) == list(tensors_b)


def test_returned_arrays_are_independent_copies(model_path):
    _, first = read_model_file(model_path)
    first["src_embed"][...] = 0
    _, second = read_model_file(model_path)
    assert np.any(second["src_embed"] != 0)


def test_inputs_of_any_layout_and_byte_order(tmp_path, rng):
    base = rng.standard_normal((5, 6))
    tensors = {
        "transposed": base.T,  # Fortran order
        "strided": base[::2, ::3].astype(np.float32),
        "big_endian_f64": base.astype(">f8"),
        "big_endian_i32": np.arange(7, dtype=">i4"),
        "big_endian_u16": np.arange(3, dtype=">u2"),
        "numpy_scalar": np.float32(2.5),
    }
    path = tmp_path / "m.s2sx"
    write_model_file(path, {}, tensors)
    _, loaded = read_model_file(path)
    for name, arr in tensors.items():
        arr = np.asarray(arr)
        np.testing.assert_array_equal(loaded[name], arr)
        assert loaded[name].dtype == arr.dtype.newbyteorder("="), name
        assert loaded[name].dtype.isnative and loaded[name].flags.c_contiguous, name
    assert loaded["numpy_scalar"].shape == ()


def test_no_tensors_and_empty_header(tmp_path):
    path = tmp_path / "m.s2sx"
    write_model_file(path, {}, {})
    assert read_model_file(path) == ({}, {})
    layout = parse_layout(path.read_bytes())
    assert layout["body_length"] == layout["data_start"]  # the header's padding, then the trailer


def test_overwrite_replaces_the_previous_model(tmp_path, rng):
    path = tmp_path / "m.s2sx"
    write_model_file(path, {"v": 1}, {"a": np.ones(3, np.float32)})
    write_model_file(path, {"v": 2}, {"b": np.zeros((2, 2), np.int64)})
    header, tensors = read_model_file(path)
    assert header == {"v": 2}
    assert list(tensors) == ["b"]
    assert os.listdir(tmp_path) == ["m.s2sx"]


def test_file_is_not_a_pickle_or_npy(model_path):
    raw = model_path.read_bytes()
    assert not raw.startswith(b"\x80")  # pickle protocol 2+ opcode
    assert not raw.startswith(b"\x93NUMPY") and not raw.startswith(b"PK")
    with pytest.raises(Exception):
        pickle.loads(raw)
    with pytest.raises(ValueError):
        np.load(model_path, allow_pickle=False)


# ---------------------------------------------------------------------------------------------
# Layout


def test_layout_matches_the_documented_format(model_path):
    raw = model_path.read_bytes()
    layout = parse_layout(raw)
    assert layout["magic"] == b"S2SXMDL\x00"
    assert layout["version"] == 1
    assert layout["reserved"] == 0
    assert layout["end_magic"] == b"S2SX"
    assert layout["body_length"] == len(raw) - 16
    assert layout["crc"] == zlib.crc32(raw[: len(raw) - 16])
    assert layout["data_start"] % 64 == 0
    assert set(layout["doc"]) == {"tensors", "meta"}
    assert layout["doc"]["meta"] == HEADER
    # The padding between the JSON and the data is zeros.
    assert raw[24 + layout["json_length"] : layout["data_start"]] == bytes(
        layout["data_start"] - 24 - layout["json_length"]
    )

    codes = {"f32": "<f4", "f64": "<f8", "i32": "<i4", "i64": "<i8", "u16": "<u2", "u8": "u1"}
    _, tensors = read_model_file(model_path)
    previous_end = 0
    for entry in layout["doc"]["tensors"]:
        assert set(entry) == {"name", "dtype", "shape", "offset", "nbytes"}
        start = layout["data_start"] + entry["offset"]
        assert start % 64 == 0, entry
        assert entry["offset"] >= previous_end, entry  # ascending, not overlapping
        dtype = np.dtype(codes[entry["dtype"]])
        assert entry["nbytes"] == int(np.prod(entry["shape"], dtype=np.int64)) * dtype.itemsize
        # The raw little-endian bytes at the offset are the tensor.
        expected = tensors[entry["name"]].astype(dtype).tobytes()
        assert raw[start : start + entry["nbytes"]] == expected
        previous_end = entry["offset"] + entry["nbytes"]
    assert layout["data_start"] + previous_end == layout["body_length"]
    assert [e["name"] for e in layout["doc"]["tensors"]] == list(tensors)


# ---------------------------------------------------------------------------------------------
# Writing: validation and atomicity


@pytest.mark.parametrize(
    "dtype",
    [np.float16, np.int16, np.uint32, np.uint64, np.complex64, np.bool_, object]
    + ["U3"],
)
def test_unsupported_tensor_dtype_names_tensor_and_dtype(tmp_path, dtype):
    tensors = {"fine": np.zeros(2, np.float32), "weird.weight": np.zeros(2, dtype=dtype)}
    with pytest.raises(TypeError, match=r"'weird\.weight'.*" + re.escape(str(np.dtype(dtype)))):
        write_model_file(tmp_path / "m.s2sx", {}, tensors)
    assert os.listdir(tmp_path) == []


def test_structured_dtype_is_refused(tmp_path):
    with pytest.raises(TypeError, match="'rec'"):
        write_model_file(tmp_path / "m.s2sx", {}, {"rec": np.zeros(2, dtype=[("a", "<f4")])})


@pytest.mark.parametrize(
    "name, value, error",
    [
        ("", np.zeros(1, np.float32), ValueError),
        (3, np.zeros(1, np.float32), TypeError),
        ("bad\ud800", np.zeros(1, np.float32), ValueError),
        ("list", [1.0, 2.0], TypeError),
    ],
)
def test_bad_tensor_names_and_values(tmp_path, name, value, error):
    with pytest.raises(error):
        write_model_file(tmp_path / "m.s2sx", {}, {name: value})


@pytest.mark.parametrize(
    "header, where",
    [
        ({"config": {"dropout": float("nan")}}, "['config']['dropout']"),
        ({"config": {"scale": float("inf")}}, "['config']['scale']"),
        ({"config": {"sizes": (1, 2)}}, "['config']['sizes']"),
        ({"config": {"hidden": np.int64(7)}}, "['config']['hidden']"),
        ({"vocab": ["a", object()]}, "['vocab'][1]"),
        ({"vocab": {1: "a"}}, "['vocab']"),
        ({"vocab": ["ok", "bad\udc80"]}, "['vocab'][1]"),
        ({"big": 2**64}, "['big']"),
        ({"weights": np.zeros(2)}, "['weights']"),
    ],
)
def test_unserialisable_header_names_the_key(tmp_path, header, where):
    with pytest.raises(TypeError) as info:
        write_model_file(tmp_path / "m.s2sx", header, {})
    assert where in str(info.value)
    assert os.listdir(tmp_path) == []


def test_failed_write_leaves_previous_file_and_no_temp_files(model_path, tmp_path):
    before = model_path.read_bytes()
    bad_tensors = {
        "a": np.ones(3, np.float32),
        "mid": np.array([{}, None], dtype=object),
        "z": np.ones(3, np.float32),
    }
    with pytest.raises(TypeError, match="'mid'.*object"):
        write_model_file(model_path, HEADER, bad_tensors)
    with pytest.raises(TypeError, match="header"):
        write_model_file(model_path, {"x": {1, 2}}, {"a": np.ones(3, np.float32)})
    assert model_path.read_bytes() == before
    assert os.listdir(tmp_path) == [model_path.name]


def test_error_during_write_removes_temp_file(model_path, tmp_path, monkeypatch):
    """An error after the temporary file exists (disk full, interrupted) must not leave it behind
    nor touch the target."""
    before = model_path.read_bytes()

    def fail_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail_fsync)
    with pytest.raises(OSError, match="No space left"):
        write_model_file(model_path, {"v": 2}, {"a": np.ones(3, np.float32)})
    monkeypatch.undo()
    assert model_path.read_bytes() == before
    assert os.listdir(tmp_path) == [model_path.name]


def test_write_into_missing_directory_fails_cleanly(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_model_file(tmp_path / "no" / "m.s2sx", {}, {})
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="permission bits are POSIX")
def test_new_file_gets_ordinary_permissions_and_overwrite_keeps_them(tmp_path):
    path = tmp_path / "m.s2sx"
    write_model_file(path, {}, {})
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    os.chmod(path, 0o640)
    write_model_file(path, {"v": 2}, {})
    assert path.stat().st_mode & 0o777 == 0o640


# ---------------------------------------------------------------------------------------------
# Atomic writes: nothing left behind by a killed writer, symlinks written through

KILLED_WRITER = """
import os, sys, time
import numpy as np
import s2sext.serialize as serialize

path, mode, ready = sys.argv[1:]
if mode == "named":
    serialize._O_TMPFILE = 0  # as on a system without O_TMPFILE


def stall(fd):  # the data is written, the rename not done: the parent kills us here
    open(ready, "w").close()
    time.sleep(120)


os.fsync = stall
serialize.write_model_file(path, {"v": 2}, {"a": np.ones(1000, np.float32)})
"""


def o_tmpfile_works(directory) -> bool:
    from s2sext.serialize import _O_TMPFILE

    if not _O_TMPFILE:
        return False
    try:
        os.close(os.open(directory, _O_TMPFILE | os.O_WRONLY, 0o600))
    except OSError:
        return False
    return True


def kill_writer_mid_save(path, mode, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    ready = tmp_path / "ready"
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path), mode, str(ready)])
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert child.poll() is None, "the writer ended before it was killed"
            assert time.monotonic() < deadline, "the writer never reached its fsync"
            time.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    ready.unlink()


@pytest.mark.skipif(os.name != "posix", reason="kills a process with SIGKILL")
@pytest.mark.parametrize("mode", ["unnamed", "named"])
def test_killed_save_leaves_no_temporary_file(tmp_path, mode):
    models = tmp_path / "models"
    models.mkdir()
    path = models / "m.s2sx"
    write_model_file(path, {"v": 1}, {})
    if mode == "unnamed" and not o_tmpfile_works(models):
        pytest.skip("this file system has no O_TMPFILE")
    kill_writer_mid_save(path, mode, tmp_path)
    assert read_model_file(path)[0] == {"v": 1}  # the old file, whole
    if mode == "unnamed":
        assert os.listdir(models) == ["m.s2sx"]  # the new file never had a name
    else:
        (left,) = [name for name in os.listdir(models) if name != "m.s2sx"]
        assert re.fullmatch(r"\.m\.s2sx\.[0-9]+\.[0-9a-f]{8}\.tmp", left)
        write_model_file(path, {"v": 3}, {})  # the next save of the file removes it
        assert os.listdir(models) == ["m.s2sx"]
        assert read_model_file(path)[0] == {"v": 3}


@pytest.mark.skipif(os.name != "posix", reason="process ids in temporary names are POSIX")
def test_only_temporaries_of_exited_writers_are_removed(tmp_path):
    import subprocess
    import sys

    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    names = {
        "mine_running": f".m.s2sx.{os.getpid()}.0badcafe.tmp",  # this process: a writer at work
        "exited": f".m.s2sx.{exited.pid}.0badcafe.tmp",
        "other_file": f".n.s2sx.{exited.pid}.0badcafe.tmp",
        "not_ours": ".m.s2sx.notes.tmp",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"partial")
    write_model_file(tmp_path / "m.s2sx", {}, {})
    left = set(os.listdir(tmp_path))
    assert left == {"m.s2sx"} | {names[k] for k in ("mine_running", "other_file", "not_ours")}


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
@pytest.mark.parametrize("relative", [False, True])
def test_save_through_a_symlink_replaces_its_target(tmp_path, relative):
    (tmp_path / "store").mkdir()
    (tmp_path / "links").mkdir()
    target = tmp_path / "store" / "model.s2sx"
    write_model_file(target, {"v": 1}, {})
    os.chmod(target, 0o640)
    link = tmp_path / "links" / "latest.s2sx"
    link.symlink_to(os.path.join("..", "store", "model.s2sx") if relative else target)
    write_model_file(link, {"v": 2}, {"a": np.ones(3, np.float32)})
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert read_model_file(target)[0] == {"v": 2}
    assert target.stat().st_mode & 0o777 == 0o640
    assert os.listdir(tmp_path / "store") == ["model.s2sx"]
    assert os.listdir(tmp_path / "links") == ["latest.s2sx"]


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_save_through_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "latest.s2sx"
    link.symlink_to("model.s2sx")
    write_model_file(link, {"v": 1}, {})
    assert link.is_symlink()
    assert read_model_file(tmp_path / "model.s2sx")[0] == {"v": 1}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_save_to_a_fifo_is_refused_and_the_fifo_kept(tmp_path):
    """Saving to a FIFO or a device once replaced it with a regular file (as root, --out
    /dev/null replaced the device); a FIFO in a temporary folder stands for both here."""
    import stat

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "link.s2sx"
    link.symlink_to(fifo)
    for path in (fifo, link):
        with pytest.raises(ValueError, match=re.escape(f"{path}: is a FIFO, not a regular file")):
            write_model_file(path, {}, {"w": np.zeros(2, np.float32)})
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert sorted(os.listdir(tmp_path)) == ["link.s2sx", "pipe"]
    with pytest.raises(ValueError, match="is a directory"):
        write_model_file(tmp_path, {}, {})
