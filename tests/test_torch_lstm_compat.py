"""PyTorch's own nn.LSTM test cases (test_nn.py, test_modules.py and the LSTM entries of
common_modules.py), re-written in our words and run against BOTH torch.nn.LSTM and
s2sext.torch.LSTM: every test takes the class as a parameter, so torch.nn.LSTM passing a test
shows that what it expects is nn.LSTM's behaviour, and s2sext.torch.LSTM passing it shows that
the drop-in behaves the same.

Numbers are compared with `reference`, nn.LSTM's documented equations written out step by step
in torch ops (independent of both classes), or with another run of the class under test.
"""

import copy
import itertools
import pickle

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import s2sext.torch as st

CLASSES = {"nn": torch.nn.LSTM, "s2sext": st.LSTM}

# torch.nn.LSTM with proj_size notes once that oneDNN has no projection (its own fallback, not ours)
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN:UserWarning")


@pytest.fixture(params=list(CLASSES))
def LSTM(request):
    return CLASSES[request.param]


def randn(*shape, dtype=torch.float64, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=dtype) * 0.7).requires_grad_(requires_grad)


def build(LSTM, input_size, hidden_size, dtype=torch.float64, seed=0, **kw):
    torch.manual_seed(seed)
    return LSTM(input_size, hidden_size, dtype=dtype, **kw)


def reference(m, x, hx=None, between=None):
    """nn.LSTM's documented equations, one step at a time, from m's named parameters:
    i, f, g, o = sigma, sigma, tanh, sigma of x W_ih^T + b_ih + h W_hh^T + b_hh; c' = f c + i g;
    h' = o tanh(c'), then h' = h' W_hr^T with a projection. ``between`` (e.g. a dropout) maps
    each layer's output [S, B, D*P] but the last's before the next layer reads it."""
    batched = x.dim() == 3
    if not batched:
        x = x.unsqueeze(0 if m.batch_first else 1)
        hx = None if hx is None else tuple(t.unsqueeze(1) for t in hx)
    seq = x.transpose(0, 1) if m.batch_first else x  # [S, B, I]
    S, B = seq.shape[0], seq.shape[1]
    D = 2 if m.bidirectional else 1
    H, P = m.hidden_size, m.proj_size or m.hidden_size
    if hx is None:
        hx = (torch.zeros(m.num_layers * D, B, P, dtype=x.dtype), torch.zeros(m.num_layers * D, B, H, dtype=x.dtype))
    h_n, c_n = [], []
    for layer in range(m.num_layers):
        outs = []
        for d, suffix in enumerate(["", "_reverse"][:D]):
            p = {n: getattr(m, f"{n}_l{layer}{suffix}", None) for n in ("weight_ih", "weight_hh", "bias_ih",
                                                                           "bias_hh", "weight_hr")}
            h, c = hx[0][layer * D + d], hx[1][layer * D + d]
            ys = [None] * S
            for t in (range(S) if d == 0 else reversed(range(S))):
                gates = seq[t] @ p["weight_ih"].T + h @ p["weight_hh"].T
                if m.bias:
                    gates = gates + p["bias_ih"] + p["bias_hh"]
                i, f, g, o = gates.chunk(4, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                if m.proj_size:
                    h = h @ p["weight_hr"].T
                ys[t] = h
            outs.append(torch.stack(ys))
            h_n.append(h)
            c_n.append(c)
        seq = torch.cat(outs, dim=2)
        if between is not None and layer < m.num_layers - 1:
            seq = between(seq)
    out = seq.transpose(0, 1) if m.batch_first else seq
    h_n, c_n = torch.stack(h_n), torch.stack(c_n)
    if not batched:
        return out.squeeze(0 if m.batch_first else 1), (h_n.squeeze(1), c_n.squeeze(1))
    return out, (h_n, c_n)


def loss_of(out, h, c):
    """A scalar touching every output with distinct weights, so a wrong gradient anywhere shows."""
    w = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    return (out * w).sum() + 0.3 * (h * h).sum() + 0.7 * c.sum()


def assert_same_run(m, x, hx, rtol, atol):
    """m(x, hx) equals reference(m, x, hx): outputs, and the gradients of loss_of for the input,
    the initial state and every parameter."""
    leaves = [x] + ([] if hx is None else list(hx))
    got = m(x, hx) if hx is not None else m(x)
    want = reference(m, x, hx)
    params = [p for _, p in m.named_parameters()]
    g_got = torch.autograd.grad(loss_of(got[0], *got[1]), leaves + params)
    g_want = torch.autograd.grad(loss_of(want[0], *want[1]), leaves + params)
    for a, b, what in ((got[0], want[0], "output"), (got[1][0], want[1][0], "h_n"), (got[1][1], want[1][1], "c_n")):
        assert a.shape == b.shape, what
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=what)
    names = ["input", "h_0", "c_0"][:len(leaves)] + [n for n, _ in m.named_parameters()]
    for a, b, name in zip(g_got, g_want, names):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=f"d loss / d {name}")


