"""Tests of s2sext.torch_reference, the PyTorch twin of the Seq2Seq model (docs/model.md).

Internal consistency only (the numpy model is tested against the twin elsewhere):

* weights load and read back in s2sext names; missing, unexpected or misshapen ones raise;
* the twin's loss and every gradient equal those of `naive_loss` below, a literal transcription of
  docs/model.md's equations (explicit LSTM cells, the backward direction reversed within each length
  by indexing, attention scores as in s2sext.ops), for every attention kind x style x input feeding
  x layers {1, 2} x bidirectional {F, T};
* the all-steps decoder path equals the per-step path;
* padding (source and target) does not change the loss; greedy decoding is self-consistent.

Everything runs in float64 at tiny sizes.
"""
import itertools
import math
import warnings

import numpy as np
import pytest
import torch

from s2sext.torch_reference import ATTENTION_KINDS, SOS, TorchSeq2Seq, param_shapes

VS, VT, E, H = 9, 8, 3, 4
B, S, T = 3, 5, 4
SRC_LENGTHS = np.array([5, 2, 3])
TGT_LENGTHS = np.array([4, 1, 3])
S_MAX = 7


def make_config(attention="dot", style="luong", input_feeding=False, layers=1, bidirectional=False,
                dropout=0.0, **features):
    """``features``: bridge, combine_activation, attention_query_bias (defaults when absent)."""
    return {"src_vocab_size": VS, "tgt_vocab_size": VT, "embed_size": E, "hidden_size": H,
            "num_layers": layers, "bidirectional": bidirectional, "dropout": dropout,
            "attention": attention, "attention_style": style, "input_feeding": input_feeding,
            "max_source_length": S_MAX, **features}


def random_params(cfg, rng, scale=0.5):
    return {name: rng.normal(size=shape) * scale for name, shape in param_shapes(cfg).items()}


def random_batch(rng):
    src = rng.integers(1, VS, size=(B, S))
    tgt_in = rng.integers(1, VT, size=(B, T))
    tgt_in[:, 0] = SOS
    tgt_out = rng.integers(1, VT, size=(B, T))
    for b in range(B):                       # padding as the data pipeline makes it
        src[b, SRC_LENGTHS[b]:] = 0
        tgt_in[b, TGT_LENGTHS[b]:] = 0
        tgt_out[b, TGT_LENGTHS[b]:] = 0
    return src, SRC_LENGTHS, tgt_in, tgt_out, TGT_LENGTHS


# ---------------------------------------------------------------------------------------------
# A literal transcription of docs/model.md (slow and simple; independent of the twin's modules).

