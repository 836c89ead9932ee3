"""The kernels: numpy in, numpy out, each a forward/backward pair computed by the C++ core.

Shape letters::

    B  batch                 S  source length (time steps of an LSTM sequence)
    T  decoder steps         I  input size
    H  hidden size           A  attention size (concat)
    S_max  rows of the location-attention weight

Conventions shared by every function here:

* Arrays may be any real float dtype and any layout; they are converted (copied only when needed)
  to C-contiguous float64 when the first array argument (``x`` or ``hs``) is float64, otherwise to
  float32. Outputs are fresh C-contiguous arrays of that dtype. Integer, bool, complex or object
  arrays raise ``TypeError``; wrong ranks or sizes raise ``ValueError`` naming the argument, the
  expected and the actual shape.
* Any size may be 0 (B, S, T, I, H, A, the rows and columns of a dense layer), except the source
  length S of an attention (nothing to attend to: ValueError). The results are then the empty
  sums' values, as PyTorch computes them: empty arrays, zero gradients (``dx`` of an LSTM with
  H = 0, ``dw`` of an empty batch), the initial state for S = 0, and uniform attention weights
  when H = 0 or A = 0 (every score is 0; ``scaled_dot`` does not divide that 0 by sqrt(0)).
* ``lengths`` is an integer array ``[B]``; positions at or past ``lengths[b]`` are padding.
* A ``cache`` holds references to the (converted) inputs and the intermediate values the backward
  needs. Do not modify the input arrays in place between a forward and its backward: values
  changed there give wrong gradients, and a changed shape, dtype or length raises ValueError.
* Gradients are returned fresh (never accumulated into existing arrays).
* The GIL is released while a kernel runs, so Python threads may share weights and call at once.
  Large kernels run on s2sext's own threads (``s2sext.set_num_threads``); at a given thread count
  results are reproducible, between thread counts they may differ in the last bits.
"""

from __future__ import annotations

import math

import numpy as np

from . import _core
from .spec import ATTENTION_KINDS

LSTMCellCache = _core.LSTMCellCache
LSTMCache = _core.LSTMCache
AttentionCache = _core.AttentionCache

__all__ = [
    "lstm_cell_forward",
    "lstm_cell_backward",
    "lstm_forward",
    "lstm_backward",
    "attention_weight_forward",
    "attention_weight_backward",
    "weight_sum_forward",
    "weight_sum_backward",
    "linear_forward",
    "linear_backward",
    "LSTMCellCache",
    "LSTMCache",
    "AttentionCache",
    "ATTENTION_KINDS",
]


def lstm_cell_forward(x, h0, c0, w_ih, w_hh, b):
    """One LSTM step, with ``torch.nn.LSTMCell``'s equations, gate order and weight shapes::

        gates = x @ w_ih.T + h0 @ w_hh.T + b          # [B, 4H]
        i, f, g, o = sigmoid(gates[:, 0:H]), sigmoid(gates[:, H:2H]),
                     tanh(gates[:, 2H:3H]), sigmoid(gates[:, 3H:4H])
        c1 = f * c0 + i * g
        h1 = o * tanh(c1)

    Parameters
    ----------
    x : (B, I) ndarray
    h0, c0 : (B, H) ndarray or None
        The state in; ``None`` means zeros.
    w_ih : (4H, I) ndarray
    w_hh : (4H, H) ndarray
    b : (4H,) ndarray
        One bias: ``torch``'s ``bias_ih + bias_hh``.

    Returns
    -------
    h1, c1 : (B, H) ndarray
    cache : LSTMCellCache
        ``x, h0, c0, w_ih, w_hh`` as computed with, ``gates`` (B, 4H) activations and ``c1``.
    """
    return _core.lstm_cell_forward(x, h0, c0, w_ih, w_hh, b)


def lstm_cell_backward(dh1, dc1, cache):
    """Gradients of one LSTM step (see :func:`lstm_cell_forward`).

    Parameters
    ----------
    dh1, dc1 : (B, H) ndarray or None
        dL/dh1 and dL/dc1; ``None`` means zeros.
    cache : LSTMCellCache
        From :func:`lstm_cell_forward`.

    Returns
    -------
    dx : (B, I) ndarray
    dh0, dc0 : (B, H) ndarray
    dw_ih : (4H, I) ndarray
    dw_hh : (4H, H) ndarray
    db : (4H,) ndarray
    """
    return _core.lstm_cell_backward(dh1, dc1, cache)


