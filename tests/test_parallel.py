"""Shapes large enough that the core splits work across threads: the LSTM's batch rows per thread
(each thread runs the whole recurrence for its rows) and large products split over the rows or
columns of their output. Checked against PyTorch in float64, with 1 and with 2 threads.

Shape letters: B batch, S sequence length, T decoder steps, I input size, H hidden size,
A attention size.
"""
import os
import warnings

import numpy as np
import pytest

import s2sext
from s2sext import ops

from reference import (assert_close, attention_params, attention_ref, check_all, lstm_cell_ref,
                       lstm_ref, lstm_weights, normal, ragged_lengths, refs)

GRADS = ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db")


@pytest.fixture(params=[1, 2], ids=["threads1", "threads2"])
def threads(request):
    previous = s2sext.set_num_threads(request.param)
    yield request.param
    s2sext.set_num_threads(previous)


def _lstm_inputs(rng, B, S, I, H):
    """float64 x, weights, initial state and upstream gradients of an LSTM sequence."""
    dtype = np.float64
    x = normal(rng, (B, S, I), dtype)
    w = lstm_weights(rng, I, H, dtype)
    h0, c0 = normal(rng, (B, H), dtype, 0.5), normal(rng, (B, H), dtype)
    dhs, dhT, dcT = normal(rng, (B, S, H), dtype), normal(rng, (B, H), dtype), normal(rng, (B, H), dtype)
    return x, w, h0, c0, dhs, dhT, dcT


def _lstm_run(x, w, h0, c0, lengths, dhs, dhT, dcT):
    """Our forward and backward: outputs and gradients by name."""
    hs, hT, cT, cache = ops.lstm_forward(x, h0, c0, *w, lengths=lengths)
    grads = ops.lstm_backward(dhs, dhT, dcT, cache)
    return dict(hs=hs, hT=hT, cT=cT, **dict(zip(GRADS, grads)))


def _check_lstm_sequence(rng, B, S, I, H, lengths):
    """lstm_forward + lstm_backward in float64 against torch.nn.LSTM."""
    x, w, h0, c0, dhs, dhT, dcT = _lstm_inputs(rng, B, S, I, H)
    ours = _lstm_run(x, w, h0, c0, lengths, dhs, dhT, dcT)
    ref64, _ = refs(lstm_ref, x, h0, c0, *w, lengths, dhs, dhT, dcT, dtype=np.float64)
    check_all(ours, ref64)


def test_lstm_sequence_split_across_threads(threads, rng):
    # 2 * S * 4H * H flops per row puts B = 64 well past the rows-per-thread minimum, and
    # dw_hh (4H x H x S*B) past the product-splitting threshold.
    _check_lstm_sequence(rng, 64, 13, 24, 96, ragged_lengths(64, 13))


def test_weight_gradients_split_along_rows(threads, rng):
    # S*B = 1280 rows reach the inner-dimension split of the weight-gradient products (dw = dgates^T
    # @ h over K >= 1024 rows, each thread summing its share of the rows into its own copy, then
    # added); full lengths keep the one product over all rows. The dense layer's dw = dy^T @ x over
    # 2048 rows takes the same route.
    _check_lstm_sequence(rng, 64, 20, 24, 96, None)
    dtype = np.float64
    xs, dy = normal(rng, (2048, 96), dtype), normal(rng, (2048, 80), dtype)
    weight = normal(rng, (80, 96), dtype)
    _, dw, _ = ops.linear_backward(dy, xs, weight)
    assert_close("dw", dw, dy.T @ xs)


