"""Decoding benchmark: s2sext.Decoder against PyTorch eager, TorchScript and ONNX Runtime, in one process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_decode.py [--quick]
        [--threads 1] [--configs dates,nmt] [--out benchmarks/results/decode.md] [--seed 0]

Letters (docs/CONVENTIONS): V vocabulary (source = target), E embedding, H hidden, S source length,
T decoder steps, K beam size, B batch. Two configurations (issue 4, item 7):

    dates  V=59    E=16   H=256  S=29  T=10
    nmt    V=8000  E=256  H=512  S=30  T=30

both one LSTM layer each side with Luong dot attention and the tanh(W_c [c; h]) layer. Weights are random
(`Seq2Seq(..., seed)`): every side runs exactly T argmax-fed steps, so the work does not depend on them.
To make every side choose the same tokens without a per-step mask, `out.bias[<eos>]` is set to -1e4 on
all sides (no side can pick `<eos>`); s2sext is also called with `min_length = max_length = T`.

Sides, all with the same weights (the s2sext model's, copied into a PyTorch twin in float32):

* s2sext: `model.compile("float32")` and `model.compile("bfloat16")`; `dec.greedy(src, None, T, T)`
  and `dec.beam(src, None, K, T, T)`: one Python call per decode, the loop in C++.
* torch eager: nn.Embedding, encoder nn.LSTM (batch_first), then T steps of nn.LSTMCell, dot attention
  (bmm + softmax + bmm), tanh(nn.Linear([c; h])), nn.Linear out, argmax; under torch.inference_mode().
* TorchScript: the same nn.Module, torch.jit.script-ed (then torch.jit.freeze-d). TorchScript is
  deprecated in this torch version (it warns); the warning is silenced locally and the report says so.
* ONNX Runtime: the encoder (src -> memory, h, c) and one decoder step (y, h, c, memory -> logits, h, c)
  exported with torch.onnx.export (opset 17), looped T times from Python with numpy argmax.
* physical reference (batch-1 greedy only): the matrix-vector products a decode must do over the same
  weight matrices, and nothing else (no nonlinearities, softmax or argmax): the encoder's S x E by E x 4H
  input product, S products with W_hh; per decoder step W_hh h, the embedding product W_ih e (only where
  the engine cannot replace it by a row of a precomputed V x 4H table, i.e. nmt), memory h (S x H),
  a memory (S x H), W_c [c; h] and W_out o. It is timed twice, with our GEMV
  (`s2sext.ops.linear_forward` on one row) and with numpy (`np.dot(W, x, out=)`, numpy's OpenBLAS);
  the faster is the reference. Both pay one Python call per product, which a compiled decode does not;
  the report also gives the estimate net of that overhead (the same calls on 1x1 operands subtracted).

Cases per configuration: batch-1 greedy (every side), beam 5 at batch 1 (s2sext against an eager
PyTorch beam search with the K beams batched as rows: log_softmax, scores + logp, topk over K*V,
reorder the state by parent, backtrack), batch-32 greedy throughput (all B rows of length S).

Before timing, the tokens of every side are compared with torch eager's on a few inputs (and the beam's
best hypothesis and its log-probability); a mismatch is reported and sets the exit status (the timing
still runs: with a fixed T the work does not depend on the tokens). Timing: per case, every side is
warmed up, then sampled in rounds whose order alternates (A B C, C B A, ...); a sample that follows another
side is preceded by settle_s of untimed calls of its own side (the other library's spinning threads go
to sleep, and the side's weights are back in cache). Medians are reported; ratio = peer / s2sext, so
> 1 means s2sext is faster.

A separate process (no torch) measures `import s2sext` (best of 3 fresh processes; numpy's import is
included) and the peak RSS of loading the dates model file and translating one sentence.

--quick (~15 s) times the dates configuration with short budgets and writes results/decode-quick.md and
.png unless --out is given, so a smoke run never replaces the quoted table. Exit status 1 if a check
failed or a side errored.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import string
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_kernels import (  # noqa: E402 - the timing and machine report are shared with the kernel benchmark
    BUSY_FRACTION,
    ENV_OVERRIDES,
    fmt_ratio,
    fmt_time,
    limit_numpy_threads,
    machine_header,
    Mode,
    OtherLoad,
    _quartiles,
    _run_for,
    _sample,
    _typical,
    write_atomic,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SOS, EOS = 1, 2
EOS_BIAS = -1e4  # out.bias[<eos>] on every side: no side picks <eos>, so all run T argmax-fed steps
BATCH = 32
BEAM = 5
N_CHECK = 4  # batch-1 sources whose tokens are compared before timing
OPSET = 17


@dataclass(frozen=True)
class Config:
    name: str
    V: int
    E: int
    H: int
    S: int
    T: int

    @property
    def shape(self) -> str:
        return f"V={self.V} E={self.E} H={self.H} S={self.S} T={self.T}"


CONFIGS = {
    "dates": Config("dates", V=59, E=16, H=256, S=29, T=10),
    "nmt": Config("nmt", V=8000, E=256, H=512, S=30, T=30),
}

# Decodes are longer than single kernels: larger samples and budgets than bench_kernels' modes.
FULL = Mode(sample_s=0.2, settle_s=0.15, reps=11, min_reps=5, budget_s=30.0, warmup_s=0.3)
QUICK = Mode(sample_s=0.02, settle_s=0.1, reps=3, min_reps=3, budget_s=1.5, warmup_s=0.05)

# Names of the sides (rows of the tables, bars of the chart).
OURS, OURS_BF16 = "s2sext", "s2sext bf16"
EAGER, SCRIPT, ORT = "torch eager", "TorchScript", "ONNX Runtime"
REF_OURS, REF_NUMPY = "reference (our GEMV)", "reference (numpy GEMV)"


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

    As bench_kernels.time_pair, generalised to any number of sides: each side is warmed up on its own
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


# --------------------------------------------------------------------------------------------------
# the PyTorch peers


def torch_peers(torch):
    """The PyTorch modules, defined here because torch is imported only after the thread settings."""
    nn = torch.nn
    Tensor = torch.Tensor

    class GreedyLoop(nn.Module):
        """Encoder nn.LSTM, then `steps` argmax-fed steps of LSTMCell + dot attention + tanh(W_c[c;h])."""

        def __init__(self, twin):
            super().__init__()
            self.src_embed = twin.src_embed
            self.encoder = twin.encoder
            self.tgt_embed = twin.tgt_embed
            self.cell = twin.decoder[0]
            self.combine = twin.combine
            self.out = twin.out

        def forward(self, src: Tensor, steps: int) -> Tensor:
            memory, (h_n, c_n) = self.encoder(self.src_embed(src))  # memory [B, S, H]
            h, c = h_n[0], c_n[0]
            y = torch.full((src.shape[0],), 1, dtype=torch.long)  # <sos>
            ys = []
            for _ in range(steps):
                h, c = self.cell(self.tgt_embed(y), (h, c))
                a = torch.softmax(torch.bmm(memory, h.unsqueeze(2)), dim=1)  # [B, S, 1]
                context = torch.bmm(a.transpose(1, 2), memory).squeeze(1)  # [B, H]
                o = torch.tanh(self.combine(torch.cat([context, h], dim=1)))
                y = self.out(o).argmax(dim=1)
                ys.append(y)
            return torch.stack(ys, dim=1)

    class EncoderPart(nn.Module):
        def __init__(self, twin):
            super().__init__()
            self.src_embed = twin.src_embed
            self.encoder = twin.encoder

        def forward(self, src: Tensor):
            memory, (h_n, c_n) = self.encoder(self.src_embed(src))
            return memory, h_n[0], c_n[0]

    class StepPart(nn.Module):
        def __init__(self, twin):
            super().__init__()
            self.tgt_embed = twin.tgt_embed
            self.cell = twin.decoder[0]
            self.combine = twin.combine
            self.out = twin.out

        def forward(self, y: Tensor, h: Tensor, c: Tensor, memory: Tensor):
            h, c = self.cell(self.tgt_embed(y), (h, c))
            a = torch.softmax(torch.bmm(memory, h.unsqueeze(2)), dim=1)
            context = torch.bmm(a.transpose(1, 2), memory).squeeze(1)
            o = torch.tanh(self.combine(torch.cat([context, h], dim=1)))
            return self.out(o), h, c

    def beam_search(loop: GreedyLoop, src: Tensor, K: int, steps: int):
        """Batch-1 beam search with the K beams as rows; exactly `steps` steps.
        Returns (best tokens int64 [steps], its log-probability)."""
        memory, (h_n, c_n) = loop.encoder(loop.src_embed(src))
        S, H = memory.shape[1], memory.shape[2]
        memory = memory.expand(K, S, H).contiguous()
        h, c = h_n[0].expand(K, H).contiguous(), c_n[0].expand(K, H).contiguous()
        scores = torch.full((K,), -math.inf)
        scores[0] = 0.0  # one live hypothesis at the start
        y = torch.full((K,), 1, dtype=torch.long)
        V = loop.out.out_features
        tokens, parents = [], []
        for _ in range(steps):
            h, c = loop.cell(loop.tgt_embed(y), (h, c))
            a = torch.softmax(torch.bmm(memory, h.unsqueeze(2)), dim=1)
            context = torch.bmm(a.transpose(1, 2), memory).squeeze(1)
            o = torch.tanh(loop.combine(torch.cat([context, h], dim=1)))
            logp = torch.log_softmax(loop.out(o), dim=1)  # [K, V]
            scores, idx = (scores.unsqueeze(1) + logp).view(-1).topk(K)
            parent = torch.div(idx, V, rounding_mode="floor")
            y = idx - parent * V
            h, c = h.index_select(0, parent), c.index_select(0, parent)
            tokens.append(y)
            parents.append(parent)
        tok = torch.stack(tokens).tolist()
        par = torch.stack(parents).tolist()
        seq, slot = [], 0  # topk is sorted: slot 0 holds the best
        for t in range(steps - 1, -1, -1):
            seq.append(tok[t][slot])
            slot = par[t][slot]
        return seq[::-1], float(scores[0])

    return GreedyLoop, EncoderPart, StepPart, beam_search


def script_loop(torch, loop):
    """(the scripted and frozen module, how) or (None, the error): a failure is a row, not a crash."""
    with warnings.catch_warnings():
        # torch.jit.script is deprecated in this torch ("Please switch to torch.compile or
        # torch.export"); it still works, and the report says it is deprecated.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            scripted = torch.jit.script(loop.eval())
        except Exception as e:  # noqa: BLE001 - any failure means "no TorchScript row"
            return None, f"torch.jit.script failed: {type(e).__name__}: {e}".splitlines()[0]
        try:
            return torch.jit.freeze(scripted), "torch.jit.script + torch.jit.freeze"
        except Exception as e:  # noqa: BLE001 - freezing is an optimisation; keep the scripted module
            return scripted, f"torch.jit.script (freeze failed: {type(e).__name__})"


def export_onnx(torch, encoder, step, cfg: Config, directory: str):
    """Exports both parts with a dynamic batch axis; returns (encoder path, step path, exporter)."""
    src = torch.zeros((1, cfg.S), dtype=torch.long)
    y = torch.full((1,), SOS, dtype=torch.long)
    h = torch.zeros((1, cfg.H))
    memory = torch.zeros((1, cfg.S, cfg.H))
    enc_path = os.path.join(directory, f"{cfg.name}-encoder.onnx")
    step_path = os.path.join(directory, f"{cfg.name}-step.onnx")
    jobs = [
        (encoder, (src,), enc_path, ["src"], ["memory", "h", "c"],
         {"src": {0: "B"}, "memory": {0: "B"}, "h": {0: "B"}, "c": {0: "B"}}),
        (step, (y, h, h, memory), step_path, ["y", "h", "c", "memory"], ["logits", "h_out", "c_out"],
         {"y": {0: "B"}, "h": {0: "B"}, "c": {0: "B"}, "memory": {0: "B"}, "logits": {0: "B"},
          "h_out": {0: "B"}, "c_out": {0: "B"}}),
    ]
    exporter = "torch.onnx.export (default exporter)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter is deprecated, and says so
        for module, args, path, inputs, outputs, axes in jobs:
            kwargs = dict(input_names=inputs, output_names=outputs, dynamic_axes=axes,
                          opset_version=OPSET)
            if exporter.endswith("(default exporter)"):
                try:
                    torch.onnx.export(module, args, path, **kwargs)
                    continue
                except Exception as e:  # noqa: BLE001 - e.g. the dynamo exporter needs onnxscript
                    exporter = (f"torch.onnx.export(dynamo=False) (the default exporter failed: "
                                f"{type(e).__name__}: {str(e).splitlines()[0][:80]})")
            torch.onnx.export(module, args, path, dynamo=False, **kwargs)
    return enc_path, step_path, exporter


def ort_sessions(ort, enc_path, step_path, threads: int):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    providers = ["CPUExecutionProvider"]
    return (ort.InferenceSession(enc_path, opts, providers=providers),
            ort.InferenceSession(step_path, opts, providers=providers))


def ort_greedy(np, enc, step, src, steps: int):
    """The exported encoder once, then `steps` exported steps, argmax in numpy."""
    memory, h, c = enc.run(None, {"src": src})
    B = src.shape[0]
    y = np.full(B, SOS, np.int64)
    out = np.empty((B, steps), np.int64)
    for t in range(steps):
        logits, h, c = step.run(None, {"y": y, "h": h, "c": c, "memory": memory})
        y = logits.argmax(axis=1)
        out[:, t] = y
    return out


# --------------------------------------------------------------------------------------------------
# the physical reference


def reference_fns(np, ops, params, cfg: Config, src_row, uses_table: bool):
    """(ours, numpy, ours on 1x1 operands, numpy on 1x1 operands): the matrix-vector products of a
    batch-1 greedy decode over the model's weight matrices (see the module docstring)."""
    rng = np.random.default_rng(7)
    S, T, H, E = cfg.S, cfg.T, cfg.H, cfg.E

    def vec(n):
        return rng.uniform(-1, 1, n).astype(np.float32)

    X = np.ascontiguousarray(params["src_embed"][src_row])  # [S, E]
    memory = rng.uniform(-1, 1, (S, H)).astype(np.float32)  # the encoder's outputs stand in
    memory_t = np.ascontiguousarray(memory.T)  # [H, S]: the context as one more row-major GEMV
    mats = {
        "enc_w_ih": params["encoder.l0.w_ih"],  # [4H, E]
        "enc_w_hh": params["encoder.l0.w_hh"],  # [4H, H]
        "dec_w_ih": params["decoder.l0.w_ih"],  # [4H, E]
        "dec_w_hh": params["decoder.l0.w_hh"],  # [4H, H]
        "combine": params["combine.weight"],  # [H, 2H]
        "out": params["out.weight"],  # [V, H]
    }
    h, e, a, ch, o = vec(H), vec(E), vec(S), vec(2 * H), vec(H)
    h1, e1, a1, ch1, o1 = (v[None] for v in (h, e, a, ch, o))

    def ours_with(m, X_, mem, mem_t, h1_, e1_, a1_, ch1_, o1_):
        lf = ops.linear_forward

        def run():
            lf(X_, m["enc_w_ih"])  # all S input products at once, as the encoder does
            for _ in range(S):
                lf(h1_, m["enc_w_hh"])
            for _ in range(T):
                if not uses_table:
                    lf(e1_, m["dec_w_ih"])
                lf(h1_, m["dec_w_hh"])
                lf(h1_, mem)  # scores [1, S]
                lf(a1_, mem_t)  # context [1, H]
                lf(ch1_, m["combine"])
                lf(o1_, m["out"])
        return run

    def numpy_with(m, X_, mem, h_, e_, a_, ch_, o_):
        dot = np.dot
        xw = np.empty((X_.shape[0], m["enc_w_ih"].shape[0]), np.float32)
        g = np.empty(m["enc_w_hh"].shape[0], np.float32)
        sc = np.empty(mem.shape[0], np.float32)
        ctx = np.empty(mem.shape[1], np.float32)
        oc = np.empty(m["combine"].shape[0], np.float32)
        lo = np.empty(m["out"].shape[0], np.float32)
        w_ih_t = m["enc_w_ih"].T

        def run():
            dot(X_, w_ih_t, out=xw)
            for _ in range(S):
                dot(m["enc_w_hh"], h_, out=g)
            for _ in range(T):
                if not uses_table:
                    dot(m["dec_w_ih"], e_, out=g)
                dot(m["dec_w_hh"], h_, out=g)
                dot(mem, h_, out=sc)
                dot(a_, mem, out=ctx)
                dot(m["combine"], ch_, out=oc)
                dot(m["out"], o_, out=lo)
        return run

    # The same calls on 1x1 operands: what the Python calls themselves cost.
    one = np.ones((1, 1), np.float32)
    tiny = {k: one for k in mats}
    one_v = np.ones(1, np.float32)
    return (ours_with(mats, X, memory, memory_t, h1, e1, a1, ch1, o1),
            numpy_with(mats, X, memory, h, e, a, ch, o),
            ours_with(tiny, one, one, one, one, one, one, one, one),
            numpy_with(tiny, one, one, one_v, one_v, one_v, one_v, one_v))


