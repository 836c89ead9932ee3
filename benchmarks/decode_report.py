"""The decoding benchmark's results and report (bench_decode.py): the markdown tables, the targets
and the chart.
"""
from __future__ import annotations

import datetime
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import BUSY_FRACTION, Stats, fmt_ratio, fmt_time  # noqa: E402
from decode_sides import (  # noqa: E402 - sibling modules of this script
    BATCH, BEAM, Config, DTYPES, EAGER, OPENVINO, ORT, OUR_SIDES, OURS, OURS_BF16, OURS_INT8, PEERS,
    PROBE_SENTENCE, REF_NUMPY, REF_OURS, SCRIPT)


# --------------------------------------------------------------------------------------------------
# one configuration


@dataclass
class Timed:
    """One side of one case: its median (None if it did not run) and why not, or its check. An error
    fails the run; `unavailable` (a dtype this build cannot compile, a peer not installed) does not."""

    stats: Stats | None = None
    error: str = ""
    check: str = ""
    unavailable: str = ""


@dataclass
class CaseResult:
    case: str  # "greedy1", "beam", "batch32"
    sides: dict[str, Timed] = field(default_factory=dict)
    other_load: float | None = None


@dataclass
class ConfigResult:
    cfg: Config
    cases: dict[str, CaseResult] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    failed: bool = False
    model_path: str | None = None  # the saved model file (the dates one feeds the memory probe)
    reference_net: dict[str, float] = field(default_factory=dict)  # reference minus its call overhead


# --------------------------------------------------------------------------------------------------
# report


def med(res: ConfigResult, case: str, side: str) -> float | None:
    c = res.cases.get(case)
    t = c.sides.get(side) if c else None
    return t.stats.median_ns if t and t.stats else None


def cell(ns: float | None, case: str, cfg: Config) -> str:
    if ns is None:
        return "—"
    if case == "batch32":
        return f"{fmt_time(ns)} ({BATCH / (ns * 1e-9):,.0f} sent/s)"
    return f"{fmt_time(ns)} ({fmt_time(ns / cfg.T)}/token)"


CASE_TITLES = {"greedy1": "batch-1 greedy", "beam": f"beam {BEAM}, batch 1",
               "batch32": f"batch-{BATCH} greedy"}
SIDE_ORDER = [OURS, OURS_BF16, OURS_INT8, EAGER, SCRIPT, ORT, OPENVINO, REF_OURS, REF_NUMPY]


def ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num and den else None


def ratio_cell(num: float | None, den: float | None) -> str:
    r = ratio(num, den)
    return fmt_ratio(r) if r else "—"


def times_table(res: ConfigResult) -> list[str]:
    """Every side's median per case, and what its check found."""
    cfg = res.cfg
    out = ["| case | side | median | check |", "| --- | --- | ---: | --- |"]
    for key, case in res.cases.items():
        busy = case.other_load is not None and case.other_load > BUSY_FRACTION
        title = CASE_TITLES[key] + (f" (machine busy: other processes took {case.other_load:.0%} of the "
                                    "CPUs)" if busy else "")
        for i, side in enumerate(sorted(case.sides, key=SIDE_ORDER.index)):
            timed = case.sides[side]
            title = title if i == 0 else CASE_TITLES[key]
            if timed.unavailable:
                out.append(f"| {title} | {side} | — | {timed.unavailable} |")
                continue
            ns = timed.stats.median_ns if timed.stats else None
            out.append(f"| {title} | {side} | {cell(ns, key, cfg)} | {timed.error or timed.check} |")
    return out


def ratios_table(res: ConfigResult) -> list[str]:
    """Per case, each s2sext dtype against our float32 and against every peer (peer / it: > 1 means
    that dtype of s2sext is faster)."""
    out = ["| case | s2sext dtype | median | float32 / it | " + " | ".join(f"{p} / it" for p in PEERS) + " |",
           "| --- | --- | ---: | ---: | " + " | ".join("---:" for _ in PEERS) + " |"]
    for key, case in res.cases.items():
        f32 = med(res, key, OURS)
        for dtype in DTYPES:
            side = OUR_SIDES[dtype]
            timed = case.sides.get(side)
            if timed is None:
                continue
            if timed.unavailable or timed.stats is None:
                why = timed.unavailable or timed.error or "not timed"
                out.append(f"| {CASE_TITLES[key]} | {dtype} | — | {why} | " + " | ".join("—" for _ in PEERS) + " |")
                continue
            ns = timed.stats.median_ns
            peers = [ratio_cell(med(res, key, p), ns) for p in PEERS]
            out.append(f"| {CASE_TITLES[key]} | {dtype} | {cell(ns, key, res.cfg)} | "
                       f"{ratio_cell(f32, ns) if side != OURS else '1.00x'} | " + " | ".join(peers) + " |")
    return out


