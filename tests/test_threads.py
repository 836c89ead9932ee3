"""Kernels release the GIL and keep no global mutable state: calls from several Python threads at
once give bit-identical results to the same calls made one after another."""
import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from s2sext import ops

from reference import every_kernel, lstm_weights, normal

# (B, S, I, H, dtype, seed): different sizes and dtypes in flight at the same time.
JOBS = [(3, 13, 16, 255, np.float32, 1), (1, 1, 1, 1, np.float64, 2), (3, 13, 5, 7, np.float32, 3),
        (2, 9, 5, 33, np.float64, 4), (3, 5, 16, 64, np.float32, 5), (1, 13, 5, 255, np.float64, 6)]


def _assert_identical(got, expected, label):
    assert set(got) == set(expected), label
    for name in expected:
        assert got[name].dtype == expected[name].dtype, (label, name)
        assert np.array_equal(got[name], expected[name]), \
            f"{label}: {name} differs from the serial result (max diff " \
            f"{np.max(np.abs(got[name].astype(np.float64) - expected[name])):.3e})"


def test_concurrent_calls_match_serial():
    serial = [every_kernel(*job) for job in JOBS]
    work = list(itertools.chain.from_iterable([range(len(JOBS))] * 3))   # each job 3 times
    np.random.default_rng(0).shuffle(work)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda j: (j, every_kernel(*JOBS[j])), work))
    for j, got in results:
        _assert_identical(got, serial[j], f"job {JOBS[j][:4]} {np.dtype(JOBS[j][4]).name}")


def test_concurrent_backward_on_shared_cache():
    """One forward cache, many backward calls at once (a cache is read, never written, by backward)."""
    rng = np.random.default_rng(11)
    B, S, I, H = 3, 13, 16, 255
    w = lstm_weights(rng, I, H, np.float32)
    x = normal(rng, (B, S, I), np.float32)
    _, _, _, cache = ops.lstm_forward(x, None, None, *w, lengths=np.array([13, 4, 9]))
    src = normal(rng, (B, S, H), np.float32)
    _, att_cache = ops.attention_weight_forward(src, normal(rng, (B, 4, H), np.float32), "concat",
                                                (normal(rng, (5, H), np.float32, 0.1),
                                                 normal(rng, (5, H), np.float32, 0.1),
                                                 normal(rng, (5,), np.float32)))
    upstream = [normal(rng, (B, S, H), np.float32) for _ in range(8)]
    das = [normal(rng, (B, 4, S), np.float32) for _ in range(8)]

    def lstm_job(i):
        return ops.lstm_backward(upstream[i], None, None, cache)

    def att_job(i):
        dhs, dq, dparams = ops.attention_weight_backward(das[i], att_cache)
        return (dhs, dq) + tuple(dparams)

    serial = [(lstm_job(i), att_job(i)) for i in range(8)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [(i, pool.submit(lstm_job, i), pool.submit(att_job, i)) for i in range(8) for _ in range(2)]
        for i, f_lstm, f_att in futures:
            for got, expected in zip(f_lstm.result() + f_att.result(), serial[i][0] + serial[i][1]):
                assert np.array_equal(got, expected), f"upstream {i}: concurrent backward differs"
