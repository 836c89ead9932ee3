"""Decoding benchmark: s2sext.Decoder in every dtype against PyTorch eager, TorchScript, ONNX Runtime and
OpenVINO, in one process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_decode.py [--quick]
        [--threads 1] [--configs dates,nmt] [--out benchmarks/results/decode.md] [--seed 0]

(The accuracy of each dtype on trained models is benchmarks/decode_accuracy.py's.)

Letters (as in docs/model.md): V vocabulary (source = target), E embedding, H hidden, S source length,
T decoder steps, K beam size, B batch. Two configurations (issue 4, item 7):

    dates  V=59    E=16   H=256  S=29  T=10
    nmt    V=8000  E=256  H=512  S=30  T=30

both one LSTM layer each side with Luong dot attention and the tanh(W_c [c; h]) layer. Weights are random
(`Seq2Seq(..., seed)`): every side runs exactly T argmax-fed steps, so the work does not depend on them.
To make every side choose the same tokens without a per-step mask, `out.bias[<eos>]` is set to -1e4 on
all sides (no side can pick `<eos>`); s2sext is also called with `min_length = max_length = T`.

Sides, all with the same weights (the s2sext model's, copied into a PyTorch twin in float32):

* s2sext: `model.compile(dtype)` for dtype float32, bfloat16 and int8, each in every case;
  `dec.greedy(src, None, T, T)` and `dec.beam(src, None, K, T, T)`: one Python call per decode, the loop
  in C++. A dtype that `compile` refuses (int8 before it exists raises ValueError) is reported as
  "unavailable: <the error>" in every table and is not a failure.
* torch eager: nn.Embedding, encoder nn.LSTM (batch_first), then T steps of nn.LSTMCell, dot attention
  (bmm + softmax + bmm), tanh(nn.Linear([c; h])), nn.Linear out, argmax; under torch.inference_mode().
* TorchScript: the same nn.Module, torch.jit.script-ed (then torch.jit.freeze-d). TorchScript is
  deprecated in this torch version (it warns); the warning is silenced locally and the report says so.
* ONNX Runtime: the encoder (src -> memory, h, c) and one decoder step (y, h, c, memory -> logits, h, c)
  exported with torch.onnx.export (opset 17), looped T times from Python with numpy argmax.
* OpenVINO (`pip install openvino`, a benchmark-only dependency; without it the side is skipped with a
  note): the same two exported graphs on the CPU plugin, reshaped to a static batch (1, 32), looped from
  Python as ONNX Runtime's, the inputs copied into the requests' own tensors. Compiled with
  INFERENCE_NUM_THREADS=1 (--threads), NUM_STREAMS=1, PERFORMANCE_HINT=LATENCY,
  ENABLE_HYPER_THREADING=False, and INFERENCE_PRECISION_HINT=f32 (on a CPU with AVX512_BF16 the plugin
  would otherwise compute in bfloat16).
* physical reference (batch-1 greedy only): the matrix-vector products a decode must do over the same
  weight matrices, and nothing else (no nonlinearities, softmax or argmax): the encoder's S x E by E x 4H
  input product, S products with W_hh; per decoder step W_hh h, the embedding product W_ih e (only where
  the engine cannot replace it by a row of a precomputed V x 4H table, i.e. nmt), memory h (S x H),
  a memory (S x H), W_c [c; h] and W_out o. It is timed twice, with our GEMV
  (`s2sext.ops.linear_forward` on one row) and with numpy (`np.dot(W, x, out=)`, numpy's OpenBLAS);
  the faster is the reference. Both pay one Python call per product, which a compiled decode does not;
  the report also gives the estimate net of that overhead (the same calls on 1x1 operands subtracted).

Cases per configuration, each with every s2sext dtype: batch-1 greedy (every side), beam 5 at batch 1
(s2sext against an eager PyTorch beam search with the K beams batched as rows: log_softmax, scores + logp,
topk over K*V, reorder the state by parent, backtrack), batch-32 greedy throughput (all B rows of length
S; every side). The report gives, per case and dtype, the ratio to our float32 and to every peer, the
beam 5 / greedy time ratio per dtype, and issue 13's and issue 4's targets.

Before timing, the tokens of every side are compared with torch eager's on a few inputs (and the beam's
best hypothesis and its log-probability); a float32 or peer mismatch is reported and sets the exit
status (the timing still runs: with a fixed T the work does not depend on the tokens); for bfloat16
and int8 weights the comparison is reported only (rounding the weights may turn a close choice).
Timing: per case, every side is warmed up, then sampled in rounds whose order alternates (A B C, C B A,
...); a sample that follows another side is preceded by settle_s of untimed calls of its own side (the
other library's spinning threads go to sleep, and the side's weights are back in cache). Medians are
reported; ratio = peer / s2sext, so > 1 means s2sext is faster.

A separate process (no torch) measures `import s2sext` (best of 3 fresh processes; numpy's import is
included) and the peak RSS of loading the dates model file and translating one sentence.

--quick (~30 s) times the dates configuration with short budgets and writes results/decode-quick.md and
.png unless --out is given, so a smoke run never replaces the quoted table. Exit status 1 if a check
failed or a side errored (an unavailable dtype or a missing OpenVINO is not an error).
"""
from __future__ import annotations

