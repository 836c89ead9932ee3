"""The dense layer kernels (ops.linear_forward / linear_backward) against PyTorch autograd, on odd
shapes, both activations, with and without bias, float64 and float32 (tolerances of reference.py)."""

import itertools

import numpy as np
import pytest
import torch

from reference import assert_close
from s2sext import ops


def torch_linear(x, w, b, activation, dy, dtype):
    xt = torch.tensor(x, dtype=dtype, requires_grad=True)
    wt = torch.tensor(w, dtype=dtype, requires_grad=True)
    bt = torch.tensor(b, dtype=dtype, requires_grad=True) if b is not None else None
    y = torch.nn.functional.linear(xt, wt, bt)
    if activation == "tanh":
        y = torch.tanh(y)
    (y * torch.tensor(dy, dtype=dtype)).sum().backward()
    return (y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), None if bt is None else bt.grad.numpy())


CASES = list(itertools.product([(1,), (3,), (2, 13)], [1, 7, 255], [1, 7], ["none", "tanh"], [True, False]))


@pytest.mark.parametrize("lead,I,O,activation,bias", CASES)
def test_linear_matches_torch(lead, I, O, activation, bias):
    rng = np.random.default_rng(I * 31 + O)
    x = rng.standard_normal((*lead, I))
    w = rng.standard_normal((O, I)) / np.sqrt(I)
    b = rng.standard_normal(O) if bias else None
    dy = rng.standard_normal((*lead, O))
    ref64 = torch_linear(x, w, b, activation, dy, torch.float64)
    ref32 = torch_linear(x, w, b, activation, dy, torch.float32)
    for dtype in (np.float64, np.float32):
        xs, ws = x.astype(dtype), w.astype(dtype)
        bs = None if b is None else b.astype(dtype)
        y = ops.linear_forward(xs, ws, bs, activation)
        assert y.shape == (*lead, O) and y.dtype == dtype
        dx, dw, db = ops.linear_backward(dy.astype(dtype), xs, ws, y, activation)
        ours = (y, dx, dw, db if bias else None)
        for name, got, want64, want32 in zip(("y", "dx", "dw", "db"), ours, ref64, ref32):
            if want64 is None:
                continue
            if dtype == np.float64:
                assert_close(name, got, want64)
            else:
                assert_close(name, got, want64, want32)


def test_linear_backward_without_dx_and_bad_input():
    x = np.ones((3, 4), np.float32)
    w = np.ones((5, 4), np.float32)
    y = ops.linear_forward(x, w)
    dx, dw, db = ops.linear_backward(np.ones((3, 5), np.float32), x, w, need_dx=False)
    assert dx is None and dw.shape == (5, 4) and np.all(db == 3)
    with pytest.raises(ValueError, match=r"w has shape \(5, 3\); expected \[O, I\] = \(5, 4\)"):
        ops.linear_forward(x, np.ones((5, 3), np.float32))
    with pytest.raises(ValueError, match="b has shape"):
        ops.linear_forward(x, w, np.ones(4, np.float32))
    with pytest.raises(ValueError, match="activation must be 'none' or 'tanh'"):
        ops.linear_forward(x, w, None, "relu")
    with pytest.raises(ValueError, match=r"y \(the forward's output\) is needed"):
        ops.linear_backward(np.ones((3, 5), np.float32), x, w, None, "tanh")
    with pytest.raises(ValueError, match="leading dimensions must match"):
        ops.linear_backward(np.ones((2, 5), np.float32), x, w)
    with pytest.raises(TypeError, match="x must have a float dtype"):
        ops.linear_forward(np.ones((3, 4), np.int32), w)
    assert y.shape == (3, 5)