def naive_loss(cfg, P, src, src_lengths, tgt_in, tgt_out, tgt_lengths):
    """P: s2sext name -> float64 tensor. Returns the mean CE over the valid target positions."""
    L, bidi, att = cfg["num_layers"], cfg["bidirectional"], cfg["attention"]
    style, feeding = cfg["attention_style"], cfg["input_feeding"]
    concat_bridge = cfg.get("bridge", "linear") == "concat"      # each direction H/2, no bridge.*
    He = H // 2 if concat_bridge else H
    combine_tanh = cfg.get("combine_activation", "tanh") == "tanh"
    src = torch.as_tensor(src)
    lengths = torch.as_tensor(src_lengths)
    Bn, Sn = src.shape
    Tn = tgt_in.shape[1]

    def cell(x, h, c, pre):
        g = x @ P[pre + ".w_ih"].T + h @ P[pre + ".w_hh"].T + P[pre + ".b"]
        i, f, gg, o = g.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
        return torch.sigmoid(o) * torch.tanh(c), c

    def run(x, pre):                                     # state carried past a length
        h = c = torch.zeros(Bn, He, dtype=torch.float64)
        outs = []
        for t in range(Sn):
            hn, cn = cell(x[:, t], h, c, pre)
            valid = (t < lengths)[:, None]
            h, c = torch.where(valid, hn, h), torch.where(valid, cn, c)
            outs.append(torch.where(valid, hn, torch.zeros_like(hn)))
        return torch.stack(outs, 1), h, c

    # reverse within each length: rev[b, t] = len_b - 1 - t for t < len_b (an involution)
    ar = torch.arange(Sn)[None, :]
    rev = torch.where(ar < lengths[:, None], lengths[:, None] - 1 - ar, ar)

    def flip(x):
        return x.gather(1, rev[:, :, None].expand_as(x))

    x = P["src_embed"][src]
    h0, c0 = [], []
    for k in range(L):
        hs_f, hT_f, cT_f = run(x, f"encoder.l{k}")
        if bidi:
            out_rev, hT_b, cT_b = run(flip(x), f"encoder.l{k}_reverse")
            x = torch.cat([hs_f, flip(out_rev)], -1)
            if concat_bridge:
                h0.append(torch.cat([hT_f, hT_b], -1))
                c0.append(torch.cat([cT_f, cT_b], -1))
            else:
                h0.append(torch.cat([hT_f, hT_b], -1) @ P["bridge.h.weight"].T + P["bridge.h.bias"])
                c0.append(torch.cat([cT_f, cT_b], -1) @ P["bridge.c.weight"].T + P["bridge.c.bias"])
        else:
            x = hs_f
            h0.append(hT_f)
            c0.append(cT_f)
    memory = x @ P["bridge.memory.weight"].T if (bidi and att is not None and not concat_bridge) else x

    def attend(q):                                       # q [B, H] -> a [B, S], context [B, H]
        if att == "dot":
            scores = torch.einsum("bh,bsh->bs", q, memory)
        elif att == "scaled_dot":
            scores = torch.einsum("bh,bsh->bs", q, memory) / math.sqrt(H)
        elif att == "general":
            scores = torch.einsum("bh,bsh->bs", q, memory @ P["attention.w_a"].T)
        elif att == "concat":
            query = q @ P["attention.w_q"].T + P.get("attention.b_q", 0.0)    # the optional query bias
            e = torch.tanh(query[:, None, :] + memory @ P["attention.w_k"].T)
            scores = e @ P["attention.v"]
        else:
            scores = (q @ P["attention.w_a"].T)[:, :Sn]
        scores = scores.masked_fill(ar >= lengths[:, None], -math.inf)
        a = torch.softmax(scores, -1)
        return a, torch.einsum("bs,bsh->bh", a, memory)

    h, c = list(h0), list(c0)
    ht_prev = torch.zeros(Bn, H, dtype=torch.float64)
    total = torch.zeros((), dtype=torch.float64)
    count = 0
    for t in range(Tn):
        e_t = P["tgt_embed"][torch.as_tensor(tgt_in[:, t])]
        if att is not None and style == "bahdanau":
            _, ctx = attend(h[-1])
            inp = torch.cat([e_t, ctx], -1)
        elif att is not None and feeding:
            inp = torch.cat([e_t, ht_prev], -1)
        else:
            inp = e_t
        for k in range(L):
            h[k], c[k] = cell(inp, h[k], c[k], f"decoder.l{k}")
            inp = h[k]
        if att is None:
            o = h[-1]
        else:
            if style == "luong":
                _, ctx = attend(h[-1])
            o = torch.cat([ctx, h[-1]], -1) @ P["combine.weight"].T + P["combine.bias"]
            o = torch.tanh(o) if combine_tanh else o
            ht_prev = o
        logp = torch.log_softmax(o @ P["out.weight"].T + P["out.bias"], -1)
        for b in range(Bn):
            if t < tgt_lengths[b]:
                total = total - logp[b, int(tgt_out[b, t])]
                count += 1
    return total / count


def assert_close(name, got, want, rtol=1e-11):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{name}: shape {got.shape} vs {want.shape}"
    scale = max(float(np.max(np.abs(want))) if want.size else 0.0, 1e-300)
    err = float(np.max(np.abs(got - want))) if want.size else 0.0
    assert err <= rtol * scale, f"{name}: max|diff| = {err:.3e}, max|ref| = {scale:.3e}"


# attention None ignores style and input feeding: one entry for it
GRID = [(att, style, feeding, layers, bidi)
        for att in ATTENTION_KINDS
        for style, feeding, layers, bidi in itertools.product(("luong", "bahdanau"), (False, True),
                                                               (1, 2), (False, True))]
GRID += [(None, "luong", False, layers, bidi) for layers in (1, 2) for bidi in (False, True)]


def grid_id(p):
    att, style, feeding, layers, bidi = p
    return f"{att}-{style}-{'if' if feeding else 'noif'}-L{layers}-{'bi' if bidi else 'uni'}"