def beam_greedy_ratio(res: ConfigResult, dtype: str) -> float | None:
    """Time of a beam-5 decode over a greedy decode of the same input, same dtype."""
    return ratio(med(res, "beam", OUR_SIDES[dtype]), med(res, "greedy1", OUR_SIDES[dtype]))


def beam_table(results: dict[str, ConfigResult]) -> list[str]:
    names = list(results)
    out = ["| s2sext dtype | " + " | ".join(f"{n}: beam {BEAM} / greedy" for n in names) + " |",
           "| --- | " + " | ".join("---:" for _ in names) + " |"]
    for dtype in DTYPES:
        cells = []
        for n in names:
            r = beam_greedy_ratio(results[n], dtype)
            side = results[n].cases.get("beam", CaseResult("beam")).sides.get(OUR_SIDES[dtype])
            cells.append(fmt_ratio(r) if r else (side.unavailable if side and side.unavailable else "—"))
        out.append(f"| {dtype} | " + " | ".join(cells) + " |")
    return out


@dataclass
class Target:
    label: str
    config: str
    want: float
    kind: str  # ">=" speedup, "<=" ratio, "<" absolute
    unit: str = "x"
    measure: str = ""  # how target_value computes it (see MEASURES); "" for the probe


def _peer_over_ours(peer):
    return lambda res: ratio(med(res, "greedy1", peer), med(res, "greedy1", OURS))


def _fastest_peer_batch(res: ConfigResult) -> float | None:
    peers = [v for v in (med(res, "batch32", p) for p in PEERS) if v]
    return ratio(min(peers), med(res, "batch32", OURS)) if peers else None


MEASURES = {
    "eager": _peer_over_ours(EAGER),
    "ort": _peer_over_ours(ORT),
    "reference": lambda res: ratio(med(res, "greedy1", OURS), reference_ns(res)),
    "bf16": lambda res: ratio(med(res, "greedy1", OURS), med(res, "greedy1", OURS_BF16)),
    "int8": lambda res: ratio(med(res, "greedy1", OURS), med(res, "greedy1", OURS_INT8)),
    "beam_eager": lambda res: ratio(med(res, "beam", EAGER), med(res, "beam", OURS)),
    "beam_greedy": lambda res: beam_greedy_ratio(res, "float32"),
    "batch_peers": _fastest_peer_batch,
}

TARGETS_ISSUE4 = [
    Target("dates: batch-1 greedy, torch eager / s2sext", "dates", 2.5, ">=", measure="eager"),
    Target("dates: batch-1 greedy, ONNX Runtime / s2sext", "dates", 1.4, ">=", measure="ort"),
    Target("dates: batch-1 greedy, s2sext / physical reference", "dates", 1.25, "<=", measure="reference"),
    Target("nmt: batch-1 greedy, torch eager / s2sext", "nmt", 2.5, ">=", measure="eager"),
    Target("nmt: batch-1 greedy, ONNX Runtime / s2sext", "nmt", 1.3, ">=", measure="ort"),
    Target(f"dates: beam {BEAM}, torch eager beam (batched) / s2sext", "dates", 4.0, ">=", measure="beam_eager"),
    Target("nmt: batch-1 greedy, s2sext float32 / s2sext bfloat16", "nmt", 1.6, ">=", measure="bf16"),
    Target("process peak RSS (load the dates model, translate one sentence)", "probe", 80.0, "<", " MB"),
    Target("`import s2sext` (numpy's import included)", "probe", 0.3, "<", " s"),
]
TARGETS_ISSUE13 = [
    Target("dates: batch-1 greedy, s2sext float32 / s2sext int8", "dates", 1.8, ">=", measure="int8"),
    Target("nmt: batch-1 greedy, s2sext float32 / s2sext int8", "nmt", 3.0, ">=", measure="int8"),
    Target("dates: batch-1 greedy, s2sext float32 / s2sext bfloat16 (CPU with AVX512_BF16)", "dates", 1.0, ">=",
           measure="bf16"),
    Target("nmt: batch-1 greedy, s2sext float32 / s2sext bfloat16 (CPU with AVX512_BF16)", "nmt", 1.8, ">=",
           measure="bf16"),
    Target(f"dates: float32 beam {BEAM} / float32 greedy, same input", "dates", 1.4, "<=", measure="beam_greedy"),
    Target(f"nmt: float32 beam {BEAM} / float32 greedy, same input", "nmt", 1.4, "<=", measure="beam_greedy"),
    Target(f"dates: batch-{BATCH} greedy, fastest peer / s2sext float32", "dates", 1.3, ">=", measure="batch_peers"),
    Target(f"nmt: batch-{BATCH} greedy, fastest peer / s2sext float32", "nmt", 1.3, ">=", measure="batch_peers"),
]


