"""Helpers shared by the tests that hold the two model-file loaders to one specification: the base
models, taking a file apart and putting it back together with a valid CRC, and the two loaders'
verdicts (Seq2Seq.load in Python, s2sext::Translator::load in C++ through _core.check_model_file).
"""
from __future__ import annotations

import json
import struct
import zlib


from s2sext import ModelFileError, Seq2Seq, _core
from s2sext.decoding import check_float32_range


BASES = {
    "dot": dict(attention="dot"),
    "bidirectional-general": dict(attention="general", bidirectional=True, num_layers=2),
    "bahdanau-concat": dict(attention="concat", attention_style="bahdanau"),
    "location-input-feeding": dict(attention="location", input_feeding=True, max_source_length=6,
                                   src_tokenizer="word", tgt_tokenizer="word", reverse_source=True),
    "no-attention": dict(attention=None, num_layers=2, dropout=0.25),
    # a version-2 header: every key that version adds, with a value other than its default (the
    # options of an imported OpenNMT-py brnn + mlp model)
    "v2-brnn-mlp": dict(attention="concat", bidirectional=True, bridge="concat", attention_query_bias=True,
                        combine_activation="none", input_feeding=True, num_layers=2),
    # a version-3 header for lowercasing alone (one side; the version-2 keys hold their defaults),
    # with word tokenizers
    "v3-lowercase": dict(attention="dot", src_tokenizer="word", tgt_tokenizer="word", src_lowercase=True),
    # a version-3 header with every key of versions 2 and 3 other than its default
    "v3-brnn-mlp-lowercase": dict(attention="concat", bidirectional=True, bridge="concat",
                                  attention_query_bias=True, combine_activation="none", num_layers=2,
                                  src_lowercase=True, tgt_lowercase=True),
}
# bases saved with int8 matrices (Seq2Seq.save(dtype="int8"): format version 2), by the base they quantize:
# every kind of matrix (embeddings, LSTM, bridge, general's w_a, concat's w_q/w_k beside its vector v and
# query bias, combine, output)
INT8_BASES = {"int8-bidirectional-general": "bidirectional-general", "int8-bahdanau-concat": "bahdanau-concat",
              "int8-v2-brnn-mlp": "v2-brnn-mlp"}


# ---------------------------------------------------------------------------------------------
# Taking a file apart and putting it back together with a valid CRC


class Raw:
    """JSON text put into the header as is (what json.dumps cannot write: 1e400, 2**63 as text,
    a lone surrogate escape, a repeated key)."""

    def __init__(self, text: str):
        self.text = text


