"""The Seq2Seq model against its PyTorch twin (s2sext.torch_reference, built from the same weights):
the loss and every parameter's gradient, for every attention kind, both styles, input feeding,
1 and 2 layers, bidirectional, with padded sources and targets.

Our model runs in float64 (tolerance RTOL64 of tests/reference.py) and in float32 (the measured
rule of tests/reference.py: at most 4x the error of the twin's own float32 run against float64,
plus a floor of 8 ulp of the largest value and one ulp at 1.0).
"""

import itertools

import numpy as np
import pytest
import torch

from reference import assert_close
from s2sext.model import Seq2Seq
from s2sext.torch_reference import TorchSeq2Seq

KINDS = ["dot", "scaled_dot", "general", "concat", "location"]
# (attention, style, input_feeding)
VARIANTS = [(None, "luong", False)] + [
    (kind, style, feeding)
    for kind in KINDS
    for style, feeding in (("luong", False), ("luong", True), ("bahdanau", False))
]

V_SRC, V_TGT, E, H = 11, 9, 5, 7


def make_batch(rng, B=3, S=6, T=5, src_lengths=(6, 1, 4), tgt_lengths=(5, 2, 3)):
    """Padded batch; padding holds random tokens (they must not matter)."""
    src = rng.integers(4, V_SRC, (B, S))
    tgt_out = rng.integers(3, V_TGT, (B, T))
    tgt_lengths = np.array(tgt_lengths)
    tgt_out[np.arange(B), tgt_lengths - 1] = 2  # <eos> ends each target
    tgt_in = np.concatenate([np.ones((B, 1), np.int64), tgt_out[:, :-1]], axis=1)
    return src, np.array(src_lengths), tgt_in, tgt_out, tgt_lengths


def make_model(attention, style, feeding, layers, bidirectional, seed=0):
    return Seq2Seq(V_SRC, V_TGT, embed_size=E, hidden_size=H, num_layers=layers, bidirectional=bidirectional,
                   attention=attention, attention_style=style, input_feeding=feeding, seed=seed,
                   max_source_length=8)


def as_dtype(model, dtype):
    cfg = model.config.as_dict()
    del cfg["src_vocab_size"], cfg["tgt_vocab_size"]
    params = {k: v.astype(dtype) for k, v in model.params.items()}
    return Seq2Seq(model.src_vocab, model.tgt_vocab, _params=params, **cfg)


def twin_loss_and_grads(model, batch, dtype, decoder_inputs=None):
    twin = TorchSeq2Seq.from_params(model.config.as_dict(), model.params, dtype=dtype)
    loss = twin.loss(*batch, teacher_forcing_tokens=decoder_inputs)
    loss.backward()
    return float(loss.detach()), twin.grads_as_numpy()


def compare(model, batch, feed_prob=1.0, force_step_path=False, zero_ok=()):
    ours = {}
    for dtype in (np.float64, np.float32):
        m = as_dtype(model, dtype)
        rng = np.random.default_rng(5)
        loss, grads, stats = m.loss_and_grads(*batch, feed_prob=feed_prob, rng=rng, force_step_path=force_step_path)
        ours[dtype] = (loss, grads, stats["decoder_inputs"])
    fed = ours[np.float64][2] if feed_prob < 1.0 else None
    np.testing.assert_array_equal(ours[np.float32][2], ours[np.float64][2])
    loss64, grads64 = twin_loss_and_grads(model, batch, torch.float64, fed)
    loss32, grads32 = twin_loss_and_grads(model, batch, torch.float32, fed)
    assert set(grads64) == set(ours[np.float64][1]) == set(model.params)
    assert_close("loss", np.float64(ours[np.float64][0]), np.float64(loss64))
    assert_close("loss", np.float32(ours[np.float32][0]), np.float64(loss64), np.float32(loss32))
    for name in model.params:
        assert_close(name, ours[np.float64][1][name], grads64[name])
        assert_close(name, ours[np.float32][1][name], grads64[name], grads32[name])
        if name not in zero_ok:
            assert np.abs(grads64[name]).max() > 0, f"{name}: the reference gradient is zero (test too weak)"


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("attention,style,feeding", VARIANTS,
                         ids=[f"{a}-{s}{'-if' if f else ''}" for a, s, f in VARIANTS])
def test_loss_and_gradients_match_torch(attention, style, feeding, layers, bidirectional):
    model = make_model(attention, style, feeding, layers, bidirectional)
    compare(model, make_batch(np.random.default_rng(1)))


# The options OpenNMT-py's models need (docs/model.md), each alone and together.
FEATURES = {
    "query-bias": dict(attention="concat", attention_query_bias=True),
    "no-tanh": dict(combine_activation="none"),
    "no-tanh-general": dict(attention="general", combine_activation="none"),
    "concat-bridge": dict(bidirectional=True, bridge="concat"),
    "concat-bridge-no-attention": dict(bidirectional=True, bridge="concat", attention=None),
    "all": dict(attention="concat", attention_query_bias=True, combine_activation="none", bidirectional=True,
                bridge="concat"),
}


