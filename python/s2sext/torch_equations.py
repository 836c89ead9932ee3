"""The equations of :mod:`s2sext.torch`'s Functions in torch ops, differentiable to any order.

A Function's backward runs its fused kernel when autograd calls it with grad mode off (the usual
backward). With create_graph=True grad mode is on, and the gradients must themselves be a graph (a
gradient penalty, gradgradcheck): the backward then recomputes the forward with these torch ops
from the saved inputs and differentiates that with create_graph=True. They also run the Functions
under torch.func transforms and forward-mode AD, and LSTM(proj_size > 0), which the kernels do not
have. Gate order i, f, g, o, as torch.nn.LSTM (docs/model.md). Imports torch.
"""

from __future__ import annotations

import math

import torch

from .spec import ATTENTION_KINDS

__all__ = ["cell_reference", "lstm_reference", "attention_reference", "differentiable_grads"]


def cell_reference(gates_x, h, c, w_hh, w_hr=None):
    """One LSTM step from its input's gate contribution ``gates_x = x @ w_ih.T + b`` [B, 4H]:
    ``(h1, c1)``; with ``w_hr`` [P, H] the output is projected, ``h1 = w_hr @ (o * tanh(c1))``."""
    i, f, g, o = (gates_x + h @ w_hh.T).chunk(4, dim=-1)
    c1 = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h1 = torch.sigmoid(o) * torch.tanh(c1)
    return (h1 if w_hr is None else h1 @ w_hr.T), c1


def lstm_reference(x, h0, c0, w_ih, w_hh, b, lengths=None, w_hr=None):
    """:class:`LSTMFunction`'s ``(hs, hT, cT)`` in torch ops (state carried past a length,
    outputs zero there), optionally with a projection ``w_hr`` [P, H] (h is then [B, P])."""
    B, S = x.shape[0], x.shape[1]
    valid = None
    if lengths is not None:
        valid = torch.arange(S).unsqueeze(0) < torch.as_tensor(lengths, dtype=torch.long).unsqueeze(1)  # [B, S]
        # padding (even NaN) must reach neither an output nor a gradient, as in the kernel
        x = torch.where(valid.unsqueeze(2), x, torch.zeros((), dtype=x.dtype))
    gates_x = x @ w_ih.T
    if b is not None:
        gates_x = gates_x + b
    h, c, hs = h0, c0, []
    for t in range(S):
        h1, c1 = cell_reference(gates_x[:, t], h, c, w_hh, w_hr)
        if valid is None:
            h, c = h1, c1
            hs.append(h1)
        else:
            m = valid[:, t].unsqueeze(1)
            h, c = torch.where(m, h1, h), torch.where(m, c1, c)
            hs.append(torch.where(m, h1, torch.zeros((), dtype=h1.dtype)))
    hs = torch.stack(hs, dim=1) if hs else h0.new_zeros(B, 0, h0.shape[-1])
    return hs, h, c


def attention_reference(hs, q, kind, lengths, *params):
    """:class:`AttentionWeightFunction`'s masked softmax in torch ops."""
    q3 = q.unsqueeze(1) if q.dim() == 2 else q  # [B, T, H]
    S = hs.shape[1]
    if kind in ("dot", "scaled_dot"):
        scores = q3 @ hs.transpose(1, 2)
        if kind == "scaled_dot":
            scores = scores / math.sqrt(hs.shape[2])
    elif kind == "general":  # q . (W_a hs_s)
        scores = q3 @ (hs @ params[0].T).transpose(1, 2)
    elif kind == "concat":  # v . tanh(W_q q (+ b_q) + W_k hs_s)
        w_q, w_k, v = params[:3]
        query_proj = q3 @ w_q.T if len(params) == 3 else q3 @ w_q.T + params[3]
        scores = torch.tanh(query_proj.unsqueeze(2) + (hs @ w_k.T).unsqueeze(1)) @ v
    elif kind == "location":  # (W_a q)_s for s < S
        scores = q3 @ params[0][:S].T
    else:  # as the kernel refuses it (the torch.func path reaches here without the kernel)
        raise ValueError(f"kind must be one of {', '.join(ATTENTION_KINDS)}, got {kind!r}")
    if lengths is not None:
        masked = torch.arange(S).unsqueeze(0) >= torch.as_tensor(lengths, dtype=torch.long).unsqueeze(1)
        scores = scores.masked_fill(masked.unsqueeze(1), float("-inf"))
    a = torch.softmax(scores, dim=-1)
    return a.squeeze(1) if q.dim() == 2 else a


def differentiable_grads(reference, inputs, needs, grad_outputs):
    """The gradients of ``reference(*inputs)`` against ``grad_outputs``, as a graph
    (create_graph=True), for the inputs whose ``needs`` entry is true (None for the others).
    An input the equations do not use (``hs`` of location scores) gets zeros, as from the kernel."""
    with torch.enable_grad():
        outputs = reference(*inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    pairs = [(o, g) for o, g in zip(outputs, grad_outputs) if o.requires_grad and g is not None]
    wanted = [t for t, n in zip(inputs, needs) if n]
    grads = iter(torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs], create_graph=True,
                                     allow_unused=True))
    result = []
    for t, n in zip(inputs, needs):
        g = next(grads) if n else None
        result.append(torch.zeros_like(t) if n and g is None else g)
    return result