def reference_ns(res: ConfigResult) -> float | None:
    values = [v for v in (med(res, "greedy1", REF_OURS), med(res, "greedy1", REF_NUMPY)) if v]
    return min(values) if values else None


def reference_net_ns(res: ConfigResult) -> float | None:
    values = [v for v in (res.reference_net.get(REF_OURS), res.reference_net.get(REF_NUMPY)) if v]
    return min(values) if values else None


def target_value(t: Target, results: dict[str, ConfigResult], mem: dict | None) -> float | None:
    if t.config == "probe":
        if not mem:
            return None
        return mem["peak_rss_mib"] * 1.048576 if t.unit == " MB" else mem["import_total_s"]
    res = results.get(t.config)
    return MEASURES[t.measure](res) if res is not None else None


def targets_table(results, mem, args, targets) -> list[str]:
    out = ["| target (1 thread, batch 1, greedy, fixed output length unless stated) | wanted | measured | |",
           "| --- | ---: | ---: | --- |"]
    for t in targets:
        v = target_value(t, results, mem)
        want = f"{t.kind} {t.want:g}{t.unit}"
        if v is None:
            why = "not measured" + (" (--quick runs dates only)" if args.quick and t.config == "nmt" else "")
            if t.measure == "int8" and t.config in results:
                side = results[t.config].cases["greedy1"].sides.get(OURS_INT8)
                why = side.unavailable if side and side.unavailable else why
            out.append(f"| {t.label} | {want} | — | {why} |")
            continue
        met = v >= t.want if t.kind == ">=" else v <= t.want if t.kind == "<=" else v < t.want
        shown = f"{v:.2f}{t.unit}" if t.unit != "x" else fmt_ratio(v)
        verdict = "met" if met else "**NOT met**"
        if t.measure == "reference":
            net = reference_net_ns(results[t.config])
            if net:
                verdict += (f" (against the reference net of Python call overhead: "
                            f"{fmt_ratio(med(results[t.config], 'greedy1', OURS) / net)})")
        if t.measure == "batch_peers":
            res = results[t.config]
            fastest = min((p for p in PEERS if med(res, "batch32", p)), key=lambda p: med(res, "batch32", p))
            verdict += f" (fastest peer: {fastest})"
        if args.threads != 1 and t.config != "probe":
            verdict += f" (at {args.threads} threads; the target is at 1)"
        out.append(f"| {t.label} | {want} | {shown} | {verdict} |")
    return out


def command(args) -> str:
    cmd = "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_decode.py"
    cmd += " --quick" if args.quick else ""
    cmd += f" --threads {args.threads}" if args.threads != 1 else ""
    cmd += f" --configs {','.join(args.configs)}" if args.configs_given else ""
    cmd += f" --seed {args.seed}" if args.seed != 0 else ""
    return cmd