# input feeding and the Bahdanau style need attention
FEATURE_CASES = [(f, style, feeding) for f in FEATURES
                 for style, feeding in (("luong", False), ("luong", True), ("bahdanau", False))
                 if FEATURES[f].get("attention", "dot") is not None or (style, feeding) == ("luong", False)]


@pytest.mark.parametrize("feature,style,feeding", FEATURE_CASES,
                         ids=[f"{f}-{s}{'-if' if i else ''}" for f, s, i in FEATURE_CASES])
def test_features_loss_and_gradients_match_torch(feature, style, feeding):
    options = {"attention": "dot", "num_layers": 2, **FEATURES[feature]}
    # hidden size 8: bridge="concat" halves it per direction
    model = Seq2Seq(V_SRC, V_TGT, embed_size=E, hidden_size=8, attention_style=style, input_feeding=feeding,
                    seed=0, **options)
    batch = make_batch(np.random.default_rng(1))
    compare(model, batch)
    if model.decoder.can_run_all_steps():
        compare(model, batch, force_step_path=True)


def test_default_features_are_todays_model():
    """The new options' defaults give the model of before, bit for bit: the same parameters (the
    init draws nothing more), the same file bytes as version 1 (no new keys), the same numbers."""
    rng = np.random.default_rng(2)
    batch = make_batch(rng)
    for options in (dict(attention="concat", bidirectional=True, num_layers=2, input_feeding=True),
                    dict(attention="general", attention_style="bahdanau")):
        plain = Seq2Seq(V_SRC, V_TGT, embed_size=E, hidden_size=8, seed=3, **options)
        explicit = Seq2Seq(V_SRC, V_TGT, embed_size=E, hidden_size=8, seed=3, bridge="linear",
                           combine_activation="tanh", attention_query_bias=False, **options)
        assert list(plain.params) == list(explicit.params)
        for name in plain.params:
            np.testing.assert_array_equal(plain.params[name], explicit.params[name])
        header = plain.file_header()
        assert header["version"] == 1
        assert set(header["config"]) == set(plain.config.as_dict()) - {"bridge", "combine_activation",
                                                                      "attention_query_bias", "src_lowercase",
                                                                      "tgt_lowercase"}
        # the version-2 options set: version 2, without the version-3 lowercase keys
        header = Seq2Seq(V_SRC, V_TGT, embed_size=E, hidden_size=8, seed=3, combine_activation="none",
                         **options).file_header()
        assert header["version"] == 2
        assert set(header["config"]) == set(plain.config.as_dict()) - {"src_lowercase", "tgt_lowercase"}
        assert plain.loss_and_grads(*batch)[0] == explicit.loss_and_grads(*batch)[0]


@pytest.mark.parametrize("options, error, match", [
    (dict(bridge="concat"), ValueError, "bridge='concat' needs bidirectional=True"),
    (dict(bridge="concat", bidirectional=True, hidden_size=7), ValueError, "an even hidden_size"),
    (dict(bridge="Linear"), ValueError, "bridge must be 'linear' or 'concat'; got 'Linear'"),
    (dict(combine_activation="relu"), ValueError, "combine_activation must be 'tanh' or 'none'; got 'relu'"),
    (dict(combine_activation="none", attention=None), ValueError, "combine_activation='none' needs an attention"),
    (dict(attention_query_bias=True), ValueError, "attention_query_bias needs attention='concat'; got attention='dot'"),
    (dict(attention="concat", attention_query_bias=1), TypeError, "attention_query_bias must be a bool, got 1"),
])
def test_feature_options_are_checked(options, error, match):
    with pytest.raises(error, match=match):
        Seq2Seq(V_SRC, V_TGT, **{"embed_size": E, "hidden_size": 8, **options})


@pytest.mark.parametrize("feature", list(FEATURES))
def test_features_save_and_load(feature, tmp_path):
    model = Seq2Seq(V_SRC, V_TGT, embed_size=E, hidden_size=8, seed=4, **FEATURES[feature])
    model.save(tmp_path / "m.s2s")
    loaded = Seq2Seq.load(tmp_path / "m.s2s")
    assert loaded.config == model.config and model.file_header()["version"] == 2
    assert list(loaded.params) == list(model.params)
    for name, value in model.params.items():
        np.testing.assert_array_equal(loaded.params[name], value)


@pytest.mark.parametrize("attention,style,feeding", [("dot", "luong", False), (None, "luong", False)])
def test_step_path_matches_torch_and_all_steps_path(attention, style, feeding):
    model = make_model(attention, style, feeding, 2, True)
    batch = make_batch(np.random.default_rng(2))
    compare(model, batch, force_step_path=True)
    m = as_dtype(model, np.float64)
    loss_all, grads_all, _ = m.loss_and_grads(*batch)
    loss_step, grads_step, _ = m.loss_and_grads(*batch, force_step_path=True)
    assert abs(loss_all - loss_step) <= 1e-12 * abs(loss_all)
    for name in grads_all:
        np.testing.assert_allclose(grads_step[name], grads_all[name], rtol=0, atol=1e-12)


