"""PyTorch references for every kernel and the tolerance rule the tests share.

Shape letters (as in docs/model.md and the C++ headers): B batch, S source length, T target length, I input size,
H hidden size, A attention size, S_max the longest source a `location` attention accepts.

Each reference takes numpy inputs, runs them through plain PyTorch in the requested dtype and
returns the outputs and the autograd gradients of  loss = sum_k <output_k, upstream_k>,
so that our backward (which takes the upstream gradients) can be compared term by term.
"""
import math

import numpy as np
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import s2sext

EPS32 = float(np.finfo(np.float32).eps)

# float64 results vs the float64 reference. Both sides round each of at most K ~ 4H + I ~ 1036
# products per dot product (bound K * eps64 ~ 2.3e-13 of the sum of |terms|), the recurrence
# carries that through S = 13 steps forward and back, and cancellation can make the sum of |terms|
# ~100x the result: 1e-9 of the largest |value| covers that with margin and is still ~4 orders of
# magnitude tighter than any float32 computation could meet.
RTOL64 = 1e-9

# float32 results: a measured rule, not a fixed tolerance (flash-attention's tests use the same
# rule: compare with the error a trusted implementation makes in the same precision). Our float32
# error against the float64 reference must be at most FACTOR32 times the error PyTorch's own
# float32 run makes against the same reference, plus a floor, so that an output PyTorch happens to
# get (nearly) exact (tiny sizes: a [1, 1] dh0 is one sample of the rounding error) does not demand
# that luck from us:
# FLOOR_ULPS32 ulps of the largest |value|, plus FLOOR_ABS32 = one ulp at 1.0, because every input
# and upstream gradient in these tests is O(1) and the intermediates are rounded at that magnitude
# even where the output itself is small (dh0 after 13 steps back through a contracting recurrence).
FACTOR32 = 4.0
FLOOR_ULPS32 = 8.0
FLOOR_ABS32 = EPS32


def with_kernel_path(name, fn, *args):
    """fn(*args) with the SIMD kernel path `name` active; the previous path is restored after."""
    previous = s2sext.set_kernel_path(name)
    try:
        return fn(*args)
    finally:
        s2sext.set_kernel_path(previous)


def max_abs_err(ours, ref):
    """Largest |ours - ref| in float64, its index, and inf when ours has NaN/Inf where ref does not."""
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if ours.size == 0:
        return 0.0, ()
    diff = np.abs(ours - ref)
    bad = ~np.isfinite(diff)
    if bad.any():
        return math.inf, np.unravel_index(int(np.argmax(bad)), diff.shape)
    idx = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return float(diff[idx]), idx


def assert_close(name, ours, ref64, ref32=None, baseline="torch float32"):
    """Compares `ours` with the float64 reference `ref64`.

    float64 `ours`: max error <= RTOL64 * max|ref64|.
    float32 `ours`: max error <= FACTOR32 * (max error of `ref32`, PyTorch's float32 run, against
    `ref64`) + FLOOR_ULPS32 * eps32 * max|ref64| + FLOOR_ABS32. `baseline` names what produced `ref32`.
    Prints the max differences (pytest shows them when a test fails).
    """
    assert ours is not None, f"{name}: got None"
    ours = np.asarray(ours)
    ref64 = np.asarray(ref64, dtype=np.float64)
    assert ours.shape == ref64.shape, f"{name}: shape {ours.shape}, reference {ref64.shape}"
    scale = float(np.max(np.abs(ref64))) if ref64.size else 0.0
    err, idx = max_abs_err(ours, ref64)
    if ours.dtype == np.float64:
        tol = RTOL64 * scale
        detail = f"tol = {RTOL64:g} * max|ref| = {tol:.3e}"
    else:
        assert ours.dtype == np.float32, f"{name}: dtype {ours.dtype}"
        assert ref32 is not None, f"{name}: the float32 rule needs PyTorch's float32 result"
        err32, _ = max_abs_err(ref32, ref64)
        tol = FACTOR32 * err32 + FLOOR_ULPS32 * EPS32 * scale + FLOOR_ABS32
        detail = (f"{baseline} err = {err32:.3e}, tol = {FACTOR32:g} * that + "
                  f"{FLOOR_ULPS32:g} ulp * max|ref| + {FLOOR_ABS32:.2e} = {tol:.3e}")
    where = ""
    if idx != ():
        where = f" at {tuple(int(i) for i in idx)} (ours {ours[idx]!r}, ref {ref64[idx]!r})"
    report = (f"{name} [{ours.dtype}, shape {ours.shape}]: max|ours - ref64| = {err:.3e}{where}; "
              f"max|ref64| = {scale:.3e}; {detail}")
    print(report)
    assert err <= tol, report


