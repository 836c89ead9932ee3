"""Fixtures shared by the suite.

- `rng`: a numpy Generator seeded per test, so every test sees the same inputs on every run.
- `kernel_path`: parametrizes a test over every SIMD path this machine and build can run
  (s2sext.cpu_info()['available_paths']), switches the process to it and restores the previous path.
- `recurrent_backend`: the same over the backends of the LSTM's recurrent products in this build
  (s2sext.cpu_info()['recurrent_backends']: 'blas', and 'onednn' where built).

The PyTorch references and the tolerance rule live in reference.py (imported by the test modules).
"""
import os

# One thread for PyTorch (OpenMP) and for numpy's OpenBLAS, the references' thread pools. On a
# small machine the idle threads of a pool spin while another library works, taking the cores from
# it and making every call many times slower. OpenBLAS reads the variable when it loads.
# s2sext's own bundled OpenBLAS is single-threaded regardless; its threads are tested in
# test_parallel.py.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import s2sext  # noqa: E402

torch.set_num_threads(1)

AVAILABLE_PATHS = list(s2sext.cpu_info()["available_paths"])
RECURRENT_BACKENDS = list(s2sext.cpu_info()["recurrent_backends"])


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


def pytest_generate_tests(metafunc):
    if "kernel_path" in metafunc.fixturenames:
        metafunc.parametrize("kernel_path", AVAILABLE_PATHS, indirect=True)
    if "recurrent_backend" in metafunc.fixturenames:
        metafunc.parametrize("recurrent_backend", RECURRENT_BACKENDS, indirect=True)


@pytest.fixture
def kernel_path(request):
    previous = s2sext.set_kernel_path(request.param)
    try:
        assert s2sext.cpu_info()["kernel_path"] == request.param
        yield request.param
    finally:
        s2sext.set_kernel_path(previous)


@pytest.fixture
def recurrent_backend(request):
    previous = s2sext.set_recurrent_backend(request.param)
    try:
        assert s2sext.cpu_info()["recurrent_backend"] == request.param
        yield request.param
    finally:
        s2sext.set_recurrent_backend(previous)
