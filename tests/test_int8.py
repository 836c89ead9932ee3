"""int8 weights in the compiled decoder (runtime/matrix.h, the kernels' int8 section): the row
quantizer and the int32 product of every kernel path against exact numpy references (integer sums
are exact, so every path must give the same bits), matmul's int8 branch against the numpy formula,
and the int8 Decoder (greedy, beam, generate, the C++ Translator, bad dtypes)."""

import numpy as np
import pytest

import s2sext
from s2sext import Decoder, Seq2Seq, _core

PATHS = list(s2sext.cpu_info()["available_paths"])
N_SIZES = [1, 3, 13, 255]
K_SIZES = [1, 7, 64, 255, 513]
M_SIZES = list(range(1, 10)) + [32]


def _with_path(name, fn, *args):
    previous = s2sext.set_kernel_path(name)
    try:
        return fn(*args)
    finally:
        s2sext.set_kernel_path(previous)


def _random_int8(rng, shape):
    return rng.integers(-127, 128, shape).astype(np.int8)


@pytest.mark.parametrize("path", PATHS)
def test_gemm_i8_is_exact_on_every_path(path):
    rng = np.random.default_rng(0)
    for K in K_SIZES:
        for N in N_SIZES:
            for M in M_SIZES:
                q_x, q_w = _random_int8(rng, (M, K)), _random_int8(rng, (N, K))
                want = q_x.astype(np.int64) @ q_w.astype(np.int64).T  # exact
                got = _with_path(path, _core.int8_gemm, q_x, q_w)
                assert got.dtype == np.int32
                np.testing.assert_array_equal(got, want, err_msg=f"{path} M={M} N={N} K={K}")


@pytest.mark.parametrize("path", PATHS)
def test_gemm_i8_extremes(path):
    """All +-127 (the largest sums, and on VNNI the largest shifted activations x + 128 = 255 and
    smallest = 1) over the longest rows the engine allows."""
    K = 65536 - 64
    for sx, sw in ((127, 127), (-127, 127), (-127, -127)):
        q_x, q_w = np.full((3, K), sx, np.int8), np.full((5, K), sw, np.int8)
        got = _with_path(path, _core.int8_gemm, q_x, q_w)
        np.testing.assert_array_equal(got, np.full((3, 5), sx * sw * K, np.int64))


def _rows_to_quantize(rng, M, K):
    x = rng.standard_normal((M, K)).astype(np.float32) * np.float32(3.0)
    x[0, :] = 0.0  # a zero row: scale 0, zeros
    if M > 1:
        # ties: values at exactly k + 0.5 quanta (max 127 -> scale 1), which round half to even
        x[1, :] = (np.arange(K) % 7 - 3).astype(np.float32) + np.float32(0.5)
        x[1, 0] = 127.0
    if M > 2:
        x[2, :] *= np.float32(1e-30)  # tiny values
    return x


@pytest.mark.parametrize("path", PATHS)
def test_row_quantizer_is_the_rule_on_every_path(path):
    rng = np.random.default_rng(1)
    for K in K_SIZES:
        for M in (1, 3, 9):
            x = _rows_to_quantize(rng, M, K)
            q, scale = _with_path(path, _core.int8_quantize_rows, x)
            rule_q, rule_scale = _core.quantize_int8(x)
            np.testing.assert_array_equal(scale, rule_scale)
            np.testing.assert_array_equal(q, rule_q, err_msg=f"{path} M={M} K={K}")
            # and the rule as documented: scale = max|x| / 127 in float32, round half to even
            np.testing.assert_array_equal(scale, np.abs(x).max(axis=1) / np.float32(127))
            safe = np.where(scale > 0, scale, np.float32(1))[:, None]
            want = np.where(scale[:, None] > 0, np.clip(np.rint(x / safe), -127, 127), 0).astype(np.int8)
            np.testing.assert_array_equal(q, want)


def _matmul_reference(w, x, y=None):
    """The int8 product by its formula, in numpy: rows of both quantized by the rule, int sums
    exact, y = float32(acc) * (x_scale * w_scale) (+ y)."""
    q_w, s_w = _core.quantize_int8(w)
    q_x, s_x = _core.quantize_int8(x)
    acc = (q_x.astype(np.int64) @ q_w.astype(np.int64).T).astype(np.float32)
    out = acc * (s_x[:, None] * s_w[None, :])
    return out if y is None else y + out


@pytest.mark.parametrize("path", PATHS)
def test_matmul_int8_equals_its_formula_bit_for_bit(path):
    rng = np.random.default_rng(2)
    for K in (1, 7, 255, 513):
        for N in (1, 13, 255):
            for M in (1, 2, 5, 9, 32):
                w = rng.standard_normal((N, K)).astype(np.float32)
                x = rng.standard_normal((M, K)).astype(np.float32)
                y0 = rng.standard_normal((M, N)).astype(np.float32)
                np.testing.assert_array_equal(_with_path(path, _core.int8_matmul, w, x), _matmul_reference(w, x))
                np.testing.assert_array_equal(_with_path(path, _core.int8_matmul, w, x, y0),
                                              _matmul_reference(w, x, y0))


def test_matmul_int8_threads_give_the_same_bits():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((2048, 512)).astype(np.float32)
    x = rng.standard_normal((5, 512)).astype(np.float32)
    previous = s2sext.get_num_threads()
    try:
        s2sext.set_num_threads(1)
        one = _core.int8_matmul(w, x)
        s2sext.set_num_threads(max(2, previous))
        many = _core.int8_matmul(w, x)
    finally:
        s2sext.set_num_threads(previous)
    np.testing.assert_array_equal(one, many)
    np.testing.assert_array_equal(one, _matmul_reference(w, x))


def test_int8_hooks_check_their_arguments():
    with pytest.raises(TypeError, match="q_x must be an int8 array"):
        _core.int8_gemm(np.zeros((2, 3), np.int16), np.zeros((2, 3), np.int8))
    with pytest.raises(ValueError, match=r"q_w must have K=3 columns \(those of q_x\)"):
        _core.int8_gemm(np.zeros((2, 3), np.int8), np.zeros((2, 4), np.int8))
    with pytest.raises(ValueError, match="q_x must lie in"):
        _core.int8_gemm(np.full((2, 3), -128, np.int8), np.zeros((2, 3), np.int8))
    with pytest.raises(ValueError, match="x must be finite"):
        _core.int8_quantize_rows(np.array([[1.0, np.nan]], np.float32))
