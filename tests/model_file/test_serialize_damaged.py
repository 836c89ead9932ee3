"""The model file (s2sext.serialize): a clear ModelFileError for every file that is truncated,
corrupted or not a model file at all; work bounded by the file; the JSON rules both readers share.

The model file's fixture (`model_path`) is in conftest.py, the shared helpers in serialize_support.py.
"""
from __future__ import annotations

import json
import os
import pickle
import struct
import zlib

import numpy as np
import pytest

from s2sext.serialize import ModelFileError, read_model_file, write_model_file

from serialize_support import HEADER, make_tensors, parse_layout


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


def test_unknown_version_names_the_supported_ones(model_path, tmp_path):
    raw = bytearray(model_path.read_bytes())
    struct.pack_into("<I", raw, 8, 3)
    path = tmp_path / "future.s2sx"
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="unsupported format version 3.*supports versions 1 and 2"):
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