def check_all(ours, ref64, ref32=None, names=None):
    """assert_close for every key of ref64 (or `names`)."""
    for name in names or ref64:
        assert_close(name, ours[name], ref64[name], None if ref32 is None else ref32[name])


def _tensor(a, dtype, grad=False):
    t = torch.tensor(np.asarray(a), dtype=dtype)
    return t.requires_grad_(grad)


def _backward(pairs):
    """loss = sum <out, upstream> over the pairs whose upstream is not None; runs backward."""
    terms = [(out * up).sum() for out, up in pairs if up is not None]
    if terms:
        sum(terms).backward()


def _grad(t):
    """A tensor's gradient as numpy; zeros when nothing reached it."""
    if t.grad is None:
        return np.zeros(tuple(t.shape), dtype=np.float64)
    return t.grad.detach().numpy()


def _np(t):
    return t.detach().numpy()


def lstm_cell_ref(x, h0, c0, w_ih, w_hh, b, dh1, dc1, dtype=torch.float64):
    """torch.nn.LSTMCell with bias_ih = b, bias_hh = 0; h0/c0 None means zeros."""
    B, I = x.shape
    H = w_hh.shape[1]
    cell = torch.nn.LSTMCell(I, H, dtype=dtype)
    with torch.no_grad():
        cell.weight_ih.copy_(_tensor(w_ih, dtype))
        cell.weight_hh.copy_(_tensor(w_hh, dtype))
        cell.bias_ih.copy_(_tensor(b, dtype))
        cell.bias_hh.zero_()
    xt = _tensor(x, dtype, True)
    h0t = _tensor(np.zeros((B, H)) if h0 is None else h0, dtype, True)
    c0t = _tensor(np.zeros((B, H)) if c0 is None else c0, dtype, True)
    h1, c1 = cell(xt, (h0t, c0t))
    _backward([(h1, None if dh1 is None else _tensor(dh1, dtype)),
               (c1, None if dc1 is None else _tensor(dc1, dtype))])
    return {"h1": _np(h1), "c1": _np(c1), "dx": _grad(xt), "dh0": _grad(h0t), "dc0": _grad(c0t),
            "dw_ih": _grad(cell.weight_ih), "dw_hh": _grad(cell.weight_hh), "db": _grad(cell.bias_ih)}


def lstm_ref(x, h0, c0, w_ih, w_hh, b, lengths, dhs, dhT, dcT, dtype=torch.float64):
    """torch.nn.LSTM(batch_first=True); with lengths, through pack_padded_sequence(enforce_sorted=False)
    and pad_packed_sequence (zeros past a length; h_n/c_n = state after the last valid step).
    Every length must be >= 1 (PyTorch refuses 0)."""
    B, S, I = x.shape
    H = w_hh.shape[1]
    lstm = torch.nn.LSTM(I, H, batch_first=True, dtype=dtype)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(_tensor(w_ih, dtype))
        lstm.weight_hh_l0.copy_(_tensor(w_hh, dtype))
        lstm.bias_ih_l0.copy_(_tensor(b, dtype))
        lstm.bias_hh_l0.zero_()
    xt = _tensor(x, dtype, True)
    h0t = _tensor(np.zeros((B, H)) if h0 is None else h0, dtype, True)
    c0t = _tensor(np.zeros((B, H)) if c0 is None else c0, dtype, True)
    state = (h0t.unsqueeze(0), c0t.unsqueeze(0))
    if lengths is None:
        hs, (hn, cn) = lstm(xt, state)
    else:
        packed = pack_padded_sequence(xt, torch.tensor(np.asarray(lengths), dtype=torch.int64),
                                      batch_first=True, enforce_sorted=False)
        out, (hn, cn) = lstm(packed, state)
        hs, _ = pad_packed_sequence(out, batch_first=True, total_length=S)
    hT, cT = hn[0], cn[0]
    _backward([(hs, None if dhs is None else _tensor(dhs, dtype)),
               (hT, None if dhT is None else _tensor(dhT, dtype)),
               (cT, None if dcT is None else _tensor(dcT, dtype))])
    return {"hs": _np(hs), "hT": _np(hT), "cT": _np(cT), "dx": _grad(xt), "dh0": _grad(h0t),
            "dc0": _grad(c0t), "dw_ih": _grad(lstm.weight_ih_l0), "dw_hh": _grad(lstm.weight_hh_l0),
            "db": _grad(lstm.bias_ih_l0)}


