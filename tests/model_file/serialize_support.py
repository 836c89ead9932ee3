"""Helpers shared by the tests of s2sext.serialize: a header and tensors of every kind the model file
holds, and a parser of the byte layout docs/model-format.md specifies.
"""
from __future__ import annotations

import json
import struct

import numpy as np


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
        "blob": rng.integers(0, 256, size=77, dtype=np.uint8),  # an odd length: the next tensor is realigned
        "empty": np.zeros((0, 4), dtype=np.float32),
        "empty_last_axis": np.zeros((3, 0), dtype=np.int64),
        # 1e-45 rounds to the smallest float32 subnormal
        "größe·名前": np.array([1.0, -np.inf, np.nan, 1e-45], dtype=np.float32),
        "last": rng.standard_normal(1).astype(np.float32),
    }


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
