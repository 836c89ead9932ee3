"""The model file (s2sext.serialize, specified in docs/model-format.md): exact round trips, the
byte layout a C++ reader relies on, atomic writes, and a clear ModelFileError for every file that
is truncated, corrupted or not a model file at all."""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
import zlib

import numpy as np
import pytest

from s2sext.serialize import ModelFileError, read_model_file, write_model_file

HEADER = {
    "config": {"hidden": 7, "layers": 2, "attention": "concat", "dropout": 0.1, "bidir": True},
    "vocab": {
        "src": ["<pad>", "<sos>", "<eos>", "<unk>", "héllo", "日本語", "🙂"],
        "tgt": ["<pad>", "x"],
    },
    "note": None,
    "tiny": 5e-324,
    "neg_zero": -0.0,
    "big": 2**63 - 1,
    "empty": {"list": [], "dict": {}, "str": ""},
}


def make_tensors(rng):
    return {
        "src_embed": rng.standard_normal((13, 7)).astype(np.float32),
        "encoder.l0.w_ih": rng.standard_normal((28, 7)),  # float64
        "scalar_f32": np.array(np.float32(np.pi)),  # 0-d
        "scalar_i64": np.array(-(2**62), dtype=np.int64),
        "steps": np.arange(-5, 6, dtype=np.int32),
        "bf16_bits": rng.integers(0, 2**16, size=(3, 1, 5), dtype=np.uint16),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "empty_last_axis": np.zeros((3, 0), dtype=np.int64),
        # 1e-45 rounds to the smallest float32 subnormal
        "größe·名前": np.array([1.0, -np.inf, np.nan, 1e-45], dtype=np.float32),
        "last": rng.standard_normal(1).astype(np.float32),
    }


@pytest.fixture
def model_path(tmp_path, rng):
    path = tmp_path / "model.s2sx"
    write_model_file(path, HEADER, make_tensors(rng))
    return path


def parse_layout(raw: bytes):
    """An independent reading of the layout in docs/model-format.md, as a C++ reader would do it."""
    magic, version, reserved, json_length = struct.unpack_from("<8sIIQ", raw, 0)
    doc = json.loads(raw[24 : 24 + json_length].decode("utf-8"))
    data_start = -(-(24 + json_length) // 64) * 64
    body_length, crc, end_magic = struct.unpack_from("<QI4s", raw, len(raw) - 16)
    return {
        "magic": magic,
        "version": version,
        "reserved": reserved,
        "json_length": json_length,
        "doc": doc,
        "data_start": data_start,
        "body_length": body_length,
        "crc": crc,
        "end_magic": end_magic,
    }


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

    codes = {"f32": "<f4", "f64": "<f8", "i32": "<i4", "i64": "<i8", "u16": "<u2"}
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
# Damaged and foreign files


def cut_points(size):
    return sorted({size * k // 20 for k in range(20)} | {size - k for k in range(1, 18)})


def test_truncation_is_detected_at_every_cut(model_path, tmp_path):
    raw = model_path.read_bytes()
    cut_path = tmp_path / "cut.s2sx"
    for cut in cut_points(len(raw)):
        cut_path.write_bytes(raw[:cut])
        with pytest.raises(ModelFileError, match="truncated|corrupted") as info:
            read_model_file(cut_path)
        assert str(cut_path) in str(info.value)


def test_truncation_reports_expected_and_actual_size(model_path, tmp_path):
    raw = model_path.read_bytes()
    cut_path = tmp_path / "cut.s2sx"
    cut = len(raw) - 100  # inside the tensor data: the header is intact
    cut_path.write_bytes(raw[:cut])
    with pytest.raises(ModelFileError, match=f"truncated: expected {len(raw)} bytes, found {cut}"):
        read_model_file(cut_path)


def test_every_single_flipped_byte_is_detected(model_path, tmp_path):
    raw = model_path.read_bytes()
    bad_path = tmp_path / "bad.s2sx"
    size = len(raw)
    positions = {0, 7, 8, 12, 16, 24, 40, size // 2, size - 17} | set(range(size - 16, size))
    positions = sorted(positions | set(range(0, size, 97)))
    for pos in positions:
        damaged = bytearray(raw)
        damaged[pos] ^= 0x01
        bad_path.write_bytes(bytes(damaged))
        with pytest.raises(ModelFileError) as info:
            read_model_file(bad_path)
        assert str(bad_path) in str(info.value), pos


def test_flipped_data_byte_is_a_checksum_mismatch(model_path, tmp_path):
    raw = bytearray(model_path.read_bytes())
    raw[len(raw) // 2] ^= 0x80
    bad_path = tmp_path / "bad.s2sx"
    bad_path.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match=r"corrupted \(checksum mismatch"):
        read_model_file(bad_path)


def test_appended_bytes_are_detected(model_path, tmp_path):
    bad_path = tmp_path / "bad.s2sx"
    bad_path.write_bytes(model_path.read_bytes() + b"\n")
    with pytest.raises(ModelFileError, match="corrupted: 1 unexpected bytes"):
        read_model_file(bad_path)


def test_unknown_version_names_the_supported_one(model_path, tmp_path):
    raw = bytearray(model_path.read_bytes())
    struct.pack_into("<I", raw, 8, 2)
    path = tmp_path / "future.s2sx"
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="unsupported format version 2.*supports version 1"):
        read_model_file(path)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"S2SX", id="magic-prefix"),
        pytest.param(b"S2SXMDL\x00" + b"\x01\x00\x00\x00" + bytes(12), id="preamble-only"),
    ],
)
def test_tiny_files_are_truncated(tmp_path, content):
    path = tmp_path / "tiny.s2sx"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match="truncated"):
        read_model_file(path)