def lstm_forward(x, h0, c0, w_ih, w_hh, b, lengths=None):
    """An LSTM over a padded batch of sequences (equations of :func:`lstm_cell_forward`).

    For each step ``t``: ``h_t, c_t = cell(x[:, t], h_{t-1}, c_{t-1})`` while ``t < lengths[b]``;
    past a sequence's length its state is carried unchanged and its output is zero. Computed per
    step as one GEMM and one fused gate pass; the input product is one GEMM over all ``B*S`` rows
    up front, or, when ``I <= H/4`` and ``B > 8``, part of each step's GEMM
    (``[h | x] @ [w_hh | w_ih]^T``).

    Parameters
    ----------
    x : (B, S, I) ndarray
    h0, c0 : (B, H) ndarray or None
        The initial state; ``None`` means zeros.
    w_ih : (4H, I) ndarray
    w_hh : (4H, H) ndarray
    b : (4H,) ndarray
    lengths : (B,) integer array-like or None
        Valid steps per sequence, ``0 <= lengths[b] <= S``; ``None`` means all ``S``.

    Returns
    -------
    hs : (B, S, H) ndarray
        ``h_t`` for each valid step, zero past a length.
    hT, cT : (B, H) ndarray
        The state after each sequence's last valid step (``h0, c0`` for length 0), as
        ``torch.nn.LSTM``'s ``h_n, c_n`` with packed sequences.
    cache : LSTMCache
        Time-major buffers: ``hx_all`` (S+1, B, H+I), row ``(t, b)`` = [hidden state entering step
        ``t`` | ``x[b, t]``] (``x`` zero past a length and in block ``S``, whose ``h`` is the final
        state); ``gates`` (S, B, 4H) activations; ``c_all`` (S+1, B, H) the cell state before step
        0 and after each step; and ``w_ih, w_hh, lengths``.
    """
    return _core.lstm_forward(x, h0, c0, w_ih, w_hh, b, lengths)


def lstm_backward(dhs, dhT, dcT, cache):
    """Gradients of :func:`lstm_forward`: a sweep from the last step to the first (one GEMM per
    step, which also gives ``dx`` when the input product was folded into the steps), then one GEMM
    over all steps for ``[dw_hh | dw_ih]`` (and one for ``dx`` otherwise).

    Parameters
    ----------
    dhs : (B, S, H) ndarray or None
        dL/dhs (ignored at padded positions, whose outputs are constant zeros).
    dhT, dcT : (B, H) ndarray or None
        dL/dhT, dL/dcT. ``None`` means zeros for any of the three.
    cache : LSTMCache
        From :func:`lstm_forward`.

    Returns
    -------
    dx : (B, S, I) ndarray
        Zero at padded positions.
    dh0, dc0 : (B, H) ndarray
    dw_ih : (4H, I) ndarray
    dw_hh : (4H, H) ndarray
    db : (4H,) ndarray
    """
    return _core.lstm_backward(dhs, dhT, dcT, cache)


def attention_weight_forward(hs, q, kind, params=(), lengths=None):
    """Attention weights: a score per source position, then a softmax masked by ``lengths``.

    ============  ================================  ==========================================
    kind          score(q_t, hs_s)                  params
    ============  ================================  ==========================================
    dot           q_t . hs_s                        ``()``
    scaled_dot    q_t . hs_s / sqrt(H)              ``()``
    general       q_t . (W_a hs_s)                  ``(W_a,)``, W_a (H, H)
    concat        v . tanh(W_q q_t + W_k hs_s)      ``(W_q, W_k, v)``: (A, H), (A, H), (A,)
    concat + b_q  v . tanh(W_q q_t + b_q + W_k hs_s)  ``(W_q, W_k, v, b_q)``, b_q (A,)
    location      (W_a q_t)_s                       ``(W_a,)``, W_a (S_max, H), needs S <= S_max
    ============  ================================  ==========================================

    concat's query bias ``b_q`` is optional (OpenNMT-py's ``mlp`` score has one); with it,
    ``query_proj`` holds ``W_q q + b_q`` and the backward returns ``db_q`` (summed over the
    ``B*T`` query rows in a fixed order, so the result does not depend on the threads).

    ``a[b, t, s] = exp(score_s) / sum_{r < L_b} exp(score_r)`` for ``s < L_b = lengths[b]``, and
    exactly 0 for ``s >= L_b``.

    Parameters
    ----------
    hs : (B, S, H) ndarray
        Source (encoder) states, ``S >= 1``.
    q : (B, H) or (B, T, H) ndarray
        One decoder step's query, or all ``T`` steps' queries at once (teacher-forced training).
    kind : str
        One of ``ATTENTION_KINDS``.
    params : tuple of ndarray
        As in the table above.
    lengths : (B,) integer array-like or None
        Source lengths, ``1 <= lengths[b] <= S``; ``None`` means all ``S``.

    Returns
    -------
    a : (B, S) or (B, T, S) ndarray
        Matching the rank of ``q``.
    cache : AttentionCache
        ``kind, hs, q`` (as (B, T, H)), ``params, lengths, a``, and the projections the kind needs:
        ``query_proj`` (general: q W_a; concat: W_q q) and ``key_proj`` (concat: W_k hs).
    """
    return _core.attention_weight_forward(hs, q, kind, params, lengths)


