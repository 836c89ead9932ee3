"""A property test of every kernel in s2sext.ops over odd inputs: random sizes that include 0, 1
and odd values (B = 0/1/3, S = 0/1/13, H = 0/1/7/255, ...), random lengths (0 included where a
kernel accepts it), inputs in odd layouts (transposed, strided, Fortran-order, float16, big-endian:
converted, never refused) and a random SIMD path per case. Each case must either match a PyTorch
float64 reference under the suite's tolerance rule (reference.assert_close) or raise the documented
ValueError; it must never crash. Seeds are fixed, so a failure names the case that reproduces it.

The CI run (`test_kernels_on_odd_inputs`) draws a few dozen cases per kernel, small enough for a
sanitizer build on 2 cores; `-m fuzz` adds a longer randomized run with larger sizes.

The reference LSTM is a plain loop of torch operations (not torch.nn.LSTM, which refuses H = 0,
B = 0 and S = 0), so zero sizes are compared too: their results are what the empty sums give.
"""
import math

import numpy as np
import pytest
import torch

import s2sext
from s2sext import ops

from reference import _backward, _grad, _np, _tensor, assert_close, attention_ref, weight_sum_ref

KINDS = ops.ATTENTION_KINDS
PATHS = s2sext.cpu_info()["available_paths"]
# The layouts an input is passed in; "float16" and "big-endian" are other dtypes that the kernels
# convert. The values a kernel sees are the same in every layout (float16 inputs are drawn as
# float16 values), so one reference serves all.
LAYOUTS = ("contiguous", "transposed", "strided", "fortran", "float16", "big-endian")


# ---------------------------------------------------------------- references (plain torch)

def lstm_loop_ref(x, h0, c0, w_ih, w_hh, b, lengths, dhs, dhT, dcT, dtype=torch.float64):
    """The LSTM (PyTorch's equations and gate order i, f, g, o, as docs/model.md says) step by step
    in torch: past a length the state is carried and the output is zero. Returns the outputs and the gradients of sum <output, upstream>."""
    B, S, _ = x.shape
    H = w_hh.shape[1]
    xt, h0t, c0t = _tensor(x, dtype, True), _tensor(h0, dtype, True), _tensor(c0, dtype, True)
    wi, wh, bt = _tensor(w_ih, dtype, True), _tensor(w_hh, dtype, True), _tensor(b, dtype, True)
    running = torch.tensor(np.full(B, S) if lengths is None else np.asarray(lengths), dtype=torch.int64)
    h, c, outs = h0t, c0t, []
    for t in range(S):
        g = xt[:, t] @ wi.T + h @ wh.T + bt
        i, f, gg, o = (g[:, k * H:(k + 1) * H] for k in range(4))
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        live = (running > t)[:, None]
        h, c = torch.where(live, h_new, h), torch.where(live, c_new, c)
        outs.append(torch.where(live, h_new, torch.zeros_like(h_new)))
    hs = torch.stack(outs, 1) if outs else h0t[:, None, :][:, :0]  # S = 0: empty, still in the graph
    _backward([(hs, None if dhs is None else _tensor(dhs, dtype)),
               (h, None if dhT is None else _tensor(dhT, dtype)),
               (c, None if dcT is None else _tensor(dcT, dtype))])
    return {"hs": _np(hs), "hT": _np(h), "cT": _np(c), "dx": _grad(xt), "dh0": _grad(h0t), "dc0": _grad(c0t),
            "dw_ih": _grad(wi), "dw_hh": _grad(wh), "db": _grad(bt)}


def linear_ref(x, w, b, activation, dy, dtype=torch.float64):
    """y = act(x @ w.T + b); db is returned without a bias too (a zero bias's gradient)."""
    xt, wt = _tensor(x, dtype, True), _tensor(w, dtype, True)
    bt = _tensor(np.zeros(w.shape[0]) if b is None else b, dtype, True)
    y = xt @ wt.T + bt
    if activation == "tanh":
        y = torch.tanh(y)
    _backward([(y, _tensor(dy, dtype))])
    return {"y": _np(y), "dx": _grad(xt), "dw": _grad(wt), "db": _grad(bt)}