# nn.LSTM's configurations in common_modules.py (module_inputs_torch_nn_LSTM) and test_nn.py
CONFIGS = [
    dict(),
    dict(num_layers=2),
    dict(num_layers=3, bidirectional=True),
    dict(bias=False),
    dict(batch_first=True),
    dict(bidirectional=True, bias=False, batch_first=True),
    dict(proj_size=2),
    dict(proj_size=3, num_layers=2, bidirectional=True, batch_first=True),
]


def config_id(kw):
    return ",".join(f"{k}={v}" for k, v in kw.items()) or "default"


# float64 on both sides: only the order of the sums differs (~1e-15 relative); 1e-10 leaves
# room for that over 3 layers and 5 steps and still catches any wrong term
F64 = dict(rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kw", CONFIGS, ids=config_id)
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("with_hx", [True, False], ids=["hx", "no-hx"])
def test_forward_backward_match_the_equations(LSTM, kw, batched, with_hx):
    m = build(LSTM, 3, 5, **kw)
    S, B = 5, 3
    D, P = (2 if m.bidirectional else 1), m.proj_size or m.hidden_size
    shape = ((B, S, 3) if m.batch_first else (S, B, 3)) if batched else (S, 3)
    x = randn(*shape, seed=1, requires_grad=True)
    hx = None
    if with_hx:
        lead = (m.num_layers * D, B) if batched else (m.num_layers * D,)
        hx = (randn(*lead, P, seed=2, requires_grad=True), randn(*lead, 5, seed=3, requires_grad=True))
    assert_same_run(m, x, hx, **F64)


@pytest.mark.parametrize("B,H,S", [(1, 1, 1), (3, 7, 13), (1, 7, 1), (3, 1, 13)])
def test_odd_sizes(LSTM, B, H, S):
    m = build(LSTM, 2, H, num_layers=2, bidirectional=True)
    assert_same_run(m, randn(S, B, 2, seed=4, requires_grad=True), None, **F64)


def test_float32(LSTM):
    """float32 against the float64 equations from the same weights: each product sums at most
    4 + 6 terms and the state passes through 7 steps, so float32 rounding (6e-8 per operation)
    stays below 1e-5; a wrong term would be off by ~1e-1."""
    m = build(LSTM, 4, 6, num_layers=2, bidirectional=True, dtype=torch.float32)
    x = randn(7, 3, 4, seed=5, dtype=torch.float32, requires_grad=True)
    out, (h, c) = m(x)
    assert out.dtype == h.dtype == c.dtype == torch.float32
    m64 = copy.deepcopy(m).double()
    x64 = x.detach().double().requires_grad_(True)
    want, (hw, cw) = reference(m64, x64)
    for a, b in ((out, want), (h, hw), (c, cw)):
        torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-5)
    loss_of(out, h, c).backward()
    loss_of(want, hw, cw).backward()
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-5, atol=1e-5)
    for (name, p), p64 in zip(m.named_parameters(), m64.parameters()):
        torch.testing.assert_close(p.grad.double(), p64.grad, rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("enforce_sorted", [True, False])
@pytest.mark.parametrize("kw", [dict(num_layers=2, bidirectional=True), dict(proj_size=2, batch_first=True)],
                         ids=config_id)
def test_packed_sequence_is_each_sequence_alone(LSTM, enforce_sorted, kw):
    """test_variable_sequence: a packed batch gives each sequence's own outputs and final state
    (h_n, c_n in the caller's row order), and the same gradients."""
    m = build(LSTM, 3, 4, seed=6, **kw)
    lengths = [5, 3, 3, 1] if enforce_sorted else [3, 5, 1, 3]
    B, S, D, P = len(lengths), max(lengths), (2 if m.bidirectional else 1), m.proj_size or m.hidden_size
    x = randn(B, S, 3, seed=7, requires_grad=True)
    hx = (randn(m.num_layers * D, B, P, seed=8, requires_grad=True), randn(m.num_layers * D, B, 4, seed=9,
                                                                            requires_grad=True))
    seqs = x if m.batch_first else x.transpose(0, 1)
    packed = pack_padded_sequence(seqs, torch.tensor(lengths), batch_first=m.batch_first,
                                  enforce_sorted=enforce_sorted)
    out, (h, c) = m(packed, hx)
    padded, out_lengths = pad_packed_sequence(out, batch_first=True)
    assert out_lengths.tolist() == lengths
    total = loss_of(padded, h, c)
    want_total = 0
    for b, L in enumerate(lengths):
        one = x[b, :L]
        out_b, (h_b, c_b) = reference(m, one, (hx[0][:, b], hx[1][:, b]))
        torch.testing.assert_close(padded[b, :L], out_b, **F64)
        assert torch.all(padded[b, L:] == 0)
        torch.testing.assert_close(h[:, b], h_b, **F64)
        torch.testing.assert_close(c[:, b], c_b, **F64)
        w = torch.linspace(-1, 1, padded.numel(), dtype=padded.dtype).reshape(padded.shape)[b, :L]
        want_total = want_total + (out_b * w).sum() + 0.3 * (h_b * h_b).sum() + 0.7 * c_b.sum()
    leaves = [x, *hx, *m.parameters()]
    for a, b_ in zip(torch.autograd.grad(total, leaves), torch.autograd.grad(want_total, leaves)):
        torch.testing.assert_close(a, b_, **F64)


def test_zero_initial_state_is_no_initial_state(LSTM):
    """test_rnn_initial_hidden_state."""
    m = build(LSTM, 3, 4, num_layers=2, bidirectional=True, proj_size=2)
    x = randn(5, 2, 3, seed=10)
    out0, (h0, c0) = m(x)
    out1, (h1, c1) = m(x, (torch.zeros(4, 2, 2, dtype=x.dtype), torch.zeros(4, 2, 4, dtype=x.dtype)))
    assert torch.equal(out0, out1) and torch.equal(h0, h1) and torch.equal(c0, c1)


def test_batch_of_zero_rows(LSTM):
    m = build(LSTM, 3, 4, bidirectional=True)
    out, (h, c) = m(randn(5, 0, 3))
    assert out.shape == (5, 0, 8) and h.shape == (2, 0, 4) and c.shape == (2, 0, 4)


def test_non_contiguous_input_and_state(LSTM):
    """test_modules' test_non_contiguous_tensors: strided views give the contiguous result."""
    m = build(LSTM, 3, 4, num_layers=2)
    x = randn(3, 5, 6, seed=11)[:, :, ::2].transpose(0, 1)  # [5, 3, 3], neither axis contiguous
    hx = (randn(3, 2, 4, seed=12).transpose(0, 1), randn(3, 2, 4, seed=13).transpose(0, 1))
    assert not x.is_contiguous() and not hx[0].is_contiguous()
    got = m(x, hx)
    want = m(x.contiguous(), tuple(t.contiguous() for t in hx))
    # nn.LSTM itself takes another BLAS path for strided operands: equal up to summation order
    torch.testing.assert_close(got[0], want[0], **F64)
    torch.testing.assert_close(got[1], want[1], **F64)


# ---------------------------------------------------------------------------------------------
# Dropout (test_RNN_dropout, test_RNN_change_dropout, test_RNN_dropout_state)


def test_dropout_between_layers(LSTM):
    """Dropout sits between layers only: in eval mode it is off; in training p=0 is off and p=1
    zeroes the last layer's input, so the output is that layer run on zeros."""
    m = build(LSTM, 4, 5, num_layers=2, dropout=1.0)
    x = randn(6, 2, 4, seed=14)
    no_dropout = reference(m, x)
    m.eval()
    out, (h, c) = m(x)
    torch.testing.assert_close(out, no_dropout[0], **F64)
    m.train()
    out, (h, c) = m(x)
    layer1_h, layer1_c = no_dropout[1][0][0], no_dropout[1][1][0]
    last = build(LSTM, 5, 5)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        getattr(last, f"{name}_l0").data.copy_(getattr(m, f"{name}_l1"))
    want, (hw, cw) = reference(last, torch.zeros(6, 2, 5, dtype=x.dtype))
    torch.testing.assert_close(out, want, **F64)
    torch.testing.assert_close(h, torch.stack([layer1_h, hw[0]]), **F64)
    torch.testing.assert_close(c, torch.stack([layer1_c, cw[0]]), **F64)


@pytest.mark.parametrize("kw", [dict(), dict(batch_first=True, bidirectional=True), dict(proj_size=2)],
                         ids=config_id)
def test_dropout_masks_follow_the_seed(LSTM, kw):
    """In training, a layer's output is dropped out over its time-major [S, B, D*P] layout, so
    that one seed gives nn.LSTM's masks (and outputs, and gradients)."""
    m = build(LSTM, 3, 4, num_layers=3, dropout=0.4, **kw)
    x = randn(*((2, 5, 3) if m.batch_first else (5, 2, 3)), seed=24, requires_grad=True)
    torch.manual_seed(7)
    out, (h, c) = m(x)
    torch.manual_seed(7)
    want, (hw, cw) = reference(m, x, between=lambda y: torch.nn.functional.dropout(y, 0.4, training=True))
    for a, b in ((out, want), (h, hw), (c, cw)):
        torch.testing.assert_close(a, b, **F64)
    g = torch.autograd.grad(loss_of(out, h, c), [x, *m.parameters()])
    gw = torch.autograd.grad(loss_of(want, hw, cw), [x, *m.parameters()])
    for a, b in zip(g, gw):
        torch.testing.assert_close(a, b, **F64)


@pytest.mark.parametrize("enforce_sorted", [True, False])
def test_dropout_masks_of_packed_sequences_are_nn_lstms(LSTM, enforce_sorted):
    """With a PackedSequence nn.LSTM drops out the packed data [sum of lengths, D*P]; the class
    under test, seeded alike, gives nn.LSTM's output (nn.LSTM itself is the reference here)."""
    m = build(LSTM, 3, 4, num_layers=2, dropout=0.5, bidirectional=True)
    ref = build(CLASSES["nn"], 3, 4, num_layers=2, dropout=0.5, bidirectional=True)
    ref.load_state_dict(m.state_dict())
    lengths = torch.tensor([5, 4, 4, 1] if enforce_sorted else [4, 1, 5, 4])
    x = pack_padded_sequence(randn(5, 4, 3, seed=25), lengths, enforce_sorted=enforce_sorted)
    torch.manual_seed(8)
    out, (h, c) = m(x)
    torch.manual_seed(8)
    out_ref, (h_ref, c_ref) = ref(x)
    torch.testing.assert_close(out.data, out_ref.data, **F64)
    torch.testing.assert_close(h, h_ref, **F64)
    torch.testing.assert_close(c, c_ref, **F64)


@pytest.mark.parametrize("train", [True, False])
def test_changing_dropout_after_construction(LSTM, train):
    m = build(LSTM, 6, 6, num_layers=2)
    m.train(train)
    x = randn(3, 2, 6, seed=15)
    baseline = m(x)[0]
    for p in (0, 0.5, 0, 0.7, 0.2, 1, 0.2, 0):
        m.dropout = p
        out1, (h1, _) = m(x)
        out2, (h2, _) = m(x)
        if p in (0, 1) or not train:
            assert torch.equal(out1, out2) and torch.equal(h1, h2)
        else:
            assert not torch.equal(out1, out2)
        if not train or p == 0:
            assert torch.equal(out1, baseline)


def test_dropout_state_survives_pickling(LSTM):
    m = build(LSTM, 4, 4, num_layers=2, dropout=0.4)
    m2 = pickle.loads(pickle.dumps(m))
    assert m2.dropout == 0.4 and type(m2) is LSTM
    m.eval()
    m2.eval()
    x = randn(3, 2, 4, seed=16)
    assert torch.equal(m(x)[0], m2(x)[0])


# ---------------------------------------------------------------------------------------------
# Gradients of gradients


def functional(m, batched=True):
    """(inputs, f): f(x, h0, c0, *params) = the output, h_n and c_n of m with those tensors."""
    names = [n for n, _ in m.named_parameters()]

    def f(x, h0, c0, *params):
        out, (h, c) = torch.func.functional_call(m, dict(zip(names, params)), (x, (h0, c0)))
        return out, h, c
    return names, f


@pytest.mark.parametrize("kw", [dict(), dict(num_layers=2, bidirectional=True), dict(proj_size=1, bias=False)],
                         ids=config_id)
def test_gradcheck_and_gradgradcheck(LSTM, kw):
    """test_modules' test_grad/test_gradgrad for LSTM, on tiny shapes: finite differences of the
    float64 forward (eps 1e-6, error ~1e-10) against the first and second derivatives."""
    m = build(LSTM, 2, 2, **kw)
    D, P = (2 if m.bidirectional else 1), m.proj_size or m.hidden_size
    inputs = (randn(2, 2, 2, seed=17, requires_grad=True), randn(m.num_layers * D, 2, P, seed=18, requires_grad=True),
              randn(m.num_layers * D, 2, 2, seed=19, requires_grad=True))
    _, f = functional(m)
    params = tuple(p.detach().clone().requires_grad_(True) for p in m.parameters())
    # with 16 parameter tensors the full Jacobians are slow; fast mode compares them along random
    # directions, where any wrong entry shows (with probability 1)
    fast = m.num_layers > 1
    assert torch.autograd.gradcheck(f, inputs + params, fast_mode=fast)
    assert torch.autograd.gradgradcheck(f, inputs + params, fast_mode=fast)


def test_gradgradcheck_packed_and_unbatched(LSTM):
    m = build(LSTM, 2, 2, bidirectional=True)
    x = randn(3, 2, 2, seed=20, requires_grad=True)

    def packed(x):
        out, (h, c) = m(pack_padded_sequence(x, torch.tensor([3, 1]), enforce_sorted=True))
        return out.data, h, c
    assert torch.autograd.gradgradcheck(packed, (x,))
    assert torch.autograd.gradgradcheck(lambda x: m(x)[0], (randn(3, 2, seed=21, requires_grad=True),))


@pytest.mark.parametrize("kw", [dict(num_layers=2, bidirectional=True), dict(proj_size=2)], ids=config_id)
def test_gradient_penalty(LSTM, kw):
    """A loss with the input gradient in it (create_graph=True), as WGAN-GP and double backprop
    write it: its parameter gradients are the equations'."""
    m = build(LSTM, 3, 4, **kw)
    x = randn(5, 2, 3, seed=22, requires_grad=True)

    def penalised(run):
        out, _ = run(x)
        dx, = torch.autograd.grad(out.pow(2).sum(), x, create_graph=True)
        assert dx.requires_grad
        loss = out.pow(2).sum() + dx.pow(2).sum()
        return torch.autograd.grad(loss, list(m.parameters()))

    got, want = penalised(m), penalised(lambda x: reference(m, x))
    for (name, _), a, b in zip(m.named_parameters(), got, want):
        torch.testing.assert_close(a, b, **F64, msg=name)


# torch.func.jvp's first call scripts torch's own decompositions, which torch 2.13 warns about
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torch_func_transforms(LSTM):
    """torch.func's grad, jacrev, hessian and jvp, functional_call over the parameters and
    forward-mode AD (test_modules' forward-AD and functorch checks) give the equations' values."""
    m = build(LSTM, 2, 3, bidirectional=True, num_layers=2)
    x, v = randn(3, 2, 2, seed=26), randn(3, 2, 2, seed=27)
    ours = lambda x: m(x)[0].pow(2).sum()  # noqa: E731
    want = lambda x: reference(m, x)[0].pow(2).sum()  # noqa: E731
    torch.testing.assert_close(torch.func.grad(ours)(x), torch.func.grad(want)(x), **F64)
    torch.testing.assert_close(torch.func.jacrev(lambda x: m(x)[1][0])(x),
                               torch.func.jacrev(lambda x: reference(m, x)[1][0])(x), **F64)
    torch.testing.assert_close(torch.func.hessian(ours)(x[:2, :1]), torch.func.hessian(want)(x[:2, :1]), **F64)
    torch.testing.assert_close(torch.func.jvp(lambda x: m(x)[0], (x,), (v,))[1],
                               torch.func.jvp(lambda x: reference(m, x)[0], (x,), (v,))[1], **F64)
    params = dict(m.named_parameters())
    got = torch.func.grad(lambda p: torch.func.functional_call(m, p, (x,))[0].pow(2).sum())(params)
    expected = torch.autograd.grad(want(x), list(params.values()))
    for (name, g), e in zip(got.items(), expected):
        torch.testing.assert_close(g, e, **F64, msg=name)
    with torch.autograd.forward_ad.dual_level():
        tangent = torch.autograd.forward_ad.unpack_dual(m(torch.autograd.forward_ad.make_dual(x, v))[0]).tangent
    torch.testing.assert_close(tangent, torch.func.jvp(lambda x: reference(m, x)[0], (x,), (v,))[1], **F64)


# ---------------------------------------------------------------------------------------------
# Parameters, attributes, state dicts


@pytest.mark.parametrize("kw", CONFIGS, ids=config_id)
def test_parameters_and_attributes(LSTM, kw):
    """nn.LSTM's parameter names, order and shapes (test_lstm_proj for weight_hr), mode,
    all_weights, _flat_weights_names, _all_weights and repr; and one seed gives the same weights."""
    m = build(LSTM, 3, 5, **kw)
    D, H, P, L = (2 if kw.get("bidirectional") else 1), 5, kw.get("proj_size", 0) or 5, kw.get("num_layers", 1)
    names = []
    for layer, suffix in itertools.product(range(L), ["", "_reverse"][:D]):
        per = [f"weight_ih_l{layer}{suffix}", f"weight_hh_l{layer}{suffix}"]
        per += [f"bias_ih_l{layer}{suffix}", f"bias_hh_l{layer}{suffix}"] if kw.get("bias", True) else []
        per += [f"weight_hr_l{layer}{suffix}"] if kw.get("proj_size") else []
        names.append(per)
    assert m._all_weights == names
    assert m._flat_weights_names == [n for per in names for n in per]
    assert [n for n, _ in m.named_parameters()] == m._flat_weights_names
    layers = itertools.chain.from_iterable([k] * D for k in range(L))
    for layer, per_names, per in zip(layers, names, m.all_weights):
        assert all(p is getattr(m, n) for n, p in zip(per_names, per))
        shapes = {n.split("_l")[0]: tuple(p.shape) for n, p in zip(per_names, per)}
        assert shapes["weight_ih"] == (4 * H, 3 if layer == 0 else P * D)
        assert shapes["weight_hh"] == (4 * H, P)
        if kw.get("proj_size"):
            assert shapes["weight_hr"] == (P, H)
    assert m.mode == "LSTM" and m.proj_size == kw.get("proj_size", 0)
    other = build(CLASSES["nn"], 3, 5, **kw)
    assert repr(m) == repr(other)
    for (n1, p1), (n2, p2) in zip(m.state_dict().items(), other.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)


def test_state_dict_round_trip_both_ways(LSTM):
    kw = dict(num_layers=2, bidirectional=True, proj_size=2)
    m = build(LSTM, 3, 4, seed=1, **kw)
    for other_cls in CLASSES.values():
        other = build(other_cls, 3, 4, seed=2, **kw)
        other.load_state_dict(m.state_dict())
        back = build(LSTM, 3, 4, seed=3, **kw)
        back.load_state_dict(other.state_dict())
        x = randn(4, 2, 3, seed=23)
        torch.testing.assert_close(other(x)[0], m(x)[0], **F64)
        assert torch.equal(back(x)[0], m(x)[0])


def test_dtype_conversion(LSTM):
    """test_modules' test_factory_kwargs/.double(): converted modules compute in the new dtype."""
    m = build(LSTM, 3, 4, dtype=torch.float32).double()
    assert all(p.dtype == torch.float64 for p in m.parameters())
    out, (h, c) = m(randn(2, 1, 3))
    assert out.dtype == torch.float64


# ---------------------------------------------------------------------------------------------
# Argument checks (RNNBase.__init__; module_error_inputs and test_rnn_args_check)

CONSTRUCTOR_ERRORS = [
    (dict(bias="False"), TypeError, "bias should be of type bool"),
    (dict(bias=0), TypeError, "bias should be of type bool"),
    (dict(batch_first=1), TypeError, "batch_first should be of type bool"),
    (dict(input_size=3.0), TypeError, "input_size should be of type int"),
    (dict(hidden_size=4.0), TypeError, "hidden_size should be of type int"),
    (dict(num_layers=2.0), TypeError, None),
    (dict(input_size=0), ValueError, "input_size must be greater than zero"),
    (dict(hidden_size=-1), ValueError, "hidden_size must be greater than zero"),
    (dict(num_layers=0), ValueError, "num_layers must be greater than zero"),
    (dict(num_layers=2, dropout=-0.1), ValueError, "dropout should be a number in range"),
    (dict(num_layers=2, dropout=1.1), ValueError, "dropout should be a number in range"),
    (dict(num_layers=2, dropout=True), ValueError, "dropout should be a number in range"),
    (dict(num_layers=2, dropout="0.5"), ValueError, "dropout should be a number in range"),
    (dict(proj_size=-1), ValueError, "proj_size should be a positive integer or zero"),
    (dict(proj_size=4), ValueError, "proj_size has to be smaller than hidden_size"),
    (dict(proj_size=2.0), TypeError, None),
    (dict(proj_size=True), TypeError, None),
]


@pytest.mark.parametrize("kw,exc,match", CONSTRUCTOR_ERRORS, ids=[config_id(c[0]) for c in CONSTRUCTOR_ERRORS])
def test_constructor_refuses(LSTM, kw, exc, match):
    args = {"input_size": 3, "hidden_size": 4, **kw}
    with pytest.raises(exc, match=match):
        LSTM(**args)


def test_constructor_accepts(LSTM):
    assert LSTM(3, 4, num_layers=2, dropout=1.0).dropout == 1.0  # [0, 1], 1 included
    assert LSTM(3, 4, num_layers=2, dropout=0).dropout == 0.0
    assert LSTM(3, 4, bidirectional=1).bidirectional == 1  # not type-checked: any truthy value
    assert LSTM(3, 4, num_layers=True).num_layers is True  # a bool is an int
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        LSTM(3, 4, dropout=0.5)


def error_cases():
    """(name, input, hx, exception): nn.LSTM(3, 4, num_layers=2) forward calls it refuses."""
    f64 = torch.float64
    ok_h = (torch.zeros(2, 3, 4, dtype=f64), torch.zeros(2, 3, 4, dtype=f64))
    return [
        ("input size", torch.zeros(5, 3, 2, dtype=f64), None, RuntimeError),
        ("input size unbatched", torch.zeros(5, 2, dtype=f64), None, RuntimeError),
        ("h_0 layers", torch.zeros(5, 3, 3, dtype=f64), (torch.zeros(1, 3, 4, dtype=f64), ok_h[1]), RuntimeError),
        ("h_0 batch", torch.zeros(5, 3, 3, dtype=f64), (torch.zeros(2, 2, 4, dtype=f64), ok_h[1]), RuntimeError),
        ("h_0 hidden", torch.zeros(5, 3, 3, dtype=f64), (torch.zeros(2, 3, 5, dtype=f64), ok_h[1]), RuntimeError),
        ("c_0 hidden", torch.zeros(5, 3, 3, dtype=f64), (ok_h[0], torch.zeros(2, 3, 3, dtype=f64)), RuntimeError),
        ("hx 2-D for batched", torch.zeros(5, 3, 3, dtype=f64), tuple(t[:, 0] for t in ok_h), RuntimeError),
        ("hx 3-D for unbatched", torch.zeros(5, 3, dtype=f64), tuple(t[:, :1] for t in ok_h), RuntimeError),
        ("hx wrong unbatched", torch.zeros(5, 3, dtype=f64), tuple(t[:1, 0] for t in ok_h), RuntimeError),
        ("1-D input", torch.zeros(3, dtype=f64), None, ValueError),
        ("4-D input", torch.zeros(5, 3, 3, 1, dtype=f64), None, ValueError),
        ("input float32", torch.zeros(5, 3, 3), None, ValueError),
        ("input int64", torch.zeros(5, 3, 3, dtype=torch.int64), None, ValueError),
        ("h_0 float32", torch.zeros(5, 3, 3, dtype=f64), (ok_h[0].float(), ok_h[1]), RuntimeError),
        ("sequence length 0", torch.zeros(0, 3, 3, dtype=f64), None, RuntimeError),
        ("sequence length 0 unbatched", torch.zeros(0, 3, dtype=f64), None, RuntimeError),
    ]


@pytest.mark.parametrize("case", error_cases(), ids=[c[0] for c in error_cases()])
def test_forward_refuses(LSTM, case):
    _, x, hx, exc = case
    m = build(LSTM, 3, 4, num_layers=2)
    with pytest.raises(exc):
        m(x, hx)


def test_projection_state_shapes(LSTM):
    """With proj_size, h_0 is [L*D, B, P] and c_0 [L*D, B, H]; the other way round is refused."""
    m = build(LSTM, 3, 4, proj_size=2, bidirectional=True)
    x = randn(5, 3, 3)
    out, (h, c) = m(x, (torch.zeros(2, 3, 2, dtype=x.dtype), torch.zeros(2, 3, 4, dtype=x.dtype)))
    assert out.shape == (5, 3, 4) and h.shape == (2, 3, 2) and c.shape == (2, 3, 4)
    with pytest.raises(RuntimeError):
        m(x, (torch.zeros(2, 3, 4, dtype=x.dtype), torch.zeros(2, 3, 4, dtype=x.dtype)))
    with pytest.raises(RuntimeError):
        m(x, (torch.zeros(2, 3, 2, dtype=x.dtype), torch.zeros(2, 3, 2, dtype=x.dtype)))


# ---------------------------------------------------------------------------------------------
# s2sext only: its exceptions are also s2sext's old types and name the caller's shapes


def test_s2sext_errors_keep_their_types_and_name_the_shapes_passed():
    m = build(st.LSTM, 3, 4, num_layers=2)
    with pytest.raises(st.ShapeError, match=r"h_0 has shape \(3, 4\); expected \(2, 4\)") as info:
        m(torch.zeros(5, 3, dtype=torch.float64), (torch.zeros(3, 4, dtype=torch.float64),
                                                   torch.zeros(2, 4, dtype=torch.float64)))
    assert isinstance(info.value, ValueError) and isinstance(info.value, RuntimeError)
    with pytest.raises(st.ShapeError, match=r"input has 2 features \(shape \(5, 2\)\)"):
        m(torch.zeros(5, 2, dtype=torch.float64))
    with pytest.raises(st.DTypeError, match="input has dtype torch.float32") as info:
        m(torch.zeros(5, 3, 3))
    assert all(isinstance(info.value, t) for t in (TypeError, ValueError, RuntimeError))
    with pytest.raises(st.ShapeError, match=r"input has shape \(0, 3\)"):
        m(torch.zeros(0, 3, dtype=torch.float64))
