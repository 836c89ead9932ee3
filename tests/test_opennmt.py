"""s2sext.opennmt: OpenNMT-py RNN checkpoints imported into Seq2Seq, compared with the twin.

Tiny checkpoints of the 3.x, 2.x and 1.x layouts (and fp16) are built from the twin
(opennmt_twin.py), converted, and the teacher-forced log-probabilities of the Seq2Seq (step and
all-steps paths), its greedy tokens and the compiled Decoder's are compared with the twin's.
"""
import argparse
import collections
import functools
import sys
import types

import numpy as np
import pytest
import torch

from reference import assert_close
from s2sext import Seq2Seq
from s2sext.opennmt import convert_file, from_opennmt

from opennmt_twin import (
    B, BLANK, BOS, E, EOS, H, ONMT_SPECIALS_3X, SRC_TOKENS, T, TGT_TOKENS, TwinNMT, UNK, VS, VT, _drop_opt,
    assert_matches_twin, batch, checkpoint, log_softmax32, needs_safe_load, s2sext_columns, s2sext_ids,
    step_log_probs, twin_greedy, twin_refs, twin_sequence_log_prob)


# Every configuration s2sext expresses (L, attention, input_feed, brnn), with a seed whose random
# model's greedy output visits several tokens per row (random models often repeat one token, which
# tests less). Every unidirectional one; brnn with each attention kind and both decoders.
SUPPORTED = {(1, "dot", False, False): 40, (1, "dot", True, False): 11, (1, "general", False, False): 30,
             (1, "general", True, False): 31, (1, "none", False, False): 30, (2, "dot", False, False): 30,
             (2, "dot", True, False): 41, (2, "general", False, False): 40, (2, "general", True, False): 21,
             (2, "none", False, False): 30, (1, "mlp", False, False): 0, (1, "mlp", True, False): 4,
             (2, "mlp", False, False): 4, (2, "mlp", True, False): 49,
             (1, "dot", False, True): 7, (1, "general", True, True): 0, (1, "none", False, True): 6,
             (2, "dot", True, True): 12, (2, "general", False, True): 4, (1, "mlp", True, True): 26,
             (2, "mlp", False, True): 2, (2, "mlp", True, True): 43}


@pytest.mark.parametrize("L,attention,feed,brnn", list(SUPPORTED))
def test_log_probs_greedy_and_compiled_decoder_match_the_twin(L, attention, feed, brnn, tmp_path):
    twin = TwinNMT(L, attention, feed, brnn=brnn, seed=SUPPORTED[L, attention, feed, brnn])
    model = from_opennmt(checkpoint(twin))
    cfg = model.config
    kind = {"none": None, "mlp": "concat"}.get(attention, attention)
    assert (cfg.num_layers, cfg.hidden_size, cfg.embed_size, cfg.attention, cfg.input_feeding, cfg.dropout) == (
        L, H, E, kind, feed, 0.0)
    mlp = attention == "mlp"
    assert (cfg.bidirectional, cfg.bridge, cfg.attention_query_bias, cfg.combine_activation) == (
        brnn, "concat" if brnn else "linear", mlp, "none" if mlp else "tanh")
    src_onmt, lengths, tgt_onmt = batch()
    name = f"L={L} {attention} feed={feed} brnn={brnn}"
    src, tgt_in = assert_matches_twin(model, twin, name, src_onmt, lengths, tgt_onmt)
    if model.decoder.can_run_all_steps():
        ref64, ref32 = twin_refs(twin, src_onmt, lengths, tgt_onmt)
        cols = s2sext_columns(model.tgt_vocab, TGT_TOKENS)
        enc = model.encode(src, lengths.numpy())
        logits, _, _ = model.decoder.forward_all_steps(model.params, enc, tgt_in, np.full(B, T))
        assert_close("all-steps path", log_softmax32(logits), ref64[..., cols], ref32[..., cols])

    max_length = 8
    ys = twin_greedy(twin, src_onmt, lengths, max_length)
    expected = s2sext_ids(model.tgt_vocab, TGT_TOKENS, ys)  # <blank> after </s> becomes <pad>
    decoder = model.compile()
    np.testing.assert_array_equal(model.greedy(src, lengths.numpy(), max_length=max_length), expected)
    np.testing.assert_array_equal(decoder.greedy(src, lengths.numpy(), max_length=max_length), expected)
    # The compiled decoder's beam of 1 finds the same sequence, with the twin's log P. (The random
    # model also emits <pad>: OpenNMT-py does not ban <blank> either, so row ends come from </s>.)
    hyps = decoder.hypotheses(src, lengths.numpy(), beam_size=1, max_length=max_length)
    for b in range(B):
        ends = np.flatnonzero(ys[b].numpy() == EOS)
        np.testing.assert_array_equal(hyps[b][0][0], expected[b][: ends[0] + 1 if ends.size else max_length])
    lp64, lp32 = twin_sequence_log_prob(twin, src_onmt, lengths, ys)
    assert_close("compiled decoder log P(greedy)", np.array([h[0][2] for h in hyps], np.float32), lp64, lp32)

    path = tmp_path / "model.s2s"
    model.save(path)
    loaded = Seq2Seq.load(path)
    assert loaded.config == model.config and loaded.tgt_vocab.tokens == model.tgt_vocab.tokens
    for name, value in model.params.items():
        np.testing.assert_array_equal(loaded.params[name], value)
    # a model that needs a version-2 feature is saved as version 2; the others stay version 1
    assert model.file_header()["version"] == (2 if brnn or mlp else 1)