def attention_scores(hs, q3, kind, params):
    """Scores [B, T, S] for source states hs [B, S, H] and queries q3 [B, T, H] (plain torch)."""
    S, H = hs.shape[1], hs.shape[2]
    if kind == "dot":
        return torch.einsum("bth,bsh->bts", q3, hs)
    if kind == "scaled_dot":
        return torch.einsum("bth,bsh->bts", q3, hs) / math.sqrt(H)
    if kind == "general":
        (w_a,) = params
        return torch.einsum("bth,bsh->bts", q3, hs @ w_a.T)          # h_t . (W_a hs_s)
    if kind == "concat":  # with the optional query bias b_q as a 4th parameter
        w_q, w_k, v = params[:3]
        query_proj = q3 @ w_q.T + params[3] if len(params) == 4 else q3 @ w_q.T
        e = torch.tanh(query_proj[:, :, None, :] + (hs @ w_k.T)[:, None, :, :])  # [B, T, S, A]
        return e @ v
    if kind == "location":
        (w_a,) = params
        return q3 @ w_a[:S].T                                          # (W_a h_t)_s, s < S
    raise AssertionError(kind)


def attention_ref(hs, q, kind, params, lengths, da, dtype=torch.float64):
    """a = softmax over s < lengths[b] of the scores (masked weights exactly 0) and the gradients of
    <a, da> with respect to hs, q and every parameter."""
    B, S, H = hs.shape
    hst = _tensor(hs, dtype, True)
    qt = _tensor(q, dtype, True)
    pts = [_tensor(p, dtype, True) for p in params]
    one_step = qt.dim() == 2
    q3 = qt.unsqueeze(1) if one_step else qt
    scores = attention_scores(hst, q3, kind, pts)
    if lengths is not None:
        masked = torch.arange(S)[None, :] >= torch.tensor(np.asarray(lengths), dtype=torch.int64)[:, None]
        scores = scores.masked_fill(masked[:, None, :], -math.inf)
    a = torch.softmax(scores, dim=-1)
    if one_step:
        a = a[:, 0]
    _backward([(a, _tensor(da, dtype))])
    return {"a": _np(a), "dhs": _grad(hst), "dq": _grad(qt), "dparams": [_grad(p) for p in pts]}


def weight_sum_ref(hs, a, dc, dtype=torch.float64):
    """c_t = sum_s a_ts hs_s, and the gradients of <c, dc> with respect to hs and a."""
    hst = _tensor(hs, dtype, True)
    at = _tensor(a, dtype, True)
    if at.dim() == 2:
        c = torch.einsum("bs,bsh->bh", at, hst)
    else:
        c = torch.einsum("bts,bsh->bth", at, hst)
    _backward([(c, _tensor(dc, dtype))])
    return {"c": _np(c), "dhs": _grad(hst), "da": _grad(at)}


def refs(ref_fn, *args, dtype, **kwargs):
    """The float64 reference, plus PyTorch's float32 run when our result is float32 (the measured rule)."""
    ref64 = ref_fn(*args, dtype=torch.float64, **kwargs)
    ref32 = ref_fn(*args, dtype=torch.float32, **kwargs) if dtype == np.float32 else None
    return ref64, ref32


# ---------------------------------------------------------------- random inputs, in the test's dtype

def lstm_weights(rng, I, H, dtype):
    """w_ih [4H, I], w_hh [4H, H], b [4H] drawn like torch's init (U(-k, k), k = 1/sqrt(H)), but
    with k doubled so that the gates leave the linear range of sigmoid/tanh."""
    k = 2.0 / math.sqrt(H)
    return (rng.uniform(-k, k, (4 * H, I)).astype(dtype),
            rng.uniform(-k, k, (4 * H, H)).astype(dtype),
            rng.uniform(-k, k, (4 * H,)).astype(dtype))