@pytest.mark.parametrize("attention,style,feeding", [("dot", "luong", False), ("concat", "bahdanau", False),
                                                     ("general", "luong", True)])
def test_scheduled_sampling_gradients_match_torch_replay(attention, style, feeding):
    """With feed_prob < 1 some inputs are the model's own argmax; the twin replays the same inputs."""
    model = make_model(attention, style, feeding, 1, False, seed=3)
    batch = make_batch(np.random.default_rng(4), B=3, S=6, T=5, tgt_lengths=(5, 5, 4))
    compare(model, batch, feed_prob=0.4)


def test_batch_edge_shapes_b1_s1():
    model = make_model("general", "bahdanau", False, 1, True)
    batch = make_batch(np.random.default_rng(6), B=1, S=1, T=1, src_lengths=(1,), tgt_lengths=(1,))
    # One source step from a zero state: the encoder's recurrent weights cannot matter; and a softmax
    # over one position is 1 whatever its score, so the score's weight gets no gradient either.
    compare(model, batch, zero_ok=("encoder.l0.w_hh", "encoder.l0_reverse.w_hh", "attention.w_a"))


def test_padding_tokens_do_not_matter():
    model = as_dtype(make_model("concat", "luong", True, 2, True), np.float64)
    src, src_len, tgt_in, tgt_out, tgt_len = make_batch(np.random.default_rng(7))
    loss1, g1, _ = model.loss_and_grads(src, src_len, tgt_in, tgt_out, tgt_len)
    src2, tgt_in2, tgt_out2 = src.copy(), tgt_in.copy(), tgt_out.copy()
    for b in range(3):
        src2[b, src_len[b]:] = 5
        tgt_in2[b, tgt_len[b]:] = 6
        tgt_out2[b, tgt_len[b]:] = 7
    loss2, g2, _ = model.loss_and_grads(src2, src_len, tgt_in2, tgt_out2, tgt_len)
    assert loss1 == loss2
    for name in g1:
        np.testing.assert_array_equal(g1[name], g2[name])


def test_dropout_is_random_in_training_and_off_without_rng():
    model = Seq2Seq(V_SRC, V_TGT, embed_size=E, hidden_size=H, num_layers=2, dropout=0.5, seed=0)
    batch = make_batch(np.random.default_rng(8))
    no_dropout = model.loss_and_grads(*batch, train=False)[0]
    assert model.loss_and_grads(*batch, rng=None)[0] == no_dropout
    a = model.loss_and_grads(*batch, rng=np.random.default_rng(1))[0]
    b = model.loss_and_grads(*batch, rng=np.random.default_rng(2))[0]
    assert a != no_dropout and a != b
    assert model.loss_and_grads(*batch, rng=np.random.default_rng(1))[0] == a


def test_greedy_matches_torch_twin():
    rng = np.random.default_rng(9)
    for attention, style, feeding in [("dot", "luong", True), ("location", "bahdanau", False), (None, "luong", False)]:
        model = make_model(attention, style, feeding, 2, True, seed=11)
        src = rng.integers(4, V_SRC, (4, 7))
        lengths = np.array([7, 3, 1, 5])
        ours = model.greedy(src, lengths, max_length=6)
        twin = TorchSeq2Seq.from_params(model.config.as_dict(), model.params, dtype=torch.float64)
        theirs = twin.greedy(src, lengths, 6)
        for row_ours, row_theirs in zip(ours, theirs):
            n = next((i + 1 for i, t in enumerate(row_ours) if t == 2), len(row_ours))
            np.testing.assert_array_equal(row_ours[:n], row_theirs[:n])
            assert all(t == 0 for t in row_ours[n:])


def test_invalid_inputs_raise_clear_errors():
    model = make_model("dot", "luong", False, 1, False)
    src, src_len, tgt_in, tgt_out, tgt_len = make_batch(np.random.default_rng(0))
    with pytest.raises(TypeError, match="src_ids must be an integer array"):
        model.greedy(src.astype(float))
    with pytest.raises(ValueError, match=r"src_ids must lie in \[0, 11\)"):
        model.greedy(src + 20)
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, S=6\]"):
        model.greedy(src, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="lengths must have shape"):
        model.greedy(src, np.array([1, 2]))
    with pytest.raises(ValueError, match="max_length must be >= 1, got 0"):
        model.greedy(src, max_length=0)
    with pytest.raises(ValueError, match="tgt_in must lie in"):
        model.loss_and_grads(src, src_len, tgt_in + 50, tgt_out, tgt_len)
    with pytest.raises(ValueError, match="attention must be None or one of"):
        Seq2Seq(10, 10, attention="cosine")
    with pytest.raises(ValueError, match="input_feeding needs Luong-style attention"):
        Seq2Seq(10, 10, attention="dot", attention_style="bahdanau", input_feeding=True)
    with pytest.raises(ValueError, match="location attention accepts at most max_source_length=8"):
        make_model("location", "luong", False, 1, False).greedy(np.full((1, 9), 5))
