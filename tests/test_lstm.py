"""LSTM cell and sequence kernels against torch.nn.LSTMCell / torch.nn.LSTM (autograd).

Shape letters: B batch, S sequence length, I input size, H hidden size.
Every output (h1, c1 / hs, hT, cT) and every gradient (dx, dh0, dc0, dw_ih, dw_hh, db) is checked,
in float32 (measured rule against a float64 reference, see reference.py) and float64 (tight).
"""
import itertools

import numpy as np
import pytest

from s2sext import ops

from reference import (assert_close, check_all, lstm_cell_ref, lstm_ref, lstm_weights, normal,
                       ragged_lengths, refs)

DTYPES = [np.float32, np.float64]
GRADS = ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db")

# B in (1, 3), H in (1, 7, 255), I in (1, 5, 16): 1 and odd sizes run the SIMD tails.
CELL_SHAPES = list(itertools.product((1, 3), (1, 7, 255), (1, 5, 16)))
# (B, S, I, H); S in (1, 13). B = 16 takes BLAS for each step's product (more than 8 rows), with the
# input product folded into it for I <= H/4 (5, 255) and as one GEMM up front otherwise (16, 7);
# with two threads or more, (16, 13, 5, 255) runs as a team, whose products take the oneDNN backend
# where it is built (the recurrent_backend fixture; test_recurrent_backend.py covers that backend's routes).
SEQ_SHAPES = list(itertools.product((1, 3), (1, 13), (1, 5, 16), (1, 7, 255))) + [(16, 13, 5, 255), (16, 13, 16, 7)]


def _id(shape, letters):
    return "-".join(f"{c}{n}" for c, n in zip(letters, shape))


def _check_out(arr, dtype, shape):
    assert isinstance(arr, np.ndarray), type(arr)
    assert arr.dtype == dtype, arr.dtype
    assert arr.shape == shape, arr.shape
    assert arr.flags.c_contiguous


def _cell_run(x, h0, c0, w, dh1, dc1):
    h1, c1, cache = ops.lstm_cell_forward(x, h0, c0, *w)
    assert isinstance(cache, ops.LSTMCellCache), type(cache)
    grads = ops.lstm_cell_backward(dh1, dc1, cache)
    assert len(grads) == 6
    return dict(h1=h1, c1=c1, **dict(zip(GRADS, grads)))


def _seq_run(x, h0, c0, w, lengths, dhs, dhT, dcT):
    hs, hT, cT, cache = ops.lstm_forward(x, h0, c0, *w, lengths=lengths)
    assert isinstance(cache, ops.LSTMCache), type(cache)
    grads = ops.lstm_backward(dhs, dhT, dcT, cache)
    assert len(grads) == 6
    return dict(hs=hs, hT=hT, cT=cT, **dict(zip(GRADS, grads)))


def _check_state_grads(ours, ref64, ref32, given):
    """dh0/dc0 when h0/c0 were None: the spec does not say whether they are returned; when an array
    is returned it must be the gradient with respect to the zero initial state."""
    for name in ("dh0", "dc0"):
        if given or ours[name] is not None:
            assert_close(name, ours[name], ref64[name], None if ref32 is None else ref32[name])


# ------------------------------------------------------------------------------------- LSTM cell

@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("variant", ["full", "state_none", "dc1_none", "dh1_none"])
@pytest.mark.parametrize("B,H,I", CELL_SHAPES, ids=[_id(s, "BHI") for s in CELL_SHAPES])
def test_lstm_cell_matches_torch(kernel_path, rng, B, H, I, variant, dtype):
    x = normal(rng, (B, I), dtype)
    w = lstm_weights(rng, I, H, dtype)
    h0 = None if variant == "state_none" else normal(rng, (B, H), dtype, 0.5)
    c0 = None if variant == "state_none" else normal(rng, (B, H), dtype)
    dh1 = None if variant == "dh1_none" else normal(rng, (B, H), dtype)
    dc1 = None if variant == "dc1_none" else normal(rng, (B, H), dtype)

    ours = _cell_run(x, h0, c0, w, dh1, dc1)
    ref64, ref32 = refs(lstm_cell_ref, x, h0, c0, *w, dh1, dc1, dtype=dtype)

    for name, shape in [("h1", (B, H)), ("c1", (B, H)), ("dx", (B, I)), ("dw_ih", (4 * H, I)),
                        ("dw_hh", (4 * H, H)), ("db", (4 * H,))]:
        _check_out(ours[name], dtype, shape)
    check_all(ours, ref64, ref32, names=["h1", "c1", "dx", "dw_ih", "dw_hh", "db"])
    _check_state_grads(ours, ref64, ref32, given=h0 is not None)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_lstm_cell_backward_no_upstream_is_zero(rng, dtype):
    B, I, H = 3, 5, 7
    x = normal(rng, (B, I), dtype)
    w = lstm_weights(rng, I, H, dtype)
    ours = _cell_run(x, normal(rng, (B, H), dtype), normal(rng, (B, H), dtype), w, None, None)
    for name in GRADS:
        assert np.all(ours[name] == 0), name