def test_general_needs_the_transpose():
    """OpenNMT's general score is (W_in h_t) . h_s; s2sext's h_t . (W_a h_s) needs W_a = W_in^T. A
    plain copy of W_in gives log-probs off by more than 1e-2 here, so the parity test above would
    catch a converter that forgot the transpose."""
    twin = TwinNMT(2, "general", True)
    model = from_opennmt(checkpoint(twin))
    w_in = twin.decoder.attn.linear_in.weight.detach().numpy()
    np.testing.assert_array_equal(model.params["attention.w_a"], w_in.T)
    src_onmt, lengths, tgt_onmt = batch()
    src, tgt_in = assert_matches_twin(model, twin, "transposed", src_onmt, lengths, tgt_onmt)
    model.params["attention.w_a"][...] = w_in
    ref64, _ = twin_refs(twin, src_onmt, lengths, tgt_onmt)
    cols = s2sext_columns(model.tgt_vocab, TGT_TOKENS)
    naive = step_log_probs(model, src, lengths.numpy(), tgt_in)
    assert np.abs(naive - ref64[..., cols]).max() > 1e-2


def test_mlp_needs_the_query_bias():
    """OpenNMT's mlp score v . tanh(W_q h_t + b_q + W_c h_s) has a query bias and its output layer
    no tanh: without b_q, or with the tanh, the log-probs are off by far more than the parity
    test's tolerance, so it would catch a converter that dropped either."""
    twin = TwinNMT(2, "mlp", True, seed=49)
    model = from_opennmt(checkpoint(twin))
    attn = twin.decoder.attn
    np.testing.assert_array_equal(model.params["attention.b_q"], attn.linear_query.bias.detach().numpy())
    np.testing.assert_array_equal(model.params["attention.v"], attn.v.weight.detach().numpy()[0])
    np.testing.assert_array_equal(model.params["combine.bias"], attn.linear_out.bias.detach().numpy())
    src_onmt, lengths, tgt_onmt = batch()
    src, tgt_in = assert_matches_twin(model, twin, "mlp", src_onmt, lengths, tgt_onmt)
    ref64, _ = twin_refs(twin, src_onmt, lengths, tgt_onmt)
    cols = s2sext_columns(model.tgt_vocab, TGT_TOKENS)
    options = {k: v for k, v in model.config.as_dict().items() if not k.endswith("_vocab_size")}
    for change in (dict(attention_query_bias=False), dict(combine_activation="tanh")):
        params = {k: v for k, v in model.params.items() if k != "attention.b_q" or change.get("attention_query_bias", 1)}
        wrong = Seq2Seq(model.src_vocab, model.tgt_vocab, _params=params, **{**options, **change})
        error = np.abs(step_log_probs(wrong, src, lengths.numpy(), tgt_in) - ref64[..., cols]).max()
        print(change, f"max|wrong - ref64| = {error:.3g}")
        assert error > 1e-3, change  # a hundred times the parity tolerance (about 1e-5)