def foreign_files(tmp_path, rng):
    files = {
        "random.bin": rng.integers(0, 256, size=4096, dtype=np.uint8).tobytes(),
        "text.txt": "hidden = 7\nlayers = 2\n".encode() * 20,
        "image.png": b"\x89PNG\r\n\x1a\n" + bytes(200),
        "pickle.pkl": pickle.dumps({"config": {"hidden": 7}}),
        "a.json": json.dumps({"tensors": [], "meta": {}}).encode(),
        "short": b"S2SXMDX",  # shorter than the magic but not a prefix of it
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    np.savez(tmp_path / "weights.npz", w=np.ones((3, 3), np.float32))
    np.save(tmp_path / "weights.npy", np.ones((3, 3), np.float32))
    return sorted(list(files) + ["weights.npz", "weights.npy"])


def test_foreign_files_are_not_model_files(tmp_path, rng):
    for name in foreign_files(tmp_path, rng):
        with pytest.raises(ModelFileError, match="not an s2sext model file") as info:
            read_model_file(tmp_path / name)
        assert str(tmp_path / name) in str(info.value)


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_model_file(tmp_path / "absent.s2sx")


def rewrite(raw: bytes, edit) -> bytes:
    """Apply `edit` to the parsed JSON header and re-emit a file with valid length fields and CRC:
    what a faulty writer might produce. The data section is kept and re-aligned."""
    layout = parse_layout(raw)
    data = raw[layout["data_start"] : layout["body_length"]]
    doc = layout["doc"]
    edit(doc)
    head = json.dumps(doc).encode() if not isinstance(doc, bytes) else doc
    body = struct.pack("<8sIIQ", b"S2SXMDL\x00", 1, 0, len(head)) + head
    body += bytes(-len(body) % 64) + data
    return body + struct.pack("<QI4s", len(body), zlib.crc32(body), b"S2SX")


def test_rewrite_helper_produces_a_valid_file(model_path, tmp_path):
    path = tmp_path / "again.s2sx"
    path.write_bytes(rewrite(model_path.read_bytes(), lambda doc: None))
    header, _ = read_model_file(path)
    assert header == HEADER


def _set(entry_index, key, value):
    def edit(doc):
        doc["tensors"][entry_index][key] = value

    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (_set(0, "dtype", "f16"), "unknown dtype 'f16'"),
        (_set(0, "dtype", "f64"), "nbytes"),
        (_set(0, "shape", [13, -7]), "shape"),
        (_set(0, "shape", [13, 7.0]), "shape"),
        (_set(0, "shape", [13, True, 7]), "shape"),
        (_set(0, "shape", [2**40, 2**40, 0]), "too large"),
        (_set(0, "nbytes", 13 * 7 * 4 + 4), "nbytes"),
        (_set(0, "offset", 32), "offset"),
        (_set(0, "offset", -64), "offset"),
        (_set(1, "offset", 0), "overlap"),
        (_set(len(make_tensors(np.random.default_rng(0))) - 1, "offset", 2**40), "past"),
        (_set(1, "name", "src_embed"), "appears twice"),
        (_set(1, "name", ""), "name"),
        (lambda doc: doc["tensors"][0].pop("nbytes"), "keys"),
        (lambda doc: doc["tensors"][0].update(extra=1), "keys"),
        (lambda doc: doc["tensors"].pop(), "account for"),
        (lambda doc: doc.pop("meta"), "keys meta and tensors"),
        (lambda doc: doc.update(meta=[1, 2]), "'meta' must be an object"),
        (lambda doc: doc.update(tensors={}), "'tensors' must be a list"),
    ],
)
def test_inconsistent_header_with_valid_checksum(model_path, tmp_path, edit, message):
    path = tmp_path / "faulty.s2sx"
    path.write_bytes(rewrite(model_path.read_bytes(), edit))
    with pytest.raises(ModelFileError, match="corrupted") as info:
        read_model_file(path)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b'{"tensors": [], "meta": {"a": NaN}}', id="nan"),
        pytest.param(b'{"tensors": [], "meta": {"a": 1, "a": 2}}', id="duplicate-key"),
        pytest.param(b'{"tensors": [], "meta": {}', id="unterminated"),
        pytest.param(b'{"tensors": [], "meta": "\xff"}', id="not-utf8"),
        pytest.param(b"[" * 100000 + b"]" * 100000, id="deep"),
        pytest.param(b"[]", id="not-an-object"),
    ],
)
def test_invalid_json_with_valid_checksum(tmp_path, head):
    body = struct.pack("<8sIIQ", b"S2SXMDL\x00", 1, 0, len(head)) + head
    body += bytes(-len(body) % 64)
    path = tmp_path / "faulty.s2sx"
    path.write_bytes(body + struct.pack("<QI4s", len(body), zlib.crc32(body), b"S2SX"))
    with pytest.raises(ModelFileError, match="corrupted"):
        read_model_file(path)


