"""Input conversion and output arrays.

The computation dtype is float64 when the first array argument (x for the LSTM, hs for attention and
weight_sum, the cache for a backward) is float64, float32 otherwise. Other float arrays (float16/32/64,
non-contiguous, Fortran-ordered) are converted by a copy, so a call on converted inputs must give
bit-identical results to the same call on inputs converted beforehand by numpy. Outputs are fresh
C-contiguous arrays of the computation dtype; inputs are never written.
"""
import numpy as np
import pytest

from s2sext import ops

from reference import attention_params, lstm_weights, normal

B, S, I, H, T = 3, 13, 5, 7, 4
KINDS = ["dot", "scaled_dot", "general", "concat", "location"]


def _lstm_inputs(rng, dtype=np.float32):
    w_ih, w_hh, b = lstm_weights(rng, I, H, dtype)
    return {"x": normal(rng, (B, S, I), dtype), "h0": normal(rng, (B, H), dtype),
            "c0": normal(rng, (B, H), dtype), "w_ih": w_ih, "w_hh": w_hh, "b": b}


def _lstm_all(inp, lengths=np.array([13, 2, 7]), up=None):
    hs, hT, cT, cache = ops.lstm_forward(inp["x"], inp["h0"], inp["c0"], inp["w_ih"], inp["w_hh"],
                                         inp["b"], lengths=lengths)
    if up is None:
        rng = np.random.default_rng(3)
        up = (rng.standard_normal(hs.shape), rng.standard_normal(hT.shape), rng.standard_normal(cT.shape))
        up = tuple(u.astype(hs.dtype) for u in up)
    return [hs, hT, cT, *ops.lstm_backward(*up, cache)]


def _equal_lists(got, expected):
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g.dtype == e.dtype, (i, g.dtype, e.dtype)
        np.testing.assert_array_equal(g, e, err_msg=f"output {i}")


def _fortran(a):
    return np.asfortranarray(a) if a.ndim > 1 else a


def _strided(a):
    """The same values, read through a non-contiguous view (every other element of a bigger array)."""
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    big[..., ::2] = a
    view = big[..., ::2]
    assert not view.flags.c_contiguous
    return view


