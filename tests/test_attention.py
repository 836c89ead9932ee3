"""Attention weights (every kind) and the weighted sum against plain PyTorch autograd.

Shape letters: B batch, S source length, T decoder steps, H hidden size, A attention size (concat),
S_max the longest source a `location` attention accepts. One step: q [B, H] -> a [B, S];
all steps: q [B, T, H] -> a [B, T, S]. Tolerances: reference.py (float32 measured rule, float64 tight).
"""
import numpy as np
import pytest

from s2sext import ops

from reference import (assert_close, attention_params, attention_ref, kernel_kind, normal, query_shape,
                       ragged_lengths, refs, weight_sum_ref)

DTYPES = [np.float32, np.float64]
KINDS = ["dot", "scaled_dot", "general", "concat", "location", "concat+b_q"]  # concat with its query bias
QMODES = ["step", "T1", "T4"]
A = 5                 # concat attention size: odd, so the A loop has a tail
S_MAX_EXTRA = 3       # location: S_max = S + 3, so rows S.. of W_a are unused
# (B, H, S): every value of B in (1, 3), H in (1, 7, 255), S in (1, 13), in several combinations.
SHAPES = [(1, 1, 1), (3, 1, 13), (1, 7, 13), (3, 7, 1), (3, 7, 13), (3, 255, 13), (1, 255, 1)]
SHAPE_IDS = [f"B{b}-H{h}-S{s}" for b, h, s in SHAPES]


def _a_shape(B, S, qmode):
    return (B, S) if qmode == "step" else (B, int(qmode[1:]), S)


