"""Kernel benchmark: s2sext.ops against PyTorch eager, in one process, interleaved.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_kernels.py [--quick]
        [--out benchmarks/results/kernels.md] [--threads 2] [--filter REGEX] [--order interleaved]

Letters (as in docs/model.md): B batch, S source length, T decoder steps, I input size, H hidden size,
A attention size (concat), S_max rows of the location weight, G = 4H, L stacked layers (the
"LSTM stack" rows: a bidirectional nn.LSTM against the ops composed as s2sext's encoder runs them).

Every row builds its inputs and weights once, gives the same arrays to both sides, checks that the two
sides agree (max abs diff, relative to the largest reference value) and only then times them. Timing
alternates ours and torch sample by sample (ABBA order, so neither side always runs first) and reports
medians; speedup = torch median / our median, so > 1 means s2sext is faster. Our side is called from
Python exactly as a user would call it, so binding overhead is part of its time. A sample that follows
the other library waits for that library's spinning worker threads to sleep first (see FULL), and rows
timed while other processes used the CPUs are marked, since 2 cores leave no headroom.

--quick (~30 s) writes results/kernels-quick.md unless --out is given, so a smoke run never replaces
the table that the README quotes. The exit status is 1 if any row failed its check or errored.
"""
from __future__ import annotations

import argparse
import datetime
import math
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import (  # noqa: E402 - sibling modules of this script
    BUSY_FRACTION, Mode, OtherLoad, fmt_ratio, fmt_time, limit_numpy_threads, machine_header, time_one,
    not_importable, time_pair, write_atomic)


RESULTS_DIR = Path(__file__).resolve().parent / "results"
# A row is not timed when ours is off by more than this, relative to max |reference|. Both sides are
# float32 and sum in different orders: torch's own float32 results lie about 1e-6 of their scale from
# float64 ones, also through the 2-layer bidirectional stack and its gradients, and ours lie as close to
# torch's (the report prints each row's worst). A wrong or missing term (a direction not reversed, a
# gradient not summed over the two directions) moves an output by far more than 1e-3 of its largest
# entry.
REL_TOL = 1e-3
FAMILIES = ("LSTM seq", "LSTM stack", "LSTM cell", "attn")  # the table's rows, by name prefix, in order
STACK = (64, 30, 256, 512, 2)  # B, S, I, H, L: issue 14's realistic shapes (bench_train.py's realistic encoder)


# Settling: after a call, a library's idle worker threads spin before they sleep (torch's libgomp
# workers, OpenBLAS's pool, s2sext's own pool for a much shorter time). On a 2-core machine the
# spinners of the side that just ran take the cores from the side being timed, until they sleep.
# So a sample that follows the other side is preceded by settle_s of its own side, untimed, longer
# than the other side's threads spin (benchmarks/results/design-measurements.md has the numbers).
FULL = Mode(sample_s=0.12, settle_s=0.15, reps=11, min_reps=5, budget_s=5.0, warmup_s=0.15)
QUICK = Mode(sample_s=0.02, settle_s=0.12, reps=3, min_reps=3, budget_s=0.9, warmup_s=0.04)


# --------------------------------------------------------------------------------------------------
# cases


@dataclass
class Case:
    """One table row. `ours`/`peer` are the timed calls; the views turn their results into lists of
    arrays in the same order (named by `names`) for the correctness check."""

    name: str
    shape: str
    ours: Callable[[], object]
    peer: Callable[[], object]
    ours_view: Callable[[object], list]
    peer_view: Callable[[object], list]
    names: list[str]
    inference: bool  # torch side runs under torch.inference_mode (the forward-only rows)
    peer_name: str = "torch"


@dataclass
class Skip:
    """A row whose peer cannot run here, with the reason."""

    name: str
    shape: str
    reason: str


@dataclass
class Row:
    case: str
    shape: str
    ours: str = "—"
    peer: str = "—"
    speedup: str = "—"
    note: str = ""
    ours_ns: float | None = None


