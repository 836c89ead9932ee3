"""s2sext.torch: gradcheck of every Function, the LSTM module against torch.nn.LSTM (outputs,
gradients, PackedSequence, state dicts, a training trajectory), attention modules, weight layout
converters, importing a PyTorch seq2seq and exporting it back, and clear errors."""

import itertools
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import s2sext.torch as st
from s2sext import Seq2Seq
from s2sext.torch_reference import DECODER_CELLS, IGNORE_PREFIXES, STATE_DICT_NAMES, TorchSeq2Seq


def rand(*shape, requires_grad=True, seed=None):
    g = torch.Generator().manual_seed(seed if seed is not None else sum(shape) * 7 + len(shape))
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * 0.5).requires_grad_(requires_grad)


# gradcheck compares our float64 backward with central finite differences of our float64 forward
# (eps 1e-6): truncation and rounding errors are ~1e-10 relative, so its default tolerances
# (atol 1e-5, rtol 1e-3) leave a wide margin without hiding a wrong term.
def test_gradcheck_lstm_sequence_with_lengths():
    B, S, I, H = 3, 5, 4, 3
    args = (rand(B, S, I), rand(B, H), rand(B, H), rand(4 * H, I), rand(4 * H, H), rand(4 * H))
    assert torch.autograd.gradcheck(lambda *a: st.LSTMFunction.apply(*a, np.array([5, 2, 1])), args)
    assert torch.autograd.gradcheck(lambda *a: st.LSTMFunction.apply(*a, None), args)


def test_gradcheck_lstm_cell():
    B, I, H = 2, 3, 4
    args = (rand(B, I), rand(B, H), rand(B, H), rand(4 * H, I), rand(4 * H, H), rand(4 * H))
    assert torch.autograd.gradcheck(st.LSTMCellFunction.apply, args)


@pytest.mark.parametrize("kind", ["dot", "scaled_dot", "general", "concat", "location"])
@pytest.mark.parametrize("steps", [None, 2])
def test_gradcheck_attention(kind, steps):
    B, S, H, A = 2, 4, 3, 5
    hs = rand(B, S, H)
    q = rand(B, H) if steps is None else rand(B, steps, H)
    params = {"dot": (), "scaled_dot": (), "general": (rand(H, H),), "location": (rand(6, H),),
              "concat": (rand(A, H), rand(A, H), rand(A))}[kind]
    lengths = np.array([4, 2])
    assert torch.autograd.gradcheck(
        lambda hs, q, *p: st.AttentionWeightFunction.apply(hs, q, kind, lengths, *p), (hs, q, *params))
    a = torch.softmax(rand(B, S, requires_grad=False), -1).requires_grad_(True)
    assert torch.autograd.gradcheck(st.WeightSumFunction.apply, (hs, a))