@pytest.mark.parametrize("I", [24, 40], ids=["input-folded", "input-gemm"])
def test_lstm_team_with_empty_rows_and_nan_padding(threads, rng, I):
    # B = 64, H = 96 is past the team threshold on 2 threads (the forward and the backward meet
    # twice per step); I = 24 <= H/4 folds the input product into each step's GEMM, I = 40 does
    # not. Unsorted lengths with zeros: rows of length 0 keep their initial state and pass their
    # gradients through; the others match PyTorch (which refuses length 0) run on those rows alone.
    # NaN in x past a length must not reach any result.
    B, S, H = 64, 9, 96
    lengths = np.array([(0, S, 3, 1, 0, 7)[i % 6] for i in range(B)], dtype=np.int64)
    x, w, h0, c0, dhs, dhT, dcT = _lstm_inputs(rng, B, S, I, H)
    for n in range(B):
        x[n, lengths[n]:] = np.nan
    ours = _lstm_run(x, w, h0, c0, lengths, dhs, dhT, dcT)
    for name, value in ours.items():
        assert np.all(np.isfinite(value)), name
    run = lengths > 0
    ref64, _ = refs(lstm_ref, np.nan_to_num(x[run], nan=0.0), h0[run], c0[run], *w, lengths[run], dhs[run],
                    dhT[run], dcT[run], dtype=np.float64)
    check_all({k: (v if k in ("dw_ih", "dw_hh", "db") else v[run]) for k, v in ours.items()}, ref64)
    empty = ~run
    np.testing.assert_array_equal(ours["hs"][empty], 0)
    np.testing.assert_array_equal(ours["hT"][empty], h0[empty])
    np.testing.assert_array_equal(ours["cT"][empty], c0[empty])
    np.testing.assert_array_equal(ours["dh0"][empty], dhT[empty])
    np.testing.assert_array_equal(ours["dc0"][empty], dcT[empty])
    np.testing.assert_array_equal(ours["dx"][empty], 0)


def test_lstm_padding_passes_through_with_non_finite_weights(threads, rng):
    # Rows of length 0 carry their state and gradients unchanged whatever the weights; here w_hh
    # holds inf, and unsorted lengths put the empty rows among running ones, inside each step's
    # product on the row-sweep route (1 thread) as on the team route (2 threads).
    B, S, I, H = 64, 5, 24, 96
    lengths = np.array([(3, 0, 5, 0)[i % 4] for i in range(B)], dtype=np.int64)
    x, w, h0, c0, dhs, dhT, dcT = _lstm_inputs(rng, B, S, I, H)
    w[1][0, 0] = np.inf
    with np.errstate(invalid="ignore", over="ignore"):
        ours = _lstm_run(x, w, h0, c0, lengths, dhs, dhT, dcT)
    empty = lengths == 0
    np.testing.assert_array_equal(ours["hT"][empty], h0[empty])
    np.testing.assert_array_equal(ours["dh0"][empty], dhT[empty])
    np.testing.assert_array_equal(ours["dc0"][empty], dcT[empty])
    np.testing.assert_array_equal(ours["dx"][empty], 0)


def test_lstm_cell_split_across_threads(threads, rng):
    B, I, H = 256, 24, 96
    dtype = np.float64
    x = normal(rng, (B, I), dtype)
    w = lstm_weights(rng, I, H, dtype)
    h0, c0 = normal(rng, (B, H), dtype, 0.5), normal(rng, (B, H), dtype)
    dh1, dc1 = normal(rng, (B, H), dtype), normal(rng, (B, H), dtype)
    h1, c1, cache = ops.lstm_cell_forward(x, h0, c0, *w)
    grads = ops.lstm_cell_backward(dh1, dc1, cache)
    ours = dict(h1=h1, c1=c1, **dict(zip(GRADS, grads)))
    ref64, _ = refs(lstm_cell_ref, x, h0, c0, *w, dh1, dc1, dtype=dtype)
    check_all(ours, ref64)


@pytest.mark.parametrize("kind", ["general", "concat"])
def test_attention_projections_split_across_threads(threads, rng, kind):
    # q W_a and W_q q are [B*T, H] x [H, H|A] products of 2*1024*128*128 = 34 MFLOP: split.
    B, T, S, H = 64, 16, 20, 128
    dtype = np.float64
    hs, q = normal(rng, (B, S, H), dtype), normal(rng, (B, T, H), dtype)
    params = attention_params(rng, kind, H, dtype, A=128)
    lengths = ragged_lengths(B, S)
    da = normal(rng, (B, T, S), dtype)
    a, cache = ops.attention_weight_forward(hs, q, kind, params, lengths)
    dhs, dq, dparams = ops.attention_weight_backward(da, cache)
    ref64, _ = refs(attention_ref, hs, q, kind, params, lengths, da, dtype=dtype)
    assert_close("a", a, ref64["a"])
    assert_close("dhs", dhs, ref64["dhs"])
    assert_close("dq", dq, ref64["dq"])
    for i, dp in enumerate(dparams):
        assert_close(f"dparams[{i}]", dp, ref64["dparams"][i])