def test_huge_declared_header_length_is_not_trusted(tmp_path):
    body = struct.pack("<8sIIQ", b"S2SXMDL\x00", 1, 0, 2**63) + b"{}"
    path = tmp_path / "huge.s2sx"
    path.write_bytes(body + struct.pack("<QI4s", len(body), zlib.crc32(body), b"S2SX"))
    with pytest.raises(ModelFileError, match="corrupted"):
        read_model_file(path)
    path.write_bytes(body)  # and without a trailer: reported as truncated, nothing allocated
    with pytest.raises(ModelFileError, match="truncated"):
        read_model_file(path)


# ---------------------------------------------------------------------------------------------
# Writing: validation and atomicity


@pytest.mark.parametrize(
    "dtype",
    [np.float16, np.int8, np.uint8, np.int16, np.uint32, np.uint64, np.complex64, np.bool_, object]
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
# Work bounded by the file: the preamble, size and trailer are checked before the rest is read


def raw_file(head: bytes, data: bytes = b"", json_length: int | None = None, version: int = 1) -> bytes:
    """A file with a valid trailer and CRC around `head` (the JSON) and `data`; `json_length`
    may lie about the header's length."""
    length = len(head) if json_length is None else json_length
    body = struct.pack("<8sIIQ", b"S2SXMDL\x00", version, 0, length) + head
    body += bytes(-len(body) % 64) + data
    return body + struct.pack("<QI4s", len(body), zlib.crc32(body), b"S2SX")


@pytest.fixture
def bytes_read(monkeypatch):
    """Counts the bytes read_model_file reads from its files."""
    import s2sext.serialize as serialize

    counter = {"bytes": 0}

    class Counted:
        def __init__(self, f):
            self._f = f

        def read(self, n=-1):
            chunk = self._f.read(n)
            counter["bytes"] += len(chunk)
            return chunk

        def readinto(self, buffer):
            n = self._f.readinto(buffer)
            counter["bytes"] += n
            return n

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

    monkeypatch.setattr(serialize, "open", lambda *a, **k: Counted(open(*a, **k)), raising=False)
    return counter


def test_foreign_file_is_refused_from_its_first_bytes(tmp_path, bytes_read):
    path = tmp_path / "big.bin"
    path.write_bytes(b"\x7fELF" + bytes(1 << 20))
    with pytest.raises(ModelFileError, match="not an s2sext model file"):
        read_model_file(path)
    assert bytes_read["bytes"] <= 24


@pytest.mark.parametrize(
    "json_length, message",
    [
        pytest.param(2**40, "truncated: expected at least", id="longer-than-the-file"),
        pytest.param(2**24 + 1, "over the limit of 16777216 bytes", id="over-the-cap"),
    ],
)
def test_header_length_is_checked_before_the_file_is_read(tmp_path, bytes_read, json_length, message):
    path = tmp_path / "lying.s2sx"
    with open(path, "wb") as f:
        f.write(struct.pack("<8sIIQ", b"S2SXMDL\x00", 1, 0, json_length))
        f.truncate(2**25)  # sparse: large on paper, cheap on disk
    with pytest.raises(ModelFileError, match=message):
        read_model_file(path)
    assert bytes_read["bytes"] <= 40


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_endless_device_is_not_a_model_file():
    with pytest.raises(ModelFileError, match="not an s2sext model file"):
        read_model_file("/dev/zero")


def test_header_over_the_cap_is_refused_when_writing(tmp_path):
    from s2sext.serialize import MAX_HEADER_BYTES

    header = {"tokens": ["x" * 1000] * (MAX_HEADER_BYTES // 1000)}
    with pytest.raises(ValueError, match="at most 16777216 bytes"):
        write_model_file(tmp_path / "m.s2sx", header, {})
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# The JSON rules both readers share (docs/model-format.md, check 6 and "Limits")


def nested(levels: int):
    """`levels` objects nested inside each other: {"a": {"a": ... {}}}."""
    value: dict = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def test_header_nesting_limit_when_writing(tmp_path):
    # meta is depth 2 in the file, so it may hold 62 more levels (64 in all)
    write_model_file(tmp_path / "ok.s2sx", {"extra": nested(62)}, {})
    assert read_model_file(tmp_path / "ok.s2sx")[0] == {"extra": nested(62)}
    with pytest.raises(ValueError, match=r"header\['extra'\]\['a'\].*nested deeper"):
        write_model_file(tmp_path / "deep.s2sx", {"extra": nested(63)}, {})
    with pytest.raises(ValueError, match="nested deeper"):
        write_model_file(tmp_path / "deeper.s2sx", {"list": [[[[1]]]] * 2, "x": nested(70)}, {})
    assert os.listdir(tmp_path) == ["ok.s2sx"]


@pytest.mark.parametrize(
    "meta, accepted",
    [
        # the file's object is depth 1, meta 2, so meta["m"] = 62 arrays reaches 64
        pytest.param(b"[" * 62 + b"]" * 62, True, id="depth-64"),
        pytest.param(b"[" * 63 + b"]" * 63, False, id="depth-65"),
        pytest.param(b"[" * 62 + b"1" + b"]" * 62, True, id="depth-64-scalar-inside"),
        pytest.param(b"[" * 62 + b"{}" + b"]" * 62, False, id="depth-65-empty-object-inside"),
        pytest.param(b'{"a": ' + b"9" * 4300 + b"}", False, id="4300-digit-integer"),
        pytest.param(b'{"a": 9223372036854775808}', False, id="int64-max-plus-1"),
        pytest.param(b'{"a": -9223372036854775808}', True, id="int64-min"),
        pytest.param(b'{"a": 1e400}', False, id="overflowing-double"),
        pytest.param(b'{"a": -1E+309}', False, id="overflowing-negative-double"),
        pytest.param(b'{"a": 1e-400}', True, id="underflow-to-zero"),
        pytest.param(b'{"a": "\\ud800"}', False, id="lone-high-surrogate"),
        pytest.param(b'{"\\udc00": 1}', False, id="lone-low-surrogate-key"),
        pytest.param(b'{"a": ["\\ud83d\\ude00"]}', True, id="surrogate-pair"),
    ],
)
def test_json_rules_with_valid_checksum(tmp_path, meta, accepted):
    path = tmp_path / "m.s2sx"
    path.write_bytes(raw_file(b'{"tensors": [], "meta": {"m": ' + meta + b"}}"))
    if accepted:
        read_model_file(path)
    else:
        with pytest.raises(ModelFileError, match="corrupted: the header is not valid JSON"):
            read_model_file(path)


def test_many_keys_and_a_repeated_last_one(tmp_path):
    path = tmp_path / "m.s2sx"
    keys = {f"k{i}": i for i in range(200_000)}
    write_model_file(path, {"extra": keys}, {})
    assert read_model_file(path)[0]["extra"] == keys
    members = b",".join(b'"k%d": %d' % (i, i) for i in range(200_000))
    path.write_bytes(raw_file(b'{"tensors": [], "meta": {' + members + b', "k7": 0}}'))
    with pytest.raises(ModelFileError, match="'k7' repeated"):
        read_model_file(path)


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