def test_brnn_is_imported_from_the_tensors_alone():
    # without saved options the shapes and the _reverse keys say brnn, linear_query says mlp
    twin = TwinNMT(2, "mlp", False, brnn=True, seed=2)
    ck = checkpoint(twin)
    _drop_opt(ck)
    model = from_opennmt(ck)
    assert model.config.bidirectional and model.config.bridge == "concat" and model.config.attention_query_bias
    assert model.params["encoder.l1_reverse.w_hh"].shape == (4 * H // 2, H // 2)
    assert "bridge.h.weight" not in model.params
    assert_matches_twin(model, twin, "brnn mlp without options", *batch())


def test_vocabulary_mapping_and_the_model_file(tmp_path):
    twin = TwinNMT(1, "dot", False)
    out = tmp_path / "imported.s2s"
    model = convert_file(checkpoint(twin), out)
    assert model.src_vocab.tokens == ("<pad>", "<sos>", "<eos>", "<unk>", *SRC_TOKENS[4:])
    assert model.tgt_vocab.tokens == ("<pad>", "<sos>", "<eos>", "<unk>", *TGT_TOKENS[4:])
    emb = twin.decoder.embeddings.make_embedding["emb_luts"][0].weight.detach().numpy()
    np.testing.assert_array_equal(model.params["tgt_embed"], emb[[BLANK, BOS, EOS, UNK, *range(4, VT)]])
    np.testing.assert_array_equal(model.params["combine.bias"], np.zeros(H, np.float32))
    assert (model.config.src_tokenizer, model.config.tgt_tokenizer) == ("word", "word")
    loaded, extra, _ = Seq2Seq.load(out, return_extra=True)
    assert extra == {"imported_from": {"format": "opennmt-py", "layout": "3.x", "transforms": [],
                                       "global_attention": "dot", "input_feed": 0, "encoder_type": "rnn"}}
    assert loaded.translate(["s0 s1 s2"]) == model.translate(["s0 s1 s2"])


def test_translate_text_as_the_twin_does():
    """Whitespace-tokenized text in, words out: an unknown word becomes <unk> on both sides."""
    twin = TwinNMT(1, "general", True, seed=1)  # a seed whose greedy output holds only words
    model = from_opennmt(checkpoint(twin))
    text = "s3 s0 zzz s5 s5"
    src = torch.tensor([[SRC_TOKENS.index(w) if w in SRC_TOKENS else UNK for w in text.split()]])
    words = [TGT_TOKENS[i] for i in twin_greedy(twin, src, torch.tensor([5]), 8)[0]]
    assert not set(words) & set(ONMT_SPECIALS_3X)
    assert model.translate([text], max_length=8) == [" ".join(words)]
    assert model.compile().translate([text], max_length=8) == [" ".join(words)]


def test_transforms_warn_that_text_must_be_pre_tokenized():
    twin = TwinNMT(1, "dot", False)
    with pytest.warns(UserWarning, match=r"transforms \['onmt_tokenize', 'sentencepiece'\].*tokenized"):
        from_opennmt(checkpoint(twin, transforms=["onmt_tokenize", "sentencepiece"]))


@needs_safe_load
def test_fp16_checkpoint_and_generator_0_weight(tmp_path):
    """model_dtype fp16 saves half tensors (cast to float32); up to 3.0.3 the generator keys are
    0.weight / 0.bias (a Sequential)."""
    twin = TwinNMT(2, "general", True, seed=3)
    with torch.no_grad():
        for p in twin.parameters():
            p.copy_(p.half().float())  # the twin holds exactly what the half checkpoint holds
    path = tmp_path / "fp16.pt"
    torch.save(checkpoint(twin, dtype=torch.float16, generator_prefix="0.", model_dtype="fp16"), path)
    model = from_opennmt(path)
    assert_matches_twin(model, twin, "fp16", *batch())


# ---------------------------------------------------------------------------------------------
# 2.x / 1.x checkpoints: the vocabularies are pickled torchtext fields. They are made here with
# fake onmt/torchtext modules, present only while saving (the importer never imports them).


def _fake_modules(monkeypatch):
    made = {}
    for name in ("onmt", "onmt.inputters", "onmt.inputters.text_dataset", "torchtext", "torchtext.data",
                 "torchtext.data.field", "torchtext.vocab"):
        made[name] = types.ModuleType(name)
        monkeypatch.setitem(sys.modules, name, made[name])

    def define(module, obj):
        obj.__module__ = module
        obj.__qualname__ = obj.__name__
        setattr(made[module], obj.__name__, obj)
        return obj

    def _feature_tokenize(string, layer=0, tok_delim=None, feat_delim=None, truncate=None):
        return string.split()

    def _default_unk_index():
        return 0

    ns = types.SimpleNamespace(
        tokenize=define("onmt.inputters.text_dataset", _feature_tokenize),
        unk=define("torchtext.vocab", _default_unk_index),
        TextMultiField=define("onmt.inputters.text_dataset", type("TextMultiField", (), {})),
        Field=define("torchtext.data.field", type("Field", (), {})),
        Vocab=define("torchtext.vocab", type("Vocab", (), {})),
    )
    return ns


def _field(ns, itos, bos, multi):
    vocab = ns.Vocab()
    vocab.__dict__.update(itos=list(itos), freqs=collections.Counter(itos), unk_index=0,
                          stoi=collections.defaultdict(ns.unk, {t: i for i, t in enumerate(itos)}))
    field = ns.Field()
    field.__dict__.update(vocab=vocab, init_token=bos, eos_token="</s>" if bos else None, pad_token="<blank>",
                          unk_token="<unk>", tokenize=functools.partial(ns.tokenize, layer=0), dtype=torch.int64)
    if not multi:
        return field
    multi_field = ns.TextMultiField()
    multi_field.__dict__.update(fields=[("src", field)])
    return multi_field


@needs_safe_load
@pytest.mark.parametrize("layout", ["2.x", "1.x"])
def test_torchtext_field_checkpoints(layout, tmp_path, monkeypatch):
    """2.x: {side: TextMultiField} with torchtext's specials [<unk>, <blank>, <s>, </s>] (sources
    have no <s>/</s>), 2.x option names, generator 0.weight. 1.x: a list of (side, Field) pairs."""
    twin = TwinNMT(2, "general", True, seed=5)
    src_tokens = ["<unk>", "<blank>"] + [f"s{i}" for i in range(VS - 2)]
    ck = checkpoint(twin, generator_prefix="0.")
    ck["opt"] = argparse.Namespace(rnn_size=H, enc_rnn_size=H, dec_rnn_size=H, layers=-1, enc_layers=2,
                                   dec_layers=2, encoder_type="rnn", decoder_type="rnn", rnn_type="LSTM",
                                   global_attention="general", generator_function="softmax", input_feed=1,
                                   word_vec_size=E, copy_attn=False, coverage_attn=False, bridge=False)
    path = tmp_path / "old.pt"
    with monkeypatch.context() as m:
        ns = _fake_modules(m)
        multi = layout == "2.x"
        fields = {"src": _field(ns, src_tokens, None, multi), "tgt": _field(ns, TGT_TOKENS, "<s>", multi)}
        ck["vocab"] = fields if multi else list(fields.items())
        torch.save(ck, path)
    assert "onmt" not in sys.modules
    model, info = from_opennmt(path, return_info=True)
    assert info["layout"] == layout
    assert model.src_vocab.tokens == ("<pad>", "<sos>", "<eos>", "<unk>", *src_tokens[2:])
    emb = twin.encoder.embeddings.make_embedding["emb_luts"][0].weight.detach().numpy()
    np.testing.assert_array_equal(model.params["src_embed"][1:3], 0.0)  # no <s>/</s> on the source side
    np.testing.assert_array_equal(model.params["src_embed"][[0, 3, 4]], emb[[1, 0, 2]])
    assert_matches_twin(model, twin, layout, *batch(), src_tokens=src_tokens)
