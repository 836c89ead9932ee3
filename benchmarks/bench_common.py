"""The timing harness and machine report the benchmarks share (bench_kernels.py, bench_decode.py,
bench_train.py): interleaved sampling with settling, medians and quartiles, the other processes' CPU
load, the thread limits, the machine header of every report, and the atomic write of a report.
"""
from __future__ import annotations

import gc
import math
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


BUSY_FRACTION = 0.05  # rows timed while other processes took more CPU than this are marked
ENV_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # this machine sets them; the README unsets


@dataclass(frozen=True)
class Mode:
    sample_s: float  # one timed sample: back-to-back calls of one side, at least one call
    settle_s: float  # untimed calls of a side before a sample that follows the other side
    reps: int  # samples per side, most
    min_reps: int  # samples per side, fewest (rows whose calls are long)
    budget_s: float  # timing time per row, both sides and settling together
    warmup_s: float  # per side, before sizing the samples


# --------------------------------------------------------------------------------------------------
# timing


@dataclass
class Timing:
    ours_ns: float
    peer_ns: float
    reps: int
    inner_ours: int
    inner_peer: int
    ours_iqr: tuple[float, float]
    peer_iqr: tuple[float, float]


def _sample(fn: Callable[[], object], inner: int) -> float:
    """Mean time of one call over `inner` back-to-back calls, in ns."""
    t0 = time.perf_counter_ns()
    for _ in range(inner):
        fn()
    return (time.perf_counter_ns() - t0) / inner


def _run_for(fn: Callable[[], object], seconds: float) -> list[float]:
    """Calls fn for `seconds` (at least once); returns each call's time in ns."""
    times = []
    end = time.perf_counter_ns() + seconds * 1e9
    while not times or time.perf_counter_ns() < end:
        times.append(_sample(fn, 1))
    return times


def _typical(times: list[float]) -> float:
    """A call's time from warm-up calls: the median after the first (which pays one-time setup)."""
    return _quartiles(times[1:] or times)[1]


def _quartiles(xs: list[float]) -> tuple[float, float, float]:
    xs = sorted(xs)
    n = len(xs)

    def at(p: float) -> float:
        k = p * (n - 1)
        lo = math.floor(k)
        hi = min(lo + 1, n - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)

    return at(0.25), at(0.5), at(0.75)


