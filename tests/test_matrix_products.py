"""The compiled decoder's weight products (runtime/matrix.h matmul, through _core.WeightMatrix): the
kernel table's gemm_panels (float32 in panels, the decoder's storage), gemv_batch (float32 rows, M
inputs at once) and gemm_bf16 (bfloat16 weights; native
vdpbf16ps products on the avx512_bf16 path) against a float64 numpy reference, on every kernel path,
with odd shapes; each kernel result bit for bit independent of M, of the thread count and (float32)
equal to the batch-1 GEMV's.

Tolerance of a float32 product: whatever the order of its additions (SIMD lanes, blocks, BLAS), a sum
of K products accumulated in float32 is within gamma(K + 1) * sum_k |w_k x_k| of the exact sum,
gamma(n) = n u / (1 - n u), u = 2**-24 (each term passes through at most K additions; the product
itself is exact under FMA or rounded once; + 1 for adding y when accumulating, whose own size then
counts too). That bound holds for the native bf16 products as well (vdpbf16ps: each product of two
bf16 is exact in float32, the additions are float32, round to nearest even), against a reference
that rounds the weights and the inputs to bf16 as the kernel does. Those instructions ignore MXCSR
and flush subnormals: a float32 subnormal input becomes 0 (vcvtne2ps2bf16), which moves a term by
less than |w_k| * 2**-126, and vdpbf16ps flushes subnormal partial sums, less than 2**-126 each at
most twice per term: an absolute floor of (sum_k |w_k| + 2K) * 2**-126. A wrong term (a lost column, a wrong row, an input not rounded or rounded another way) moves a
sum by about one |w_k x_k|, far above gamma(K + 1) * sum for these K, so the tests can fail.
"""
import numpy as np
import pytest

import s2sext
from s2sext import _core

NATIVE_BF16 = "avx512_bf16"
U = 2.0**-24
NS = [1, 3, 13, 255]
KS = [1, 7, 255, 513]
MS = list(range(1, 10)) + [32]


def bf16_round(a):
    """float32 -> nearest bfloat16 (ties to even), as float32 (the weights' storage rule, to_bf16)."""
    bits = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return rounded.astype(np.uint32).view(np.float32).reshape(np.shape(a))


def bound(w, x, y=None):
    """gamma(K + 1) * (|x| @ |w|^T + |y|), plus the floor for flushed subnormals (module docstring)."""
    K = w.shape[1]
    n = K + 1
    size = np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T
    if y is not None:
        size += np.abs(y.astype(np.float64))
    floor = (np.abs(w.astype(np.float64)).sum(axis=1) + 2 * K) * 2.0**-126
    return n * U / (1 - n * U) * size + floor


def reference(w, x, y=None):
    out = x.astype(np.float64) @ w.astype(np.float64).T
    return out if y is None else out + y.astype(np.float64)


def assert_within(got, want, tol, label):
    assert got.dtype == np.float32
    err = np.abs(got.astype(np.float64) - want)
    worst = np.unravel_index(np.argmax(err - tol), err.shape)
    assert np.all(err <= tol), f"{label}: error {err[worst]:.3g} > bound {tol[worst]:.3g} at {worst}"


@pytest.fixture(scope="module")
def shapes():
    rng = np.random.default_rng(13)
    out = {}
    for N in NS:
        for K in KS:
            w = rng.standard_normal((N, K)).astype(np.float32)
            xs = {M: rng.standard_normal((M, K)).astype(np.float32) for M in MS}
            out[N, K] = w, xs, rng.standard_normal((max(MS), N)).astype(np.float32)
    return out


@pytest.mark.parametrize("product", ["kernel", "blas", "auto"])
def test_float32_products_match_float64(kernel_path, product, shapes):
    for (N, K), (w, xs, y0) in shapes.items():
        W = _core.WeightMatrix(w, "float32")
        for M, x in xs.items():
            label = f"{kernel_path} {product} N={N} K={K} M={M}"
            assert_within(W.matmul(x, product=product), reference(w, x), bound(w, x), label)
            y = y0[:M]
            assert_within(W.matmul(x, y, product=product), reference(w, x, y), bound(w, x, y), label + " +y")


def test_panel_products_match_float64(kernel_path, shapes):
    for (N, K), (w, xs, y0) in shapes.items():
        W = _core.WeightMatrix(w, "float32_panels")
        assert W.weight_type == "float32_panels"
        for M, x in xs.items():
            label = f"{kernel_path} panels N={N} K={K} M={M}"
            assert_within(W.matmul(x), reference(w, x), bound(w, x), label)
            y = y0[:M]
            assert_within(W.matmul(x, y), reference(w, x, y), bound(w, x, y), label + " +y")