import argparse
import json
import os
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import (  # noqa: E402 - sibling modules of this script
    BUSY_FRACTION, Mode, OtherLoad, fmt_time, limit_numpy_threads, machine_header, not_importable, time_group,
    write_atomic)
from decode_sides import (  # noqa: E402 - sibling modules of this script
    BATCH, BEAM, CONFIGS, Config, DTYPES, EAGER, EOS, EOS_BIAS, OPENVINO, OPSET, ORT, OUR_SIDES, OURS,
    OURS_BF16, OURS_INT8, PROBE_SENTENCE, REF_NUMPY, REF_OURS, SCRIPT, compile_dtype, export_onnx,
    openvino_config, openvino_sessions, ort_greedy, ort_sessions, reference_fns,
    script_loop, torch_peers)
from decode_report import CaseResult, ConfigResult, Timed, chart, command, markdown  # noqa: E402


RESULTS_DIR = Path(__file__).resolve().parent / "results"
N_CHECK = 4  # batch-1 sources whose tokens are compared before timing

# Decodes are longer than single kernels: larger samples and budgets than bench_kernels' modes.
FULL = Mode(sample_s=0.2, settle_s=0.15, reps=11, min_reps=5, budget_s=30.0, warmup_s=0.3)
QUICK = Mode(sample_s=0.02, settle_s=0.1, reps=3, min_reps=3, budget_s=1.5, warmup_s=0.05)


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


def dtype_check(text: str) -> str:
    """A check of bfloat16 or int8 weights against torch float32: reported, never a failure (rounding
    the weights may turn a close choice the other way)."""
    return text.replace("MISMATCH: ", "") + " vs torch float32 (reduced-precision weights; not a failure)"


