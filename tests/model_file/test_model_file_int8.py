"""int8 matrices in a model file (docs/model-format.md, "Format versions" and "int8 parameters"): the
container's dtype i8 in format version 2, and the two loaders (Seq2Seq.load in Python,
s2sext::Translator::load in C++ through _core.check_model_file) held to the same verdict, and to their
messages, on quantized models and every damaged form of one. The structured corpus and the fuzz run
of test_model_file_corpus.py include the int8 bases too (conftest.py).
"""
from __future__ import annotations

import struct

import numpy as np
import pytest

from s2sext import ModelFileError, Seq2Seq, _core
from s2sext.serialize import read_model_file, write_model_file

from corpus_support import INT8_BASES, check_same_verdict, patched, verdicts

FLT_MAX = np.finfo(np.float32).max


# ---------------------------------------------------------------------------------------------
# The container: dtype i8, format version 2


def test_int8_tensors_make_a_version_2_file_and_read_back(tmp_path):
    path = tmp_path / "c.s2sx"
    q = np.array([[-127, 0, 127], [5, -6, 7]], np.int8)
    write_model_file(path, {"k": 1}, {"q": q, "v": np.ones(3, np.float32)})
    raw = path.read_bytes()
    assert struct.unpack_from("<I", raw, 8)[0] == 2
    header, tensors = read_model_file(path)
    assert header == {"k": 1} and tensors["q"].dtype == np.int8 and np.array_equal(tensors["q"], q)
    write_model_file(path, {"k": 1}, {"v": np.ones(3, np.float32)})
    assert struct.unpack_from("<I", path.read_bytes(), 8)[0] == 1  # no int8: version 1, as before


def test_a_version_1_file_cannot_hold_int8(tmp_path):
    path = tmp_path / "c.s2sx"
    write_model_file(path, {}, {"q": np.zeros((2, 2), np.int8)})
    path.write_bytes(patched(path.read_bytes(), 8, "<I", 1))
    with pytest.raises(ModelFileError, match=r"\('q'\) has dtype 'i8', which a version-1 file cannot hold"):
        read_model_file(path)


# ---------------------------------------------------------------------------------------------
# Quantized models: every loader reads them, as the values the int8 rule stands for


@pytest.mark.parametrize("name", list(INT8_BASES))
def test_int8_bases_load_as_their_dequantized_values(bases, tmp_path, name):
    path = tmp_path / "q.s2s"
    path.write_bytes(bases[name])
    python, cpp = verdicts(path)
    assert python and cpp
    _, stored = read_model_file(path)
    model = Seq2Seq.load(path)
    original = Seq2Seq.load(_saved(bases, INT8_BASES[name], tmp_path))
    matrices = [n for n, v in original.params.items() if v.ndim == 2]
    assert matrices and all(stored[n].dtype == np.int8 for n in matrices)
    for n, value in model.params.items():
        assert value.dtype == np.float32
        if n in matrices:
            q, scale = _core.quantize_int8(value)  # the rule on the loaded values gives the stored bytes
            assert np.array_equal(q, stored[n])
            assert np.array_equal(scale.view(np.uint32), stored[n + ".scale"].view(np.uint32))
            assert np.array_equal(value, _core.dequantize_int8(stored[n], stored[n + ".scale"]))
        else:
            assert np.array_equal(value, original.params[n])  # vectors are stored as they are
    model.save(tmp_path / "again.s2s", dtype="int8")  # an int8 file saved again is the same file
    assert (tmp_path / "again.s2s").read_bytes() == bases[name]


def _saved(bases, base, tmp_path):
    path = tmp_path / "float.s2s"
    path.write_bytes(bases[base])
    return path


# ---------------------------------------------------------------------------------------------
# Damaged forms: the same verdict from both loaders, each with its message


def _variant(raw, tmp_path, edit):
    """`raw` (an int8 base) with `edit(header, tensors)` applied, written back as a valid container."""
    path = tmp_path / "edit.s2s"
    path.write_bytes(raw)
    header, tensors = read_model_file(path)
    edit(header, tensors)
    write_model_file(path, header, tensors)
    return path.read_bytes()


def _set(name, value):
    def edit(header, tensors):
        if value is None:
            del tensors[name]
        else:
            tensors[name] = value(tensors[name].copy()) if callable(value) else value
    return edit


def _setting(at, value):
    """An array edit: `a[at] = value` (in the copy `_set` hands it)."""
    def apply(a):
        a[at] = value if not callable(value) else value(a[at])
        return a
    return apply


def _keep_float(name):
    """The matrix `name` stored as float32 again, its scale removed (a file of mixed storage)."""
    def edit(header, tensors):
        tensors[name] = _core.dequantize_int8(tensors[name], tensors.pop(name + ".scale"))
    return edit


def _zero_row(name, row, scale_value=0.0, q_value=0):
    def edit(header, tensors):
        tensors[name] = tensors[name].copy()
        tensors[name][row] = 0
        tensors[name][row, 0] = q_value
        tensors[name + ".scale"] = tensors[name + ".scale"].copy()
        tensors[name + ".scale"][row] = scale_value
    return edit


