"""The benchmarks' own checks, at small sizes (no timing): the kernel table's 2-layer bidirectional
rows compute what nn.LSTM computes, the 1- against 2-process comparison's loss check passes equal
runs and fails different ones, and the other-load arithmetic counts every process of a launch."""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from s2sext import ops

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name):
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))  # the scripts import their sibling bench_common
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench_kernels():
    return load("bench_kernels")


@pytest.fixture(scope="module")
def bench_train():
    return load("bench_train")


def test_the_lstm_stack_rows_match_nn_lstm(bench_kernels):
    stack = [build() for build in bench_kernels.build_cases(np, torch, ops, stack=(3, 5, 4, 6, 2),
                                                            families=("LSTM stack",))]
    assert [c.name for c in stack] == ["LSTM stack fwd", "LSTM stack fwd+bwd"]
    for case in stack:
        ok, detail = bench_kernels.check(case, np, torch)
        assert ok, detail
    # every gradient is compared: the inputs', the initial states' and each direction's parameters'
    assert len(stack[1].names) == 3 + 3 * 4


def launch_of(bench_train, processes, step_losses, first_epoch_loss, batches=60):
    layout = bench_train.Layout("x", processes, 2 // processes)
    epoch = bench_train.Epoch(layout.label, 0, 1.0, batches, 1000, first_epoch_loss, None)
    return bench_train.Launch(layout, [epoch], step_losses, 1000, batches)


def test_the_loss_check_passes_equal_runs_and_fails_different_ones(bench_train):
    steps = list(np.linspace(4.0, 1.0, 60))
    one = launch_of(bench_train, 1, steps, 2.0)
    ok, text = bench_train.losses_agree([one], [launch_of(bench_train, 2, [s * (1 + 1e-7) for s in steps], 2.0)])
    assert ok, text
    for changed_step in (0, 49):  # within the checked updates
        moved = list(steps)
        moved[changed_step] *= 1 + 1e-4
        ok, text = bench_train.losses_agree([one], [launch_of(bench_train, 2, moved, 2.0)])
        assert not ok and "DO NOT agree" in text
    for changed_step in (50, 59):  # past the checked updates: reported, not checked
        moved = list(steps)
        moved[changed_step] *= 1 + 1e-1
        ok, text = bench_train.losses_agree([one], [launch_of(bench_train, 2, moved, 2.0)])
        assert ok and "1.0e-01" in text, text
    # the epoch's mean (all its updates) is reported, not checked (see losses_agree)
    ok, text = bench_train.losses_agree([one], [launch_of(bench_train, 2, steps, 2.0 * (1 + 1e-4))])
    assert ok and "the first epoch's train loss: 1.0e-04" in text, text


def test_other_load_counts_every_process_of_a_launch(bench_train):
    from bench_common import other_fraction

    # (busy, steal, all CPU seconds of the machine, the reading process's CPU seconds)
    start, end = (10.0, 0.0, 100.0, 1.0), (14.0, 0.5, 110.0, 3.0)
    assert other_fraction(start, end) == pytest.approx((4.0 - 2.0 + 0.5) / 10.0)
    assert other_fraction(start, end, ours_s=4.0) == pytest.approx(0.05)
    assert other_fraction(start, end, ours_s=9.0) == 0.0
    assert other_fraction(None, end) is None
    assert math.isclose(bench_train.relative(1.0, 1.0), 0.0)
