"""The decoding benchmark's pure-Python parts (benchmarks/decode_report.py, decode_sides.compile_dtype,
decode_accuracy.same_outputs): ratios computed from made-up medians, a dtype that does not compile
reported as unavailable rather than crashing the report. The timing itself is not run here (it needs
torch, ONNX Runtime and minutes)."""

import sys
from argparse import Namespace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import decode_accuracy  # noqa: E402 - the benchmarks folder is not a package
import decode_report as rep  # noqa: E402
import decode_sides as sides  # noqa: E402
from bench_common import Stats  # noqa: E402

from s2sext import Seq2Seq  # noqa: E402


def timed(ms):
    return rep.Timed(stats=Stats(median_ns=ms * 1e6, q1_ns=ms * 1e6, q3_ns=ms * 1e6, reps=3, inner=1))


WHY = "unavailable: ValueError: dtype must be 'float32' or 'bfloat16', got 'int8'"


def made_up_result():
    """dates with float32 4 ms, bfloat16 2 ms, int8 unavailable, torch eager 12 ms, ONNX Runtime 6 ms at
    batch 1; beam float32 5 ms; batch 32 float32 40 ms against peers of 60, 80 and 52 ms."""
    res = rep.ConfigResult(sides.CONFIGS["dates"])
    g = rep.CaseResult("greedy1", {sides.OURS: timed(4), sides.OURS_BF16: timed(2),
                                   sides.OURS_INT8: rep.Timed(unavailable=WHY),
                                   sides.EAGER: timed(12), sides.ORT: timed(6),
                                   sides.OPENVINO: rep.Timed(unavailable="unavailable: openvino missing")})
    b = rep.CaseResult("beam", {sides.OURS: timed(5), sides.OURS_BF16: timed(3),
                                sides.OURS_INT8: rep.Timed(unavailable=WHY), sides.EAGER: timed(20)})
    b32 = rep.CaseResult("batch32", {sides.OURS: timed(40), sides.EAGER: timed(60), sides.SCRIPT: timed(80),
                                     sides.ORT: timed(52)})
    res.cases = {"greedy1": g, "beam": b, "batch32": b32}
    return res


def row(lines, *starts):
    found = [line for line in lines if all(s in line for s in starts)]
    assert len(found) == 1, (starts, lines)
    return [c.strip() for c in found[0].strip("|").split("|")]


def test_ratios_table_each_dtype_against_float32_and_peers():
    lines = rep.ratios_table(made_up_result())
    bf16 = row(lines, "batch-1 greedy", "| bfloat16 |")
    # columns: case, dtype, median, float32 / it, eager / it, TorchScript / it, ORT / it, OpenVINO / it
    assert bf16[3] == "2.00x" and bf16[4] == "6.00x" and bf16[5] == "—" and bf16[6] == "3.00x"
    f32 = row(lines, "batch-1 greedy", "| float32 |")
    assert f32[3] == "1.00x" and f32[4] == "3.00x" and f32[6] == "1.50x"
    int8 = row(lines, "batch-1 greedy", "| int8 |")
    assert int8[3] == WHY and int8[2] == "—"


def test_beam_over_greedy_per_dtype():
    res = made_up_result()
    assert rep.beam_greedy_ratio(res, "float32") == pytest.approx(5 / 4)
    assert rep.beam_greedy_ratio(res, "bfloat16") == pytest.approx(3 / 2)
    assert rep.beam_greedy_ratio(res, "int8") is None
    lines = rep.beam_table({"dates": res})
    assert row(lines, "| float32 |")[1] == "1.25x"
    assert row(lines, "| int8 |")[1] == WHY


def test_issue13_targets_fastest_peer_and_unavailable_int8():
    args = Namespace(quick=False, threads=1)
    lines = rep.targets_table({"dates": made_up_result()}, None, args, rep.TARGETS_ISSUE13)
    batch = row(lines, "dates: batch-32")
    assert batch[2] == "1.30x" and batch[3].startswith("met (fastest peer: ONNX Runtime)")  # 52 / 40
    beam = row(lines, "dates: float32 beam")
    assert beam[2] == "1.25x" and beam[3] == "met"
    assert row(lines, "dates: batch-1 greedy, s2sext float32 / s2sext int8")[3] == WHY
    assert row(lines, "nmt: batch-1 greedy, s2sext float32 / s2sext int8")[3] == "not measured"


def test_times_table_lists_unavailable_sides_without_a_time():
    lines = rep.times_table(made_up_result())
    assert row(lines, "beam 5", "s2sext int8")[2:] == ["—", WHY]
    assert row(lines, "batch-1 greedy", "OpenVINO")[3] == "unavailable: openvino missing"


def test_compile_dtype_reports_a_refused_dtype():
    model = Seq2Seq(list("abc"), list("abc"), embed_size=4, hidden_size=8, seed=0)
    dec, why = sides.compile_dtype(model, "float32")
    assert dec is not None and why == ""
    dec, why = sides.compile_dtype(model, "float7")
    assert dec is None and why.startswith("unavailable: ValueError: ") and "'float7'" in why


def test_same_outputs_counts_and_checks_lengths():
    assert decode_accuracy.same_outputs(["a", "b", "c"], ["a", "x", "c"]) == 2
    assert decode_accuracy.same_outputs([], []) == 0
    with pytest.raises(ValueError, match="2 outputs for 1 baseline"):
        decode_accuracy.same_outputs(["a", "b"], ["a"])