# (id, edit, expected verdict, the message both loaders give, as a regex, or None)
M = "encoder.l0.w_ih"  # a matrix [4H, E] of every base
CASES = [
    ("scale-f64", _set(M + ".scale", lambda s: s.astype(np.float64)), False, r"encoder\.l0\.w_ih\.scale"),
    ("scale-i32", _set(M + ".scale", lambda s: s.view(np.int32)), False, r"encoder\.l0\.w_ih\.scale"),
    ("scale-2d", _set(M + ".scale", lambda s: s[:, None]), False, r"encoder\.l0\.w_ih\.scale"),
    ("scale-short", _set(M + ".scale", lambda s: s[:-1]), False, r"encoder\.l0\.w_ih\.scale"),
    ("scale-long", _set(M + ".scale", lambda s: np.append(s, s[:1])), False, r"encoder\.l0\.w_ih\.scale"),
    ("scale-0d", _set(M + ".scale", lambda s: s[0]), False, r"encoder\.l0\.w_ih\.scale"),
    ("scale-missing", _set(M + ".scale", None), False, r"lacks its scales 'encoder\.l0\.w_ih\.scale'"),
    ("matrix-missing", _set(M, None), False, r"'encoder\.l0\.w_ih' is missing"),
    ("scale-negative", _set(M + ".scale", lambda s: -s), False, r"row 0.*(scale|>= \+0)"),
    ("scale-one-negative", _set(M + ".scale", _setting(2, lambda v: -v)), False, r"row 2"),
    ("scale-nan", _set(M + ".scale", _setting(0, np.nan)), False, r"row 0"),
    ("scale-inf", _set(M + ".scale", _setting(3, np.inf)), False, r"row 3"),
    ("scale-overflows", _set(M + ".scale", _setting(1, FLT_MAX / 64)), False, r"row 1.*overflows float32"),
    ("q-minus-128", _set(M, _setting((1, 0), -128)), False, r"row 1 holds -128"),
    ("row-max-126", _set(M, _setting(1, lambda r: np.clip(r, -126, 126))), False,
     r"row 1 is not as the int8 rule stores it"),
    ("row-halved", _set(M, _setting(0, lambda r: r // 2)), False, r"row 0 is not as the int8 rule stores it"),
    ("zero-scale-nonzero-q", _zero_row(M, 2, 0.0, 5), False, r"row 2 is not as the int8 rule stores it"),
    ("zero-row", _zero_row(M, 2), True, None),
    ("zero-row-negative-zero-scale", _zero_row(M, 2, -0.0), False, r"row 2"),
    # a scale doubled is another fixed point of the rule (its row still has |q| = 127): a valid file
    ("scale-doubled", _set(M + ".scale", lambda s: s * np.float32(2)), True, None),
    ("matrix-transposed", _set(M, lambda q: np.ascontiguousarray(q.T)), False, r"encoder\.l0\.w_ih"),
    ("matrix-as-u8", _set(M, lambda q: q.view(np.uint8)), False, r"encoder\.l0\.w_ih"),
    ("matrix-as-f32-with-scale", _set(M, lambda q: q.astype(np.float32)), False,
     r"'encoder\.l0\.w_ih\.scale' holds int8 scales, but parameter 'encoder\.l0\.w_ih' is (float32|f32)"),
    ("one-matrix-float32", _keep_float(M), True, None),
    ("every-matrix-float32", lambda h, t: [_keep_float(n)(h, t) for n in list(t) if n + ".scale" in t], True, None),
    ("scale-beside-float-bias", _set("encoder.l0.b.scale", np.ones(16, np.float32)), False,
     r"'encoder\.l0\.b\.scale' holds int8 scales"),
    ("bias-int8", _set("encoder.l0.b", lambda b: np.zeros(b.shape, np.int8)), False,
     r"'encoder\.l0\.b' is int8; only matrices"),
    ("bias-int8-with-scale",
     lambda h, t: t.update({"encoder.l0.b": np.zeros(16, np.int8), "encoder.l0.b.scale": np.zeros(16, np.float32)}),
     False, r"'encoder\.l0\.b' is int8; only matrices"),
    ("not-a-parameter-int8", lambda h, t: t.update({"optim.m": np.ones((2, 3), np.int8) * -128,
                                                    "optim.m.scale": np.full(2, np.nan, np.float32)}), True, None),
]


@pytest.mark.parametrize("base", list(INT8_BASES))
def test_damaged_int8_files_get_the_same_verdict_and_message(bases, tmp_path, base):
    for what, edit, expected, message in CASES:
        content = _variant(bases[base], tmp_path, edit)
        path = tmp_path / "case.s2s"
        check_same_verdict(path, content, expected, f"{base}/{what}")
        if message is None:
            continue
        with pytest.raises(ModelFileError, match=message):
            Seq2Seq.load(path)
        with pytest.raises(ValueError, match=message):
            _core.check_model_file(str(path))


def test_an_int8_file_patched_to_version_1_is_refused(bases, tmp_path):
    raw = bases[next(iter(INT8_BASES))]
    check_same_verdict(tmp_path / "v1.s2s", patched(raw, 8, "<I", 1), False, "int8 in version 1")
    with pytest.raises(ValueError, match="has dtype 'i8', which a version-1 file cannot hold"):
        _core.check_model_file(str(tmp_path / "v1.s2s"))


def test_every_matrix_and_only_matrices_are_int8(bases, tmp_path):
    for name, base in INT8_BASES.items():
        _, stored = read_model_file(_saved(bases, name, tmp_path))
        _, floats = read_model_file(_saved(bases, base, tmp_path))
        for n, value in floats.items():
            if value.ndim == 2:
                assert stored[n].dtype == np.int8 and stored[n + ".scale"].shape == value.shape[:1], n
            else:
                assert stored[n].dtype == value.dtype and n + ".scale" not in stored, n
        assert len(stored) == len(floats) + sum(v.ndim == 2 for v in floats.values())