def build_cases(np, torch, ops, seed: int = 0, stack: tuple = STACK,
                families: tuple = FAMILIES) -> list[Callable[[], Case | Skip]]:
    """Returns builders, so that a case whose setup fails becomes one failed row, not a crash.
    `stack` is the (B, S, I, H, L) of the "LSTM stack" rows; `families` the rows' name prefixes
    to build (a test builds one family at small sizes)."""
    rng = np.random.default_rng(seed)

    def f32(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def uni(*shape, k=1.0):
        return rng.uniform(-k, k, shape).astype(np.float32)

    def t(a, grad=False):
        return torch.from_numpy(a).requires_grad_(grad)

    def lstm_weights(I, H):
        k = 1.0 / math.sqrt(H)  # torch's default init range
        return uni(4 * H, I, k=k), uni(4 * H, H, k=k), uni(4 * H, k=k), uni(4 * H, k=k)

    def load(module, w_ih, w_hh, b_ih, b_hh, suffix):
        with torch.no_grad():
            getattr(module, "weight_ih" + suffix).copy_(torch.from_numpy(w_ih))
            getattr(module, "weight_hh" + suffix).copy_(torch.from_numpy(w_hh))
            getattr(module, "bias_ih" + suffix).copy_(torch.from_numpy(b_ih))
            getattr(module, "bias_hh" + suffix).copy_(torch.from_numpy(b_hh))
        return module

    def numpy_of(x):
        return x.detach().numpy()

    # ---- LSTM over a sequence: torch.nn.LSTM(batch_first) vs lstm_forward (+ lstm_backward)
    def lstm_seq(B, S, I, H, backward):
        x, h0, c0 = f32(B, S, I), uni(B, H), uni(B, H)
        w_ih, w_hh, b_ih, b_hh = lstm_weights(I, H)
        b = b_ih + b_hh
        lstm = load(torch.nn.LSTM(I, H, batch_first=True), w_ih, w_hh, b_ih, b_hh, "_l0")
        shape = f"B={B} S={S} I={I} H={H}"
        if not backward:
            tx, th0, tc0 = t(x), t(h0[None]), t(c0[None])
            return Case(
                "LSTM seq fwd", shape,
                ours=lambda: ops.lstm_forward(x, h0, c0, w_ih, w_hh, b),
                peer=lambda: lstm(tx, (th0, tc0)),
                ours_view=lambda r: [r[0], r[1], r[2]],
                peer_view=lambda r: [numpy_of(r[0]), numpy_of(r[1][0][0]), numpy_of(r[1][1][0])],
                names=["hs", "hT", "cT"], inference=True)
        dhs, dhT, dcT = f32(B, S, H), f32(B, H), f32(B, H)
        tx, th0, tc0 = t(x, True), t(h0[None].copy(), True), t(c0[None].copy(), True)
        inputs = [tx, th0, tc0, lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0]
        upstream = (t(dhs), t(dhT[None]), t(dcT[None]))

        def ours():
            _, _, _, cache = ops.lstm_forward(x, h0, c0, w_ih, w_hh, b)
            return ops.lstm_backward(dhs, dhT, dcT, cache)

        def peer():
            hs, (hT, cT) = lstm(tx, (th0, tc0))
            return torch.autograd.grad((hs, hT, cT), inputs, upstream)

        return Case(
            "LSTM seq fwd+bwd", shape, ours=ours, peer=peer, ours_view=list,
            # torch keeps two biases whose gradients are both db; compare one.
            peer_view=lambda g: [numpy_of(g[0]), numpy_of(g[1][0]), numpy_of(g[2][0]),
                                 numpy_of(g[3]), numpy_of(g[4]), numpy_of(g[5])],
            names=["dx", "dh0", "dc0", "dw_ih", "dw_hh", "db"], inference=False)

    # ---- stacked, bidirectional LSTM: torch.nn.LSTM(num_layers=L, bidirectional=True) vs the ops
    # composed as s2sext's encoder composes them (each direction one lstm_forward, the reverse one over
    # the time-reversed input, the two outputs concatenated as the next layer's input)
    def lstm_stack(B, S, I, H, L, backward):
        suffixes = [f"_l{k}{d}" for k in range(L) for d in ("", "_reverse")]
        x = f32(B, S, I)
        h0, c0 = uni(2 * L, B, H), uni(2 * L, B, H)  # torch's order: layer-major, forward first
        weights = {}
        lstm = torch.nn.LSTM(I, H, num_layers=L, bidirectional=True, batch_first=True)
        for k, suffix in enumerate(suffixes):
            w = lstm_weights(I if k < 2 else 2 * H, H)
            load(lstm, *w, suffix)
            weights[suffix] = (w[0], w[1], w[2] + w[3])
        shape = f"B={B} S={S} I={I} H={H} L={L} bidir"

        def ours_forward():
            inp, h_n, c_n, caches = x, [], [], []
            for k in range(L):
                outs = []
                for d, suffix in enumerate(suffixes[2 * k:2 * k + 2]):
                    seq = inp if d == 0 else np.ascontiguousarray(inp[:, ::-1])
                    hs, hT, cT, cache = ops.lstm_forward(seq, h0[2 * k + d], c0[2 * k + d], *weights[suffix])
                    outs.append(hs if d == 0 else hs[:, ::-1])
                    h_n.append(hT)
                    c_n.append(cT)
                    caches.append(cache)
                inp = np.concatenate(outs, axis=-1)
            return inp, np.stack(h_n), np.stack(c_n), caches

        if not backward:
            tx, th0, tc0 = t(x), t(h0), t(c0)
            return Case(
                "LSTM stack fwd", shape, ours=ours_forward, peer=lambda: lstm(tx, (th0, tc0)),
                ours_view=lambda r: [r[0], r[1], r[2]],
                peer_view=lambda r: [numpy_of(r[0]), numpy_of(r[1][0]), numpy_of(r[1][1])],
                names=["output", "h_n", "c_n"], inference=True)
        d_out, dh_n, dc_n = f32(B, S, 2 * H), f32(2 * L, B, H), f32(2 * L, B, H)
        tx, th0, tc0 = t(x, True), t(h0.copy(), True), t(c0.copy(), True)
        # torch keeps two biases per direction whose gradients are both db; compare one.
        inputs = [tx, th0, tc0] + [getattr(lstm, name + suffix) for suffix in suffixes
                                   for name in ("weight_ih", "weight_hh", "bias_ih")]
        upstream = (t(d_out), t(dh_n), t(dc_n))

        def ours():
            _, _, _, caches = ours_forward()
            d_x, dh0, dc0, dparams = d_out, [None] * 2 * L, [None] * 2 * L, [None] * 2 * L
            for k in reversed(range(L)):
                dxs = []
                for d in range(2):
                    j = 2 * k + d
                    d_hs = d_x[..., :H] if d == 0 else np.ascontiguousarray(d_x[..., H:][:, ::-1])
                    dx, dh0[j], dc0[j], *dparams[j] = ops.lstm_backward(d_hs, dh_n[j], dc_n[j], caches[j])
                    dxs.append(dx if d == 0 else dx[:, ::-1])
                d_x = dxs[0] + dxs[1]
            return [d_x, np.stack(dh0), np.stack(dc0)] + [g for dp in dparams for g in dp]

        def peer():
            hs, (h_n, c_n) = lstm(tx, (th0, tc0))
            return torch.autograd.grad((hs, h_n, c_n), inputs, upstream)

        return Case(
            "LSTM stack fwd+bwd", shape, ours=ours, peer=peer, ours_view=list,
            peer_view=lambda g: [numpy_of(a) for a in g],
            names=["dx", "dh0", "dc0"] + [name + suffix for suffix in suffixes
                                          for name in ("dw_ih", "dw_hh", "db")],
            inference=False)

    # ---- one LSTM step: torch.nn.LSTMCell vs lstm_cell_forward (+ lstm_cell_backward)
    def lstm_cell(B, I, H, backward, torchscript=False):
        x, h0, c0 = f32(B, I), uni(B, H), uni(B, H)
        w_ih, w_hh, b_ih, b_hh = lstm_weights(I, H)
        b = b_ih + b_hh
        cell = load(torch.nn.LSTMCell(I, H), w_ih, w_hh, b_ih, b_hh, "")
        shape = f"B={B} I={I} H={H}"
        if not backward:
            tx, th0, tc0 = t(x), t(h0), t(c0)
            peer, peer_name = (lambda: cell(tx, (th0, tc0))), "torch"
            if torchscript:
                scripted = script_cell(torch, cell)
                if isinstance(scripted, str):
                    return Skip("LSTM cell fwd vs TorchScript", shape, scripted)
                peer, peer_name = (lambda: scripted(tx, th0, tc0)), "TorchScript"
            return Case(
                "LSTM cell fwd" + (" vs TorchScript" if torchscript else ""), shape,
                ours=lambda: ops.lstm_cell_forward(x, h0, c0, w_ih, w_hh, b), peer=peer,
                ours_view=lambda r: [r[0], r[1]],
                peer_view=lambda r: [numpy_of(r[0]), numpy_of(r[1])],
                names=["h1", "c1"], inference=True, peer_name=peer_name)
        dh1, dc1 = f32(B, H), f32(B, H)
        tx, th0, tc0 = t(x, True), t(h0.copy(), True), t(c0.copy(), True)
        inputs = [tx, th0, tc0, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh]
        upstream = (t(dh1), t(dc1))

        def ours():
            _, _, cache = ops.lstm_cell_forward(x, h0, c0, w_ih, w_hh, b)
            return ops.lstm_cell_backward(dh1, dc1, cache)

        def peer():
            h1, c1 = cell(tx, (th0, tc0))
            return torch.autograd.grad((h1, c1), inputs, upstream)

        return Case(
            "LSTM cell fwd+bwd", shape, ours=ours, peer=peer, ours_view=list,
            peer_view=lambda g: [numpy_of(a) for a in g[:6]],
            names=["dx", "dh0", "dc0", "dw_ih", "dw_hh", "db"], inference=False)

    # ---- attention weights + weighted sum: a plain torch composition vs the four ops
    def attention(kind, B, T, S, H, A, S_max, backward):
        one_step = T is None
        hs = uni(B, S, H)  # LSTM outputs lie in (-1, 1)
        q = uni(B, H) if one_step else uni(B, T, H)
        k = 1.0 / math.sqrt(H)
        params = {
            "dot": (), "scaled_dot": (),
            "general": (uni(H, H, k=k),),
            "concat": (uni(A, H, k=k), uni(A, H, k=k), uni(A, k=1.0 / math.sqrt(A))),
            "location": (uni(S_max, H, k=k),),
        }[kind]
        param_names = {"dot": [], "scaled_dot": [], "general": ["dW_a"],
                       "concat": ["dW_q", "dW_k", "dv"], "location": ["dW_a"]}[kind]

        def torch_attention(hs_, q_, p_):
            q3 = q_.unsqueeze(1) if one_step else q_  # [B,T,H]
            if kind in ("dot", "scaled_dot"):
                scores = q3 @ hs_.transpose(1, 2)
                if kind == "scaled_dot":
                    scores = scores / math.sqrt(H)
            elif kind == "general":  # q.(W_a hs_s) = (q W_a).hs_s: project the T queries, not S keys
                scores = (q3 @ p_[0]) @ hs_.transpose(1, 2)
            elif kind == "concat":
                w_q, w_k, v = p_
                scores = torch.tanh((q3 @ w_q.T).unsqueeze(2) + (hs_ @ w_k.T).unsqueeze(1)) @ v
            else:  # location
                scores = q3 @ p_[0][:S].T
            a = torch.softmax(scores, dim=-1)  # [B,T,S]
            c = a @ hs_  # [B,T,H]
            return (a.squeeze(1), c.squeeze(1)) if one_step else (a, c)

        shape = (f"B={B} S={S} H={H}" if one_step else f"B={B} T={T} S={S} H={H}")
        shape += {"concat": f" A={A}", "location": f" S_max={S_max}"}.get(kind, "")
        label = f"attn {kind} {'1-step' if one_step else 'all-steps'}"
        if not backward:
            ths, tq, tp = t(hs), t(q), [t(p) for p in params]

            def ours():
                a, _ = ops.attention_weight_forward(hs, q, kind, params)
                return a, ops.weight_sum_forward(hs, a)

            return Case(
                label + " fwd", shape, ours=ours, peer=lambda: torch_attention(ths, tq, tp),
                ours_view=list, peer_view=lambda r: [numpy_of(r[0]), numpy_of(r[1])],
                names=["a", "c"], inference=True)
        dc = f32(*((B, H) if one_step else (B, T, H)))
        ths, tq = t(hs.copy(), True), t(q.copy(), True)
        tp = [t(p.copy(), True) for p in params]
        tdc = t(dc)

        def ours():
            a, cache = ops.attention_weight_forward(hs, q, kind, params)
            ops.weight_sum_forward(hs, a)  # the forward a training step needs; dc stands for its use
            dhs_sum, da = ops.weight_sum_backward(dc, hs, a)
            dhs_att, dq, dparams = ops.attention_weight_backward(da, cache)
            return [dhs_sum + dhs_att, dq, *dparams]

        def peer():
            _, c = torch_attention(ths, tq, tp)
            return torch.autograd.grad(c, [ths, tq, *tp], tdc)

        return Case(
            label + " fwd+bwd", shape, ours=ours, peer=peer, ours_view=list,
            peer_view=lambda g: [numpy_of(x) for x in g],
            names=["dhs", "dq", *param_names], inference=False)

    builders: list[Callable[[], Case | Skip]] = []
    if "LSTM seq" in families:
        for dims in ((128, 29, 16, 256), (64, 30, 256, 512)):
            for backward in (False, True):
                builders.append(lambda d=dims, bw=backward: lstm_seq(*d, bw))
    if "LSTM stack" in families:
        for backward in (False, True):
            builders.append(lambda bw=backward: lstm_stack(*stack, bw))
    if "LSTM cell" in families:
        for B in (1, 128):
            builders.append(lambda B=B: lstm_cell(B, 16, 256, False))
            if B == 1:
                builders.append(lambda: lstm_cell(1, 16, 256, False, torchscript=True))
            builders.append(lambda B=B: lstm_cell(B, 16, 256, True))
    if "attn" in families:
        kinds = ("dot", "scaled_dot", "general", "concat", "location")
        for B, T in ((128, 11), (1, None)):
            for kind in kinds:
                for backward in (False, True):
                    builders.append(lambda k=kind, B=B, T=T, bw=backward:
                                    attention(k, B, T, 29, 256, 256, 29, bw))
    return builders


def script_cell(torch, cell):
    """torch.jit.script of an nn.LSTMCell wrapper, or a string saying why it was not used: the row is
    only worth having if TorchScript works without warnings (it is deprecated in recent torch)."""

    class CellWrapper(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.cell = inner

        def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
            return self.cell(x, (h, c))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            scripted = torch.jit.script(CellWrapper(cell))
            x = torch.zeros(1, cell.input_size)
            h = torch.zeros(1, cell.hidden_size)
            with torch.inference_mode():
                for _ in range(3):  # the profiling executor specializes on the first calls
                    scripted(x, h, h)
        except Exception as e:  # noqa: BLE001 - any failure means "no TorchScript row"
            return f"TorchScript failed: {type(e).__name__}: {e}".splitlines()[0]
    if caught:
        msg = str(caught[0].message).splitlines()[0].split(". ")[0].rstrip(".")
        return f"skipped, torch.jit.script warns: {caught[0].category.__name__}: {msg}"
    return scripted


# --------------------------------------------------------------------------------------------------
# correctness


def check(case: Case, np, torch) -> tuple[bool, str]:
    """Runs both sides once; passes when every output agrees to REL_TOL of its largest reference."""
    with torch.inference_mode(case.inference):
        ours = case.ours_view(case.ours())
        peer = case.peer_view(case.peer())
    if len(ours) != len(peer) or len(ours) != len(case.names):
        return False, f"ours returned {len(ours)} outputs, torch {len(peer)}, expected {len(case.names)}"
    worst_rel, worst = -1.0, ""
    for name, o, p in zip(case.names, ours, peer):
        o = np.asarray(o)
        if o.shape != p.shape:
            return False, f"{name}: shape {o.shape}, torch {p.shape}"
        diff = float(np.max(np.abs(o.astype(np.float64) - p))) if o.size else 0.0
        scale = float(np.max(np.abs(p))) if p.size else 0.0
        rel = diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf)
        if not math.isfinite(diff):
            rel = math.inf
        if rel > worst_rel:
            worst_rel, worst = rel, f"{name}: max abs diff {diff:.2e} (rel {rel:.1e})"
    return worst_rel <= REL_TOL, worst


# --------------------------------------------------------------------------------------------------
# report


def markdown(header: list[tuple[str, str]], rows: list[Row], notes: list[str], args, mode: Mode) -> str:
    cmd = "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_kernels.py"
    cmd += " --quick" if args.quick else ""
    cmd += f" --threads {args.threads}" if args.threads != 2 else ""
    out = ["# s2sext kernels vs PyTorch eager", ""]
    out.append(f"Written by `{cmd}` ({'quick smoke run' if args.quick else 'full run'}, "
               f"{args.order}), {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.")
    out.append(f"Per-call medians of {mode.reps} samples per side (fewer for long calls), ours and "
               f"torch alternating (ABBA), a sample that follows the other library only after "
               f"{mode.settle_s:g} s of untimed calls of its own side so the other library's spinning "
               "threads have gone to sleep. speedup = torch / "
               "ours (> 1: s2sext faster). float32, same weights and inputs on both sides; ours is "
               f"checked against torch first (relative tolerance {REL_TOL:g}). Our calls include the "
               "Python binding; torch forward rows run in `torch.inference_mode()`, fwd+bwd rows use "
               "`torch.autograd.grad` on a random upstream gradient.")
    out.append("")
    out += [f"- {k}: {v}" for k, v in header]
    out += ["", "| case | shape | s2sext | torch | speedup |", "| --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        case = r.case + (f" ({r.note})" if r.note else "")
        out.append(f"| {case} | {r.shape} | {r.ours} | {r.peer} | {r.speedup} |")
    if notes:
        out.append("")
        out += notes
    return "\n".join(out) + "\n"

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="~30 s smoke run (short budgets)")
    ap.add_argument("--out", type=Path, default=None,
                    help="markdown table (default results/kernels.md, results/kernels-quick.md "
                         "with --quick, so a smoke run never replaces the quoted table)")
    ap.add_argument("--threads", type=int, default=2, help="threads for torch and for OpenBLAS")
    ap.add_argument("--filter", default=None, help="only cases whose name matches this regex")
    ap.add_argument("--order", choices=("interleaved", "blocked"), default="interleaved",
                    help="blocked times all of ours then all of torch (interference diagnostic)")
    args = ap.parse_args(argv)
    mode = QUICK if args.quick else FULL
    out_path = args.out or RESULTS_DIR / ("kernels-quick.md" if args.quick else "kernels.md")

    previous_threads, env_set = limit_numpy_threads(args.threads, "benchmarks/bench_kernels.py")

    import numpy as np
    import torch

    try:
        import s2sext
        from s2sext import ops
    except ImportError as e:
        return not_importable(e)

    header = machine_header(np, torch, s2sext, args.threads, previous_threads)

    rows: list[Row] = []
    busy_rows = 0
    name_filter = re.compile(args.filter) if args.filter else None
    t_run = time.perf_counter()
    for build in build_cases(np, torch, ops):
        try:
            case = build()
        except Exception as e:  # noqa: BLE001 - one broken case must not hide the others
            rows.append(Row("(case setup)", "", note=f"ERROR {type(e).__name__}: {e}"))
            print(f"setup error: {type(e).__name__}: {e}")
            continue
        if name_filter and not name_filter.search(case.name):
            continue
        if isinstance(case, Skip):
            rows.append(Row(case.name, case.shape, note=case.reason))
            print(f"{case.name:<34} {case.shape:<28} {case.reason}")
            continue
        row = Row(case.name, case.shape)
        rows.append(row)
        try:
            ok, detail = check(case, np, torch)
        except Exception as e:  # noqa: BLE001
            ok, detail = False, f"ERROR {type(e).__name__}: {e}".splitlines()[0]
        if not ok:
            row.ours = "FAIL"
            row.note = detail
            print(f"{case.name:<34} {case.shape:<28} NOT TIMED: {detail}")
            continue
        load = OtherLoad()
        with torch.inference_mode(case.inference):
            tm = time_pair(case.ours, case.peer, mode, args.order)
        row.ours, row.peer = fmt_time(tm.ours_ns), fmt_time(tm.peer_ns)
        row.speedup = fmt_ratio(tm.peer_ns / tm.ours_ns)
        row.ours_ns = tm.ours_ns
        notes = [f"peer: {case.peer_name}"] if case.peer_name != "torch" else []
        other = load.fraction()
        if other is not None and other > BUSY_FRACTION:
            busy_rows += 1
            notes.append(f"machine busy: other processes took {other:.0%} of the CPUs")
        row.note = "; ".join(notes)
        print(f"{case.name:<34} {case.shape:<28} ours {row.ours:>10} "
              f"[{fmt_time(tm.ours_iqr[0])}..{fmt_time(tm.ours_iqr[1])}]  "
              f"{case.peer_name} {row.peer:>10} [{fmt_time(tm.peer_iqr[0])}..{fmt_time(tm.peer_iqr[1])}]"
              f"  {row.speedup:>7}  n={tm.reps}x({tm.inner_ours},{tm.inner_peer})  check {detail}")

    notes = physical_reference(np, rows, mode)
    if busy_rows:
        notes.append(f"WARNING: other processes took more than {BUSY_FRACTION:.0%} of the CPUs while "
                     f"{busy_rows} row(s) were timed (marked); rerun on an idle machine.")
    for line in notes:
        print(line)
    text = markdown(header, rows, notes, args, mode)
    write_atomic(out_path, text)
    print(f"\n({time.perf_counter() - t_run:.0f} s) wrote {out_path}\n")
    print(text)
    return 0 if all(r.ours not in ("FAIL",) and not r.note.startswith("ERROR") for r in rows) else 1


def physical_reference(np, rows: list[Row], mode: Mode) -> list[str]:
    """The B=1 cell must stream w_ih and w_hh once per step; a plain GEMV over the same bytes (numpy,
    one call over [w_ih | w_hh]) gives that floor at the bandwidth of the cache that holds them."""
    cell = next((r for r in rows if r.case == "LSTM cell fwd" and r.shape.startswith("B=1 ")), None)
    if cell is None or cell.ours_ns is None:
        return []
    I, H = 16, 256
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4 * H, I + H)).astype(np.float32)
    xh = rng.standard_normal(I + H).astype(np.float32)
    ns = time_one(lambda: w @ xh, mode)
    nbytes = w.nbytes
    return [f"Physical reference, B=1 cell: streaming w_ih + w_hh ({nbytes / 2**20:.2f} MiB float32) "
            f"once with a numpy GEMV takes {fmt_time(ns)} ({nbytes / ns:.0f} GB/s, numpy call "
            f"overhead included); s2sext's cell forward takes {fmt_time(cell.ours_ns)} "
            f"= {cell.ours_ns / ns:.2f}x that floor."]


if __name__ == "__main__":
    sys.exit(main())
