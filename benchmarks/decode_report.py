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
    BATCH, BEAM, Config, EAGER, ORT, OURS, OURS_BF16, PROBE_SENTENCE, REF_NUMPY, REF_OURS, SCRIPT)


# --------------------------------------------------------------------------------------------------
# one configuration


@dataclass
class Timed:
    """One side of one case: its median (None if it did not run) and why not, or its check."""

    stats: Stats | None = None
    error: str = ""
    check: str = ""


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


def config_table(res: ConfigResult) -> list[str]:
    cfg = res.cfg
    out = [f"### {cfg.name} ({cfg.shape})", "",
           "| case | peer | s2sext | peer | peer / s2sext | check |",
           "| --- | --- | ---: | ---: | ---: | --- |"]
    for key, case in res.cases.items():
        busy = case.other_load is not None and case.other_load > BUSY_FRACTION
        ours = med(res, key, OURS)
        order = [EAGER, SCRIPT, ORT, OURS_BF16, REF_OURS, REF_NUMPY]
        for i, side in enumerate(sorted((k for k in case.sides if k != OURS), key=order.index)):
            timed = case.sides[side]
            title = CASE_TITLES[key] + (f" (machine busy: other processes took {case.other_load:.0%} of "
                                        "the CPUs)" if busy and i == 0 else "")
            if side == OURS_BF16:  # bf16 is ours; its peer is our float32
                b = timed.stats.median_ns if timed.stats else None
                ratio = fmt_ratio(ours / b) if b and ours else "—"
                out.append(f"| {title}, bfloat16 | s2sext float32 | {cell(b, key, cfg)} | "
                           f"{cell(ours, key, cfg)} | {ratio} | {timed.error or timed.check} |")
                continue
            peer = timed.stats.median_ns if timed.stats else None
            ratio = fmt_ratio(peer / ours) if peer and ours else "—"
            check = timed.error or timed.check
            if key == "beam" and side == EAGER:
                check = f"{check}; s2sext: {case.sides[OURS].check}"
            elif key != "beam" and side == EAGER and OURS in case.sides:
                check = f"s2sext: {case.sides[OURS].error or case.sides[OURS].check}"
            out.append(f"| {title} | {side} | {cell(ours, key, cfg)} | {cell(peer, key, cfg)} | {ratio} "
                       f"| {check} |")
    return out


@dataclass
class Target:
    label: str
    config: str
    want: float
    kind: str  # ">=" speedup, "<=" ratio, "<" absolute
    unit: str = "x"


TARGETS = [
    Target("dates: batch-1 greedy, torch eager / s2sext", "dates", 2.5, ">="),
    Target("dates: batch-1 greedy, ONNX Runtime / s2sext", "dates", 1.4, ">="),
    Target("dates: batch-1 greedy, s2sext / physical reference", "dates", 1.25, "<="),
    Target("nmt: batch-1 greedy, torch eager / s2sext", "nmt", 2.5, ">="),
    Target("nmt: batch-1 greedy, ONNX Runtime / s2sext", "nmt", 1.3, ">="),
    Target(f"dates: beam {BEAM}, torch eager beam (batched) / s2sext", "dates", 4.0, ">="),
    Target("nmt: batch-1 greedy, s2sext float32 / s2sext bfloat16", "nmt", 1.6, ">="),
    Target("process peak RSS (load the dates model, translate one sentence)", "probe", 80.0, "<", " MB"),
    Target("`import s2sext` (numpy's import included)", "probe", 0.3, "<", " s"),
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
    if res is None:
        return None
    ours = med(res, "greedy1", OURS)
    if "reference" in t.label:
        ref = reference_ns(res)
        return ours / ref if ours and ref else None
    if "bfloat16" in t.label:
        b = med(res, "greedy1", OURS_BF16)
        return ours / b if ours and b else None
    if "beam" in t.label:
        o, p = med(res, "beam", OURS), med(res, "beam", EAGER)
        return p / o if o and p else None
    peer = med(res, "greedy1", EAGER if "eager" in t.label else ORT)
    return peer / ours if ours and peer else None


def targets_table(results, mem, args) -> list[str]:
    out = ["| target (1 thread, batch 1, greedy, fixed output length unless stated) | wanted | measured | |",
           "| --- | ---: | ---: | --- |"]
    for t in TARGETS:
        v = target_value(t, results, mem)
        want = f"{t.kind} {t.want:g}{t.unit}"
        if v is None:
            why = "not measured" + (" (--quick runs dates only)" if args.quick and t.config == "nmt" else "")
            out.append(f"| {t.label} | {want} | — | {why} |")
            continue
        met = v >= t.want if t.kind == ">=" else v <= t.want if t.kind == "<=" else v < t.want
        shown = f"{v:.2f}{t.unit}" if t.unit != "x" else fmt_ratio(v)
        verdict = "met" if met else "**NOT met**"
        if "reference" in t.label:
            net = reference_net_ns(results[t.config])
            if net:
                verdict += (f" (against the reference net of Python call overhead: "
                            f"{fmt_ratio(med(results[t.config], 'greedy1', OURS) / net)})")
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
    out = ["# s2sext decoding vs PyTorch eager, TorchScript and ONNX Runtime (CPU)", ""]
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
        "with numpy argmax. The torch beam search batches the K beams as rows (log_softmax, topk over K*V, "
        "index_select by parent, backtrack). Tokens were compared with torch eager's before timing.")
    out.append("")
    out.append(
        f"Medians of up to {mode.reps} samples per side, sides sampled in rounds of alternating order, a "
        f"sample that follows another side only after {mode.settle_s:g} s of untimed calls of its own "
        "side (the other library's spinning threads asleep, the side's weights back in cache: these are "
        "warm-cache, steady-state times of decoding the same input again). peer / s2sext > 1 means s2sext "
        "is faster; for the bfloat16 rows it is s2sext float32 / s2sext bfloat16. Times include each "
        "side's Python calls.")
    out.append("")
    out += [f"- {k}: {v}" for k, v in header]
    for res in results.values():
        out.append("")
        out += config_table(res)
        out.append("")
        out += [f"- {n}" for n in res.notes]
    out.append("")
    out.append("### Targets (issue 4)")
    out.append("")
    out += targets_table(results, mem, args)
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
    panels = [("greedy1", "batch-1 greedy: µs per token",
               [OURS, OURS_BF16, EAGER, SCRIPT, ORT, REF_OURS, REF_NUMPY]),
              ("beam", f"beam {BEAM}: µs per output token", [OURS, EAGER]),
              ("batch32", f"batch-{BATCH} greedy: sentences / s", [OURS, EAGER, SCRIPT, ORT])]
    colors = {OURS: "#1f77b4", OURS_BF16: "#6baed6", EAGER: "#d62728", SCRIPT: "#ff7f0e", ORT: "#2ca02c",
              REF_OURS: "#7f7f7f", REF_NUMPY: "#bdbdbd"}
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
