"""SIMD kernel paths: each available path against the portable one, cpu_info, set_kernel_path and
the S2SEXT_KERNEL_PATH environment variable.

Paths sum in different orders, so results differ by rounding only. float64: within RTOL64 of the
portable float64 result. float32: the measured rule of reference.py with the portable path in the
place of PyTorch (the error of path P in float32 against the portable float64 result must be within
4x the portable float32 error, plus the floor of reference.py).
"""
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

import s2sext

from reference import assert_close, every_kernel, with_kernel_path

PATHS = list(s2sext.cpu_info()["available_paths"])
SIMD_PATHS = [p for p in PATHS if p != "portable"]
KNOWN_PATHS = {"portable", "avx2", "avx512", "avx512_vnni", "avx512_bf16"}
# (B, S, I, H): a large hidden size (full SIMD blocks plus a tail of 255 % 16 = 15), odd small sizes
# (tails only), and the all-ones case.
SIZES = [(3, 13, 16, 255), (3, 13, 5, 7), (1, 1, 1, 1)]


@pytest.mark.parametrize("B,S,I,H", SIZES, ids=[f"B{b}-S{s}-I{i}-H{h}" for b, s, i, h in SIZES])
@pytest.mark.parametrize("path", SIMD_PATHS)
def test_path_matches_portable(path, B, S, I, H):
    ref64 = with_kernel_path("portable", every_kernel, B, S, I, H, np.float64, 7)
    portable32 = with_kernel_path("portable", every_kernel, B, S, I, H, np.float32, 7)
    ours64 = with_kernel_path(path, every_kernel, B, S, I, H, np.float64, 7)
    ours32 = with_kernel_path(path, every_kernel, B, S, I, H, np.float32, 7)
    assert set(ours64) == set(ref64) == set(ours32)
    failures = []
    for name in ref64:
        for ours, ref32 in ((ours64[name], None), (ours32[name], portable32[name])):
            try:
                assert_close(f"{path}:{name}", ours, ref64[name], ref32, baseline="portable float32")
            except AssertionError as e:
                failures.append(str(e))
    assert not failures, "\n".join(failures)


def test_cpu_info_content():
    info = s2sext.cpu_info()
    assert isinstance(info, dict)
    assert {"kernel_path", "available_paths", "features", "blas"} <= set(info)
    assert isinstance(info["kernel_path"], str)
    assert isinstance(info["available_paths"], list)
    assert all(isinstance(p, str) for p in info["available_paths"])
    assert "portable" in info["available_paths"]
    assert len(set(info["available_paths"])) == len(info["available_paths"])
    assert info["kernel_path"] in info["available_paths"]
    assert set(info["available_paths"]) <= KNOWN_PATHS, info["available_paths"]
    assert isinstance(info["features"], dict)
    assert isinstance(info["blas"], dict)
    if platform.machine().lower() not in ("x86_64", "amd64"):
        assert info["available_paths"] == ["portable"]


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="needs /proc/cpuinfo (Linux)")
def test_available_paths_agree_with_the_cpu():
    """A path is offered only when the CPU has the instructions it needs."""
    with open("/proc/cpuinfo") as f:
        flags = set()
        for line in f:
            if line.startswith("flags"):
                flags |= set(line.split(":", 1)[1].split())
    paths = s2sext.cpu_info()["available_paths"]
    if "avx2" in paths:
        assert {"avx2", "fma"} <= flags, flags
    if "avx512" in paths:
        assert "avx512f" in flags, flags


def test_set_kernel_path_switches_and_returns_previous():
    start = s2sext.cpu_info()["kernel_path"]
    try:
        previous = start
        for name in PATHS + list(reversed(PATHS)):
            assert s2sext.set_kernel_path(name) == previous
            assert s2sext.cpu_info()["kernel_path"] == name
            previous = name
    finally:
        s2sext.set_kernel_path(start)
    assert s2sext.cpu_info()["kernel_path"] == start