# --------------------------------------------------------------------------------------------------
# the separate process: import time and peak memory without torch

PROBE = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import numpy
t1 = time.perf_counter()
import s2sext
t2 = time.perf_counter()
out = {"import_numpy_s": t1 - t0, "import_s2sext_s": t2 - t1, "import_total_s": t2 - t0}
if len(sys.argv) > 1:
    decoder = s2sext.Decoder.load(sys.argv[1])
    out["translation"] = decoder.translate([sys.argv[2]])[0]
out["torch_imported"] = "torch" in sys.modules
out["maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open("/proc/self/status") as f:
    out["vmhwm_kib"] = next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), None)
print(json.dumps(out))
"""
PROBE_SENTENCE = "September 27, 1994"
# Peak RSS is the process's VmHWM (/proc/self/status), not getrusage's ru_maxrss: on Linux, exec keeps
# in ru_maxrss the high-water mark of the image it replaced, here the forked copy of this benchmark
# process (torch loaded, hundreds of MB), so ru_maxrss of the child reports the parent's size.


def probe(model_path: str | None) -> dict:
    args = [sys.executable, "-c", PROBE] + ([model_path, PROBE_SENTENCE] if model_path else [])
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"probe process failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def thread_scaling(s2sext, model_path: str, seconds: float) -> str:
    """Decodes per second of batch-1 greedy decoding with 1..cpu_count Python threads sharing one
    compiled decoder (serial=True: each call stays on its own thread)."""
    import threading

    import numpy as np

    dec = s2sext.Decoder.load(model_path)
    src = np.random.default_rng(0).integers(4, len(dec.src_vocab), (1, 29))
    rates = []
    for n in range(1, (os.cpu_count() or 1) + 1):
        counts = [0] * n
        stop = time.perf_counter() + seconds

        def work(i):
            while time.perf_counter() < stop:
                dec.greedy(src, max_length=10, min_length=10, serial=True)
                counts[i] += 1

        threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rates.append(sum(counts) / (time.perf_counter() - start))
    return ("Thread scaling (dates, batch-1 greedy, T=10, one Decoder shared by N Python threads, "
            "serial=True): " + ", ".join(f"{n} thread(s) {r:,.0f} decodes/s ({r / rates[0]:.2f}x)"
                                         for n, r in enumerate(rates, 1)) + ".")


def import_and_memory(model_path: str) -> dict:
    imports = [probe(None) for _ in range(3)]
    best = min(imports, key=lambda r: r["import_total_s"])
    load = probe(model_path)
    def peak_kib(r):  # see PEAK_RSS
        return r["vmhwm_kib"] if r.get("vmhwm_kib") else r["maxrss_kib"]

    return {
        "import_total_s": best["import_total_s"],
        "import_numpy_s": best["import_numpy_s"],
        "import_s2sext_s": best["import_s2sext_s"],
        "import_rss_mib": peak_kib(best) / 1024,
        "peak_rss_mib": peak_kib(load) / 1024,
        "maxrss_mib": load["maxrss_kib"] / 1024,
        "peak_source": "VmHWM" if load.get("vmhwm_kib") else "ru_maxrss",
        "translation": load["translation"],
        "torch_imported": load["torch_imported"] or any(r["torch_imported"] for r in imports),
    }


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


def token_check(np, got, want) -> tuple[bool, str]:
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return False, f"MISMATCH: shape {got.shape} vs {want.shape}"
    diff = int((got != want).sum())
    rows = int((got != want).any(axis=-1).sum()) if got.ndim > 1 else int(diff > 0)
    n_rows = got.shape[0] if got.ndim > 1 else 1
    if diff == 0:
        return True, f"tokens equal ({got.size})"
    return False, f"MISMATCH: {diff}/{got.size} tokens differ, in {rows}/{n_rows} sequences"


def run_config(np, torch, ort, s2sext, cfg: Config, args, mode: Mode, workdir: str) -> ConfigResult:
    from s2sext import ops
    from s2sext.torch_reference import TorchSeq2Seq

    res = ConfigResult(cfg)
    T = cfg.T
    vocab = (list((string.digits + string.ascii_lowercase + string.ascii_uppercase)[:cfg.V - 4])
             if cfg.V - 4 <= 62 else cfg.V)
    model = s2sext.Seq2Seq(vocab, vocab, embed_size=cfg.E, hidden_size=cfg.H, attention="dot",
                           seed=args.seed)
    model_path = os.path.join(workdir, f"{cfg.name}.s2s")
    model.save(model_path)  # the file the memory probe loads (before the <eos> bias below)
    res.model_path = model_path
    model.params["out.bias"][EOS] = EOS_BIAS
    dec = model.compile("float32")
    dec_bf16 = model.compile("bfloat16")
    twin = TorchSeq2Seq.from_params(model.config.as_dict(), model.params, dtype=torch.float32).eval()
    GreedyLoop, EncoderPart, StepPart, torch_beam = torch_peers(torch)
    loop = GreedyLoop(twin).eval()

    rng = np.random.default_rng(args.seed + 1)
    # ids >= 4: the specials are not source tokens
    srcs = [rng.integers(4, cfg.V, (1, cfg.S), dtype=np.int64) for _ in range(N_CHECK)]
    src1 = srcs[0]
    src32 = rng.integers(4, cfg.V, (BATCH, cfg.S), dtype=np.int64)
    t_srcs = [torch.from_numpy(s) for s in srcs]
    t_src1, t_src32 = t_srcs[0], torch.from_numpy(src32)

    # ---- the peers that may fail to build
    scripted1, script_how = script_loop(torch, GreedyLoop(twin))
    scripted32, _ = script_loop(torch, GreedyLoop(twin)) if scripted1 is not None else (None, "")
    deprecated = ("; deprecated in this torch (torch.jit.script warns DeprecationWarning: "
                  "\"Please switch to torch.compile or torch.export\"; silenced here)")
    res.notes.append(f"TorchScript: {script_how}" + (deprecated if scripted1 is not None else ""))
    try:
        enc_path, step_path, exporter = export_onnx(torch, EncoderPart(twin).eval(), StepPart(twin).eval(),
                                                    cfg, workdir)
        ort_enc, ort_step = ort_sessions(ort, enc_path, step_path, args.threads)
        res.notes.append(f"ONNX Runtime: exported with {exporter}, opset {OPSET}; "
                         f"{ort.__version__}, CPUExecutionProvider, intra_op_num_threads={args.threads}, "
                         "inter_op_num_threads=1, default graph optimisations")
        ort_error = ""
    except Exception as e:  # noqa: BLE001
        ort_enc = ort_step = None
        ort_error = f"ONNX export or session failed: {type(e).__name__}: {e}".splitlines()[0]
        res.notes.append(ort_error)

    uses_table = cfg.V * 4 * cfg.H * 4 <= 16 << 20  # the engine's projected-embedding table (engine.cpp)

    def greedy_ours(d, src):
        return lambda: d.greedy(src, None, T, T)

    def greedy_torch(m, src):
        return lambda: m(src, T)

    greedy1 = CaseResult("greedy1")
    beam = CaseResult("beam")
    batch32 = CaseResult("batch32")
    res.cases = {"greedy1": greedy1, "beam": beam, "batch32": batch32}

    # ---- correctness, before any timing
    with torch.inference_mode():
        want = [loop(t, T).numpy() for t in t_srcs]
        want32 = loop(t_src32, T).numpy()
        for name, get1, get32 in (
            (OURS, lambda s: dec.greedy(s, None, T, T), lambda: dec.greedy(src32, None, T, T)),
            (OURS_BF16, lambda s: dec_bf16.greedy(s, None, T, T), None),
            (SCRIPT, (lambda s: scripted1(torch.from_numpy(s), T).numpy()) if scripted1 is not None else None,
             (lambda: scripted32(t_src32, T).numpy()) if scripted32 is not None else None),
            (ORT, (lambda s: ort_greedy(np, ort_enc, ort_step, s, T)) if ort_enc is not None else None,
             (lambda: ort_greedy(np, ort_enc, ort_step, src32, T)) if ort_enc is not None else None),
        ):
            if get1 is None:
                greedy1.sides[name] = Timed(error=script_how if name == SCRIPT else ort_error)
                batch32.sides[name] = Timed(error=greedy1.sides[name].error)
                continue
            try:
                got = np.concatenate([get1(s) for s in srcs])
                ok, text = token_check(np, got, np.concatenate(want))
                if name == OURS_BF16:  # bfloat16 weights may round a close choice the other way
                    text = (text.replace("MISMATCH: ", "")
                            + " vs torch float32 (bfloat16 weights; not a failure)")
                    ok = True
                greedy1.sides[name] = Timed(check=f"{text} on {N_CHECK} inputs")
                res.failed |= not ok
            except Exception as e:  # noqa: BLE001
                greedy1.sides[name] = Timed(error=f"ERROR {type(e).__name__}: {e}".splitlines()[0])
                res.failed = True
            if get32 is not None:
                try:
                    ok, text = token_check(np, get32(), want32)
                    batch32.sides[name] = Timed(check=text)
                    res.failed |= not ok
                except Exception as e:  # noqa: BLE001
                    batch32.sides[name] = Timed(error=f"ERROR {type(e).__name__}: {e}".splitlines()[0])
                    res.failed = True
        greedy1.sides[EAGER] = Timed(check="the tokens the others are compared with")
        batch32.sides[EAGER] = Timed(check="the tokens the others are compared with")

        beam_checks = []
        for s, t in zip(srcs, t_srcs):
            ids, score = dec.beam(s, None, beam_size=BEAM, max_length=T, min_length=T)
            seq, t_score = torch_beam(loop, t, BEAM, T)
            beam_checks.append((ids[0].tolist() == seq, abs(float(score[0]) - t_score)))
        n_same = sum(same for same, _ in beam_checks)
        worst = max(d for _, d in beam_checks)
        beam_ok = n_same == len(beam_checks) and worst < 1e-3 * T
        beam.sides[OURS] = Timed(check=("" if beam_ok else "MISMATCH: ") + f"best hypothesis equal on "
                                 f"{n_same}/{len(beam_checks)} inputs, log-probability max diff {worst:.1e}")
        beam.sides[EAGER] = Timed(check="beams batched as rows")
        res.failed |= not beam_ok

        if greedy1.sides[OURS].check.startswith("MISMATCH"):
            res.notes.append("WARNING: s2sext's tokens differ from torch eager's; the timing still ran "
                             "(T fixed: the work does not depend on the tokens).")

    ref_ours, ref_numpy, ref_ours_1x1, ref_numpy_1x1 = reference_fns(
        np, ops, model.params, cfg, src1[0], uses_table)

    def run_case(case: CaseResult, fns: dict[str, Callable[[], object]]) -> None:
        fns = {k: f for k, f in fns.items() if not (k in case.sides and case.sides[k].error)}
        load = OtherLoad()
        with torch.inference_mode():
            stats = time_group(fns, mode)
        case.other_load = load.fraction()
        for k, st in stats.items():
            case.sides.setdefault(k, Timed()).stats = st
        line = "  ".join(f"{k} {fmt_time(st.median_ns)}" for k, st in stats.items())
        print(f"{cfg.name:>6} {case.case:<8} {line}  (n={next(iter(stats.values())).reps})", flush=True)

    # ---- batch-1 greedy: every side and the reference
    fns1 = {OURS: greedy_ours(dec, src1), OURS_BF16: greedy_ours(dec_bf16, src1),
            EAGER: greedy_torch(loop, t_src1)}
    if scripted1 is not None:
        fns1[SCRIPT] = greedy_torch(scripted1, t_src1)
    if ort_enc is not None:
        fns1[ORT] = lambda: ort_greedy(np, ort_enc, ort_step, src1, T)
    fns1[REF_OURS] = ref_ours
    fns1[REF_NUMPY] = ref_numpy
    run_case(greedy1, fns1)
    overhead = time_group({REF_OURS: ref_ours_1x1, REF_NUMPY: ref_numpy_1x1}, mode)
    for k in (REF_OURS, REF_NUMPY):
        res.reference_net[k] = greedy1.sides[k].stats.median_ns - overhead[k].median_ns
        greedy1.sides[k].check = (f"net of Python call overhead ({fmt_time(overhead[k].median_ns)}, "
                                  f"the same calls on 1x1 operands): {fmt_time(res.reference_net[k])}")
    res.notes.append(
        "Physical reference: per decode, " + ("" if uses_table else "T x W_ih e [4H, E], ")
        + "S x W_hh h [4H, H] after one [S, E] x [E, 4H] product (encoder), T x (W_hh h [4H, H], "
        "memory h [S, H], a memory [S, H], W_c [c; h] [H, 2H], W_out o [V, H]) (decoder); "
        + ("no W_ih e product in the decoder, because the engine reads that product from a precomputed "
           "V x 4H table (a row copy) for this V; " if uses_table else "")
        + "no nonlinearities, softmax or argmax. One Python call per product.")

    # ---- beam 5, batch 1
    run_case(beam, {OURS: lambda: dec.beam(src1, None, beam_size=BEAM, max_length=T, min_length=T),
                    EAGER: lambda: torch_beam(loop, t_src1, BEAM, T)})

    # ---- batch-32 greedy
    fns32 = {OURS: greedy_ours(dec, src32), EAGER: greedy_torch(loop, t_src32)}
    if scripted32 is not None:
        fns32[SCRIPT] = greedy_torch(scripted32, t_src32)
    if ort_enc is not None:
        fns32[ORT] = lambda: ort_greedy(np, ort_enc, ort_step, src32, T)
    run_case(batch32, fns32)
    return res


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


# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: dates only, short budgets")
    ap.add_argument("--out", type=Path, default=None,
                    help="markdown report; the PNG gets the same name with .png (default "
                         "results/decode.md, results/decode-quick.md with --quick)")
    ap.add_argument("--threads", type=int, default=1, help="threads for every side (the targets are at 1)")
    ap.add_argument("--configs", default=None, help="comma-separated subset of: " + ", ".join(CONFIGS))
    ap.add_argument("--seed", type=int, default=0, help="weights and inputs")
    args = ap.parse_args(argv)
    args.configs_given = args.configs is not None
    args.configs = (args.configs.split(",") if args.configs else ["dates"] if args.quick else list(CONFIGS))
    unknown = [c for c in args.configs if c not in CONFIGS]
    if unknown or args.threads < 1 or args.seed < 0:
        ap.error(f"unknown configuration(s) {unknown}" if unknown else "--threads must be >= 1, --seed >= 0")
    mode = QUICK if args.quick else FULL
    out_path = args.out or RESULTS_DIR / ("decode-quick.md" if args.quick else "decode.md")
    png_path = out_path.with_suffix(".png")

    previous_threads, env_set = limit_numpy_threads(args.threads, "benchmarks/bench_decode.py")

    import numpy as np
    import onnxruntime as ort
    import torch

    try:
        import s2sext
    except ImportError as e:
        print(f"error: s2sext is not importable ({e}); build it first "
              "(pip install --no-build-isolation -e .)", file=sys.stderr)
        return 2

    header = machine_header(np, torch, s2sext, args.threads, previous_threads,
                            threads_note=f"; ONNX Runtime intra_op_num_threads={args.threads}, inter_op_num_threads=1",
                            extra_rows=[("ONNX Runtime", f"{ort.__version__} ({', '.join(ort.get_available_providers())})")])

    t_run = time.perf_counter()
    results: dict[str, ConfigResult] = {}
    mem = None
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench_decode.") as workdir:
        for name in args.configs:
            res = run_config(np, torch, ort, s2sext, CONFIGS[name], args, mode, workdir)
            results[name] = res
            for line in res.notes:
                print(f"{name:>6}: {line}")
            if name == "dates":
                try:
                    mem = import_and_memory(res.model_path)
                    print(f"import s2sext {mem['import_total_s']:.3f} s, peak RSS "
                          f"{mem['peak_rss_mib']:.1f} MiB, torch imported: {mem['torch_imported']}")
                except Exception as e:  # noqa: BLE001
                    notes.append(f"Import/memory probe failed: {type(e).__name__}: {e}")
                scaling = thread_scaling(s2sext, res.model_path, 0.5 if args.quick else 3.0)
                print(scaling)
                notes.append(scaling)

    failed = any(r.failed for r in results.values()) or any(
        t.error for r in results.values() for c in r.cases.values() for t in c.sides.values())
    busy = [(n, c.case) for n, r in results.items() for c in r.cases.values()
            if c.other_load is not None and c.other_load > BUSY_FRACTION]
    if busy:
        notes.append(f"WARNING: other processes took more than {BUSY_FRACTION:.0%} of the CPUs while "
                     f"{len(busy)} case(s) were timed (marked); rerun on an idle machine.")
    if env_set:
        notes.append("WARNING: " + ", ".join(f"{k}={v}" for k, v in env_set.items())
                     + " was set during this run, so OpenBLAS may not have picked its best kernel.")
    if mem and mem["torch_imported"]:
        notes.append("WARNING: the import/memory probe process imported torch.")
    chart_error = chart(results, png_path, command(args))
    if chart_error:
        notes.append(chart_error)
    text = markdown(args, mode, header, results, mem, notes, png_path.name)
    write_atomic(out_path, text)
    print(f"\n({time.perf_counter() - t_run:.0f} s) wrote {out_path} and {png_path}\n")
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