def time_pair(ours: Callable[[], object], peer: Callable[[], object], mode: Mode,
              order: str) -> Timing:
    # Warm each side on its own (allocator, thread pools, oneDNN primitive caches) and size its samples
    # from the median of its later calls; short calls are batched up to sample_s so timer resolution
    # and loop overhead vanish.
    t_o = _typical(_run_for(ours, mode.warmup_s))
    t_p = _typical(_run_for(peer, mode.warmup_s))
    inner_o = max(1, round(mode.sample_s * 1e9 / t_o))
    inner_p = max(1, round(mode.sample_s * 1e9 / t_p))
    # ABBA order (ours, peer, peer, ours, ...) puts the other side first half the time; it also means
    # only every other sample follows the other library, and only those need settling.
    settle_ns = max(mode.settle_s * 1e9, (t_o + t_p) / 2)
    rep_ns = settle_ns + inner_o * t_o + inner_p * t_p
    reps = int(min(max(mode.budget_s * 1e9 // rep_ns, mode.min_reps), mode.reps))

    s_o: list[float] = []
    s_p: list[float] = []
    ours_side = (ours, inner_o, s_o)
    peer_side = (peer, inner_p, s_p)
    if order == "interleaved":
        schedule = [side for r in range(reps)
                    for side in ((ours_side, peer_side) if r % 2 == 0 else (peer_side, ours_side))]
    else:  # "blocked": all of ours, then all of torch; a diagnostic for interference
        schedule = [ours_side] * reps + [peer_side] * reps
    gc.collect()
    gc.disable()  # a collection inside one side's sample would be charged to that side
    try:
        previous = None
        for fn, inner, samples in schedule:
            if fn is not previous:
                _run_for(fn, mode.settle_s)
                previous = fn
            samples.append(_sample(fn, inner))
    finally:
        gc.enable()
    q_o = _quartiles(s_o)
    q_p = _quartiles(s_p)
    return Timing(q_o[1], q_p[1], reps, inner_o, inner_p, (q_o[0], q_o[2]), (q_p[0], q_p[2]))


def time_one(fn: Callable[[], object], mode: Mode) -> float:
    """Median of one function alone (the physical reference, which has no peer)."""
    t = _typical(_run_for(fn, mode.warmup_s))
    inner = max(1, round(mode.sample_s * 1e9 / t))
    return _quartiles([_sample(fn, inner) for _ in range(mode.reps)])[1]


def fmt_ratio(r: float) -> str:
    return f"{r:.2f}x" if r < 10 else f"{r:.1f}x" if r < 100 else f"{r:.0f}x"


def fmt_time(ns: float) -> str:
    if ns < 1e6:
        return f"{ns / 1e3:.1f} µs" if ns < 1e5 else f"{ns / 1e3:.0f} µs"
    return f"{ns / 1e6:.2f} ms" if ns < 1e8 else f"{ns / 1e6:.0f} ms"


# --------------------------------------------------------------------------------------------------
# machine


class OtherLoad:
    """CPU time that other processes (and the hypervisor, as steal) took while a row was timed, as a
    fraction of all CPUs: the machine has 2 cores, so any other job shows up directly in the medians."""

    def __init__(self) -> None:
        self._start = self.read()

    @staticmethod
    def read() -> tuple[float, float, float, float] | None:
        """(busy, steal and all CPU seconds of the machine, this process's CPU seconds) so far; None
        where /proc/stat cannot be read. Two readings give :meth:`fraction`'s numbers."""
        try:
            with open("/proc/stat", encoding="ascii") as f:
                ticks = [int(v) for v in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        hz = os.sysconf("SC_CLK_TCK")
        user, nice, system, idle, iowait, irq, softirq, steal = ticks
        own = os.times()
        return ((user + nice + system + irq + softirq) / hz, steal / hz, sum(ticks) / hz,
                own.user + own.system)

    def fraction(self) -> float | None:
        return other_fraction(self._start, self.read())


def other_fraction(start, end, ours_s: float | None = None) -> float | None:
    """The fraction of all CPUs that other processes took between two :meth:`OtherLoad.read`
    readings; `ours_s` is the CPU seconds of the benchmark's own processes meanwhile (by default
    the reading process's own)."""
    if end is None or start is None:
        return None
    busy, steal, total, own = (b - a for a, b in zip(start, end))
    ours_s = own if ours_s is None else ours_s
    return max(0.0, busy - ours_s + steal) / total if total > 0 else None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def torch_brief(torch) -> tuple[str, str]:
    """(build: BLAS, MKL, oneDNN, CPU capability; runtime: the parallel backend's thread counts)."""
    show = torch.__config__.show()
    keys = ("BLAS_INFO", "LAPACK_INFO", "USE_MKL", "USE_MKLDNN", "USE_OPENMP")
    build = [f"{k}={m.group(1)}" for k in keys if (m := re.search(rf"\b{k}=([^,\s]+)", show))]
    for pattern in (r"Math Kernel Library Version [^\n]*?(?= for |\n)", r"MKL-DNN v[\d.]+",
                    r"CPU capability usage: \w+"):
        if m := re.search(pattern, show):
            build.append(m.group(0))
    par = torch.__config__.parallel_info()
    runtime = []
    for pattern in (r"ATen parallel backend: .*", r"at::get_num_threads\(\) : \d+",
                    r"omp_get_max_threads\(\) : \d+", r"mkl_get_max_threads\(\) : \d+"):
        if m := re.search(pattern, par):
            runtime.append(m.group(0).strip())
    return "; ".join(build), "; ".join(runtime)


def numpy_blas(np) -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        try:
            blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
            built = f"built with {blas.get('name')} {blas.get('version')}"
        except Exception:  # noqa: BLE001 - show_config's layout is not an API
            built = "build BLAS unknown"
        return f"threadpoolctl not installed, core unknown ({built})"
    libs = [i for i in threadpool_info() if i.get("internal_api") == "openblas"]
    return "; ".join(f"{Path(i['filepath']).name}: core {i.get('architecture')}, "
                     f"{i.get('num_threads')} threads, {i.get('version')}" for i in libs) or "no OpenBLAS"


def set_our_threads(s2sext, n: int) -> str:
    """s2sext runs its own threads (its bundled OpenBLAS is single-threaded)."""
    s2sext.set_num_threads(n)
    return f"s2sext.set_num_threads({n})"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


# --------------------------------------------------------------------------------------------------


def not_importable(error: ImportError) -> int:
    """Says on stderr that s2sext cannot be imported and how to build it; main()'s exit status."""
    print(f"error: s2sext is not importable ({error}); build it first "
          "(pip install --no-build-isolation -e .)", file=sys.stderr)
    return 2


def limit_numpy_threads(threads, script):
    """Sets numpy's OpenBLAS thread count, which it reads when it loads (so call this before
    importing numpy), and warns when OpenBLAS's kernel overrides are set. Returns the previous
    OPENBLAS_NUM_THREADS and the overrides that are set."""
    previous = os.environ.get("OPENBLAS_NUM_THREADS")
    os.environ["OPENBLAS_NUM_THREADS"] = str(threads)
    env_set = {k: os.environ[k] for k in ENV_OVERRIDES if k in os.environ}
    for k, v in env_set.items():
        print(f"WARNING: {k}={v} is set, so OpenBLAS may not pick its best kernel; run with "
              f"`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python {script}`")
    return previous, env_set


def machine_header(np, torch, s2sext, threads, previous_threads, threads_note="", extra_rows=()):
    """Sets torch and s2sext to `threads`, prints the machine's details and returns them as
    (name, value) rows; `extra_rows` go after the torch rows."""
    torch.set_num_threads(threads)
    threads_how = set_our_threads(s2sext, threads)
    info = s2sext.cpu_info()
    blas = dict(info.get("blas", {}))
    blas_config = blas.pop("config", None)
    torch_build, torch_runtime = torch_brief(torch)
    header = [
        ("CPU", f"{cpu_model()} ({os.cpu_count()} logical CPUs, {platform.machine()})"),
        ("threads", f"{threads} (torch.get_num_threads()={torch.get_num_threads()}; ours via {threads_how}"
                    + threads_note
                    + (f"; OPENBLAS_NUM_THREADS was {previous_threads}" if previous_threads else "") + ")"),
        ("s2sext kernel path", f"{info.get('kernel_path')} (available: "
                               f"{', '.join(info.get('available_paths', []))})"),
        ("s2sext BLAS", ", ".join(f"{k}={v}" for k, v in blas.items())
         + (f"; config: {blas_config}" if blas_config else "")),
        ("torch", f"{torch.__version__}; {torch_build}"),
        ("torch threads", torch_runtime),
        *extra_rows,
        ("numpy", f"{np.__version__}; OpenBLAS: {numpy_blas(np)}"),
        ("environment", ", ".join(f"{k}={os.environ.get(k, '(unset)')}" for k in ENV_OVERRIDES)),
        ("python", f"{platform.python_version()} on {platform.platform()}"),
    ]
    for key, value in header:
        print(f"{key:>20}: {value}")
    if info.get("num_threads") != threads:
        print(f"WARNING: s2sext reports {info.get('num_threads')} threads, not {threads}")
    print()
    return header
# --------------------------------------------------------------------------------------------------
# timing: several sides, interleaved


@dataclass
class Stats:
    median_ns: float
    q1_ns: float
    q3_ns: float
    reps: int
    inner: int


def time_group(fns: dict[str, Callable[[], object]], mode: Mode) -> dict[str, Stats]:
    """Medians of every side, sampled in rounds of alternating order (A B C, C B A, ...).

    As time_pair, generalised to any number of sides: each side is warmed up on its own
    and its samples sized from its typical call; a sample that follows another side is preceded by
    mode.settle_s of its own untimed calls."""
    names = list(fns)
    typical = {k: _typical(_run_for(fns[k], mode.warmup_s)) for k in names}
    inner = {k: max(1, round(mode.sample_s * 1e9 / typical[k])) for k in names}
    round_ns = sum(max(mode.settle_s * 1e9, typical[k]) + inner[k] * typical[k] for k in names)
    reps = int(min(max(mode.budget_s * 1e9 // round_ns, mode.min_reps), mode.reps))
    schedule = [k for r in range(reps) for k in (names if r % 2 == 0 else names[::-1])]
    samples: dict[str, list[float]] = {k: [] for k in names}
    gc.collect()
    gc.disable()  # a collection inside one side's sample would be charged to that side
    try:
        previous = None
        for k in schedule:
            if k != previous:
                _run_for(fns[k], mode.settle_s)
                previous = k
            samples[k].append(_sample(fns[k], inner[k]))
    finally:
        gc.enable()
    out = {}
    for k in names:
        q1, med, q3 = _quartiles(samples[k])
        out[k] = Stats(med, q1, q3, reps, inner[k])
    return out