def both(ref_fn, ours_dtype, *args, **kwargs):
    """The float64 reference and, for a float32 result, PyTorch's float32 run (the tolerance rule)."""
    ref64 = ref_fn(*args, dtype=torch.float64, **kwargs)
    return ref64, (ref_fn(*args, dtype=torch.float32, **kwargs) if ours_dtype == np.float32 else None)


def compare(label, ours, ref64, ref32):
    for name, value in ours.items():
        assert_close(f"{label} {name}", value, ref64[name], None if ref32 is None else ref32[name])


# ---------------------------------------------------------------- random cases

def weight_scale(fan_in):
    """Weights of std 2/sqrt(fan_in) (twice torch's init, as reference.lstm_weights, so that gates
    leave the linear range), and queries of std H^-1/4, so that pre-activations and scores stay
    O(1..10): in saturated float32 regimes the error of one output against the float64 reference
    is luck, which the tolerance rule (a multiple of PyTorch's own float32 error) cannot judge."""
    return 2.0 / math.sqrt(max(fan_in, 1))


class Case:
    """One random case: sizes, a dtype, values, and the layout each argument is passed in."""

    def __init__(self, seed, big=False):
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.dtype = np.float64 if self.rng.random() < 0.3 else np.float32
        self.path = PATHS[self.rng.integers(len(PATHS))]
        self.big = big
        self.sizes = []

    def size(self, letter, choices, big_choices=()):
        value = int(self.rng.choice(list(choices) + (list(big_choices) if self.big else [])))
        self.sizes.append(f"{letter}={value}")
        return value

    def values(self, shape, scale=1.0):
        """(the array as the kernel is given it, the same values as float64 for the reference)."""
        layout = LAYOUTS[self.rng.integers(len(LAYOUTS))]
        base = (scale * self.rng.standard_normal(shape)).astype(self.dtype)
        if layout == "float16":
            base = base.astype(np.float16)
        exact = base.astype(np.float64)
        if layout == "transposed" and base.ndim >= 2:
            arg = np.ascontiguousarray(base.T).T                     # a non-contiguous view
        elif layout == "strided":
            wide = np.zeros(shape[:-1] + (2 * shape[-1],) if shape else (2,), base.dtype)
            arg = wide[..., ::2] if shape else wide[::2].reshape(())
            arg[...] = base
        elif layout == "fortran":
            arg = np.asfortranarray(base)
        elif layout == "big-endian":
            arg = base.astype(base.dtype.newbyteorder(">"))
        else:
            arg = base
        return arg, exact

    def primary(self, shape, scale=1.0):
        """The first array argument fixes the computation dtype: it is passed in self.dtype."""
        base = (scale * self.rng.standard_normal(shape)).astype(self.dtype)
        if base.ndim >= 2 and self.rng.random() < 0.5:
            return np.ascontiguousarray(base.T).T, base.astype(np.float64)
        return base, base.astype(np.float64)

    def lengths(self, B, S, minimum):
        if self.rng.random() < 0.3:
            return None
        return self.rng.integers(minimum, S + 1, B) if S >= minimum else np.zeros(B, np.int64)

    def __str__(self):
        return f"seed {self.seed}, {np.dtype(self.dtype).name}, path {self.path}, " + ", ".join(self.sizes)


def run_lstm_cell(case):
    B, I, H = case.size("B", (0, 1, 3), (8, 9)), case.size("I", (0, 1, 5)), case.size("H", (0, 1, 7), (33, 255))
    x, x64 = case.primary((B, I))
    (h0, h64), (c0, c64) = case.values((B, H), 0.5), case.values((B, H))
    (w_ih, wi64), (w_hh, wh64), (b, b64) = (case.values(s, weight_scale(H)) for s in ((4 * H, I), (4 * H, H), (4 * H,)))
    (dh1, dh64), (dc1, dc64) = case.values((B, H)), case.values((B, H))
    h1, c1, cache = ops.lstm_cell_forward(x, h0, c0, w_ih, w_hh, b)
    dx, dh0, dc0, dw_ih, dw_hh, db = ops.lstm_cell_backward(dh1, dc1, cache)
    ref64, ref32 = both(lstm_loop_ref, case.dtype, x64[:, None], h64, c64, wi64, wh64, b64, None, None, dh64, dc64)
    for ref in (ref64, ref32):
        if ref is not None:
            ref["dx"] = ref["dx"][:, 0]
    compare("lstm_cell", {"hT": h1, "cT": c1, "dx": dx, "dh0": dh0, "dc0": dc0, "dw_ih": dw_ih, "dw_hh": dw_hh,
                          "db": db}, ref64, ref32)