def make_pair(num_layers, bidirectional, batch_first, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    ref = torch.nn.LSTM(5, 7, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, dtype=dtype)
    ours = st.LSTM(5, 7, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, dtype=dtype)
    ours.load_state_dict(ref.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    return ref, ours


def grads(module):
    return {n: p.grad.clone() for n, p in module.named_parameters()}


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("batch_first", [False, True])
def test_lstm_module_matches_torch(num_layers, bidirectional, batch_first):
    ref, ours = make_pair(num_layers, bidirectional, batch_first)
    B, S = 3, 6
    x = rand(S, B, 5, seed=1) if not batch_first else rand(B, S, 5, seed=1)
    D = 2 if bidirectional else 1
    hx = (rand(num_layers * D, B, 7, seed=2), rand(num_layers * D, B, 7, seed=3))
    out_ref, (h_ref, c_ref) = ref(x, hx)
    x2 = x.detach().clone().requires_grad_(True)
    hx2 = tuple(t.detach().clone().requires_grad_(True) for t in hx)
    out, (h, c) = ours(x2, hx2)
    # float64 on both sides: the kernels sum in another order than PyTorch, ~1e-15 relative
    for a, b in ((out, out_ref), (h, h_ref), (c, c_ref)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    g = rand(*out.shape, requires_grad=False, seed=4)
    (out_ref * g).sum().add((h_ref * 0.3).sum()).add((c_ref * 0.7).sum()).backward()
    (out * g).sum().add((h * 0.3).sum()).add((c * 0.7).sum()).backward()
    torch.testing.assert_close(x2.grad, x.grad, rtol=1e-10, atol=1e-12)
    for a, b in zip(hx2, hx):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)
    gr, go = grads(ref), grads(ours)
    for name in gr:
        torch.testing.assert_close(go[name], gr[name], rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_module_packed_sequence(bidirectional):
    ref, ours = make_pair(2, bidirectional, True, seed=5)
    B, S = 4, 6
    x = rand(B, S, 5, seed=6)
    lengths = torch.tensor([3, 6, 1, 4])
    out_ref, (h_ref, c_ref) = ref(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    out, (h, c) = ours(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    assert torch.equal(out.batch_sizes, out_ref.batch_sizes)
    assert torch.equal(out.sorted_indices, out_ref.sorted_indices)
    torch.testing.assert_close(out.data, out_ref.data, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h, h_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(c, c_ref, rtol=1e-10, atol=1e-12)
    padded_ref, _ = pad_packed_sequence(out_ref, batch_first=True)
    padded, _ = pad_packed_sequence(out, batch_first=True)
    (padded_ref.sum() + h_ref.sum()).backward()
    (padded.sum() + h.sum()).backward()
    gr, go = grads(ref), grads(ours)
    for name in gr:
        torch.testing.assert_close(go[name], gr[name], rtol=1e-10, atol=1e-12, msg=name)


def test_training_trajectory_matches_torch_nn():
    """A small PyTorch model trains to the same losses step by step with s2sext.torch.LSTM as with
    torch.nn.LSTM (float64, SGD): both compute the same function and gradients."""
    def build(lstm_cls):
        torch.manual_seed(0)
        emb = torch.nn.Embedding(10, 6, dtype=torch.float64)
        lstm = lstm_cls(6, 8, num_layers=2, batch_first=True, bidirectional=True, dtype=torch.float64)
        head = torch.nn.Linear(16, 10, dtype=torch.float64)
        return torch.nn.ModuleList([emb, lstm, head])

    ref, ours = build(torch.nn.LSTM), build(st.LSTM)
    ours.load_state_dict(ref.state_dict())
    g = torch.Generator().manual_seed(1)
    batch = (torch.randint(0, 10, (4, 7), generator=g), torch.randint(0, 10, (4, 7), generator=g))
    data = [batch] * 6  # the same batch: its loss must go down
    losses = []
    for model in (ref, ours):
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        trace = []
        for x, y in data:
            opt.zero_grad()
            out, _ = model[1](model[0](x))
            loss = torch.nn.functional.cross_entropy(model[2](out).reshape(-1, 10), y.reshape(-1))
            loss.backward()
            opt.step()
            trace.append(loss.item())
        losses.append(trace)
    assert losses[0][-1] < losses[0][0]  # it trains
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-9)


def test_attention_module_matches_reference():
    torch.manual_seed(0)
    att = st.Attention("concat", 6, attention_size=5, dtype=torch.float64)
    hs, q = rand(2, 4, 6, seed=7), rand(2, 6, seed=8)
    context, a = att(hs, q, lengths=torch.tensor([4, 2]))
    score = torch.tanh(q[:, None, :] @ att.w_q.T + hs @ att.w_k.T) @ att.v
    score = score.masked_fill(torch.arange(4)[None, :] >= torch.tensor([4, 2])[:, None], float("-inf"))
    a_ref = torch.softmax(score, -1)
    torch.testing.assert_close(a, a_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(context, (a_ref[:, :, None] * hs).sum(1), rtol=1e-10, atol=1e-12)


def test_attention_module_query_bias():
    # concat with query_bias: v . tanh(W_q q + b_q + W_k hs); gradients (kernel, then the composite
    # of create_graph) checked numerically in float64
    torch.manual_seed(0)
    att = st.Attention("concat", 6, attention_size=5, dtype=torch.float64, query_bias=True)
    assert [n for n, _ in att.named_parameters()] == ["w_q", "w_k", "v", "b_q"] and att.b_q.shape == (5,)
    hs, q = rand(2, 4, 6, seed=7), rand(2, 3, 6, seed=8)
    context, a = att(hs, q, lengths=torch.tensor([4, 2]))
    score = torch.tanh((q @ att.w_q.T + att.b_q)[:, :, None] + (hs @ att.w_k.T)[:, None]) @ att.v
    score = score.masked_fill((torch.arange(4)[None, :] >= torch.tensor([4, 2])[:, None])[:, None], float("-inf"))
    torch.testing.assert_close(a, torch.softmax(score, -1), rtol=1e-10, atol=1e-12)
    def weights(b_q, q):
        return st.AttentionWeightFunction.apply(hs, q, "concat", [4, 2], att.w_q, att.w_k, att.v, b_q)

    inputs = (att.b_q.detach().clone().requires_grad_(), q)
    assert torch.autograd.gradcheck(weights, inputs)
    assert torch.autograd.gradgradcheck(weights, inputs)
    with pytest.raises(ValueError, match="query_bias is concat's option; got kind='dot'"):
        st.Attention("dot", 6, query_bias=True)
    with pytest.raises(TypeError, match="query_bias must be a bool, got 1"):
        st.Attention("concat", 6, query_bias=1)


def test_gate_order_converters():
    rng = np.random.default_rng(0)
    I, H = 3, 2
    i, f, g, o = (rng.standard_normal((I, H)) for _ in range(4))
    want = np.concatenate([i, f, g, o], axis=1).T  # PyTorch: [4H, I] with i, f, g, o
    np.testing.assert_array_equal(st.convert_gate_order(np.concatenate([i, f, g, o], 1), "keras"), want)
    np.testing.assert_array_equal(st.convert_gate_order(np.concatenate([f, g, i, o], 1), "dlfs2"), want)
    b = np.arange(8.0)  # dlfs2 bias blocks f, g, i, o -> i, f, g, o
    np.testing.assert_array_equal(st.convert_gate_order(b, "dlfs2"), [4, 5, 0, 1, 2, 3, 6, 7])
    with pytest.raises(ValueError, match="layout must be"):
        st.convert_gate_order(b, "caffe")


@pytest.mark.parametrize("attention,style", [("dot", "luong"), ("concat", "bahdanau")])
def test_import_a_pytorch_trained_model_and_round_trip(attention, style):
    """A PyTorch seq2seq (the twin: nn.LSTM encoder, one nn.LSTMCell per decoder layer) imported
    through a name mapping decodes as it does in PyTorch, and exports back exactly."""
    config = dict(src_vocab_size=12, tgt_vocab_size=9, embed_size=6, hidden_size=8, num_layers=2, bidirectional=True,
                  attention=attention, attention_style=style, input_feeding=False, max_source_length=10)
    torch.manual_seed(3)
    twin = TorchSeq2Seq(config, dtype=torch.float32)
    state = twin.state_dict()
    names, cells = STATE_DICT_NAMES, DECODER_CELLS
    model = st.seq2seq_from_state_dict(state, 12, 9, names=names, decoder_cells=cells, ignore_prefixes=IGNORE_PREFIXES,
                                       **{k: v for k, v in config.items() if not k.endswith("vocab_size")})
    rng = np.random.default_rng(0)
    src = rng.integers(4, 12, (6, 7))
    lengths = np.array([7, 3, 5, 1, 7, 2])
    with torch.no_grad():
        want = twin.greedy(src, lengths, 8)
    got = model.compile().greedy(src, lengths, max_length=8)
    for g, w in zip(got, want):
        n = len([t for t in g if t != 0])
        np.testing.assert_array_equal(g[:n], w[:n])
    back = st.seq2seq_to_state_dict(model, names=names, decoder_cells=cells)
    again = st.seq2seq_from_state_dict(back, 12, 9, names=names, decoder_cells=cells, ignore_prefixes=IGNORE_PREFIXES,
                                       **{k: v for k, v in config.items() if not k.endswith("vocab_size")})
    for name in model.params:
        np.testing.assert_array_equal(again.params[name], model.params[name])
    del state["out.bias"]
    with pytest.raises(KeyError, match="'out.bias' .*'out.bias'"):
        st.seq2seq_from_state_dict(state, 12, 9, names=names, decoder_cells=cells, ignore_prefixes=IGNORE_PREFIXES,
                                   **{k: v for k, v in config.items() if not k.endswith("vocab_size")})


def test_errors_are_clear():
    lstm = st.LSTM(3, 4)
    with pytest.raises(TypeError, match="dtype torch.float16"):
        lstm(torch.zeros(2, 1, 3, dtype=torch.float16))
    with pytest.raises(ValueError, match="input has 5 features"):
        lstm(torch.zeros(2, 1, 5))
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        st.LSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match="runs on the CPU"):
        st.LSTM(3, 4, device="meta")
    with pytest.raises(ValueError, match=r"h_0 has shape \(2, 1, 4\)"):
        lstm(torch.zeros(2, 1, 3), (torch.zeros(2, 1, 4), torch.zeros(2, 1, 4)))


def test_import_s2sext_does_not_import_torch():
    code = "import sys, s2sext; s2sext.Seq2Seq(10, 10, hidden_size=4).compile(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["dot", "concat"])
def test_example_reduced(variant, capsys):
    """examples/torch_import.py, reduced: train in PyTorch, import, same greedy outputs."""
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "torch_import.py")
    spec = importlib.util.spec_from_file_location("torch_import_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert example.main(["--variant", variant, "--pairs", "1500", "--steps", "20", "--check", "200"]) == 0
    assert "same greedy output as PyTorch on 200 of 200" in capsys.readouterr().out


def test_s2sext_torch_says_what_to_install_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "try:\n    import s2sext.torch\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "s2sext.torch needs PyTorch: pip install torch" in out.stdout


def test_more_module_behaviour_and_errors():
    ref, ours = make_pair(1, True, False, seed=9)
    x = rand(6, 5, seed=10)  # unbatched [S, I], as torch.nn.LSTM accepts
    out_ref, (h_ref, c_ref) = ref(x)
    out, (h, c) = ours(x)
    torch.testing.assert_close(out, out_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h, h_ref, rtol=1e-10, atol=1e-12)
    ours.flatten_parameters()  # a no-op, for code written for torch.nn.LSTM
    att = st.Attention("dot", 6, dtype=torch.float64)
    hs, q = rand(2, 4, 6, seed=11), rand(2, 6, seed=12)
    with pytest.raises(TypeError, match="lengths must hold integers"):
        att(hs, q, [2.5, 1.7])
    with pytest.raises(ValueError, match=r"lengths must have shape \(2,\)"):
        att(hs, q, [2])


def test_strict_import_refuses_unused_weights():
    config = dict(embed_size=4, hidden_size=6, attention="dot", max_source_length=8)
    model = Seq2Seq(10, 10, seed=0, **config)
    state = st.seq2seq_to_state_dict(model)
    with pytest.raises(ValueError, match="no s2sext parameter takes: .*decoder.combine.weight"):
        st.seq2seq_from_state_dict(state, 10, 10, **{**config, "attention": None})
    dropped = st.seq2seq_from_state_dict(state, 10, 10, strict=False, **{**config, "attention": None})
    assert "combine.weight" not in dropped.params
    with pytest.raises(ValueError, match="names has keys that are not s2sext parts"):
        st.seq2seq_from_state_dict(state, 10, 10, names={"encodr": "x"}, **config)


def function_cases():
    """(name, f, inputs) for every Function: the LSTM sequence with and without lengths, the cell,
    each attention kind (one step and all steps, masked) and the weight sum; tiny float64 shapes."""
    B, S, I, H, A = 2, 3, 2, 2, 3
    lstm = (rand(B, S, I), rand(B, H), rand(B, H), rand(4 * H, I), rand(4 * H, H), rand(4 * H))
    cases = [("lstm lengths", lambda *a: st.LSTMFunction.apply(*a, np.array([3, 1])), lstm),
             ("lstm", lambda *a: st.LSTMFunction.apply(*a, None), lstm),
             ("cell", st.LSTMCellFunction.apply, (rand(B, I), rand(B, H), rand(B, H), rand(4 * H, I),
                                                  rand(4 * H, H), rand(4 * H)))]
    for kind, steps in itertools.product(["dot", "scaled_dot", "general", "concat", "location"], [None, 2]):
        params = {"dot": (), "scaled_dot": (), "general": (rand(H, H),), "location": (rand(4, H),),
                  "concat": (rand(A, H), rand(A, H), rand(A))}[kind]
        q = rand(B, H) if steps is None else rand(B, steps, H)
        cases.append((f"attention {kind} steps={steps}",
                      lambda hs, q, *p, kind=kind: st.AttentionWeightFunction.apply(hs, q, kind, np.array([3, 2]), *p),
                      (rand(B, S, H), q, *params)))
    a = torch.softmax(rand(B, 2, S, requires_grad=False), -1).requires_grad_(True)
    cases.append(("weight sum", st.WeightSumFunction.apply, (rand(B, S, H), a)))
    return cases


@pytest.mark.parametrize("case", function_cases(), ids=[c[0] for c in function_cases()])
def test_functions_are_twice_differentiable(case):
    """With create_graph=True a Function's backward is a graph (torch ops of the same equations)
    whose gradients equal the kernel's, and gradgradcheck passes (float64: finite differences with
    eps 1e-6 err by ~1e-10, far inside its default tolerances)."""
    _, f, inputs = case
    outs = f(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    weights = [rand(*o.shape, requires_grad=False, seed=k) for k, o in enumerate(outs)]
    total = lambda outs: sum((o * w).sum() for o, w in zip(outs, weights))  # noqa: E731
    kernel = torch.autograd.grad(total(outs), inputs, retain_graph=True)
    graph = torch.autograd.grad(total(outs), inputs, create_graph=True)
    assert all(g.requires_grad or not g.any() for g in graph)  # a zero (hs in location scores) is a constant
    for k, (a, b) in enumerate(zip(graph, kernel)):
        # float64: the kernel and torch sum in another order, ~1e-15 relative
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=f"input {k}")
    assert torch.autograd.gradgradcheck(f, inputs)


@pytest.mark.parametrize("case", function_cases(), ids=[c[0] for c in function_cases()])
def test_functions_under_torch_func(case):
    """Under torch.func transforms (and forward-mode AD) a Function runs its equations as torch
    ops, the kernels having no access to such tensors: torch.func.jacrev equals the Jacobian
    built from the kernels' backward (float64, summation order only)."""
    _, f, inputs = case
    plain = tuple(t.detach() for t in inputs)
    got = torch.func.jacrev(f, argnums=tuple(range(len(plain))))(*plain)
    want = torch.autograd.functional.jacobian(f, plain)
    for a, b in zip(jac_leaves(got), jac_leaves(want)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def jac_leaves(jacobian):
    if isinstance(jacobian, torch.Tensor):
        return [jacobian]
    return [leaf for part in jacobian for leaf in jac_leaves(part)]


def test_lstm_under_vmap():
    """torch.func.vmap over s2sext.torch.LSTM (which nn.LSTM does not support on the CPU) equals a
    loop over the mapped axis."""
    torch.manual_seed(0)
    lstm = st.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=torch.float64)
    xs = rand(5, 6, 2, 3, requires_grad=False, seed=15)
    got = torch.func.vmap(lambda x: lstm(x)[0])(xs)
    torch.testing.assert_close(got, torch.stack([lstm(x)[0] for x in xs]), rtol=1e-10, atol=1e-12)


def test_attention_module_double_backward_and_errors():
    torch.manual_seed(0)
    att = st.Attention("general", 3, dtype=torch.float64)
    hs, q = rand(2, 4, 3, seed=13), rand(2, 3, seed=14)
    assert torch.autograd.gradgradcheck(lambda hs, q: att(hs, q, lengths=[4, 2])[0], (hs, q))
    with pytest.raises(st.ShapeError, match=r"hs has shape \(2, 4, 5\); expected \[B, S, H\] with H = hidden_size = 3"):
        att(rand(2, 4, 5), q)
    with pytest.raises(RuntimeError, match=r"q has shape \(2, 3, 1, 3\)"):
        att(hs, rand(2, 3, 1, 3))
    with pytest.raises(st.DTypeError, match="hs has dtype torch.float32, but this Attention's parameters are "
                                            "torch.float64"):
        att(hs.float(), q.float())
    # Attention's sizes are s2sext's own arguments: data._check_int's rule and words (a bool is no int)
    with pytest.raises(TypeError, match="hidden_size must be an int, got float 3.0"):
        st.Attention("dot", 3.0)
    with pytest.raises(TypeError, match="hidden_size must be an int, got bool True"):
        st.Attention("dot", True)
    with pytest.raises(ValueError, match="attention_size must be >= 1, got 0"):
        st.Attention("concat", 3, attention_size=0)
    with pytest.raises(TypeError, match="max_source_length must be an int, got str '8'"):
        st.Attention("location", 3, max_source_length="8")
    assert st.Attention("location", np.int64(3), max_source_length=np.int64(8)).w_a.shape == (8, 3)


def test_function_errors_are_also_runtime_errors():
    """Errors from the kernels keep their message and s2sext's ValueError/TypeError, and are also
    the RuntimeError torch's own LSTM cell raises for the same mistakes."""
    B, I, H = 2, 3, 4
    args = [rand(B, I), rand(B, H), rand(B, H), rand(4 * H, I), rand(4 * H, H), rand(4 * H)]
    wrong = list(args)
    wrong[1] = rand(B + 1, H)
    with pytest.raises(st.ShapeError, match="h0 has shape") as info:
        st.LSTMCellFunction.apply(*wrong)
    assert isinstance(info.value, ValueError) and isinstance(info.value, RuntimeError)
    wrong = list(args)
    wrong[3] = wrong[3].float()
    mixed = "w_ih has dtype torch.float32, but the first input is torch.float64"
    with pytest.raises(st.DTypeError, match=mixed) as info:
        st.LSTMCellFunction.apply(*wrong)
    assert isinstance(info.value, TypeError) and isinstance(info.value, RuntimeError)
    with pytest.raises(RuntimeError, match=r"lengths must have shape \(2,\)"):
        st.AttentionWeightFunction.apply(rand(2, 4, 3), rand(2, 3), "dot", [1, 2, 3])


# --- the same checks on every path: kernels, torch.func transforms, forward-mode AD -------------

def _lstm_args(B=2, S=5, I=3, H=4, dtype=torch.float64):
    return [rand(B, S, I, requires_grad=False).to(dtype), rand(B, H, requires_grad=False), rand(B, H, requires_grad=False),
            rand(4 * H, I, requires_grad=False), rand(4 * H, H, requires_grad=False), rand(4 * H, requires_grad=False)]


def _replace(args, i, value):
    args = list(args)
    args[i] = value
    return args


_HS, _Q = rand(2, 5, 3, requires_grad=False), rand(2, 3, requires_grad=False)
_CELL = [rand(2, 3, requires_grad=False), rand(2, 4, requires_grad=False), rand(2, 4, requires_grad=False),
         rand(16, 3, requires_grad=False), rand(16, 4, requires_grad=False), rand(16, requires_grad=False)]
# (Function, its arguments, which argument the transforms differentiate, exception type, message)
_BAD_INPUTS = {
    "lstm_negative_length": (st.LSTMFunction, [*_lstm_args(), [-3, 2]], 0, st.ShapeError,
                             r"lengths\[0\] = -3 is out of range; expected 0 <= length <= S = 5"),
    "lstm_length_past_S": (st.LSTMFunction, [*_lstm_args(), [2, 9]], 0, st.ShapeError,
                           r"lengths\[1\] = 9 is out of range; expected 0 <= length <= S = 5"),
    "lstm_length_beyond_int64": (st.LSTMFunction, [*_lstm_args(), [2**70, 1]], 0, st.ShapeError,
                                 r"lengths\[0\] = 1180591620717411303424 is out of range; expected a length <= S = 5"),
    "lstm_float_lengths": (st.LSTMFunction, [*_lstm_args(), torch.tensor([2.0, 1.0])], 0, TypeError,
                           "lengths must hold integers, got dtype torch.float32"),
    "lstm_wrong_w_hh": (st.LSTMFunction, [*_replace(_lstm_args(), 4, rand(16, 5, requires_grad=False)), None], 0,
                        st.ShapeError, r"w_hh has shape \(16, 5\)"),
    "lstm_x_is_a_list": (st.LSTMFunction, [[[1.0]], *_lstm_args()[1:], None], 1, TypeError,
                         "x must be a torch.Tensor, got list"),
    "lstm_mixed_dtypes": (st.LSTMFunction, [*_replace(_lstm_args(), 1, rand(2, 4, requires_grad=False).float()), None],
                          0, st.DTypeError, "h0 has dtype torch.float32, but the first input is torch.float64"),
    "cell_wrong_h0": (st.LSTMCellFunction, _replace(_CELL, 1, rand(3, 4, requires_grad=False)), 0, st.ShapeError,
                      r"h0 has shape \(3, 4\)"),
    "attention_fully_masked_row": (st.AttentionWeightFunction, [_HS, _Q, "dot", [0, 2]], 1, st.ShapeError,
                                   r"lengths\[0\] = 0 is out of range; expected 1 <= length <= S = 5 "
                                   r"\(attention needs at least one position"),
    "attention_wrong_q": (st.AttentionWeightFunction, [_HS, rand(2, 4, requires_grad=False), "dot", None], 0,
                          st.ShapeError, r"q has shape \(2, 4\)"),
    "attention_wrong_params": (st.AttentionWeightFunction, [_HS, _Q, "general", None, rand(4, 3, requires_grad=False)],
                               1, st.ShapeError, r"params\[0\] \(W_a\) has shape \(4, 3\)"),
    "attention_unknown_kind": (st.AttentionWeightFunction, [_HS, _Q, "cosine", None], 1, ValueError,
                               "kind must be one of dot, scaled_dot, general, concat, location, got 'cosine'"),
    "attention_kind_not_str": (st.AttentionWeightFunction, [_HS, _Q, 3, None], 1, TypeError,
                               "kind must be a str, one of dot, scaled_dot, general, concat, location, got int"),
    "weight_sum_wrong_a": (st.WeightSumFunction, [_HS, rand(2, 4, requires_grad=False)], 0, st.ShapeError,
                           r"a has shape \(2, 4\)"),
}


# torch.func.jvp's first call in a process scripts a decomposition with torch.jit.script, which
# this torch deprecates with a warning (torch's own, not s2sext's)
_JVP_WARNING = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


def _raised(call):
    with pytest.raises(Exception) as info:
        call()
    return type(info.value), str(info.value)


def _on_path(fn, args, i, path):
    """A call of fn(*args) on the given path, transforming args[i]."""
    def f(v):
        out = fn.apply(*_replace(args, i, v))
        return out[0] if isinstance(out, tuple) else out

    v = args[i]
    if path == "kernel":
        return lambda: f(v)
    if path == "grad":
        return lambda: torch.func.grad(lambda v: f(v).sum())(v)
    if path == "jvp":
        return lambda: torch.func.jvp(f, (v,), (torch.ones_like(v),))
    if path == "vmap":
        return lambda: torch.func.vmap(f)(v.unsqueeze(0))

    def forward_mode():
        with torch.autograd.forward_ad.dual_level():
            f(torch.autograd.forward_ad.make_dual(v, torch.ones_like(v)))
    return forward_mode


@_JVP_WARNING
@pytest.mark.parametrize("case", sorted(_BAD_INPUTS))
def test_bad_inputs_raise_alike_on_every_path(case):
    """A torch.func transform or forward-mode AD runs the Functions' equations in torch ops instead
    of the kernels: the same checks run first, so each path raises the same exception type with
    the same message (no NaN row for a fully masked attention, no torch matmul error)."""
    fn, args, i, expected_type, message = _BAD_INPUTS[case]
    kernel = _raised(_on_path(fn, args, i, "kernel"))
    assert kernel[0] is expected_type, kernel
    assert re.search(message, kernel[1]), kernel
    for path in ("grad", "jvp", "vmap", "forward_ad"):
        assert _raised(_on_path(fn, args, i, path)) == kernel, path


@_JVP_WARNING
def test_tensor_lengths_under_transforms_attention():
    """Tensor lengths are read with tolist(): numpy() has no storage to read inside a transform."""
    att = st.Attention("dot", 3, dtype=torch.float64)
    hs, q = rand(2, 5, 3, requires_grad=False), rand(2, 3)
    lengths = torch.tensor([5, 3])
    expected, = torch.autograd.grad(att(hs, q, lengths)[0].sum(), q)
    # a tensor made inside the transformed function, as well as one from outside
    got = torch.func.grad(lambda q: att(hs, q, torch.tensor([5, 3]))[0].sum())(q.detach())
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)  # float64, two orders of the same sums
    tangent = rand(2, 3, requires_grad=False, seed=3)
    _, jvp_out = torch.func.jvp(lambda q: att(hs, q, lengths)[0], (q.detach(),), (tangent,))
    _, expected_jvp = torch.autograd.functional.jvp(lambda q: att(hs, q, lengths)[0], q.detach(), tangent)
    torch.testing.assert_close(jvp_out, expected_jvp, rtol=0, atol=1e-12)
    queries = rand(4, 2, 3, requires_grad=False, seed=5)
    batched = torch.func.vmap(lambda q: att(hs, q, lengths)[0])(queries)
    torch.testing.assert_close(batched, torch.stack([att(hs, qi, lengths)[0] for qi in queries]), rtol=0, atol=1e-12)


@_JVP_WARNING
def test_packed_lstm_under_transforms():
    """A PackedSequence is unpacked and repacked in torch ops (torch's pack/pad read raw memory),
    and its lengths reach the Functions as a list, so the module works under grad, jvp and vmap."""
    torch.manual_seed(0)
    m = st.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True, dtype=torch.float64)
    x = rand(3, 5, 3, requires_grad=False)
    packed = pack_padded_sequence(x, torch.tensor([5, 2, 4]), batch_first=True, enforce_sorted=False)
    params = {k: v.detach() for k, v in m.named_parameters()}

    def loss(params, data=packed.data):
        seq = packed._replace(data=data)
        out, (h, c) = torch.func.functional_call(m, params, (seq,))
        return out.data.pow(2).sum() + h.sum() + c.sum()

    expected = torch.autograd.grad(loss(dict(m.named_parameters())), list(m.parameters()))
    got = torch.func.grad(loss)(params)
    for (name, _), e in zip(m.named_parameters(), expected):
        torch.testing.assert_close(got[name], e, rtol=0, atol=1e-10, msg=name)  # float64, kernel vs torch ops
    data = packed.data.clone().requires_grad_(True)
    expected_dx, = torch.autograd.grad(loss(dict(m.named_parameters()), data), data)
    torch.testing.assert_close(torch.func.grad(lambda d: loss(params, d))(packed.data), expected_dx, rtol=0, atol=1e-10)
    tangent = rand(*packed.data.shape, requires_grad=False, seed=9)
    value, jvp_out = torch.func.jvp(lambda d: loss(params, d), (packed.data,), (tangent,))
    torch.testing.assert_close(value, loss(params), rtol=0, atol=1e-10)
    torch.testing.assert_close(jvp_out, (expected_dx * tangent).sum(), rtol=0, atol=1e-10)
    stacked = torch.func.vmap(lambda d: loss(params, d))(torch.stack([packed.data, 2 * packed.data]))
    torch.testing.assert_close(stacked, torch.stack([loss(params), loss(params, 2 * packed.data)]), rtol=0, atol=1e-10)