def attention_weight_backward(da, cache):
    """Gradients of :func:`attention_weight_forward`.

    Parameters
    ----------
    da : (B, S) or (B, T, S) ndarray
        dL/da, the rank of the forward's ``a``.
    cache : AttentionCache

    Returns
    -------
    dhs : (B, S, H) ndarray
        Zero for ``location``, whose scores do not depend on ``hs``.
    dq : (B, H) or (B, T, H) ndarray
    dparams : tuple of ndarray
        Shaped like ``params``. For ``location`` rows ``S:`` of dW_a are zero.
    """
    return _core.attention_weight_backward(da, cache)


def weight_sum_forward(hs, a):
    """The context: ``c[b, t] = sum_s a[b, t, s] * hs[b, s]``.

    Parameters
    ----------
    hs : (B, S, H) ndarray
    a : (B, S) or (B, T, S) ndarray

    Returns
    -------
    c : (B, H) or (B, T, H) ndarray
        Matching the rank of ``a``.
    """
    return _core.weight_sum_forward(hs, a)


def weight_sum_backward(dc, hs, a):
    """Gradients of :func:`weight_sum_forward`:
    ``dhs[b, s] = sum_t a[b, t, s] * dc[b, t]`` and ``da[b, t, s] = dc[b, t] . hs[b, s]``.

    Parameters
    ----------
    dc : (B, H) or (B, T, H) ndarray
    hs : (B, S, H) ndarray
    a : (B, S) or (B, T, S) ndarray

    Returns
    -------
    dhs : (B, S, H) ndarray
    da : (B, S) or (B, T, S) ndarray
    """
    return _core.weight_sum_backward(dc, hs, a)


def _rows(name, arr):
    """View ``arr [..., K]`` as ``[N, K]`` (no copy for contiguous arrays)."""
    arr = np.asarray(arr)
    if arr.ndim < 1:
        raise ValueError(f"{name} must have at least 1 dimension [..., K], got a 0-d array")
    # the row count spelled out: reshape(-1, 0) cannot infer it when K = 0
    return arr.reshape(math.prod(arr.shape[:-1]), arr.shape[-1]) if arr.ndim != 2 else arr


def linear_forward(x, w, b=None, activation="none"):
    """A dense layer: ``y = act(x @ w.T + b)``, ``act`` the identity (``"none"``) or ``"tanh"``.

    Parameters
    ----------
    x : (..., I) ndarray
        Any leading dimensions (e.g. ``[B, T, I]``); they are kept in ``y``.
    w : (O, I) ndarray
    b : (O,) ndarray or None
    activation : "none" or "tanh"

    Returns
    -------
    y : (..., O) ndarray
        No cache: the backward takes ``x``, ``w`` and ``y`` again.
    """
    x = np.asarray(x)
    y = _core.linear_forward(_rows("x", x), w, b, activation)
    return y.reshape(x.shape[:-1] + (y.shape[-1],)) if x.ndim != 2 else y


def linear_backward(dy, x, w, y=None, activation="none", need_dx=True):
    """Gradients of :func:`linear_forward`: with ``d_pre = dy`` (none) or ``dy * (1 - y**2)``
    (tanh), ``dx = d_pre @ w``, ``dw = d_pre^T x`` and ``db = d_pre`` summed over rows.

    Parameters
    ----------
    dy : (..., O) ndarray
    x : (..., I) ndarray
        The forward's input (same leading dimensions as ``dy``).
    w : (O, I) ndarray
    y : (..., O) ndarray or None
        The forward's output; needed for ``"tanh"``.
    activation : "none" or "tanh"
    need_dx : bool
        ``False`` skips ``dx`` (returned as None), e.g. when ``x`` is an input.

    Returns
    -------
    dx : (..., I) ndarray or None
    dw : (O, I) ndarray
    db : (O,) ndarray
    """
    x = np.asarray(x)
    dy = np.asarray(dy)
    if dy.shape[:-1] != x.shape[:-1]:
        raise ValueError(f"linear_backward: dy has shape {dy.shape} and x {x.shape}; their leading dimensions must match")
    y2 = None if y is None else _rows("y", y)
    dx, dw, db = _core.linear_backward(_rows("dy", dy), _rows("x", x), w, y2, activation, bool(need_dx))
    if dx is not None and x.ndim != 2:
        dx = dx.reshape(x.shape)
    return dx, dw, db