def run_lstm(case):
    B, S = case.size("B", (0, 1, 3), (9, 16)), case.size("S", (0, 1, 13))
    I, H = case.size("I", (0, 1, 5), (16,)), case.size("H", (0, 1, 7), (33, 255))
    x, x64 = case.primary((B, S, I))
    (h0, h64), (c0, c64) = case.values((B, H), 0.5), case.values((B, H))
    (w_ih, wi64), (w_hh, wh64), (b, b64) = (case.values(s, weight_scale(H)) for s in ((4 * H, I), (4 * H, H), (4 * H,)))
    lengths = case.lengths(B, S, 0)
    upstream = [case.values(s) if case.rng.random() < 0.8 else (None, None) for s in ((B, S, H), (B, H), (B, H))]
    hs, hT, cT, cache = ops.lstm_forward(x, h0, c0, w_ih, w_hh, b, lengths)
    grads = ops.lstm_backward(*(u for u, _ in upstream), cache)
    ref64, ref32 = both(lstm_loop_ref, case.dtype, x64, h64, c64, wi64, wh64, b64, lengths, *(e for _, e in upstream))
    ours = {"hs": hs, "hT": hT, "cT": cT, **dict(zip(("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db"), grads))}
    compare("lstm", ours, ref64, ref32)


def run_attention(case):
    kind = KINDS[case.rng.integers(len(KINDS))]
    case.sizes.append(kind)
    B, S, H = case.size("B", (0, 1, 3), (9,)), case.size("S", (0, 1, 13), (40,)), case.size("H", (0, 1, 7), (255,))
    A, T = case.size("A", (0, 1, 5)), case.size("T", (0, 1, 4))
    one_step = case.rng.random() < 0.4
    case.sizes.append("one step" if one_step else "all steps")
    hs, hs64 = case.primary((B, S, H))
    q, q64 = case.values((B, H) if one_step else (B, T, H), max(H, 1) ** -0.25)
    k = 1.0 / math.sqrt(max(H, 1))
    shapes = {"dot": (), "scaled_dot": (), "general": ((H, H),), "concat": ((A, H), (A, H), (A,)),
              "location": ((S + int(case.rng.integers(0, 3)), H),)}[kind]
    params = [case.values(s, k if len(s) == 2 else 1.0) for s in shapes]
    if S == 0:  # nothing to attend to: refused, as documented
        with pytest.raises(ValueError, match="at least one source position"):
            ops.attention_weight_forward(hs, q, kind, tuple(p for p, _ in params))
        return
    lengths = case.lengths(B, S, 1)
    a, cache = ops.attention_weight_forward(hs, q, kind, tuple(p for p, _ in params), lengths)
    da, da64 = case.values(a.shape)
    dhs, dq, dparams = ops.attention_weight_backward(da, cache)
    # H = 0: every score is an empty sum, 0 (scaled_dot's 1/sqrt(H) is not applied to it, where
    # torch's 0 / sqrt(0) would give NaN), the same as dot's
    ref_kind = "dot" if kind == "scaled_dot" and H == 0 else kind
    ref64, ref32 = both(attention_ref, case.dtype, hs64, q64, ref_kind, [e for _, e in params], lengths, da64)
    ours = {"a": a, "dhs": dhs, "dq": dq}
    for i, d in enumerate(dparams):
        ours[f"dparams[{i}]"] = d
        for ref in (ref64, ref32):
            if ref is not None:
                ref[f"dparams[{i}]"] = ref["dparams"][i]
    compare(f"attention {kind}", ours, ref64, ref32)