def test_panel_sums_in_the_stated_order_on_the_portable_path():
    """kernels.h: each result summed in one lane, k increasing, in blocks of 64 columns from zero,
    then the block sums in order. The portable path multiplies and adds in float32 (no FMA), so
    numpy's float32 arithmetic repeats it exactly; a lost column, another block size or another
    order changes some of these bits (K = 513: 9 blocks, the last of one column)."""
    previous = s2sext.set_kernel_path("portable")
    try:
        rng = np.random.default_rng(3)
        for N, K, M in [(13, 513, 3), (40, 64, 2), (1, 65, 1)]:
            w = rng.standard_normal((N, K)).astype(np.float32)
            x = rng.standard_normal((M, K)).astype(np.float32)
            y0 = rng.standard_normal((M, N)).astype(np.float32)
            total = np.zeros((M, N), np.float32)
            for k0 in range(0, K, 64):
                acc = np.zeros((M, N), np.float32)
                for k in range(k0, min(K, k0 + 64)):
                    acc = acc + x[:, k:k + 1] * w[:, k]
                total = total + acc
            W = _core.WeightMatrix(w, "float32_panels")
            np.testing.assert_array_equal(W.matmul(x), total, err_msg=f"N={N} K={K} M={M}")
            np.testing.assert_array_equal(W.matmul(x, y0), y0 + total, err_msg=f"N={N} K={K} M={M} +y")
    finally:
        s2sext.set_kernel_path(previous)


def test_bf16_products_match_float64(kernel_path, shapes):
    """Widening paths multiply the bf16 weights by the float32 inputs; the native path rounds the
    inputs to bf16 as well."""
    for (N, K), (w, xs, y0) in shapes.items():
        W = _core.WeightMatrix(w, "bfloat16")
        assert W.weight_type == "bfloat16"
        wb = bf16_round(w)
        for M, x in xs.items():
            xr = bf16_round(x) if kernel_path == NATIVE_BF16 else x
            label = f"{kernel_path} bf16 N={N} K={K} M={M}"
            assert_within(W.matmul(x), reference(wb, xr), bound(wb, xr), label)
            y = y0[:M]
            assert_within(W.matmul(x, y), reference(wb, xr, y), bound(wb, xr, y), label + " +y")


def test_bf16_inputs_round_to_nearest_even_on_the_native_path(kernel_path):
    """With weights of 1, y = sum of the inputs as the product sees them: rounded to bf16 (ulp 2**-7
    at 1) on the native path, exact elsewhere. 1 + 2**-8 is a tie (down to 1, even), 1 + 3 * 2**-8
    a tie up (to 1 + 2**-6, even), 1 + 2**-9 rounds down, 1 + 3 * 2**-9 up; signs mirror."""
    K = 64
    w = np.ones((9, K), np.float32)
    values = np.array([1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-9, 1 + 3 * 2**-9], np.float32)
    rounded = np.array([1.0, 1 + 2**-6, 1.0, 1 + 2**-7], np.float32)
    x = np.repeat(np.concatenate([values, -values])[:, None], K, axis=1).astype(np.float32)
    got = _core.WeightMatrix(w, "bfloat16").matmul(x)
    seen = np.concatenate([rounded, -rounded]) if kernel_path == NATIVE_BF16 else np.concatenate([values, -values])
    # K equal terms of a value with at most 8 significant bits: every partial sum is exact in float32
    np.testing.assert_array_equal(got, np.repeat((seen.astype(np.float64) * K)[:, None], 9, axis=1))


def test_bf16_non_finite_inputs_propagate(kernel_path):
    w = np.ones((11, 40), np.float32)
    x = np.ones((3, 40), np.float32)
    x[1, 39] = np.nan
    x[2, 0] = np.inf
    got = _core.WeightMatrix(w, "bfloat16").matmul(x)
    assert np.all(got[0] == 40) and np.all(np.isnan(got[1])) and np.all(got[2] == np.inf)


@pytest.mark.parametrize("weight_type,product", [("float32", "kernel"), ("float32_panels", "auto"),
                                                 ("bfloat16", "auto")])