def _check_out(arr, dtype, shape, name):
    assert isinstance(arr, np.ndarray), (name, type(arr))
    assert arr.dtype == dtype, (name, arr.dtype)
    assert arr.shape == shape, (name, arr.shape)
    assert arr.flags.c_contiguous, name


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("qmode", QMODES)
@pytest.mark.parametrize("B,H,S", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("kind", KINDS)
def test_attention_weight_matches_torch(kernel_path, rng, kind, B, H, S, qmode, with_lengths, dtype):
    hs = normal(rng, (B, S, H), dtype)
    q = normal(rng, query_shape(B, H, qmode), dtype)
    params = attention_params(rng, kind, H, dtype, A=A, S_max=S + S_MAX_EXTRA)
    lengths = ragged_lengths(B, S) if with_lengths else None
    a_shape = _a_shape(B, S, qmode)
    da = normal(rng, a_shape, dtype)     # nonzero at masked positions too: they must not leak

    a, cache = ops.attention_weight_forward(hs, q, kernel_kind(kind), params, lengths)
    assert isinstance(cache, ops.AttentionCache), type(cache)
    dhs, dq, dparams = ops.attention_weight_backward(da, cache)
    ref64, ref32 = refs(attention_ref, hs, q, kernel_kind(kind), params, lengths, da, dtype=dtype)

    _check_out(a, dtype, a_shape, "a")
    _check_out(dhs, dtype, hs.shape, "dhs")
    _check_out(dq, dtype, q.shape, "dq")
    assert isinstance(dparams, tuple), type(dparams)
    assert len(dparams) == len(params)
    for i, (dp, p) in enumerate(zip(dparams, params)):
        _check_out(dp, dtype, p.shape, f"dparams[{i}]")

    r32 = ref32 or {"a": None, "dhs": None, "dq": None, "dparams": [None] * len(params)}
    assert_close("a", a, ref64["a"], r32["a"])
    assert_close("dhs", dhs, ref64["dhs"], r32["dhs"])
    assert_close("dq", dq, ref64["dq"], r32["dq"])
    for i, dp in enumerate(dparams):
        assert_close(f"dparams[{i}]", dp, ref64["dparams"][i], r32["dparams"][i])

    # Each row of a is a distribution over the valid positions.
    valid = np.full(B, S) if lengths is None else lengths
    for b in range(B):
        row = a[b]
        np.testing.assert_allclose(row[..., :valid[b]].sum(axis=-1), 1.0, rtol=0,
                                   atol=S * 4 * np.finfo(dtype).eps)
        assert np.all(row[..., valid[b]:] == 0), f"a[{b}, ..., {valid[b]}:] must be exactly 0 (masked)"
        assert np.all(dhs[b, valid[b]:] == 0), f"dhs[{b}, {valid[b]}:] must be exactly 0 (masked)"
    if kind == "location":
        assert np.all(dparams[0][S:] == 0), "dW_a rows >= S must be exactly 0"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("qmode", ["step", "T4"])
def test_location_s_equals_s_max(kernel_path, rng, qmode, dtype):
    B, H, S = 3, 7, 13
    hs = normal(rng, (B, S, H), dtype)
    q = normal(rng, query_shape(B, H, qmode), dtype)
    params = attention_params(rng, "location", H, dtype, S_max=S)
    lengths = ragged_lengths(B, S)
    da = normal(rng, _a_shape(B, S, qmode), dtype)
    a, cache = ops.attention_weight_forward(hs, q, "location", params, lengths)
    dhs, dq, dparams = ops.attention_weight_backward(da, cache)
    ref64, ref32 = refs(attention_ref, hs, q, "location", params, lengths, da, dtype=dtype)
    r32 = ref32 or {"a": None, "dhs": None, "dq": None, "dparams": [None]}
    assert_close("a", a, ref64["a"], r32["a"])
    assert_close("dhs", dhs, ref64["dhs"], r32["dhs"])
    assert_close("dq", dq, ref64["dq"], r32["dq"])
    assert_close("dW_a", dparams[0], ref64["dparams"][0], r32["dparams"][0])
    # location scores do not depend on hs
    assert np.all(dhs == 0)


@pytest.mark.parametrize("kind", KINDS)
def test_one_step_equals_all_steps(rng, kind):
    """q [B, H] is the T = 1 case of q [B, T, H]."""
    B, H, S = 3, 7, 13
    hs = normal(rng, (B, S, H), np.float64)
    q = normal(rng, (B, H), np.float64)
    params = attention_params(rng, kind, H, np.float64, A=A, S_max=S + S_MAX_EXTRA)
    lengths = ragged_lengths(B, S)
    da = normal(rng, (B, S), np.float64)
    a1, c1 = ops.attention_weight_forward(hs, q, kernel_kind(kind), params, lengths)
    a2, c2 = ops.attention_weight_forward(hs, q[:, None, :], kernel_kind(kind), params, lengths)
    g1 = ops.attention_weight_backward(da, c1)
    g2 = ops.attention_weight_backward(da[:, None, :], c2)
    np.testing.assert_allclose(a2[:, 0], a1, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g2[0], g1[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g2[1][:, 0], g1[1], rtol=1e-12, atol=1e-15)
    for d2, d1 in zip(g2[2], g1[2]):
        np.testing.assert_allclose(d2, d1, rtol=1e-12, atol=1e-15)


def test_attention_default_params_and_lengths(rng):
    """params defaults to () and lengths to None (all S)."""
    B, H, S = 3, 7, 13
    hs = normal(rng, (B, S, H), np.float32)
    q = normal(rng, (B, H), np.float32)
    a_default, _ = ops.attention_weight_forward(hs, q, "dot")
    a_explicit, _ = ops.attention_weight_forward(hs, q, "dot", (), np.full(B, S))
    np.testing.assert_allclose(a_default, a_explicit, rtol=0, atol=4 * np.finfo(np.float32).eps)
    a_kw, _ = ops.attention_weight_forward(hs, q, kind="dot", params=(), lengths=None)
    np.testing.assert_array_equal(a_kw, a_default)


# ------------------------------------------------------------------------------------ weight sum

@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("qmode", QMODES)
@pytest.mark.parametrize("B,H,S", SHAPES, ids=SHAPE_IDS)
def test_weight_sum_matches_torch(kernel_path, rng, B, H, S, qmode, dtype):
    hs = normal(rng, (B, S, H), dtype)
    a_shape = _a_shape(B, S, qmode)
    logits = rng.standard_normal(a_shape)
    a = (np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)).astype(dtype)
    c_shape = (B, H) if qmode == "step" else (B, a_shape[1], H)
    dc = normal(rng, c_shape, dtype)

    c = ops.weight_sum_forward(hs, a)
    dhs, da = ops.weight_sum_backward(dc, hs, a)
    ref64, ref32 = refs(weight_sum_ref, hs, a, dc, dtype=dtype)

    _check_out(c, dtype, c_shape, "c")
    _check_out(dhs, dtype, hs.shape, "dhs")
    _check_out(da, dtype, a_shape, "da")
    r32 = ref32 or {"c": None, "dhs": None, "da": None}
    for name, ours in (("c", c), ("dhs", dhs), ("da", da)):
        assert_close(name, ours, ref64[name], r32[name])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_attention_then_weight_sum_masked(kernel_path, rng, dtype):
    """The decoder's use: a from masked attention, then the context; padded hs never reach c."""
    B, H, S = 3, 7, 13
    lengths = ragged_lengths(B, S)
    hs = normal(rng, (B, S, H), dtype)
    q = normal(rng, (B, 4, H), dtype)
    a, _ = ops.attention_weight_forward(hs, q, "general", attention_params(rng, "general", H, dtype),
                                        lengths)
    c = ops.weight_sum_forward(hs, a)
    hs_changed = hs.copy()
    for b, n in enumerate(lengths):
        hs_changed[b, n:] = 1e3          # padding changes; a is 0 there, so c must not change
    c2 = ops.weight_sum_forward(hs_changed, a)
    np.testing.assert_array_equal(c2, c)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_concat_query_bias_gradient_is_reproducible_and_counts(rng, dtype):
    """db_q is summed over the B*T query rows in a fixed order (the same bits on every call), it
    is the gradient of a bias that every row shares, and a zero b_q gives plain concat's numbers."""
    B, T, H, S = 19, 3, 7, 13  # more rows than one block of the threads' split
    hs = normal(rng, (B, S, H), dtype)
    q = normal(rng, (B, T, H), dtype)
    params = attention_params(rng, "concat+b_q", H, dtype, A=A)
    lengths = np.array([S, 1, 5] * 6 + [2])
    da = normal(rng, (B, T, S), dtype)
    _, cache = ops.attention_weight_forward(hs, q, "concat", params, lengths)
    first = ops.attention_weight_backward(da, cache)[2][3]
    for _ in range(3):
        _, cache = ops.attention_weight_forward(hs, q, "concat", params, lengths)
        np.testing.assert_array_equal(ops.attention_weight_backward(da, cache)[2][3], first)
    zero = params[:3] + (np.zeros(A, dtype),)
    a0, c0 = ops.attention_weight_forward(hs, q, "concat", zero, lengths)
    a3, c3 = ops.attention_weight_forward(hs, q, "concat", params[:3], lengths)
    np.testing.assert_array_equal(a0, a3)
    g0, g3 = ops.attention_weight_backward(da, c0), ops.attention_weight_backward(da, c3)
    for x, y in zip(g0[:2] + g0[2][:3], g3[:2] + g3[2]):
        np.testing.assert_array_equal(x, y)
    assert len(g3[2]) == 3 and len(g0[2]) == 4


def test_concat_param_count_is_checked(rng):
    B, H, S = 2, 3, 4
    hs, q = normal(rng, (B, S, H), np.float64), normal(rng, (B, H), np.float64)
    params = attention_params(rng, "concat+b_q", H, np.float64, A=A)
    for bad in (params[:2], params + (params[3],)):
        with pytest.raises(ValueError, match=r"params for kind 'concat' must be .*: 3 or 4 array\(s\), got"):
            ops.attention_weight_forward(hs, q, "concat", bad)
    with pytest.raises(ValueError, match=r"params\[3\] \(b_q\)"):
        ops.attention_weight_forward(hs, q, "concat", params[:3] + (np.zeros(A + 1),))


# ------------------------------------------------------------------------ dot scores (all kernel paths)

def _softmax64(scores, lengths):
    """float64 softmax over s < lengths[b], masked positions exactly 0."""
    masked = np.arange(scores.shape[-1])[None, None, :] >= np.asarray(lengths)[:, None, None]
    s = np.where(masked, -np.inf, scores)
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_dot_scores_every_tile_remainder(kernel_path, rng, dtype):
    """dot_scores tiles queries by keys (4 x 4 on AVX-512, 3 x 3 otherwise) and sums H in vectors of
    8, 4 or 2 float64 lanes: every count of leftover queries, keys and hidden units, on every path."""
    for H in (1, 9, 33):
        for T in range(1, 10):
            for S in range(1, 10):
                B = 2
                hs = normal(rng, (B, S, H), dtype)
                q = normal(rng, (B, T, H), dtype)
                lengths = np.array([S, max(1, S - 2)])
                a, _ = ops.attention_weight_forward(hs, q, "dot", (), lengths)
                scores = np.einsum("bth,bsh->bts", q.astype(np.float64), hs.astype(np.float64))
                ref = _softmax64(scores, lengths)
                if dtype == np.float64:
                    tol = 1e-12  # float64 sums of at most 33 products, then exp: far below any indexing slip
                else:
                    # each score is the float64 sum rounded once to float32 (error <= |s| eps/2); the
                    # softmax turns a score error d into a weight error <= 2d (a <= 1), and its float32
                    # exp and normalisation add a few eps: (max|s| + 8) eps bounds both. A wrong tile
                    # index would be off by O(1).
                    tol = (np.abs(scores).max() + 8) * np.finfo(np.float32).eps
                err = np.abs(a - ref).max()
                assert err <= tol, f"H={H} T={T} S={S}: max |a - ref| = {err:.3g} > {tol:.3g}"
                assert np.all(a[1, :, lengths[1]:] == 0)


@pytest.mark.parametrize("kind", ["dot", "scaled_dot"])
def test_dot_scores_are_float64_sums(kernel_path, kind):
    """Scores are float64 sums rounded once: terms +1e8 and -1e8 around a small one cancel exactly.
    A float32 sum (any order that puts h = 0, 16 and 32 in one lane of up to 16) loses the small term:
    1e8 + c rounds to 1e8 for c < 4, and every score would come out 0."""
    B, T, S, H = 2, 5, 7, 33
    q = np.zeros((B, T, H), np.float32)
    hs = np.zeros((B, S, H), np.float32)
    q[:, :, 0], hs[:, :, 0] = 1e4, 1e4            # +1e8
    q[:, :, 32], hs[:, :, 32] = 1e4, -1e4         # -1e8
    q[:, :, 16] = 1.0
    c = (np.arange(B * S, dtype=np.float32).reshape(B, S) % 7) * 0.5  # exact in float32, < 4
    hs[:, :, 16] = c
    a, _ = ops.attention_weight_forward(hs, q, kind, ())
    scale = 1.0 / np.sqrt(H) if kind == "scaled_dot" else 1.0
    ref = _softmax64(np.broadcast_to((c * scale)[:, None, :], (B, T, S)).astype(np.float64), [S] * B)
    # the scores are exact (c * scale rounded once); what is left is the float32 softmax's own error
    np.testing.assert_allclose(a, ref, rtol=0, atol=8 * np.finfo(np.float32).eps)