@pytest.mark.parametrize("case", GRID, ids=[grid_id(p) for p in GRID])
def test_loss_and_grads_match_the_equations(case, rng):
    att, style, feeding, layers, bidi = case
    cfg = make_config(att, style, feeding, layers, bidi)
    params = random_params(cfg, rng)
    batch = random_batch(rng)
    model = TorchSeq2Seq.from_params(cfg, params)
    loss = model.loss(*batch)
    assert loss.dtype == torch.float64 and loss.dim() == 0
    assert math.isfinite(loss.item())
    loss.backward()
    grads = model.grads_as_numpy()
    assert set(grads) == set(params)
    for name, g in grads.items():
        assert g.shape == params[name].shape, name
        assert np.all(np.isfinite(g)), name
        assert np.any(g != 0), f"{name}: no gradient reached it"

    P = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    ref = naive_loss(cfg, P, *batch)
    ref.backward()
    assert_close("loss", loss.item(), ref.item())
    for name in params:
        assert_close(name, grads[name], P[name].grad.numpy())


# The three options OpenNMT-py's models need, each alone and together, on both decoder paths'
# shapes (Luong with and without input feeding, Bahdanau), one and two layers.
FEATURES = {
    "query-bias": dict(attention="concat", attention_query_bias=True),
    "no-tanh": dict(combine_activation="none"),
    "concat-bridge": dict(bidirectional=True, bridge="concat"),
    "all": dict(attention="concat", attention_query_bias=True, combine_activation="none", bidirectional=True,
                bridge="concat"),
}
FEATURE_GRID = [(f, style, feeding, layers) for f in FEATURES
                for style, feeding in (("luong", False), ("luong", True), ("bahdanau", False)) for layers in (1, 2)]


@pytest.mark.parametrize("feature,style,feeding,layers", FEATURE_GRID,
                         ids=[f"{f}-{s}-{'if' if i else 'noif'}-L{n}" for f, s, i, n in FEATURE_GRID])