def run_config(np, torch, ort, ov, s2sext, cfg: Config, args, mode: Mode, workdir: str) -> ConfigResult:
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
    # s2sext in every dtype; one that this build cannot compile is a row saying so
    decs, unavailable = {}, {}
    for dtype in DTYPES:
        dec_or_none, why = compile_dtype(model, dtype)
        if dec_or_none is None:
            unavailable[OUR_SIDES[dtype]] = why
            res.notes.append(f"s2sext {dtype}: {why}")
        else:
            decs[OUR_SIDES[dtype]] = dec_or_none
    if OURS not in decs:
        raise RuntimeError(f"s2sext float32 does not compile: {unavailable[OURS]}")
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
    enc_path = step_path = None
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
    ov1 = ov32 = None
    if isinstance(ov, str):  # not importable: the side is skipped with the reason
        unavailable[OPENVINO] = ov
    elif enc_path is None:
        unavailable[OPENVINO] = f"unavailable: no exported graphs ({ort_error})"
    else:
        try:
            ov1 = openvino_sessions(ov, enc_path, step_path, cfg, 1, args.threads)
            ov32 = openvino_sessions(ov, enc_path, step_path, cfg, BATCH, args.threads)
            res.notes.append(
                f"OpenVINO: {ov.__version__}, CPU plugin, the same exported graphs reshaped to a static batch "
                "(1 and 32), looped from Python as ONNX Runtime's; compiled with "
                + ", ".join(f"{k}={v}" for k, v in ov1[1].items()) + " (as the compiled model reports them)")
        except Exception as e:  # noqa: BLE001
            unavailable[OPENVINO] = f"OpenVINO compile failed: {type(e).__name__}: {e}".splitlines()[0]
            res.failed = True
    if OPENVINO in unavailable:
        res.notes.append(f"OpenVINO: {unavailable[OPENVINO]}")

    uses_table = cfg.V * 4 * cfg.H * 4 <= 16 << 20  # the engine's projected-embedding table (engine.cpp)

    def greedy_ours(d, src):
        return lambda: d.greedy(src, None, T, T)

    def greedy_torch(m, src):
        return lambda: m(src, T)

    def beam_ours(d):
        return lambda: d.beam(src1, None, beam_size=BEAM, max_length=T, min_length=T)

    greedy1 = CaseResult("greedy1")
    beam = CaseResult("beam")
    batch32 = CaseResult("batch32")
    res.cases = {"greedy1": greedy1, "beam": beam, "batch32": batch32}
    for case in res.cases.values():
        for side, why in unavailable.items():
            case.sides[side] = Timed(unavailable=why)

    # ---- correctness, before any timing
    greedy_sides = [(side, (lambda d: lambda s: d.greedy(s, None, T, T))(d),
                     (lambda d: lambda: d.greedy(src32, None, T, T))(d)) for side, d in decs.items()]
    greedy_sides += [
        (SCRIPT, (lambda s: scripted1(torch.from_numpy(s), T).numpy()) if scripted1 is not None else None,
         (lambda: scripted32(t_src32, T).numpy()) if scripted32 is not None else None),
        (ORT, (lambda s: ort_greedy(np, ort_enc, ort_step, s, T)) if ort_enc is not None else None,
         (lambda: ort_greedy(np, ort_enc, ort_step, src32, T)) if ort_enc is not None else None),
    ]
    if ov1 is not None:
        greedy_sides.append((OPENVINO, lambda s: ov1[0](np, s, T),
                             lambda: ov32[0](np, src32, T)))
    with torch.inference_mode():
        want = [loop(t, T).numpy() for t in t_srcs]
        want32 = loop(t_src32, T).numpy()
        for name, get1, get32 in greedy_sides:
            reduced = name in (OURS_BF16, OURS_INT8)
            if get1 is None:
                greedy1.sides[name] = Timed(error=script_how if name == SCRIPT else ort_error)
                batch32.sides[name] = Timed(error=greedy1.sides[name].error)
                continue
            for case, get, wanted, what in ((greedy1, lambda: np.concatenate([get1(s) for s in srcs]),
                                             np.concatenate(want), f" on {N_CHECK} inputs"),
                                            (batch32, get32, want32, "")):
                try:
                    ok, text = token_check(np, get(), wanted)
                    if reduced:
                        ok, text = True, dtype_check(text)
                    case.sides[name] = Timed(check=text + what)
                    res.failed |= not ok
                except Exception as e:  # noqa: BLE001
                    case.sides[name] = Timed(error=f"ERROR {type(e).__name__}: {e}".splitlines()[0])
                    res.failed = True
        greedy1.sides[EAGER] = Timed(check="the tokens the others are compared with")
        batch32.sides[EAGER] = Timed(check="the tokens the others are compared with")

        t_beams = [torch_beam(loop, t, BEAM, T) for t in t_srcs]
        for side, d in decs.items():
            beam_checks = []
            for s, (seq, t_score) in zip(srcs, t_beams):
                ids, score = d.beam(s, None, beam_size=BEAM, max_length=T, min_length=T)
                beam_checks.append((ids[0].tolist() == seq, abs(float(score[0]) - t_score)))
            n_same = sum(same for same, _ in beam_checks)
            worst = max(diff for _, diff in beam_checks)
            beam_ok = n_same == len(beam_checks) and worst < 1e-3 * T
            text = (f"best hypothesis equal on {n_same}/{len(beam_checks)} inputs, log-probability max diff "
                    f"{worst:.1e}")
            if side == OURS:
                beam.sides[side] = Timed(check=("" if beam_ok else "MISMATCH: ") + text)
                res.failed |= not beam_ok
            else:
                beam.sides[side] = Timed(check=dtype_check(text))
        beam.sides[EAGER] = Timed(check="beams batched as rows")

        if greedy1.sides[OURS].check.startswith("MISMATCH"):
            res.notes.append("WARNING: s2sext's tokens differ from torch eager's; the timing still ran "
                             "(T fixed: the work does not depend on the tokens).")

    ref_ours, ref_numpy, ref_ours_1x1, ref_numpy_1x1 = reference_fns(
        np, ops, model.params, cfg, src1[0], uses_table)

    def run_case(case: CaseResult, fns: dict[str, Callable[[], object]]) -> None:
        fns = {k: f for k, f in fns.items()
               if not (k in case.sides and (case.sides[k].error or case.sides[k].unavailable))}
        load = OtherLoad()
        with torch.inference_mode():
            stats = time_group(fns, mode)
        case.other_load = load.fraction()
        for k, st in stats.items():
            case.sides.setdefault(k, Timed()).stats = st
        line = "  ".join(f"{k} {fmt_time(st.median_ns)}" for k, st in stats.items())
        print(f"{cfg.name:>6} {case.case:<8} {line}  (n={next(iter(stats.values())).reps})", flush=True)

    # ---- batch-1 greedy: every side and the reference
    fns1 = {side: greedy_ours(d, src1) for side, d in decs.items()}
    fns1[EAGER] = greedy_torch(loop, t_src1)
    if scripted1 is not None:
        fns1[SCRIPT] = greedy_torch(scripted1, t_src1)
    if ort_enc is not None:
        fns1[ORT] = lambda: ort_greedy(np, ort_enc, ort_step, src1, T)
    if ov1 is not None:
        fns1[OPENVINO] = lambda: ov1[0](np, src1, T)
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

    # ---- beam 5, batch 1, every dtype
    fns_beam = {side: beam_ours(d) for side, d in decs.items()}
    fns_beam[EAGER] = lambda: torch_beam(loop, t_src1, BEAM, T)
    run_case(beam, fns_beam)

    # ---- batch-32 greedy, every dtype and peer
    fns32 = {side: greedy_ours(d, src32) for side, d in decs.items()}
    fns32[EAGER] = greedy_torch(loop, t_src32)
    if scripted32 is not None:
        fns32[SCRIPT] = greedy_torch(scripted32, t_src32)
    if ort_enc is not None:
        fns32[ORT] = lambda: ort_greedy(np, ort_enc, ort_step, src32, T)
    if ov32 is not None:
        fns32[OPENVINO] = lambda: ov32[0](np, src32, T)
    run_case(batch32, fns32)
    return res


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
        return not_importable(e)

    try:  # a benchmark-only dependency: without it the side is skipped with a note
        import openvino as ov
        ov_row = (f"{ov.__version__}, CPU plugin: "
                  + ", ".join(f"{k}={v}" for k, v in openvino_config(args.threads).items()))
    except ImportError as e:
        ov = ov_row = f"unavailable: openvino is not importable ({e}); pip install openvino"

    header = machine_header(np, torch, s2sext, args.threads, previous_threads,
                            threads_note=(f"; ONNX Runtime intra_op_num_threads={args.threads}, inter_op_num_threads=1"
                                          f"; OpenVINO INFERENCE_NUM_THREADS={args.threads}, NUM_STREAMS=1"),
                            extra_rows=[("ONNX Runtime", f"{ort.__version__} ({', '.join(ort.get_available_providers())})"),
                                        ("OpenVINO", ov_row)])

    t_run = time.perf_counter()
    results: dict[str, ConfigResult] = {}
    mem = None
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench_decode.") as workdir:
        for name in args.configs:
            res = run_config(np, torch, ort, ov, s2sext, CONFIGS[name], args, mode, workdir)
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
