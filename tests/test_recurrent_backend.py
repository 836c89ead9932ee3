"""The backends of the LSTM's recurrent per-step products (runtime/recurrent_weights): 'blas' (gemm at
every step) and 'onednn' (oneDNN's matmul, weights reordered once per call; where built).

Every route of lstm_forward/lstm_backward whose products go through the prepared weights -- the
team (columns split forward, K split backward) and the per-row-range sweep, with the input product
folded into the step's product or not, full and ragged lengths -- is run under each backend and
checked against PyTorch in float64 with the suite's float32 rule (reference.py). oneDNN's float32
sums come in another order than OpenBLAS's, so the two backends agree only to that rounding, which
the rule bounds by PyTorch's own float32 error on the same inputs.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import s2sext
from s2sext import _core, ops

from reference import check_all, lstm_ref, lstm_weights, normal, ragged_lengths, refs

BACKENDS = list(s2sext.cpu_info()["recurrent_backends"])
needs_onednn = pytest.mark.skipif("onednn" not in BACKENDS, reason="built without oneDNN")

# (threads, B, S, I, H, route): two threads and B >= 16 with 2*B*4H*H >= 4e6 run as a team; one
# thread sweeps the rows itself. I <= H/4 folds the input product into the step's.
ROUTES = [
    (2, 16, 7, 5, 255, "team-folded"),
    (2, 16, 7, 80, 255, "team-input-gemm"),
    (1, 16, 7, 5, 64, "sweep-folded"),
    (1, 16, 7, 40, 64, "sweep-input-gemm"),
]


@pytest.fixture
def threads():
    previous = s2sext.get_num_threads()
    yield s2sext.set_num_threads
    s2sext.set_num_threads(previous)


def _run(x, h0, c0, w, lengths, dhs, dhT, dcT):
    hs, hT, cT, cache = ops.lstm_forward(x, h0, c0, *w, lengths=lengths)
    grads = ops.lstm_backward(dhs, dhT, dcT, cache)
    return dict(hs=hs, hT=hT, cT=cT, **dict(zip(("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db"), grads)))


def _inputs(rng, B, S, I, H, dtype, with_lengths):
    x = normal(rng, (B, S, I), dtype)
    w = lstm_weights(rng, I, H, dtype)
    h0, c0 = normal(rng, (B, H), dtype, 0.5), normal(rng, (B, H), dtype)
    lengths = ragged_lengths(B, S) if with_lengths else None
    dhs, dhT, dcT = normal(rng, (B, S, H), dtype), normal(rng, (B, H), dtype), normal(rng, (B, H), dtype)
    return x, h0, c0, w, lengths, dhs, dhT, dcT


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("n_threads,B,S,I,H,route", ROUTES, ids=[r[-1] for r in ROUTES])
def test_every_route_matches_torch(recurrent_backend, threads, rng, n_threads, B, S, I, H, route, with_lengths):
    threads(n_threads)
    args = _inputs(rng, B, S, I, H, np.float32, with_lengths)
    before = _core.onednn_weights_prepared()
    ours = _run(*args)
    prepared = _core.onednn_weights_prepared() - before
    # forward and backward each prepare their weights once per team member (or sweeping thread)
    if recurrent_backend == "onednn":
        assert prepared == 2 * n_threads, f"oneDNN prepared weights {prepared} times on route {route}"
    else:
        assert prepared == 0
    x, h0, c0, w, lengths, dhs, dhT, dcT = args
    ref64, ref32 = refs(lstm_ref, x, h0, c0, *w, lengths, dhs, dhT, dcT, dtype=np.float32)
    check_all(ours, ref64, ref32)


@needs_onednn
@pytest.mark.parametrize("n_threads,B,S,I,H,route", ROUTES, ids=[r[-1] for r in ROUTES])
def test_float64_stays_with_blas(threads, rng, n_threads, B, S, I, H, route):
    """oneDNN's CPU matmul has no float64: both backends give the same float64 bits."""
    threads(n_threads)
    args = _inputs(rng, B, S, I, H, np.float64, True)
    results = {}
    for backend in ("blas", "onednn"):
        previous = s2sext.set_recurrent_backend(backend)
        try:
            before = _core.onednn_weights_prepared()
            results[backend] = _run(*args)
            assert _core.onednn_weights_prepared() == before
        finally:
            s2sext.set_recurrent_backend(previous)
    for name, value in results["blas"].items():
        np.testing.assert_array_equal(results["onednn"][name], value, err_msg=name)