@pytest.mark.parametrize("name", ["sse9", "", "avx2 ", "neon-but-not-really"])
def test_set_kernel_path_unknown(name):
    start = s2sext.cpu_info()["kernel_path"]
    with pytest.raises(ValueError) as info:
        s2sext.set_kernel_path(name)
    assert name in str(info.value), f"message does not state the bad name {name!r}: {info.value}"
    assert s2sext.cpu_info()["kernel_path"] == start, "a refused switch must leave the path unchanged"


@pytest.mark.parametrize("name", sorted(KNOWN_PATHS - set(PATHS)) or ["<none>"])
def test_set_kernel_path_unavailable(name):
    if name == "<none>":
        pytest.skip("every known path is available on this machine")
    start = s2sext.cpu_info()["kernel_path"]
    with pytest.raises(ValueError, match=name):
        s2sext.set_kernel_path(name)
    assert s2sext.cpu_info()["kernel_path"] == start


def _in_subprocess(env_name, value, expression):
    """(expression's value printed by a fresh interpreter with env_name=value, its stderr)."""
    env = dict(os.environ)
    env[env_name] = value
    done = subprocess.run([sys.executable, "-c", f"import s2sext; print({expression})"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip(), done.stderr


def _kernel_path_in_subprocess(value):
    return _in_subprocess("S2SEXT_KERNEL_PATH", value, "s2sext.cpu_info()['kernel_path']")


def test_env_var_forces_portable():
    assert _kernel_path_in_subprocess("portable") == ("portable", "")


AVAILABLE_PATHS = s2sext.cpu_info()["available_paths"]  # listed from portable up


@pytest.mark.parametrize("value", ["garbage", "AVX2", " portable", "portable2"])
def test_env_var_kernel_path_unknown_warns_and_runs_the_best_path(value):
    best = AVAILABLE_PATHS[-1]
    path, err = _kernel_path_in_subprocess(value)
    assert path == best
    assert err == (f"s2sext: ignoring S2SEXT_KERNEL_PATH={value!r}: expected one of portable, avx2, avx512, avx512_vnni, avx512_bf16; "
                   f"using {best}\n")


def test_env_var_kernel_path_empty_is_unset():
    assert _kernel_path_in_subprocess("") == (AVAILABLE_PATHS[-1], "")


@pytest.mark.skipif(len(AVAILABLE_PATHS) == len(KNOWN_PATHS), reason="every path runs on this CPU")
def test_env_var_kernel_path_unsupported_warns():
    unsupported = [p for p in ("avx2", "avx512", "avx512_vnni", "avx512_bf16") if p not in AVAILABLE_PATHS][0]
    path, err = _kernel_path_in_subprocess(unsupported)
    assert path == AVAILABLE_PATHS[-1]
    assert "this CPU or build cannot run that path" in err


def _threads_in_subprocess(value):
    return _in_subprocess("S2SEXT_NUM_THREADS", value, "s2sext.get_num_threads(), s2sext.get_num_threads()")


@pytest.mark.parametrize("value,threads", [("3", 3), ("1", 1), ("1024", 1024), ("007", 7)])
def test_env_var_num_threads(value, threads):
    assert _threads_in_subprocess(value) == (f"{threads} {threads}", "")


@pytest.mark.parametrize("value", ["99999999999", "1" * 400, "1025", "0", "-1", "+2", "2 ", " 2", "8x", "0x10",
                                   "2.0", "two"])
def test_env_var_num_threads_invalid_warns_once_and_uses_the_cpus(value):
    """Not an integer from 1 to 1024 written in digits alone: one line on stderr, then the CPU
    count (atoi used to read 99999999999 as 1,215,752,191 threads, "8x" as 8)."""
    cpus = min(os.cpu_count(), 1024)
    out, err = _threads_in_subprocess(value)
    assert out == f"{cpus} {cpus}"
    assert err == (f"s2sext: ignoring S2SEXT_NUM_THREADS={value!r}: expected an integer from 1 to 1024; "
                   f"using {cpus} (the number of CPUs)\n")