def normal(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def attention_params(rng, kind, H, dtype, A=5, S_max=None):
    """Parameters of each kind, scaled so that scores stay O(1..10) and the softmax is not one-hot.
    "concat+b_q" is concat with its optional query bias (a 4th parameter [A])."""
    k = 1.0 / math.sqrt(H)
    if kind == "concat+b_q":
        return attention_params(rng, "concat", H, dtype, A) + (normal(rng, (A,), dtype, 0.5),)
    if kind in ("dot", "scaled_dot"):
        return ()
    if kind == "general":
        return (normal(rng, (H, H), dtype, k),)
    if kind == "concat":
        return (normal(rng, (A, H), dtype, k), normal(rng, (A, H), dtype, k), normal(rng, (A,), dtype))
    if kind == "location":
        return (normal(rng, (S_max, H), dtype, k),)
    raise AssertionError(kind)


def query_shape(B, H, qmode):
    """qmode 'step' -> q [B, H]; 'T<n>' -> q [B, n, H]."""
    return (B, H) if qmode == "step" else (B, int(qmode[1:]), H)


def ragged_lengths(B, S):
    """Unsorted lengths that include S and 1 (for B >= 3); all >= 1."""
    if B == 1:
        return np.array([max(1, S - 4)], dtype=np.int64)
    base = [S, 1, max(1, S // 2)]
    return np.array([base[i % 3] for i in range(B)], dtype=np.int64)


# ---------------------------------------------------------------- a workload that runs every kernel

KINDS = ("dot", "scaled_dot", "general", "concat", "location", "concat+b_q")


def kernel_kind(kind):
    """The kernel's kind of a test kind ("concat+b_q" is concat given 4 parameters)."""
    return kind.partition("+")[0]


def every_kernel(B, S, I, H, dtype, seed, A=5, T=4):
    """Runs every public kernel (forward and backward, with lengths, one-step and all-steps
    attention of each kind) on inputs drawn from `seed`; returns {name: output array}.
    Inputs are drawn in float32 and then cast, so that the float32 and float64 runs of one seed
    see the same values (a float64 run is then the reference of the float32 run)."""
    from s2sext import ops

    rng = np.random.default_rng(seed)
    out = {}

    def draw(shape, scale=1.0):
        return normal(rng, shape, np.float32, scale).astype(dtype)

    w = tuple(p.astype(dtype) for p in lstm_weights(rng, I, H, np.float32))
    lengths = ragged_lengths(B, S)

    x1 = draw((B, I))
    h0, c0 = draw((B, H), 0.5), draw((B, H))
    h1, c1, cache = ops.lstm_cell_forward(x1, h0, c0, *w)
    grads = ops.lstm_cell_backward(draw((B, H)), draw((B, H)), cache)
    out.update({"cell.h1": h1, "cell.c1": c1})
    out.update({f"cell.{n}": g for n, g in zip(("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db"), grads)})

    x = draw((B, S, I))
    hs, hT, cT, cache = ops.lstm_forward(x, h0, c0, *w, lengths=lengths)
    grads = ops.lstm_backward(draw((B, S, H)), draw((B, H)), draw((B, H)), cache)
    out.update({"lstm.hs": hs, "lstm.hT": hT, "lstm.cT": cT})
    out.update({f"lstm.{n}": g for n, g in zip(("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db"), grads)})

    src = draw((B, S, H))
    for kind in KINDS:
        params = tuple(p.astype(dtype)
                       for p in attention_params(rng, kind, H, np.float32, A=A, S_max=S + 3))
        for qshape in ((B, H), (B, T, H)):
            tag = f"{kind}.{'step' if len(qshape) == 2 else 'all'}"
            q = draw(qshape)
            a, cache = ops.attention_weight_forward(src, q, kernel_kind(kind), params, lengths)
            dhs, dq, dparams = ops.attention_weight_backward(draw(a.shape), cache)
            c = ops.weight_sum_forward(src, a)
            dsrc, da = ops.weight_sum_backward(draw(c.shape), src, a)
            out.update({f"{tag}.a": a, f"{tag}.dhs": dhs, f"{tag}.dq": dq, f"{tag}.c": c,
                        f"{tag}.ws_dhs": dsrc, f"{tag}.ws_da": da})
            out.update({f"{tag}.dparams[{i}]": d for i, d in enumerate(dparams)})
    return out