@needs_onednn
@pytest.mark.parametrize("I", [5, 40], ids=["I5", "I40"])
def test_few_rows_forward_stays_with_gemv(threads, rng, I):
    """Up to 8 rows gemm() runs the forward's product (h @ W^T) as its GEMV, which packs nothing:
    oneDNN prepares no weights for it. The backward's (dgates @ W, a BLAS sgemm from 2 rows on)
    takes oneDNN."""
    threads(1)
    x, h0, c0, w, lengths, dhs, dhT, dcT = _inputs(rng, 8, 5, I, 64, np.float32, True)
    previous = s2sext.set_recurrent_backend("onednn")
    try:
        before = _core.onednn_weights_prepared()
        hs, hT, cT, cache = ops.lstm_forward(x, h0, c0, *w, lengths=lengths)
        assert _core.onednn_weights_prepared() == before
        grads = ops.lstm_backward(dhs, dhT, dcT, cache)
        assert _core.onednn_weights_prepared() == before + 1
    finally:
        s2sext.set_recurrent_backend(previous)
    ours = dict(hs=hs, hT=hT, cT=cT, **dict(zip(("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db"), grads)))
    check_all(ours, *refs(lstm_ref, x, h0, c0, *w, lengths, dhs, dhT, dcT, dtype=np.float32))


@needs_onednn
def test_onednn_repeatable(threads, rng):
    """The same call twice gives the same bits (the primitives are reused from the second call on)."""
    threads(2)
    args = _inputs(rng, 16, 7, 5, 255, np.float32, True)
    previous = s2sext.set_recurrent_backend("onednn")
    try:
        first, second = _run(*args), _run(*args)
    finally:
        s2sext.set_recurrent_backend(previous)
    for name, value in first.items():
        np.testing.assert_array_equal(second[name], value, err_msg=name)


def test_set_recurrent_backend_returns_previous_and_reports():
    previous = s2sext.set_recurrent_backend("blas")
    try:
        assert previous in BACKENDS
        assert s2sext.cpu_info()["recurrent_backend"] == "blas"
        assert s2sext.set_recurrent_backend("blas") == "blas"
    finally:
        s2sext.set_recurrent_backend(previous)
    info = s2sext.cpu_info()
    assert info["recurrent_backends"][0] == "blas"
    assert (info["onednn_version"] != "") == ("onednn" in BACKENDS)


def test_set_recurrent_backend_rejects_bad_names():
    with pytest.raises(TypeError, match="name must be a str.*got int"):
        s2sext.set_recurrent_backend(1)
    with pytest.raises(ValueError, match="unknown backend 'mkl'; expected one of blas, onednn"):
        s2sext.set_recurrent_backend("mkl")
    if "onednn" not in BACKENDS:
        with pytest.raises(ValueError, match="'onednn' is not in this build"):
            s2sext.set_recurrent_backend("onednn")


@pytest.mark.parametrize("request_name", ["blas", "onednn", "nonsense"])
def test_start_up_backend_from_the_environment(request_name):
    """S2SEXT_RECURRENT_BACKEND picks the start-up backend; otherwise (also for a name it does not
    know, or oneDNN where not built) oneDNN where built and it packs the weights on this CPU, else
    BLAS."""
    env = dict(os.environ, S2SEXT_RECURRENT_BACKEND=request_name)
    out = subprocess.run([sys.executable, "-c", "import s2sext; print(s2sext.cpu_info()['recurrent_backend'])"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    info = s2sext.cpu_info()
    if "onednn" not in BACKENDS:
        assert info["onednn_packs_weights"] is False
    default = "onednn" if info["onednn_packs_weights"] else "blas"
    assert out == (request_name if request_name in BACKENDS else default)


THREADS_SCRIPT = """
import ctypes, os, sys
import numpy as np
import s2sext
from s2sext import _core, ops
s2sext.set_num_threads(int(sys.argv[2]))
s2sext.set_recurrent_backend(sys.argv[1])
rng = np.random.default_rng(0)
B, S, I, H = 16, 5, 5, 255
x = rng.standard_normal((B, S, I), dtype=np.float32)
w = [rng.uniform(-0.1, 0.1, s).astype(np.float32) for s in ((4 * H, I), (4 * H, H), (4 * H,))]
h0 = np.zeros((B, H), np.float32)
hs, hT, cT, cache = ops.lstm_forward(x, h0, h0, *w)
ops.lstm_backward(hs, None, None, cache)
assert (_core.onednn_weights_prepared() > 0) == (sys.argv[1] == "onednn")
gomp = ctypes.CDLL("libgomp.so.1")
print(len(os.listdir("/proc/self/task")), gomp.omp_get_max_threads())
"""


@needs_onednn
@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc/self/task to count threads")
@pytest.mark.parametrize("n_threads", [1, 2])
def test_onednn_starts_no_threads_and_restores_the_openmp_setting(n_threads):
    """With OMP_NUM_THREADS=4 oneDNN would start 3 OpenMP threads of its own in each thread that
    calls it; held at one, the process has as many threads as on the BLAS backend, and the caller's
    OpenMP thread count is what it was."""
    env = dict(os.environ, OMP_NUM_THREADS="4")
    counts = {}
    for backend in ("blas", "onednn"):
        out = subprocess.run([sys.executable, "-c", THREADS_SCRIPT, backend, str(n_threads)], env=env,
                             capture_output=True, text=True, check=True).stdout.split()
        counts[backend] = int(out[0])
        assert int(out[1]) == 4, f"{backend}: omp_get_max_threads() = {out[1]} after the call, expected 4"
    assert counts["onednn"] == counts["blas"], counts