def split(raw: bytes):
    """(the JSON document, the data section) of a valid file."""
    (json_length,) = struct.unpack_from("<Q", raw, 16)
    data_start = -(-(24 + json_length) // 64) * 64
    return json.loads(raw[24 : 24 + json_length]), raw[data_start:-16]


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<QI4s", len(body), zlib.crc32(body), b"S2SX")


def format_version(raw: bytes) -> int:
    """The container's format version in the preamble (1 for a file too short to have one)."""
    return struct.unpack_from("<I", raw, 8)[0] if len(raw) >= 12 else 1


def assemble(doc, data: bytes, version: int = 1, **dumps) -> bytes:
    raws = []

    def encode(value):
        if isinstance(value, Raw):
            raws.append(value.text)
            return f"\x00RAW{len(raws) - 1}\x00"
        if isinstance(value, dict):
            return {k: encode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [encode(v) for v in value]
        return value

    text = json.dumps(encode(doc), **{"ensure_ascii": False, **dumps})
    for i, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\x00RAW{i}\x00", **{"ensure_ascii": False, **dumps}), raw)
    head = text.encode("utf-8", "surrogatepass")
    body = struct.pack("<8sIIQ", b"S2SXMDL\x00", version, 0, len(head)) + head
    return with_crc(body + bytes(-len(body) % 64) + data)


def edited(raw: bytes, edit, **dumps) -> bytes:
    """`raw` with `edit(doc, data)` applied (in place, or returning a new (doc, data) tuple), of the
    same format version."""
    doc, data = split(raw)
    result = edit(doc, data)
    if isinstance(result, tuple):
        doc, data = result
    return assemble(doc, data, format_version(raw), **dumps)


def with_head(raw: bytes, transform) -> bytes:
    """`raw` with its JSON text replaced by `transform(text)`, the lengths and the CRC recomputed."""
    (json_length,) = struct.unpack_from("<Q", raw, 16)
    data_start = -(-(24 + json_length) // 64) * 64
    head = transform(raw[24 : 24 + json_length])
    body = struct.pack("<8sIIQ", b"S2SXMDL\x00", format_version(raw), 0, len(head)) + head
    return with_crc(body + bytes(-len(body) % 64) + raw[data_start:-16])


def patched(raw: bytes, offset: int, fmt: str, value, fix_crc: bool = True) -> bytes:
    out = bytearray(raw)
    struct.pack_into(fmt, out, offset, value)
    return with_crc(bytes(out[:-16])) if fix_crc and offset < len(raw) - 16 else bytes(out)


# ---------------------------------------------------------------------------------------------
# Verdicts


def verdicts(path):
    """(Python accepts, C++ accepts). A Python failure other than ModelFileError propagates.

    A valid file whose weights could overflow float32 (a mutated data byte) is read by Seq2Seq.load
    but refused by the C++ API, which compiles it (the model layer refuses it when it decodes):
    there the C++ refusal must carry the model layer's message, and then counts as agreement."""
    try:
        model = Seq2Seq.load(path)
        python = True
    except ModelFileError:
        python = False
    try:
        _core.check_model_file(str(path))
        cpp = True
    except ValueError as e:
        cpp = str(e)
    if python:
        try:
            check_float32_range(model.config.as_dict(), model.params)
        except ValueError as e:
            assert cpp is not True and cpp.endswith(str(e)), f"the model layer refuses to decode: {e}; C++: {cpp}"
            return python, True
    return python, cpp is True


def check_same_verdict(path, content: bytes, expected: bool | None, what: str):
    if path.exists():
        path.unlink()  # (ext4 flushes a file that is truncated and rewritten: slow)
    path.write_bytes(content)
    python, cpp = verdicts(path)
    assert python == cpp, f"{what}: Python {'accepts' if python else 'refuses'}, C++ {'accepts' if cpp else 'refuses'}"
    if expected is not None:
        assert python == expected, f"{what}: both {'accept' if python else 'refuse'}"


# ---------------------------------------------------------------------------------------------
# The structured corpus

CONFIG_KEYS = ("src_vocab_size", "tgt_vocab_size", "embed_size", "hidden_size", "num_layers", "bidirectional",
               "dropout", "attention", "attention_style", "input_feeding", "max_source_length", "src_tokenizer",
               "tgt_tokenizer", "reverse_source")
# the keys each header version after 1 adds (docs/model-format.md): version V has CONFIG_KEYS and
# those of versions 2 to V
VERSION_KEYS = {2: ("bridge", "combine_activation", "attention_query_bias"), 3: ("src_lowercase", "tgt_lowercase")}
ALL_CONFIG_KEYS = CONFIG_KEYS + VERSION_KEYS[2] + VERSION_KEYS[3]


def header_keys(version: int) -> tuple:
    """The exact config keys of a version-``version`` header."""
    return CONFIG_KEYS + sum((keys for v, keys in VERSION_KEYS.items() if v <= version), ())
DELETE = object()
VALUES = [
    DELETE, None, True, False, 0, 1, 3, 4, 5, 6, -1, 2**31, 2**62, 2**63 - 1, -(2**63),
    Raw("9223372036854775808"), Raw("-9223372036854775809"), Raw("1" + "0" * 4300), Raw("1e400"), Raw("-1e400"),
    Raw("4E0"), Raw("-0"), 0.0, -0.0, 0.5, 0.999, 1.0, 5.0, 4.0, 1e-300, "", "4", "none", "None", "dot", "general",
    "concat", "location", "scaled_dot", "luong", "bahdanau", "char", "word", "linear", "tanh", [], {}, [4], {"a": 1},
]


def set_config(key, value):
    def edit(doc, data):
        if value is DELETE:
            doc["meta"]["config"].pop(key, None)
        else:
            doc["meta"]["config"][key] = value

    return edit


def set_meta(key, value):
    def edit(doc, data):
        if value is DELETE:
            doc["meta"].pop(key, None)
        else:
            doc["meta"][key] = value

    return edit


def nested(levels: int):
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value