# ---------------------------------------------------------------------------------- LSTM sequence

@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("B,S,I,H", SEQ_SHAPES, ids=[_id(s, "BSIH") for s in SEQ_SHAPES])
def test_lstm_matches_torch(kernel_path, recurrent_backend, rng, B, S, I, H, with_lengths, dtype):
    x = normal(rng, (B, S, I), dtype)
    w = lstm_weights(rng, I, H, dtype)
    h0 = normal(rng, (B, H), dtype, 0.5)
    c0 = normal(rng, (B, H), dtype)
    lengths = ragged_lengths(B, S) if with_lengths else None
    # Upstream gradients are nonzero at padded positions too: our hs is 0 there, so they must be ignored.
    dhs = normal(rng, (B, S, H), dtype)
    dhT = normal(rng, (B, H), dtype)
    dcT = normal(rng, (B, H), dtype)

    ours = _seq_run(x, h0, c0, w, lengths, dhs, dhT, dcT)
    ref64, ref32 = refs(lstm_ref, x, h0, c0, *w, lengths, dhs, dhT, dcT, dtype=dtype)

    for name, shape in [("hs", (B, S, H)), ("hT", (B, H)), ("cT", (B, H)), ("dx", (B, S, I)),
                        ("dh0", (B, H)), ("dc0", (B, H)), ("dw_ih", (4 * H, I)),
                        ("dw_hh", (4 * H, H)), ("db", (4 * H,))]:
        _check_out(ours[name], dtype, shape)
    check_all(ours, ref64, ref32)
    if lengths is not None:
        for b, n in enumerate(lengths):
            assert np.all(ours["hs"][b, n:] == 0), f"hs[{b}, {n}:] must be exactly 0 past the length"
            assert np.all(ours["dx"][b, n:] == 0), f"dx[{b}, {n}:] must be exactly 0 past the length"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("none", ["dhs", "dhT", "dcT", "dhT+dcT", "dhs+dhT", "all"])