def markdown(args, mode, header, results, mem, notes, png_name) -> str:
    out = ["# s2sext decoding (float32, bfloat16, int8) vs PyTorch eager, TorchScript, ONNX Runtime and "
           "OpenVINO (CPU)", ""]
    kind = (f"quick smoke run: short budgets, {', '.join(args.configs)} only; no measurement of the targets"
            if args.quick else "full run")
    out.append(f"Written by `{command(args)}` ({kind}), "
               f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {args.threads} thread(s) "
               "on every side.")
    out.append("")
    out.append(
        "Same weights on every side (random, `Seq2Seq(seed)`, copied into PyTorch in float32); every side "
        "runs exactly T argmax-fed decoder steps (`out.bias[<eos>]` = -1e4 everywhere so no side stops or "
        "masks; s2sext is called with `min_length = max_length = T`). s2sext is one Python call per decode "
        "(`Decoder.greedy` / `Decoder.beam`, the loop in C++); torch eager runs an nn.LSTM encoder and a "
        "Python loop of nn.LSTMCell + bmm dot attention + tanh(Linear([c; h])) + Linear + argmax under "
        "`torch.inference_mode()`; TorchScript is that module scripted and frozen (deprecated in this torch "
        "version); ONNX Runtime runs the exported encoder and one exported decoder step, looped from Python "
        "with numpy argmax, and OpenVINO (CPU plugin) runs the same two exported graphs in the same loop. "
        "s2sext runs in every dtype of `model.compile(dtype)` (float32, bfloat16, int8) from the same "
        "float32 weights. The torch beam search batches the K beams as rows (log_softmax, topk over K*V, "
        "index_select by parent, backtrack). Tokens were compared with torch eager's before timing (for "
        "bfloat16 and int8 weights the comparison is reported, not required).")
    out.append("")
    out.append(
        f"Medians of up to {mode.reps} samples per side, sides sampled in rounds of alternating order, a "
        f"sample that follows another side only after {mode.settle_s:g} s of untimed calls of its own "
        "side (the other library's spinning threads asleep, the side's weights back in cache: these are "
        "warm-cache, steady-state times of decoding the same input again). In the ratio tables X / it > 1 "
        "means that dtype of s2sext is faster than X. Times include each side's Python calls.")
    out.append("")
    out += [f"- {k}: {v}" for k, v in header]
    for res in results.values():
        out.append("")
        out.append(f"### {res.cfg.name} ({res.cfg.shape})")
        out.append("")
        out += ratios_table(res)
        out.append("")
        out += times_table(res)
        out.append("")
        out += [f"- {n}" for n in res.notes]
    out.append("")
    out.append(f"### Beam {BEAM} / greedy, per dtype (batch 1, the same input, T steps each)")
    out.append("")
    out += beam_table(results)
    out.append("")
    out.append("### Targets (issue 13)")
    out.append("")
    out += targets_table(results, mem, args, TARGETS_ISSUE13)
    out.append("")
    out.append("### Targets (issue 4)")
    out.append("")
    out += targets_table(results, mem, args, TARGETS_ISSUE4)
    out.append("")
    if mem:
        out.append(
            f"Import and memory, in a separate process that never imports torch (`'torch' in sys.modules` "
            f"was {mem['torch_imported']}): `import s2sext` {mem['import_total_s']:.3f} s, best of 3 fresh "
            f"processes with a warm file cache (numpy {mem['import_numpy_s']:.3f} s of it, s2sext itself "
            f"{mem['import_s2sext_s']:.3f} s; peak RSS after the import {mem['import_rss_mib']:.1f} MiB); "
            f"`Decoder.load` of the dates model file and `translate([{PROBE_SENTENCE!r}])` peak at "
            f"{mem['peak_rss_mib']:.1f} MiB RSS (= {mem['peak_rss_mib'] * 1.048576:.1f} MB; "
            f"{mem['peak_source']} of /proc/self/status. `ru_maxrss` says {mem['maxrss_mib']:.0f} MiB, but on "
            "Linux it keeps across exec the high-water mark of the forked copy of this torch-loaded benchmark "
            "process).")
    else:
        out.append("Import and memory: not measured (dates configuration not run).")
    out.append("")
    out.append(f"![per-token latency and throughput]({png_name})")
    if notes:
        out.append("")
        out += notes
    return "\n".join(out) + "\n"


def chart(results: dict[str, ConfigResult], path: Path, title: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        return f"no chart: {e}"
    ours = [OURS, OURS_BF16, OURS_INT8]
    panels = [("greedy1", "batch-1 greedy: µs per token", ours + [EAGER, SCRIPT, ORT, OPENVINO, REF_OURS, REF_NUMPY]),
              ("beam", f"beam {BEAM}: µs per output token", ours + [EAGER]),
              ("batch32", f"batch-{BATCH} greedy: sentences / s", ours + [EAGER, SCRIPT, ORT, OPENVINO])]
    colors = {OURS: "#1f77b4", OURS_BF16: "#6baed6", OURS_INT8: "#08306b", EAGER: "#d62728", SCRIPT: "#ff7f0e",
              ORT: "#2ca02c", OPENVINO: "#9467bd", REF_OURS: "#7f7f7f", REF_NUMPY: "#bdbdbd"}
    names = list(results)
    # One panel per configuration and case, linear from zero, so bar heights compare directly.
    fig, axes = plt.subplots(len(names), 3, figsize=(15, 4.2 * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        cfg = results[name].cfg
        for ax, (case, label, sides) in zip(row, panels):
            shown = [(side, med(results[name], case, side)) for side in sides]
            shown = [(side, BATCH / (ns * 1e-9) if case == "batch32" else ns / cfg.T / 1e3)
                     for side, ns in shown if ns is not None]
            bars = ax.bar(range(len(shown)), [v for _, v in shown], color=[colors[k] for k, _ in shown])
            ax.bar_label(bars, fmt="%.0f" if case == "batch32" else "%.1f", fontsize=7)
            ax.set_xticks(range(len(shown)), [k for k, _ in shown], fontsize=7,
                          rotation=30, ha="right")
            ax.set_title(f"{name} ({cfg.shape})\n{label}"
                         + (" (higher is better)" if case == "batch32" else " (lower is better)"), fontsize=9)
            ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=110)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    finally:
        plt.close(fig)
    return None