def test_features_loss_and_grads_match_the_equations(feature, style, feeding, layers, rng):
    options = {"attention": "dot", **FEATURES[feature]}
    cfg = make_config(style=style, input_feeding=feeding, layers=layers, **options)
    shapes = param_shapes(cfg)
    if options.get("bridge") == "concat":
        assert shapes["encoder.l0_reverse.w_hh"] == (2 * H, H // 2)  # [4 He, He] with He = H/2
        assert not any(name.startswith("bridge.") for name in shapes)
    assert ("attention.b_q" in shapes) == bool(options.get("attention_query_bias"))
    params = random_params(cfg, rng)
    batch = random_batch(rng)
    model = TorchSeq2Seq.from_params(cfg, params)
    loss = model.loss(*batch)
    loss.backward()
    grads = model.grads_as_numpy()
    assert set(grads) == set(params)
    P = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    ref = naive_loss(cfg, P, *batch)
    ref.backward()
    assert_close("loss", loss.item(), ref.item())
    for name in params:
        assert np.any(grads[name] != 0), f"{name}: no gradient reached it"
        assert_close(name, grads[name], P[name].grad.numpy())
    if model.uses_all_steps_path():
        step = TorchSeq2Seq.from_params(cfg, params).loss(*batch, step_path=True)
        assert_close("step path loss", step.item(), loss.item())


@pytest.mark.parametrize("options, match", [
    (dict(bridge="concat"), "bridge"),                                   # unidirectional
    (dict(bridge="concat", bidirectional=True, hidden_size=5), "bridge"),  # odd hidden size
    (dict(bridge="mlp", bidirectional=True), "bridge"),
    (dict(combine_activation="relu"), "combine_activation"),
    (dict(attention_query_bias=True), "attention_query_bias"),            # dot attention
    (dict(attention="concat", attention_query_bias=1), "attention_query_bias"),
])
def test_feature_options_are_checked(options, match):
    with pytest.raises(ValueError, match=match):
        TorchSeq2Seq({**make_config(), **options})


STEP_GRID = [(att, layers, bidi) for att in (None,) + ATTENTION_KINDS
             for layers in (1, 2) for bidi in (False, True)]


@pytest.mark.parametrize("att,layers,bidi", STEP_GRID)
def test_step_path_equals_all_steps_path(att, layers, bidi, rng):
    cfg = make_config(att, "luong", False, layers, bidi)
    params = random_params(cfg, rng)
    src, sl, tgt_in, tgt_out, tl = random_batch(rng)
    model = TorchSeq2Seq.from_params(cfg, params)
    assert model.uses_all_steps_path()
    assert not model.uses_all_steps_path(step_path=True)
    assert not model.uses_all_steps_path(teacher_forcing_tokens=tgt_in)

    logits_a, attn_a = model.forward_logits(src, sl, tgt_in)
    logits_s, attn_s = model.forward_logits(src, sl, tgt_in, step_path=True)
    assert logits_a.shape == (B, T, VT)
    assert_close("logits", logits_s.detach(), logits_a.detach(), 1e-12)
    if att is None:
        assert attn_a is None and attn_s is None
    else:
        assert attn_a.shape == (B, T, S)
        assert_close("attention", attn_s.detach(), attn_a.detach(), 1e-12)

    results = []
    for kwargs in ({}, {"step_path": True}, {"teacher_forcing_tokens": tgt_in}):
        model.zero_grad()
        loss = model.loss(src, sl, tgt_in, tgt_out, tl, **kwargs)
        loss.backward()
        results.append((loss.item(), model.grads_as_numpy()))
    (l_all, g_all) = results[0]
    for l_step, g_step in results[1:]:
        assert_close("loss", l_step, l_all, 1e-12)
        for name in g_all:
            assert_close(name, g_step[name], g_all[name], 1e-11)


@pytest.mark.parametrize("att", [None, "general", "location"])
@pytest.mark.parametrize("bidi", [False, True])
def test_params_round_trip(att, bidi, rng):
    cfg = make_config(att, "luong", True, 2, bidi)
    params = random_params(cfg, rng)
    model = TorchSeq2Seq.from_params(cfg, params)
    assert model.param_shapes() == param_shapes(cfg)
    back = model.params_as_numpy()
    assert set(back) == set(params)
    for name, value in params.items():
        assert back[name].dtype == np.float64
        np.testing.assert_array_equal(back[name], value, err_msg=name)
    # LSTM biases: bias_ih = b, bias_hh = 0 and frozen (the trainable parameters are s2sext's)
    np.testing.assert_array_equal(model.decoder[1].bias_ih.detach().numpy(), params["decoder.l1.b"])
    assert not torch.any(model.decoder[1].bias_hh)
    assert not model.encoder.bias_hh_l0.requires_grad
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n_trainable == sum(v.size for v in params.values())
    # the all-steps decoder LSTM shares the cells' parameters
    if model.decoder_all_steps is not None:
        assert model.decoder_all_steps.weight_ih_l1 is model.decoder[1].weight_ih
    # a second model loads the first one's weights; float32 too
    other = TorchSeq2Seq(cfg, dtype=torch.float64)
    other.state_from_params(back)
    for name, value in other.params_as_numpy().items():
        np.testing.assert_array_equal(value, params[name], err_msg=name)
    m32 = TorchSeq2Seq.from_params(cfg, params, dtype=torch.float32)
    p32 = m32.params_as_numpy()
    assert all(v.dtype == np.float32 for v in p32.values())
    np.testing.assert_array_equal(p32["out.weight"], params["out.weight"].astype(np.float32))


def test_default_init_has_every_parameter():
    cfg = make_config("concat", "bahdanau", False, 2, True)
    model = TorchSeq2Seq(cfg)
    shapes = {k: v.shape for k, v in model.params_as_numpy().items()}
    assert shapes == param_shapes(cfg)
    assert all(v.dtype == np.float32 for v in model.params_as_numpy().values())


def test_bias_gradient_is_the_gradient_of_b(rng):
    """d loss / d b by central differences equals grads_as_numpy's `b` (bias_ih.grad)."""
    cfg = make_config("general", "luong", True, 1, True)
    params = random_params(cfg, rng)
    batch = random_batch(rng)
    model = TorchSeq2Seq.from_params(cfg, params)
    model.loss(*batch).backward()
    grads = model.grads_as_numpy()
    for name in ("encoder.l0_reverse.b", "decoder.l0.b"):
        np.testing.assert_array_equal(grads[name], model._names[name][0].grad.numpy())
        idx, eps = 3, 1e-6
        values = []
        for sign in (1, -1):
            p = {k: v.copy() for k, v in params.items()}
            p[name][idx] += sign * eps
            values.append(TorchSeq2Seq.from_params(cfg, p).loss(*batch).item())
        fd = (values[0] - values[1]) / (2 * eps)
        assert abs(fd - grads[name][idx]) <= 1e-7 * max(1.0, abs(fd)), (name, fd, grads[name][idx])


@pytest.mark.parametrize("bidi", [False, True])
def test_bad_params_raise_naming_the_parameter(bidi, rng):
    cfg = make_config("concat", "luong", False, 2, bidi)
    params = random_params(cfg, rng)
    model = TorchSeq2Seq(cfg, dtype=torch.float64)
    before = model.params_as_numpy()
    names = ["attention.v", "decoder.l1.b", "encoder.l1.w_ih"]
    if bidi:
        names += ["bridge.memory.weight", "encoder.l0_reverse.w_hh"]
    for name in names:
        missing = {k: v for k, v in params.items() if k != name}
        with pytest.raises(ValueError, match=name.replace(".", r"\.")):
            model.state_from_params(missing)
        wrong = dict(params)
        wrong[name] = np.zeros(params[name].shape[:-1] + (params[name].shape[-1] + 1,))
        with pytest.raises(ValueError, match=name.replace(".", r"\.")):
            model.state_from_params(wrong)
        with pytest.raises(ValueError, match=name.replace(".", r"\.")):
            TorchSeq2Seq.from_params(cfg, wrong)
    for extra in ("attention.w_a", "encoder.l2.w_ih", "bridge.h.weight" if not bidi else "foo"):
        with pytest.raises(ValueError, match=extra.replace(".", r"\.")):
            model.state_from_params(dict(params, **{extra: np.zeros((H, H))}))
    # nothing was loaded by the failed calls
    for name, value in model.params_as_numpy().items():
        np.testing.assert_array_equal(value, before[name])


@pytest.mark.parametrize("att,style,feeding", [("dot", "luong", False),
                                               ("location", "luong", True),
                                               ("concat", "bahdanau", False),
                                               (None, "luong", False)])
def test_padding_does_not_change_the_loss(att, style, feeding, rng):
    cfg = make_config(att, style, feeding, 2, True)
    model = TorchSeq2Seq.from_params(cfg, random_params(cfg, rng))
    src, sl, tgt_in, tgt_out, tl = random_batch(rng)
    ref = model.loss(src, sl, tgt_in, tgt_out, tl).item()
    ref_step = model.loss(src, sl, tgt_in, tgt_out, tl, step_path=True).item()
    pad_src = np.arange(S)[None, :] >= sl[:, None]
    pad_tgt = np.arange(T)[None, :] >= tl[:, None]
    for trial in range(3):
        src2 = np.where(pad_src, rng.integers(0, VS, size=src.shape), src)
        tgt_in2 = np.where(pad_tgt, rng.integers(0, VT, size=tgt_in.shape), tgt_in)
        tgt_out2 = np.where(pad_tgt, rng.integers(0, VT, size=tgt_out.shape), tgt_out)
        assert not np.array_equal(src2, src) or trial > 0
        assert_close("loss", model.loss(src2, sl, tgt_in2, tgt_out2, tl).item(), ref, 1e-13)
        assert_close("loss (step path)",
                     model.loss(src2, sl, tgt_in2, tgt_out2, tl, step_path=True).item(),
                     ref_step, 1e-13)
    # attention weights are exactly zero at padded source positions
    if att is not None:
        _, a = model.forward_logits(src, sl, tgt_in)
        assert torch.all(a.detach()[torch.from_numpy(pad_src)[:, None, :].expand(B, T, S)] == 0)
    # and a longer padded source (more padding columns) changes nothing either
    if att != "location" or S + 2 <= S_MAX:
        src3 = np.concatenate([src, np.zeros((B, 2), dtype=src.dtype)], axis=1)
        assert_close("loss (wider source)", model.loss(src3, sl, tgt_in, tgt_out, tl).item(),
                     ref, 1e-13)


def test_loss_is_the_mean_over_valid_tokens(rng):
    cfg = make_config("scaled_dot", "luong", False, 1, False)
    model = TorchSeq2Seq.from_params(cfg, random_params(cfg, rng))
    src, sl, tgt_in, tgt_out, tl = random_batch(rng)
    logits, _ = model.forward_logits(src, sl, tgt_in)
    logp = torch.log_softmax(logits.detach(), -1).numpy()
    terms = [-logp[b, t, tgt_out[b, t]] for b in range(B) for t in range(tl[b])]
    assert_close("loss", model.loss(src, sl, tgt_in, tgt_out, tl).item(), np.mean(terms), 1e-13)
    # tensors are accepted as well as numpy arrays
    as_t = [torch.from_numpy(np.asarray(x)) for x in (src, sl, tgt_in, tgt_out, tl)]
    assert_close("loss (tensors)", model.loss(*as_t).item(), np.mean(terms), 1e-13)


@pytest.mark.parametrize("att,style,feeding", [(None, "luong", False), ("dot", "luong", False),
                                               ("general", "luong", True),
                                               ("concat", "bahdanau", False)])
def test_greedy_is_self_consistent(att, style, feeding, rng):
    cfg = make_config(att, style, feeding, 2, True)
    model = TorchSeq2Seq.from_params(cfg, random_params(cfg, rng, scale=1.0))
    src, sl, _, _, _ = random_batch(rng)
    out = model.greedy(src, sl, 6)
    assert out.shape == (B, 6) and out.dtype == np.int64
    assert model.training  # mode restored
    # replaying greedy's own tokens as teacher forcing gives logits whose argmax is greedy's output
    replay = np.concatenate([np.full((B, 1), SOS), out[:, :-1]], axis=1)
    logits, _ = model.forward_logits(src, sl, replay, teacher_forcing_tokens=replay)
    np.testing.assert_array_equal(logits.detach().argmax(-1).numpy(), out)
    assert model.greedy(src, sl, 0).shape == (B, 0)


def test_dropout(rng):
    """dropout > 0 runs in training mode (no warning, even with one layer) and is off in eval."""
    for layers in (1, 2):
        cfg = make_config("dot", "luong", False, layers, True, dropout=0.5)
        params = random_params(cfg, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model = TorchSeq2Seq.from_params(cfg, params)
        plain = TorchSeq2Seq.from_params(dict(cfg, dropout=0.0), params)
        batch = random_batch(rng)
        torch.manual_seed(0)
        model.train()
        for kwargs in ({}, {"step_path": True}):
            loss = model.loss(*batch, **kwargs)
            loss.backward()
            assert math.isfinite(loss.item())
        model.eval()
        assert_close("eval loss", model.loss(*batch).item(), plain.loss(*batch).item(), 1e-13)
        assert_close("eval loss (step path)", model.loss(*batch, step_path=True).item(),
                     plain.loss(*batch).item(), 1e-12)
        if layers == 2:
            model.train()
            losses = {model.loss(*batch).item() for _ in range(4)}
            assert len(losses) > 1


def test_bad_inputs_raise(rng):
    cfg = make_config("location", "luong", False, 1, False)
    model = TorchSeq2Seq.from_params(cfg, random_params(cfg, rng))
    src, sl, tgt_in, tgt_out, tl = random_batch(rng)
    with pytest.raises(ValueError, match="max_source_length"):
        model.loss(np.ones((B, S_MAX + 1), dtype=np.int64), sl, tgt_in, tgt_out, tl)
    with pytest.raises(ValueError, match="src_lengths"):
        model.loss(src, np.array([5, 0, 3]), tgt_in, tgt_out, tl)
    with pytest.raises(ValueError, match="src_lengths"):
        model.loss(src, np.array([6, 1, 3]), tgt_in, tgt_out, tl)
    with pytest.raises(ValueError, match="tgt_lengths"):
        model.loss(src, sl, tgt_in, tgt_out, np.array([5, 1, 1]))
    with pytest.raises(ValueError, match="tgt_out"):
        model.loss(src, sl, tgt_in, tgt_out[:, :2], tl)
    with pytest.raises(ValueError, match="teacher_forcing_tokens"):
        model.loss(src, sl, tgt_in, tgt_out, tl, tgt_in[:, :2])
    with pytest.raises(ValueError, match="src"):
        model.loss(src + VS, sl, tgt_in, tgt_out, tl)
    with pytest.raises(TypeError, match="src"):
        model.loss(src.astype(np.float64), sl, tgt_in, tgt_out, tl)
    with pytest.raises(ValueError, match="max_source_length"):
        TorchSeq2Seq(dict(cfg, max_source_length=None))
    with pytest.raises(ValueError, match="attention"):
        TorchSeq2Seq(dict(cfg, attention="additive"))
    with pytest.raises(ValueError, match="hidden_size"):
        TorchSeq2Seq({k: v for k, v in cfg.items() if k != "hidden_size"})