@pytest.mark.parametrize("B,S,I,H", [(64, 13, 24, 96), (40, 7, 5, 33)], ids=["B64-H96", "B40-H33"])
def test_float32_results_agree_across_thread_counts(rng, B, S, I, H):
    """Splitting changes which thread computes an element; OpenBLAS may also sum a product split
    into pieces in another blocking than the whole. Results with 1, 2 and 3 threads agree to within
    float32 reordering of sums over K <= S*B = 832 terms: 64 ulps of the largest value."""
    x = normal(rng, (B, S, I), np.float32)
    w = lstm_weights(rng, I, H, np.float32)
    lengths = rng.integers(0, S + 1, B)
    dhs = normal(rng, (B, S, H), np.float32)
    results = []
    for n in (1, 2, 3):
        previous = s2sext.set_num_threads(n)
        try:
            hs, hT, cT, cache = ops.lstm_forward(x, None, None, *w, lengths=lengths)
            results.append((hs, hT, cT) + ops.lstm_backward(dhs, None, None, cache))
        finally:
            s2sext.set_num_threads(previous)
    for n, other in zip((2, 3), results[1:]):
        for name, one, many in zip(("hs", "hT", "cT") + GRADS, results[0], other):
            scale = float(np.abs(one).max()) or 1.0
            np.testing.assert_allclose(many, one, rtol=0, atol=64 * np.finfo(np.float32).eps * scale,
                                       err_msg=f"{name}, {n} threads")


def test_concurrent_callers_get_the_serial_result(rng):
    """At a fixed thread count a caller that finds the pool busy waits for it, so results computed
    while other threads call are bit-identical to serial ones, also for shapes that are split."""
    from concurrent.futures import ThreadPoolExecutor
    B, S, I, H = 64, 13, 24, 96
    x = normal(rng, (B, S, I), np.float32)
    w = lstm_weights(rng, I, H, np.float32)
    dhs = normal(rng, (B, S, H), np.float32)

    def run(_):
        hs, _, _, cache = ops.lstm_forward(x, None, None, *w)
        return (hs,) + ops.lstm_backward(dhs, None, None, cache)

    serial = run(0)
    with ThreadPoolExecutor(4) as pool:
        for result in pool.map(run, range(8)):
            for name, got, want in zip(("hs",) + GRADS, result, serial):
                assert np.array_equal(got, want), name


def test_set_num_threads_validates():
    with pytest.raises(TypeError, match="threads"):
        s2sext.set_num_threads("2")
    with pytest.raises(TypeError, match="threads"):
        s2sext.set_num_threads(True)
    with pytest.raises(ValueError, match="threads must be between 1 and 1024, got 0"):
        s2sext.set_num_threads(0)
    with pytest.raises(ValueError, match="threads must be between 1 and 1024"):
        s2sext.set_num_threads(2**70)
    previous = s2sext.set_num_threads(np.int64(2))  # numpy integers are integers
    s2sext.set_num_threads(previous)
    previous = s2sext.set_num_threads(3)
    try:
        assert s2sext.get_num_threads() == 3
        assert s2sext.cpu_info()["num_threads"] == 3
    finally:
        s2sext.set_num_threads(previous)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_computes_without_the_parents_pool(rng):
    """A child made by fork() has none of the parent's pool workers: it must compute (on its own
    thread) and get the parent's results, not wait for workers that do not exist."""
    B, S, I, H = 64, 13, 24, 96
    x = normal(rng, (B, S, I), np.float32)
    w = lstm_weights(rng, I, H, np.float32)
    hs = ops.lstm_forward(x, None, None, *w)[0]  # the parent's pool is now running
    with warnings.catch_warnings():
        # Python 3.12+ warns that fork() in a multi-threaded process may deadlock: that is what
        # this test checks does not happen here.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        try:
            same = np.array_equal(ops.lstm_forward(x, None, None, *w)[0], hs)
        finally:
            os._exit(0 if same else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