def test_kernel_results_do_not_depend_on_the_other_rows(kernel_path, weight_type, product, shapes):
    """A row's result is the same bits whether it runs alone or among M rows (a beam row computes what
    the same hypothesis alone would)."""
    for (N, K), (w, xs, _) in shapes.items():
        W = _core.WeightMatrix(w, weight_type)
        x = xs[32]
        together = W.matmul(x, product=product)
        for m in range(32):
            np.testing.assert_array_equal(W.matmul(x[m:m + 1], product=product)[0], together[m],
                                          err_msg=f"{kernel_path} {weight_type} N={N} K={K} row {m}")
        for M in MS[:-1]:
            np.testing.assert_array_equal(W.matmul(xs[M], product=product),
                                          np.concatenate([W.matmul(xs[M][m:m + 1], product=product) for m in range(M)]))


def test_float32_kernel_equals_the_batch1_gemv(kernel_path, shapes):
    """Up to 8 rows gemm() runs the batch-1 GEMV once per row ('blas' route); gemv_batch must give
    its bits (kernels.h), here and in a product of 9 or 32 rows."""
    for (N, K), (w, xs, y0) in shapes.items():
        W = _core.WeightMatrix(w, "float32")
        for M, x in xs.items():
            rows = [x[m:m + 1] for m in range(M)]
            gemv = np.concatenate([W.matmul(r, product="blas") for r in rows])
            np.testing.assert_array_equal(W.matmul(x, product="kernel"), gemv, err_msg=f"N={N} K={K} M={M}")
            y = y0[:M]
            gemv_y = np.concatenate([W.matmul(r, y[m:m + 1], product="blas") for m, r in enumerate(rows)])
            np.testing.assert_array_equal(W.matmul(x, y, product="kernel"), gemv_y)


@pytest.mark.parametrize("weight_type", ["float32", "float32_panels", "bfloat16"])
def test_kernel_results_do_not_depend_on_the_thread_count(kernel_path, weight_type):
    """Threads take whole blocks of 8 weight rows (matrix.cpp), so the sums do not change with their
    number (docs/architecture.md, Threads). N and K large enough that 2 and 3 threads split the rows,
    N % 8 != 0 for a partial last block, K past the native path's 1024-column chunk."""
    rng = np.random.default_rng(5)
    w = rng.standard_normal((2045, 1100)).astype(np.float32)
    W = _core.WeightMatrix(w, weight_type)
    previous = s2sext.get_num_threads()
    try:
        for M in (1, 2, 5, 17):
            x = rng.standard_normal((M, 1100)).astype(np.float32)
            product = "kernel" if weight_type == "float32" else "auto"
            results = []
            for threads in (1, 2, 3):
                s2sext.set_num_threads(threads)
                results.append(W.matmul(x, product=product))
            np.testing.assert_array_equal(results[1], results[0])
            np.testing.assert_array_equal(results[2], results[0])
            wr = bf16_round(w) if weight_type == "bfloat16" else w
            xr = bf16_round(x) if weight_type == "bfloat16" and kernel_path == NATIVE_BF16 else x
            assert_within(results[0], reference(wr, xr), bound(wr, xr), f"{weight_type} M={M}")
    finally:
        s2sext.set_num_threads(previous)


def test_empty_products():
    w = np.zeros((5, 0), np.float32)
    for weight_type in ("float32", "float32_panels", "bfloat16"):
        W = _core.WeightMatrix(w, weight_type)
        np.testing.assert_array_equal(W.matmul(np.zeros((3, 0), np.float32)), np.zeros((3, 5), np.float32))
        y = np.arange(15, dtype=np.float32).reshape(3, 5)
        np.testing.assert_array_equal(W.matmul(np.zeros((3, 0), np.float32), y), y)
        W = _core.WeightMatrix(np.ones((5, 4), np.float32), weight_type)
        assert W.matmul(np.zeros((0, 4), np.float32)).shape == (0, 5)


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="weight_type must be 'float32', 'float32_panels' or 'bfloat16', got 'int4'"):
        _core.WeightMatrix(np.ones((2, 3), np.float32), "int4")
    with pytest.raises(ValueError, match=r"w must be 2-D \[N, K\], got shape \(3,\)"):
        _core.WeightMatrix(np.ones(3, np.float32), "float32")
    W = _core.WeightMatrix(np.ones((2, 3), np.float32), "float32")
    with pytest.raises(ValueError, match="product must be 'auto', 'kernel' or 'blas', got 'fast'"):
        W.matmul(np.ones((1, 3), np.float32), product="fast")
    with pytest.raises(ValueError, match="x"):
        W.matmul(np.ones((1, 4), np.float32))
    with pytest.raises(ValueError, match="y"):
        W.matmul(np.ones((1, 3), np.float32), np.ones((1, 3), np.float32))
    with pytest.raises(TypeError, match="w"):
        _core.WeightMatrix("weights", "float32")