def test_lstm_backward_none_upstream(kernel_path, rng, none, dtype):
    B, S, I, H = 3, 13, 5, 7
    x = normal(rng, (B, S, I), dtype)
    w = lstm_weights(rng, I, H, dtype)
    h0, c0 = normal(rng, (B, H), dtype, 0.5), normal(rng, (B, H), dtype)
    lengths = np.array([9, 13, 4])
    dropped = ["dhs", "dhT", "dcT"] if none == "all" else none.split("+")
    up = {name: None if name in dropped else normal(rng, shape, dtype)
          for name, shape in [("dhs", (B, S, H)), ("dhT", (B, H)), ("dcT", (B, H))]}

    ours = _seq_run(x, h0, c0, w, lengths, up["dhs"], up["dhT"], up["dcT"])
    ref64, ref32 = refs(lstm_ref, x, h0, c0, *w, lengths, up["dhs"], up["dhT"], up["dcT"], dtype=dtype)
    check_all(ours, ref64, ref32)
    if none == "all":
        for name in GRADS:
            assert np.all(ours[name] == 0), name


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_lstm_state_none(kernel_path, rng, with_lengths, dtype):
    B, S, I, H = 3, 13, 16, 7
    x = normal(rng, (B, S, I), dtype)
    w = lstm_weights(rng, I, H, dtype)
    lengths = ragged_lengths(B, S) if with_lengths else None
    dhs, dhT, dcT = normal(rng, (B, S, H), dtype), normal(rng, (B, H), dtype), normal(rng, (B, H), dtype)

    ours = _seq_run(x, None, None, w, lengths, dhs, dhT, dcT)
    ref64, ref32 = refs(lstm_ref, x, None, None, *w, lengths, dhs, dhT, dcT, dtype=dtype)
    check_all(ours, ref64, ref32, names=["hs", "hT", "cT", "dx", "dw_ih", "dw_hh", "db"])
    _check_state_grads(ours, ref64, ref32, given=False)
    # None must mean zeros: the same call with explicit zero states gives the same forward results.
    zeros = np.zeros((B, H), dtype)
    explicit = _seq_run(x, zeros, zeros, w, lengths, dhs, dhT, dcT)
    for name in ("hs", "hT", "cT", "dx", "dw_ih", "dw_hh", "db"):
        np.testing.assert_array_equal(ours[name], explicit[name], err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_lstm_length_zero(kernel_path, rng, dtype):
    """PyTorch refuses length 0, so rows with length 0 are checked against the carried-state rule
    (hs = 0, hT = h0, cT = c0, dx = 0, dh0 = dhT, dc0 = dcT, no weight gradient) and the other rows
    against torch run on those rows alone."""
    B, S, I, H = 4, 5, 5, 7
    lengths = np.array([3, 0, 5, 0])
    live = lengths > 0
    x = normal(rng, (B, S, I), dtype)
    w = lstm_weights(rng, I, H, dtype)
    h0, c0 = normal(rng, (B, H), dtype, 0.5), normal(rng, (B, H), dtype)
    dhs, dhT, dcT = normal(rng, (B, S, H), dtype), normal(rng, (B, H), dtype), normal(rng, (B, H), dtype)

    ours = _seq_run(x, h0, c0, w, lengths, dhs, dhT, dcT)
    ref64, ref32 = refs(lstm_ref, x[live], h0[live], c0[live], *w, lengths[live], dhs[live],
                        dhT[live], dcT[live], dtype=dtype)
    for name in ("hs", "hT", "cT", "dx", "dh0", "dc0"):
        assert_close(name, ours[name][live], ref64[name], None if ref32 is None else ref32[name])
    check_all(ours, ref64, ref32, names=["dw_ih", "dw_hh", "db"])

    dead = ~live
    assert np.all(ours["hs"][dead] == 0)
    assert np.all(ours["dx"][dead] == 0)
    np.testing.assert_array_equal(ours["hT"][dead], h0[dead])
    np.testing.assert_array_equal(ours["cT"][dead], c0[dead])
    np.testing.assert_array_equal(ours["dh0"][dead], dhT[dead])
    np.testing.assert_array_equal(ours["dc0"][dead], dcT[dead])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_lstm_all_lengths_zero(rng, dtype):
    B, S, I, H = 2, 4, 5, 7
    x = normal(rng, (B, S, I), dtype)
    w = lstm_weights(rng, I, H, dtype)
    h0, c0 = normal(rng, (B, H), dtype), normal(rng, (B, H), dtype)
    dhs, dhT, dcT = normal(rng, (B, S, H), dtype), normal(rng, (B, H), dtype), normal(rng, (B, H), dtype)
    ours = _seq_run(x, h0, c0, w, np.zeros(B, np.int64), dhs, dhT, dcT)
    assert np.all(ours["hs"] == 0)
    np.testing.assert_array_equal(ours["hT"], h0)
    np.testing.assert_array_equal(ours["cT"], c0)
    np.testing.assert_array_equal(ours["dh0"], dhT)
    np.testing.assert_array_equal(ours["dc0"], dcT)
    for name in ("dx", "dw_ih", "dw_hh", "db"):
        assert np.all(ours[name] == 0), name


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_lstm_full_lengths_equal_no_lengths(rng, dtype):
    """lengths all == S and lengths=None describe the same computation."""
    B, S, I, H = 3, 13, 5, 7
    x = normal(rng, (B, S, I), dtype)
    w = lstm_weights(rng, I, H, dtype)
    h0, c0 = normal(rng, (B, H), dtype), normal(rng, (B, H), dtype)
    dhs, dhT, dcT = normal(rng, (B, S, H), dtype), normal(rng, (B, H), dtype), normal(rng, (B, H), dtype)
    a = _seq_run(x, h0, c0, w, None, dhs, dhT, dcT)
    b = _seq_run(x, h0, c0, w, np.full(B, S), dhs, dhT, dcT)
    for name in a:
        # Same arithmetic up to summation order at most: a few ulps of the largest value.
        scale = float(np.max(np.abs(a[name])))
        np.testing.assert_allclose(b[name], a[name], rtol=0, atol=16 * np.finfo(dtype).eps * scale,
                                   err_msg=name)


def test_lstm_lengths_array_likes(rng):
    """lengths may be any integer array-like: a list, int32, int64 give identical results."""
    B, S, I, H = 3, 6, 5, 7
    x = normal(rng, (B, S, I), np.float32)
    w = lstm_weights(rng, I, H, np.float32)
    dhs = normal(rng, (B, S, H), np.float32)
    runs = [_seq_run(x, None, None, w, lengths, dhs, None, None)
            for lengths in ([4, 6, 1], np.array([4, 6, 1], np.int32), np.array([4, 6, 1], np.int64))]
    for other in runs[1:]:
        for name in ("hs", "hT", "cT", "dx", "dw_ih", "dw_hh", "db"):
            np.testing.assert_array_equal(other[name], runs[0][name], err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_lstm_sequence_equals_cell_steps(rng, dtype):
    """lstm_forward is lstm_cell_forward applied step by step (same kernels, same order)."""
    B, S, I, H = 3, 5, 5, 7
    x = normal(rng, (B, S, I), dtype)
    w = lstm_weights(rng, I, H, dtype)
    h, c = normal(rng, (B, H), dtype), normal(rng, (B, H), dtype)
    hs, hT, cT, _ = ops.lstm_forward(x, h, c, *w)
    for t in range(S):
        h, c, _ = ops.lstm_cell_forward(x[:, t], h, c, *w)
        scale = float(np.max(np.abs(h)))
        np.testing.assert_allclose(hs[:, t], h, rtol=0, atol=16 * np.finfo(dtype).eps * scale)
    np.testing.assert_allclose(hT, h, rtol=0, atol=16 * np.finfo(dtype).eps * np.max(np.abs(h)))
    np.testing.assert_allclose(cT, c, rtol=0, atol=16 * np.finfo(dtype).eps * np.max(np.abs(c)))


def test_empty_input_at_any_address():
    """I = 0 at batch 1: the GEMV over w_ih [4H, 0] adds nothing, wherever the empty array points
    (the aligned-load route once read memory around it when K = 0)."""
    rng = np.random.default_rng(1)
    H = 16
    h0, c0 = rng.standard_normal((1, H)).astype(np.float32), rng.standard_normal((1, H)).astype(np.float32)
    w_hh = rng.standard_normal((4 * H, H)).astype(np.float32)
    b = rng.standard_normal(4 * H).astype(np.float32)
    gates = (h0 @ w_hh.T + b).astype(np.float64)[0]
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    i, f, g, o = sig(gates[:H]), sig(gates[H:2 * H]), np.tanh(gates[2 * H:3 * H]), sig(gates[3 * H:])
    c1_ref = f * c0[0] + i * g
    h1_ref = o * np.tanh(c1_ref)
    raw = np.full(64, np.nan, np.float32)  # NaN around the empty arrays: any read shows
    start = (-raw.ctypes.data // 4) % 16
    for offset in range(8):
        empty = raw[start + offset:start + offset]
        h1, c1, _ = ops.lstm_cell_forward(empty.reshape(1, 0), h0, c0, empty.reshape(4 * H, 0), w_hh, b)
        # float32 gates of 16 terms against float64: a few ulps of |values| <= ~10
        np.testing.assert_allclose(h1[0], h1_ref, rtol=0, atol=1e-5)
        np.testing.assert_allclose(c1[0], c1_ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("H", [40, 136])
def test_results_do_not_depend_on_array_addresses(H):
    """The same numbers at other addresses give the same bits (the batch-1 GEMV once grouped
    columns by the weight's alignment, so a reloaded model could decode differently). Rows of a
    multiple of 8 floats that start off a 32-byte boundary take the GEMV's aligned-load route,
    which must sum exactly as the unaligned one; H = 136 crosses its 64-column blocks."""
    rng = np.random.default_rng(0)
    I = 24  # row lengths that are multiples of 8 floats, where the old grouping differed
    x = rng.standard_normal((1, I)).astype(np.float32)
    h0 = rng.standard_normal((1, H)).astype(np.float32)
    c0 = rng.standard_normal((1, H)).astype(np.float32)
    w_ih = rng.standard_normal((4 * H, I)).astype(np.float32)
    w_hh = rng.standard_normal((4 * H, H)).astype(np.float32)
    b = rng.standard_normal(4 * H).astype(np.float32)

    def at_offset(a, offset_floats):
        raw = np.empty(a.size + 64, np.float32)
        start = (-raw.ctypes.data // 4) % 16 + offset_floats
        out = raw[start:start + a.size].reshape(a.shape)
        out[...] = a
        return out

    results = []
    for offset in range(8):
        args = [at_offset(a, offset) for a in (x, h0, c0, w_ih, w_hh, b)]
        h1, c1, _ = ops.lstm_cell_forward(*args)
        results.append((h1, c1))
    for h1, c1 in results[1:]:
        np.testing.assert_array_equal(h1, results[0][0])
        np.testing.assert_array_equal(c1, results[0][1])