def run_weight_sum(case):
    B, S, H = case.size("B", (0, 1, 3), (9,)), case.size("S", (0, 1, 13)), case.size("H", (0, 1, 7), (255,))
    T = case.size("T", (0, 1, 4))
    one_step = case.rng.random() < 0.4
    hs, hs64 = case.primary((B, S, H))
    a, a64 = case.values((B, S) if one_step else (B, T, S))
    dc, dc64 = case.values((B, H) if one_step else (B, T, H))
    c = ops.weight_sum_forward(hs, a)
    dhs, da = ops.weight_sum_backward(dc, hs, a)
    ref64, ref32 = both(weight_sum_ref, case.dtype, hs64, a64, dc64)
    compare("weight_sum", {"c": c, "dhs": dhs, "da": da}, ref64, ref32)


def run_linear(case):
    N, I, O = case.size("N", (0, 1, 3), (9, 17)), case.size("I", (0, 1, 5), (255,)), case.size("O", (0, 1, 6))
    lead = (N,) if case.rng.random() < 0.6 else (N, case.size("T", (0, 1, 4)))  # [..., I] inputs
    activation = "tanh" if case.rng.random() < 0.5 else "none"
    x, x64 = case.primary(lead + (I,))
    # std 1/sqrt(I), as test_dense.py: tanh's 1 - y^2 turns y's last-bit rounding into a relative
    # error of 1/(1 - y^2), so deep saturation is not a regime the float32 rule can judge
    w, w64 = case.values((O, I), weight_scale(I) / 2)
    b, b64 = case.values((O,)) if case.rng.random() < 0.7 else (None, None)
    y = ops.linear_forward(x, w, b, activation)
    dy, dy64 = case.values(y.shape)
    dx, dw, db = ops.linear_backward(dy, x, w, y, activation)
    ref64, ref32 = both(linear_ref, case.dtype, x64, w64, b64, activation, dy64)
    compare(f"linear {activation}", {"y": y, "dx": dx, "dw": dw, "db": db}, ref64, ref32)


RUNNERS = {"lstm_cell": run_lstm_cell, "lstm": run_lstm, "attention": run_attention,
           "weight_sum": run_weight_sum, "linear": run_linear}


def run_case(name, seed, big=False):
    case = Case(seed, big)
    previous = s2sext.set_kernel_path(case.path)
    try:
        RUNNERS[name](case)
    except BaseException as e:  # name the case that reproduces the failure
        e.add_note(f"case: {name}, {case}") if hasattr(e, "add_note") else None
        raise
    finally:
        s2sext.set_kernel_path(previous)


@pytest.mark.parametrize("name", list(RUNNERS))
def test_kernels_on_odd_inputs(name):
    for seed in range(100):
        run_case(name, 1000 * list(RUNNERS).index(name) + seed)


@pytest.mark.fuzz
@pytest.mark.parametrize("name", list(RUNNERS))
def test_kernels_on_odd_inputs_long(name):
    for seed in range(1500):
        run_case(name, 10**6 + 10**4 * list(RUNNERS).index(name) + seed, big=True)


@pytest.mark.parametrize("lengths", [None, [0, 3], [2, 0]])
def test_lstm_backward_with_no_hidden_units(lengths):
    """H = 0 (no gates at all): the backward used to divide by G = 4H = 0 (SIGFPE, the interpreter
    died); now every gradient is empty except dx, which is zero, as for PyTorch's empty sums."""
    x = np.ones((2, 3, 4), np.float32)
    empty_w = np.zeros((0, 4), np.float32), np.zeros((0, 0), np.float32), np.zeros(0, np.float32)
    hs, hT, cT, cache = ops.lstm_forward(x, None, None, *empty_w, lengths)
    assert hs.shape == (2, 3, 0) and hT.shape == cT.shape == (2, 0)
    dx, dh0, dc0, dw_ih, dw_hh, db = ops.lstm_backward(np.zeros((2, 3, 0)), None, None, cache)
    assert np.array_equal(dx, np.zeros((2, 3, 4), np.float32))
    assert dh0.shape == dc0.shape == (2, 0) and dw_ih.shape == (0, 4) and dw_hh.shape == (0, 0) and db.shape == (0,)