@pytest.mark.parametrize("first", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("other", [np.float16, np.float32, np.float64], ids=["f16", "f32", "f64"])
def test_lstm_mixed_dtypes(rng, first, other):
    """x decides the computation dtype; the other arrays are converted to it."""
    base = _lstm_inputs(rng, np.float32)
    # values exactly representable in float16 so the conversions are exact whatever the route
    base = {k: v.astype(np.float16).astype(np.float32) for k, v in base.items()}
    mixed = {k: v.astype(first if k == "x" else other) for k, v in base.items()}
    plain = {k: v.astype(first) for k, v in base.items()}
    got = _lstm_all(mixed)
    expected = _lstm_all(plain)
    for g in got:
        assert g.dtype == first and g.flags.c_contiguous
    _equal_lists(got, expected)


def test_lstm_float16_x_computes_in_float32(rng):
    inp = {k: v.astype(np.float16) for k, v in _lstm_inputs(rng).items()}
    got = _lstm_all(inp)
    assert all(g.dtype == np.float32 for g in got)
    _equal_lists(got, _lstm_all({k: v.astype(np.float32) for k, v in inp.items()}))


@pytest.mark.parametrize("layout", ["fortran", "strided"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_lstm_non_contiguous(rng, layout, dtype):
    inp = _lstm_inputs(rng, dtype)
    change = _fortran if layout == "fortran" else _strided
    _equal_lists(_lstm_all({k: change(v) for k, v in inp.items()}), _lstm_all(inp))


def test_lstm_cell_mixed_and_non_contiguous(rng):
    """x float64 (a non-contiguous view) with float32 weights and states: a float64 computation,
    identical to the one on the same values upcast beforehand (float32 -> float64 is exact)."""
    inp = _lstm_inputs(rng, np.float32)
    x = normal(rng, (B, S, I), np.float64)[:, 3]
    args = (x, inp["h0"], inp["c0"], inp["w_ih"], inp["w_hh"], inp["b"])
    dh1, dc1 = normal(rng, (B, H), np.float32), normal(rng, (B, H), np.float32)
    h1, c1, cache = ops.lstm_cell_forward(*args)
    got = [h1, c1, *ops.lstm_cell_backward(dh1, dc1, cache)]
    up64 = [np.ascontiguousarray(a, dtype=np.float64) for a in args]
    h1e, c1e, cache_e = ops.lstm_cell_forward(*up64)
    expected = [h1e, c1e, *ops.lstm_cell_backward(dh1.astype(np.float64), dc1.astype(np.float64),
                                                  cache_e)]
    for g in got:
        assert g.dtype == np.float64 and g.flags.c_contiguous
    _equal_lists(got, expected)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("first", [np.float32, np.float64], ids=["float32", "float64"])
def test_attention_mixed_dtypes_and_layouts(rng, kind, first):
    hs = normal(rng, (B, S, H), np.float16).astype(np.float32)
    q = normal(rng, (B, T, H), np.float16).astype(np.float32)
    params = tuple(p.astype(np.float16).astype(np.float32)
                   for p in attention_params(rng, kind, H, np.float32, A=5, S_max=S + 2))
    lengths = np.array([13, 1, 6])
    da = normal(rng, (B, T, S), np.float16).astype(np.float32)

    def run(hs, q, params, da):
        a, cache = ops.attention_weight_forward(hs, q, kind, params, lengths)
        dhs, dq, dparams = ops.attention_weight_backward(da, cache)
        return [a, dhs, dq, *dparams]

    expected = run(hs.astype(first), q.astype(first), tuple(p.astype(first) for p in params),
                   da.astype(first))
    other = np.float16 if first == np.float64 else np.float64
    got = run(_strided(hs.astype(first)), _fortran(q.astype(other)),
              tuple(_fortran(p.astype(other)) for p in params), _strided(da.astype(other)))
    for g in got:
        assert g.dtype == first and g.flags.c_contiguous
    _equal_lists(got, expected)


@pytest.mark.parametrize("first", [np.float32, np.float64], ids=["float32", "float64"])
def test_weight_sum_mixed_dtypes_and_layouts(rng, first):
    hs = normal(rng, (B, S, H), np.float16).astype(np.float32)
    a = rng.uniform(0, 1, (B, T, S)).astype(np.float16).astype(np.float32)
    dc = normal(rng, (B, T, H), np.float16).astype(np.float32)
    expected = [ops.weight_sum_forward(hs.astype(first), a.astype(first)),
                *ops.weight_sum_backward(dc.astype(first), hs.astype(first), a.astype(first))]
    other = np.float16 if first == np.float64 else np.float64
    # weight_sum_backward(dc, hs, a): hs decides the dtype, dc comes first but is "another" array
    got = [ops.weight_sum_forward(_fortran(hs.astype(first)), _strided(a.astype(other))),
           *ops.weight_sum_backward(_strided(dc.astype(other)), _strided(hs.astype(first)),
                                    a.astype(other))]
    for g in got:
        assert g.dtype == first and g.flags.c_contiguous
    _equal_lists(got, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_backward_dtype_follows_cache(rng, dtype):
    inp = _lstm_inputs(rng, dtype)
    other = np.float64 if dtype == np.float32 else np.float32
    hs, hT, cT, cache = ops.lstm_forward(*inp.values())
    up = normal(rng, hs.shape, np.float16).astype(np.float32)
    got = ops.lstm_backward(up.astype(other), None, None, cache)
    expected = ops.lstm_backward(up.astype(dtype), None, None, cache)
    for g in got:
        assert g.dtype == dtype
    _equal_lists(list(got), list(expected))

    hs_a = normal(rng, (B, S, H), dtype)
    a, att_cache = ops.attention_weight_forward(hs_a, hs_a[:, 0], "dot")
    da = normal(rng, a.shape, np.float16).astype(np.float32)
    dhs, dq, _ = ops.attention_weight_backward(da.astype(other), att_cache)
    assert dhs.dtype == dtype and dq.dtype == dtype
    np.testing.assert_array_equal(dhs, ops.attention_weight_backward(da.astype(dtype), att_cache)[0])


# ----------------------------------------------------------------- fresh outputs, untouched inputs

def test_lstm_inputs_untouched_and_outputs_fresh(rng):
    inp = _lstm_inputs(rng, np.float32)
    saved = {k: v.copy() for k, v in inp.items()}
    up = tuple(normal(rng, s, np.float32) for s in ((B, S, H), (B, H), (B, H)))
    saved_up = tuple(u.copy() for u in up)
    lengths = np.array([13, 2, 7])
    hs, hT, cT, cache = ops.lstm_forward(*inp.values(), lengths=lengths)
    grads = ops.lstm_backward(*up, cache)
    for k in inp:
        np.testing.assert_array_equal(inp[k], saved[k], err_msg=f"{k} was modified")
    for u, s in zip(up, saved_up):
        np.testing.assert_array_equal(u, s, err_msg="an upstream gradient was modified")
    np.testing.assert_array_equal(lengths, [13, 2, 7])
    outputs = [hs, hT, cT, *grads]
    for o in outputs:
        assert o.flags.c_contiguous and o.flags.writeable
        for v in list(inp.values()) + list(up):
            assert not np.shares_memory(o, v)
    for i, o in enumerate(outputs):
        for p in outputs[i + 1:]:
            assert not np.shares_memory(o, p)
    # Writing into the forward outputs must not change what backward computes from the cache.
    again = ops.lstm_backward(*up, cache)
    hs[...] = 1e6
    hT[...] = 1e6
    cT[...] = 1e6
    for g in grads:
        g[...] = -1e6
    _equal_lists(list(ops.lstm_backward(*up, cache)), list(again))


def test_lstm_cell_outputs_fresh_and_backward_repeatable(rng):
    w = lstm_weights(rng, I, H, np.float32)
    x, h0, c0 = normal(rng, (B, I), np.float32), normal(rng, (B, H), np.float32), normal(rng, (B, H), np.float32)
    h1, c1, cache = ops.lstm_cell_forward(x, h0, c0, *w)
    assert not np.shares_memory(h1, h0) and not np.shares_memory(c1, c0)
    dh1, dc1 = normal(rng, (B, H), np.float32), normal(rng, (B, H), np.float32)
    first = ops.lstm_cell_backward(dh1, dc1, cache)
    h1[...] = np.nan
    c1[...] = np.nan
    _equal_lists(list(ops.lstm_cell_backward(dh1, dc1, cache)), list(first))


@pytest.mark.parametrize("kind", KINDS)
def test_attention_inputs_untouched_and_outputs_fresh(rng, kind):
    hs = normal(rng, (B, S, H), np.float32)
    q = normal(rng, (B, T, H), np.float32)
    params = attention_params(rng, kind, H, np.float32, A=5, S_max=S)
    da = normal(rng, (B, T, S), np.float32)
    saved = [hs.copy(), q.copy(), da.copy(), *(p.copy() for p in params)]
    a, cache = ops.attention_weight_forward(hs, q, kind, params, np.array([13, 5, 1]))
    dhs, dq, dparams = ops.attention_weight_backward(da, cache)
    for cur, old in zip([hs, q, da, *params], saved):
        np.testing.assert_array_equal(cur, old, err_msg="an input was modified")
    for o in (a, dhs, dq, *dparams):
        assert o.flags.c_contiguous and o.flags.writeable
        for v in (hs, q, da, *params):
            assert not np.shares_memory(o, v)
    expected = ops.attention_weight_backward(da, cache)
    a[...] = 0.5                  # writing into the returned weights must not change the cache
    got = ops.attention_weight_backward(da, cache)
    _equal_lists([got[0], got[1], *got[2]], [expected[0], expected[1], *expected[2]])


def test_weight_sum_inputs_untouched_and_outputs_fresh(rng):
    hs = normal(rng, (B, S, H), np.float32)
    a = rng.uniform(0, 1, (B, S)).astype(np.float32)
    dc = normal(rng, (B, H), np.float32)
    saved = [hs.copy(), a.copy(), dc.copy()]
    c = ops.weight_sum_forward(hs, a)
    dhs, da = ops.weight_sum_backward(dc, hs, a)
    for cur, old in zip([hs, a, dc], saved):
        np.testing.assert_array_equal(cur, old, err_msg="an input was modified")
    for o in (c, dhs, da):
        assert o.flags.c_contiguous and o.flags.writeable
        for v in (hs, a, dc):
            assert not np.shares_memory(o, v)
