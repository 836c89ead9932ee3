"""s2sext.opennmt: OpenNMT-py RNN checkpoints imported into Seq2Seq.

OpenNMT-py is not installed (its wheels pin an older torch), so the reference is a small PyTorch
twin of its RNN NMT model written here from OpenNMT-py's equations, with its submodule names so
that its state dict has OpenNMT-py's keys. Tiny checkpoints of the 3.x, 2.x and 1.x layouts (and
fp16, safetensors) are built from it, converted, and the teacher-forced log-probabilities of the
Seq2Seq (step and all-steps paths), its greedy tokens and the compiled Decoder's are compared with
the twin's. Every refusal has a test, and so does the loader's safety.
"""

import argparse
import collections
import copy
import functools
import json
import os
import sys
import types
import zipfile

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from reference import assert_close
from s2sext import Seq2Seq
from s2sext.opennmt import convert_file, from_opennmt, load_checkpoint, read_safetensors, safe_load_supported

VS, VT, E, H = 11, 13, 6, 8  # source and target vocabulary sizes, embedding and hidden sizes
B, S, T = 3, 7, 5
ONMT_SPECIALS_3X = ["<unk>", "<blank>", "<s>", "</s>"]  # 3.x -default_specials, ids 0..3
UNK, BLANK, BOS, EOS = 0, 1, 2, 3  # their OpenNMT ids
# OpenNMT token -> s2sext token for the specials; ordinary tokens keep their spelling.
TO_S2SEXT = {"<blank>": "<pad>", "<s>": "<sos>", "</s>": "<eos>", "<unk>": "<unk>"}


# ---------------------------------------------------------------------------------------------
# The twin: OpenNMT-py's RNN NMT model (3.x code; 1.x/2.x compute the same), written from
# onmt/modules/embeddings.py (Embeddings.make_embedding.emb_luts), onmt/encoders/rnn_encoder.py
# (RNNEncoder: a packed nn.LSTM), onmt/decoders/decoder.py (StdRNNDecoder: an nn.LSTM over all
# steps; InputFeedRNNDecoder: [e_t ; previous output] into a StackedLSTM; init_state and its
# _fix_enc_hidden), onmt/modules/stacked_rnn.py (StackedLSTM: one nn.LSTMCell per layer),
# onmt/modules/global_attention.py (GlobalAttention: dot, general, mlp scores, masked softmax,
# linear_out over [c ; h_t], tanh for dot/general) and onmt/model_builder.py (the generator).
# Dropout is left out: every comparison runs in eval mode.


class TwinEmbeddings(nn.Module):
    def __init__(self, V, dim):
        super().__init__()
        self.make_embedding = nn.ModuleDict({"emb_luts": nn.ModuleList([nn.Embedding(V, dim, padding_idx=BLANK)])})

    def forward(self, ids):
        return self.make_embedding["emb_luts"][0](ids)


class TwinEncoder(nn.Module):
    def __init__(self, L, brnn, rnn=nn.LSTM):
        super().__init__()
        self.brnn = brnn
        self.embeddings = TwinEmbeddings(VS, E)
        self.rnn = rnn(E, H // 2 if brnn else H, L, batch_first=True, bidirectional=brnn)

    def forward(self, src, lengths):
        packed = pack_padded_sequence(self.embeddings(src), lengths, batch_first=True, enforce_sorted=False)
        out, (h, c) = self.rnn(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        if self.brnn:  # _fix_enc_hidden: layer k's state = [forward ; backward]
            h, c = (torch.cat([s[0::2], s[1::2]], 2) for s in (h, c))
        return memory, h, c


class TwinAttention(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        if kind == "general":
            self.linear_in = nn.Linear(H, H, bias=False)
        if kind == "mlp":
            self.linear_context = nn.Linear(H, H, bias=False)
            self.linear_query = nn.Linear(H, H, bias=True)
            self.v = nn.Linear(H, 1, bias=False)
        self.linear_out = nn.Linear(2 * H, H, bias=kind == "mlp")

    def forward(self, q, memory, lengths):  # q [B, T, H], memory [B, S, H]
        if self.kind == "mlp":
            scores = self.v(torch.tanh(self.linear_query(q)[:, :, None] + self.linear_context(memory)[:, None]))[..., 0]
        else:
            scores = (self.linear_in(q) if self.kind == "general" else q) @ memory.transpose(1, 2)
        padding = torch.arange(memory.shape[1])[None, None, :] >= lengths[:, None, None]
        a = torch.softmax(scores.masked_fill(padding, -float("inf")), -1)
        out = self.linear_out(torch.cat([a @ memory, q], -1))
        return torch.tanh(out) if self.kind in ("dot", "general") else out


class TwinStackedLSTM(nn.Module):
    def __init__(self, L, input_size):
        super().__init__()
        self.layers = nn.ModuleList(nn.LSTMCell(input_size if k == 0 else H, H) for k in range(L))

    def forward(self, x, h, c):
        new_h, new_c = [], []
        for k, layer in enumerate(self.layers):
            hk, ck = layer(x, (h[k], c[k]))
            new_h.append(hk)
            new_c.append(ck)
            x = hk
        return x, torch.stack(new_h), torch.stack(new_c)


class TwinDecoder(nn.Module):
    def __init__(self, L, attention, input_feed):
        super().__init__()
        self.input_feed = input_feed
        self.embeddings = TwinEmbeddings(VT, E)
        self.rnn = TwinStackedLSTM(L, E + H) if input_feed else nn.LSTM(E, H, L, batch_first=True)
        if attention != "none":
            self.attn = TwinAttention(attention)

    def forward(self, tgt_in, memory, lengths, h, c):
        emb = self.embeddings(tgt_in)
        attend = (lambda q: self.attn(q, memory, lengths)) if hasattr(self, "attn") else (lambda q: q)
        if not self.input_feed:
            rnn_out, _ = self.rnn(emb, (h, c))
            return attend(rnn_out)
        feed = emb.new_zeros(emb.shape[0], H)
        outs = []
        for t in range(emb.shape[1]):
            top, h, c = self.rnn(torch.cat([emb[:, t], feed], 1), h, c)
            feed = attend(top[:, None])[:, 0]
            outs.append(feed)
        return torch.stack(outs, 1)


class TwinNMT(nn.Module):
    def __init__(self, L=2, attention="general", input_feed=True, brnn=False, seed=0):
        super().__init__()
        self.config = dict(L=L, attention=attention, input_feed=input_feed, brnn=brnn)
        self.encoder = TwinEncoder(L, brnn)
        self.decoder = TwinDecoder(L, attention, input_feed)
        self.generator = nn.Linear(H, VT)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                # Larger output weights give peaked distributions (greedy choices far from ties),
                # larger target embeddings make the next choice depend on the token fed back.
                scale = 3.0 if name.startswith("decoder.embeddings") else 1.5 if name.startswith("generator") else 0.5
                p.copy_(torch.randn(p.shape, generator=g) * scale)
        self.eval()

    def forward(self, src, lengths, tgt_in):
        """OpenNMT ids: src [B, S] (padded with <blank>), lengths [B], tgt_in [B, T] -> log P [B, T, VT]."""
        memory, h, c = self.encoder(src, lengths)
        return torch.log_softmax(self.generator(self.decoder(tgt_in, memory, lengths, h, c)), -1)

    def opt(self, **changes):
        """The options a 3.x training run saves (the ones the importer reads)."""
        cfg = self.config
        opt = dict(model_type="text", model_task="seq2seq", encoder_type="brnn" if cfg["brnn"] else "rnn",
                   decoder_type="rnn", rnn_type="LSTM", layers=-1, enc_layers=cfg["L"], dec_layers=cfg["L"],
                   hidden_size=-1, enc_hid_size=H, dec_hid_size=H, word_vec_size=-1, src_word_vec_size=E,
                   tgt_word_vec_size=E, input_feed=int(cfg["input_feed"]), global_attention=cfg["attention"],
                   global_attention_function="softmax", bridge=False, copy_attn=False, coverage_attn=False,
                   context_gate=None, position_encoding=False, n_src_feats=0, lora_layers=[], lora_embedding=False,
                   share_decoder_embeddings=False, dropout=[0.3], model_dtype="fp32", transforms=[])
        opt.update(changes)
        return argparse.Namespace(**opt)


# Reading .pt files needs the placeholder form of torch.serialization.safe_globals (torch >= 2.6); dict checkpoints do not.
needs_safe_load = pytest.mark.skipif(not safe_load_supported(), reason="load_checkpoint needs torch >= 2.6")

SRC_TOKENS = ONMT_SPECIALS_3X + [f"s{i}" for i in range(VS - 4)]
TGT_TOKENS = ONMT_SPECIALS_3X + [f"t{i}" for i in range(VT - 4)]


def checkpoint(twin, dtype=torch.float32, generator_prefix="", **opt):
    """A 3.x checkpoint (onmt/models/model_saver.py: ModelSaver._save) of the twin."""
    sd = {k: v.detach().to(dtype).clone() for k, v in twin.state_dict().items()}
    generator = {generator_prefix + k.split(".", 1)[1]: sd.pop(k) for k in list(sd) if k.startswith("generator.")}
    vocab = {"src": list(SRC_TOKENS), "tgt": list(TGT_TOKENS), "data_task": "seq2seq", "decoder_start_token": "<s>"}
    return {"model": sd, "generator": generator, "vocab": vocab, "opt": twin.opt(**opt), "optim": None}


def batch(seed=1):
    """A batch in OpenNMT ids: ragged sources with an <unk>, teacher-forced inputs from <s>."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([S, 4, 2])
    src = torch.randint(4, VS, (B, S), generator=g)
    src[0, 1] = UNK
    for b in range(B):
        src[b, lengths[b]:] = BLANK
    tgt_in = torch.randint(4, VT, (B, T), generator=g)
    tgt_in[:, 0] = BOS
    return src, lengths, tgt_in


def s2sext_ids(vocab, onmt_tokens, onmt_ids):
    """OpenNMT ids -> s2sext ids, through the token strings (independent of the converter's table)."""
    table = np.array([vocab.index(TO_S2SEXT.get(t, t)) for t in onmt_tokens])
    return table[np.asarray(onmt_ids)]


def s2sext_columns(vocab, onmt_tokens):
    """For each s2sext target id, the OpenNMT id of its token."""
    index = {TO_S2SEXT.get(t, t): i for i, t in enumerate(onmt_tokens)}
    return [index[t] for t in vocab.tokens]


def log_softmax32(logits):
    return torch.log_softmax(torch.from_numpy(np.asarray(logits, np.float32)), -1).numpy()


def step_log_probs(model, src, lengths, tgt_in):
    enc = model.encode(src, lengths)
    state = model.decoder.initial_step_state(enc)
    out = []
    for t in range(tgt_in.shape[1]):
        logits, _, state, _ = model.decoder.step_forward(model.params, enc, tgt_in[:, t], state)
        out.append(logits)
    return log_softmax32(np.stack(out, 1))


def twin_refs(twin, *inputs):
    """The twin's output in float64 (the reference) and float32 (the baseline of assert_close's
    rule: our float32 error may be a few times PyTorch's own float32 error, plus a few ulps)."""
    with torch.no_grad():
        ref32 = twin(*inputs)
        twin64 = copy.deepcopy(twin).double()
        ref64 = twin64(*inputs)
    return ref64.numpy(), ref32.numpy()


def twin_greedy(twin, src, lengths, max_length):
    """Greedy decoding with the twin (OpenNMT ids, without <s>): argmax until </s>. Asserts the
    choices are clear (top-2 gap > 1e-3, far above float32 rounding) so equal tokens are a fair ask."""
    ys = torch.full((src.shape[0], 1), BOS)
    done = torch.zeros(src.shape[0], dtype=torch.bool)
    with torch.no_grad():
        twin64 = copy.deepcopy(twin).double()
        for _ in range(max_length):
            lp = twin64(src, lengths, ys)[:, -1]
            top = lp.topk(2, -1).values
            assert ((top[:, 0] - top[:, 1])[~done] > 1e-3).all(), "a near-tie: pick another seed"
            nxt = lp.argmax(-1)
            nxt[done] = BLANK
            ys = torch.cat([ys, nxt[:, None]], 1)
            done |= nxt == EOS
            if done.all():
                break
    return ys[:, 1:]


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


def assert_matches_twin(model, twin, name, src_onmt, lengths, tgt_onmt, src_tokens=SRC_TOKENS):
    """The step path's teacher-forced log-probs against the twin's; returns the s2sext inputs."""
    ref64, ref32 = twin_refs(twin, src_onmt, lengths, tgt_onmt)
    cols = s2sext_columns(model.tgt_vocab, TGT_TOKENS)
    src = s2sext_ids(model.src_vocab, src_tokens, src_onmt)
    tgt_in = s2sext_ids(model.tgt_vocab, TGT_TOKENS, tgt_onmt)
    assert_close(f"{name} step path", step_log_probs(model, src, lengths.numpy(), tgt_in), ref64[..., cols],
                 ref32[..., cols])
    return src, tgt_in


def twin_sequence_log_prob(twin, src, lengths, ys):
    """log P(ys | src) under the twin, ys [B, n] in OpenNMT ids up to and including </s>, then <blank>."""
    inputs = torch.cat([torch.full((ys.shape[0], 1), BOS), ys[:, :-1]], 1)
    ends = (ys == EOS).long()
    valid = ((torch.cumsum(ends, 1) - ends) == 0).numpy()
    return [np.where(valid, np.take_along_axis(lp, ys[..., None].numpy(), -1)[..., 0], 0).sum(1)
            for lp in twin_refs(twin, src, lengths, inputs)]


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


# ---------------------------------------------------------------------------------------------
# safetensors weights (-save_format safetensors: the .pt holds vocab/opt/optim only)


def write_safetensors(path, tensors, dtypes=None, header_edit=None, raw=None):
    """A .safetensors file written by hand from the format's description; dtypes[name] picks the
    stored dtype ("F32", "F16", "BF16", "F64")."""
    codes = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
    header, chunks, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        code = (dtypes or {}).get(name, "F32")
        t = t.to(codes[code])
        data = (t.view(torch.int16) if code == "BF16" else t).numpy().tobytes()
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    if header_edit:
        header_edit(header)
    text = raw if raw is not None else json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + b"".join(chunks))


@needs_safe_load
def test_safetensors_weights_match_the_pt_weights(tmp_path):
    twin = TwinNMT(2, "general", True, seed=7)
    full = checkpoint(twin)
    state = {**full["model"], **{f"generator.{k}": v for k, v in full["generator"].items()}}
    kinds = ["F32", "F16", "BF16", "F64"]
    dtypes = {name: kinds[i % 4] for i, name in enumerate(state)}
    write_safetensors(tmp_path / "w.safetensors", state, dtypes)
    pt = {k: v for k, v in full.items() if k not in ("model", "generator")}
    torch.save(pt, tmp_path / "ck.pt")
    model = from_opennmt(tmp_path / "ck.pt", weights=tmp_path / "w.safetensors")
    # The same tensors rounded through each dtype by torch, in a .pt: identical parameters.
    codes = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
    rounded = copy.deepcopy(full)
    for part in ("model", "generator"):
        for k in rounded[part]:
            key = k if part == "model" else f"generator.{k}"
            rounded[part][k] = rounded[part][k].to(codes[dtypes[key]])
    expected = from_opennmt(rounded)
    for name, value in expected.params.items():
        np.testing.assert_array_equal(model.params[name], value, err_msg=name)


def _good_state():
    return {"a": torch.ones(2, 3), "b": torch.arange(4.0)}


@pytest.mark.parametrize("edit,raw,match", [
    (lambda h: h["a"].update(dtype="I64"), None, r"'a' has dtype 'I64'; expected a float dtype"),
    (lambda h: h["a"].update(shape=[3, 3]), None, r"'a': shape \[3, 3\] of F32 needs 36 bytes"),
    (lambda h: h["b"].update(data_offsets=[24, 10**12]), None, r"'b' has data_offsets .* within the 40 data bytes"),
    (lambda h: h["b"].update(data_offsets=[20, 36]), None, r"'b' starts at byte 20, expected 24"),
    (lambda h: h["a"].update(shape=[2, True]), None, r"shape \[2, True\]; expected a list of integers"),
    (lambda h: h.update(extra=[1]), None, r"'extra' must be an object with exactly dtype, shape and data_offsets"),
    (lambda h: h.update(__metadata__={"k": 1}), None, r"__metadata__ must map str to str"),
    (None, b"[" * 100000 + b"]" * 100000, r"header is not valid JSON \(RecursionError"),
    (None, b'{"a": 1, "a": 2}', r"header is not valid JSON .*key 'a' repeated"),
    (None, b"\xff\xfe", r"header is not valid JSON"),
    (None, b"[]", r"must be a JSON object, got list"),
])
def test_malformed_safetensors_are_refused(tmp_path, edit, raw, match):
    path = tmp_path / "bad.safetensors"
    write_safetensors(path, _good_state(), header_edit=edit, raw=raw)
    with pytest.raises(ValueError, match=match):
        read_safetensors(path)


def test_safetensors_sizes_are_checked_before_reading(tmp_path):
    path = tmp_path / "short.safetensors"
    path.write_bytes(b"\x01\x02")
    with pytest.raises(ValueError, match="2 bytes, too short"):
        read_safetensors(path)
    path.write_bytes((10**15).to_bytes(8, "little") + b"{}")
    with pytest.raises(ValueError, match=r"header size is 1000000000000000 bytes; the file has 2"):
        read_safetensors(path)
    write_safetensors(path, _good_state())
    with open(path, "ab") as f:
        f.write(b"\0" * 4)
    with pytest.raises(ValueError, match="cover 40 of the 44 data bytes"):
        read_safetensors(path)


def test_weights_argument_must_fit_the_checkpoint(tmp_path):
    twin = TwinNMT(1, "dot", False)
    write_safetensors(tmp_path / "w.safetensors", _good_state())
    with pytest.raises(ValueError, match="holds its weights .*weights= is only for"):
        from_opennmt(checkpoint(twin), weights=tmp_path / "w.safetensors")
    without = {k: v for k, v in checkpoint(twin).items() if k not in ("model", "generator")}
    with pytest.raises(ValueError, match="holds no weights .*weights=<the .safetensors file>"):
        from_opennmt(without)


# ---------------------------------------------------------------------------------------------
# Refusals: each names the option (or the tensor) s2sext cannot express


def _with_keys(**tensors):
    def edit(ck):
        for name, shape in tensors.items():
            if name.startswith("generator."):
                ck["generator"][name.split(".", 1)[1]] = torch.zeros(shape)
            else:
                ck["model"][name.replace("__", ".")] = torch.zeros(shape)
    return edit


def _opt(**changes):
    def edit(ck):
        for k, v in changes.items():
            setattr(ck["opt"], k, v)
    return edit


def _vocab(side, tokens):
    def edit(ck):
        ck["vocab"][side] = tokens
    return edit


def _gru_encoder(ck):
    gru = nn.GRU(E, H, 2, batch_first=True)
    for k, v in gru.state_dict().items():
        ck["model"][f"encoder.rnn.{k}"] = v


def _drop_opt(ck):
    ck["opt"] = argparse.Namespace()


REFUSALS = {
    # options
    "brnn option, rnn weights": (dict(), _opt(encoder_type="brnn"),
                                 r"encoder_type = 'brnn', but the encoder weights are unidirectional"),
    "rnn option, brnn weights": (dict(brnn=True), _opt(encoder_type="rnn"),
                                 r"encoder_type = 'rnn', but the encoder weights are bidirectional"),
    "mlp option, general weights": (dict(), _opt(global_attention="mlp"),
                                    r"global_attention = 'mlp', but the weights hold 'general'"),
    "gru": (dict(), _opt(rnn_type="GRU"), r"option rnn_type = 'GRU'.*LSTMs"),
    "transformer": (dict(), _opt(encoder_type="transformer"), r"option encoder_type = 'transformer'"),
    "decoder_type": (dict(), _opt(decoder_type="transformer"), r"option decoder_type = 'transformer'"),
    "lm": (dict(), _opt(model_task="lm"), r"option model_task = 'lm'.*not language models"),
    "sparsemax": (dict(), _opt(global_attention_function="sparsemax"), r"global_attention_function = 'sparsemax'"),
    "generator_function": (dict(), _opt(generator_function="sparsemax"), r"generator_function = 'sparsemax'"),
    "copy": (dict(), _opt(copy_attn=True), r"option copy_attn = True: copy attention"),
    "coverage": (dict(), _opt(coverage_attn=True), r"option coverage_attn = True: coverage attention"),
    "context_gate": (dict(), _opt(context_gate="both"), r"option context_gate = 'both': a context gate"),
    "bridge": (dict(), _opt(bridge=True), r"option bridge = True: a learned bridge"),
    "position_encoding": (dict(), _opt(position_encoding=True), r"option position_encoding = True"),
    "features": (dict(), _opt(n_src_feats=1), r"option n_src_feats = 1: source features"),
    "lora": (dict(), _opt(lora_layers=["linear_values"]), r"option lora_layers = \['linear_values'\]: LoRA"),
    "unknown attention": (dict(), _opt(global_attention="bogus"), r"global_attention = 'bogus'"),
    # tensors alone (no options saved): the shapes and keys give it away
    "mlp without v": (dict(attention="mlp"), lambda ck: ck["model"].pop("decoder.attn.v.weight"),
                      r"'decoder.attn.v.weight' is None"),
    "mlp without linear_out.bias": (dict(attention="mlp"), lambda ck: ck["model"].pop("decoder.attn.linear_out.bias"),
                                    r"no 'decoder.attn.linear_out.bias'"),
    "gru shapes": (dict(), lambda ck: (_drop_opt(ck), _gru_encoder(ck)), r"\(24, 8\).*3H rows.*GRU"),
    "coverage key": (dict(), _with_keys(decoder__attn__linear_cover__weight=(H, 1)), r"linear_cover.*coverage_attn"),
    "copy key": (dict(), _with_keys(**{"generator.linear_copy.weight": (1, H)}), r"copy attention \(copy_attn\)"),
    "copy attn key": (dict(), _with_keys(decoder__copy_attn__linear_out__weight=(H, 2 * H)), r"copy_attn"),
    "context gate key": (dict(), _with_keys(decoder__context_gate__gate__weight=(H, H)), r"context_gate"),
    "bridge key": (dict(), _with_keys(encoder__bridge__0__weight=(H, H)), r"a learned bridge \(bridge\)"),
    "feature key": (dict(), _with_keys(encoder__embeddings__make_embedding__emb_luts__1__weight=(3, 2)),
                    r"source features"),
    "pe key": (dict(), _with_keys(encoder__embeddings__make_embedding__pe__pe=(50, 1, E)), r"position_encoding"),
    "lora key": (dict(), _with_keys(decoder__rnn__layers__0__lora_A=(2, H)), r"LoRA"),
    "unknown key": (dict(), _with_keys(decoder__extra__weight=(2,)), r"no s2sext parameter takes: \['decoder.extra"),
    "lora generator": (dict(), lambda ck: ck.update(generator=None), r"generator is None: a LoRA checkpoint"),
    "feed without attention": (dict(attention="none", input_feed=True), None,
                               r"input_feed 1 with global_attention 'none'"),
    # options that disagree with the tensors
    "layers disagree": (dict(), _opt(enc_layers=3), r"enc_layers = 3, but the weights have L = 2"),
    "hidden disagrees": (dict(), _opt(dec_hid_size=16), r"dec_hid_size = 16, but the weights have H = 8"),
    "input_feed disagrees": (dict(), _opt(input_feed=0), r"input_feed = 0, but .*nn.LSTMCell layers"),
    "attention disagrees": (dict(), _opt(global_attention="dot"), r"global_attention = 'dot', but .*'general'"),
    "layer counts": (dict(), lambda ck: [ck["model"].pop(f"encoder.rnn.{w}_l1")
                                         for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")],
                     r"encoder has 1 layers and the decoder 2"),
    "missing bias": (dict(), lambda ck: ck["model"].pop("decoder.rnn.layers.1.bias_hh"),
                     r"no 'decoder.rnn.layers.1.bias_hh'"),
    "integer tensor": (dict(), lambda ck: ck["model"].update({"decoder.rnn.layers.1.bias_hh": torch.zeros(32,
                       dtype=torch.int64)}), r"'decoder.rnn.layers.1.bias_hh' has dtype torch.int64"),
    # vocabularies
    "token clash": (dict(), _vocab("src", SRC_TOKENS[:-1] + ["<pad>"]), r"token 10 '<pad>' is an ordinary"),
    "eos clash": (dict(), _vocab("tgt", TGT_TOKENS[:-1] + ["<eos>"]), r"'tgt': token 12 '<eos>'"),
    "duplicate": (dict(), _vocab("tgt", TGT_TOKENS[:-1] + ["t0"]), r"'tgt': token 12 't0' repeats token 4"),
    "empty": (dict(), _vocab("src", SRC_TOKENS[:-1] + [""]), r"'src': token 10 is ''"),
    "no </s>": (dict(), _vocab("tgt", ["<unk>", "<blank>", "<s>"] + TGT_TOKENS[4:] + ["x"]),
                r"'tgt' has no '</s>'"),
    "size": (dict(), _vocab("src", SRC_TOKENS[:-1]), r"'src' has 10 tokens, but its embedding has 11 rows"),
    "data_task": (dict(), lambda ck: ck["vocab"].update(data_task="lm"), r"data_task = 'lm'"),
    "start token": (dict(), lambda ck: ck["vocab"].update(decoder_start_token="</s>"), r"decoder_start_token"),
    "src_feats": (dict(), lambda ck: ck["vocab"].update(src_feats=[["a"]]), r"src_feats: source features"),
    # malformed checkpoints
    "opt type": (dict(), lambda ck: ck.update(opt=["-layers", "2"]), r"checkpoint\['opt'\] must be an argparse"),
    "vocab pairs": (dict(), lambda ck: ck.update(vocab=[1, 2]), r"a list but not of \(side, field\) pairs"),
    "vocab sides": (dict(), lambda ck: ck["vocab"].pop("tgt"), r"must hold 'src' and 'tgt' vocabularies"),
    "field features": (dict(), _vocab("src", types.SimpleNamespace(fields=[("src", None), ("feat0", None)])),
                       r"'src' has 1 feature field\(s\): source features"),
    "field layout": (dict(), _vocab("src", types.SimpleNamespace(fields="src")), r"'src': unexpected field layout"),
    "field without itos": (dict(), _vocab("tgt", types.SimpleNamespace(vocab=None)), r"without a token list"),
    "model type": (dict(), lambda ck: ck.update(model=[1]), r"must be state dicts"),
    "key type": (dict(), lambda ck: ck["model"].update({1: torch.zeros(1)}), r"state-dict key 1 is not a str"),
    "value type": (dict(), lambda ck: ck["model"].update(x="text"), r"entry 'x' is a str; expected a float tensor"),
    "generator twice": (dict(), lambda ck: ck["generator"].update({"0.weight": torch.zeros(VT, H)}),
                        r"'generator.weight' twice"),
    "no generator": (dict(), lambda ck: ck.update(generator={}), r"no 'generator.weight': not an OpenNMT-py RNN"),
    "no encoder rnn": (dict(), lambda ck: [ck["model"].pop(k) for k in list(ck["model"]) if k.startswith("encoder.rnn")],
                       r"no 'encoder.rnn.weight_ih_l0': not an OpenNMT-py RNN encoder"),
    "1-D weight_hh": (dict(), lambda ck: ck["model"].update({"encoder.rnn.weight_hh_l1": torch.zeros(4 * H)}),
                      r"no 2-D 'encoder.rnn.weight_hh_l1'"),
    "hidden sizes": (dict(), lambda ck: ck["model"].update({"decoder.rnn.layers.0.weight_hh": torch.zeros(16, 4)}),
                     r"encoder's hidden size is 8 and the decoder's 4"),
    "embedding sizes": (dict(), lambda ck: ck["model"].update({"decoder.embeddings.make_embedding.emb_luts.0.weight":
                                                               torch.zeros(VT, 5)}),
                        r"src_word_vec_size 6 and tgt_word_vec_size 5 differ"),
    # from a review: each of these ended in an IndexError, numpy's broadcast error, a silently
    # overwritten tensor, a string taken for a flag or a NotImplementedError
    "1-D embedding": (dict(), lambda ck: ck["model"].update({"encoder.embeddings.make_embedding.emb_luts.0.weight":
                                                             torch.zeros(VS)}),
                      r"emb_luts.0.weight' has shape \(11,\); expected 2 dimensions"),
    "generator rows": (dict(), lambda ck: ck["generator"].update(bias=torch.zeros(VT - 1)),
                       r"'generator.bias' has shape \(12,\); expected \(13,\)"),
    "generator in both": (dict(), lambda ck: ck["model"].update({"generator.weight": torch.zeros(VT, H)}),
                          r"'generator.weight' both in 'model' and in 'generator'"),
    "input_feed text": (dict(), lambda ck: setattr(ck["opt"], "input_feed", "0"),
                        r"input_feed must be the integer 0 or 1; got '0'"),
    "bias length": (dict(), lambda ck: ck["model"].update({"decoder.rnn.layers.1.bias_hh": torch.zeros(4 * H - 1)}),
                    r"'decoder.rnn.layers.1.bias_hh' has shape \(31,\)"),
    "meta tensor": (dict(), lambda ck: ck["model"].update({"decoder.rnn.layers.1.bias_hh":
                                                           torch.empty(4 * H, device="meta")}),
                    r"'decoder.rnn.layers.1.bias_hh' cannot be read as float32"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_name_the_option(case):
    twin_kwargs, edit, match = REFUSALS[case]
    twin = TwinNMT(**{"L": 2, "attention": "general", "input_feed": True, **twin_kwargs})
    ck = checkpoint(twin)
    if edit is not None:
        edit(ck)
    with pytest.raises(ValueError, match=match):
        from_opennmt(ck)


# ---------------------------------------------------------------------------------------------
# Safe loading


class _RunsACommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@needs_safe_load
def test_a_pickle_with_another_global_is_refused_not_run(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    ck = checkpoint(TwinNMT(1, "dot", False))
    ck["opt"] = _RunsACommand(f"touch {marker}")
    torch.save(ck, path)
    for load in (load_checkpoint, from_opennmt):
        with pytest.raises(ValueError, match=r"refers to '(posix|nt)\.system'.*nothing from the file was run"):
            load(path)
    assert not marker.exists()


@needs_safe_load
def test_files_that_are_not_checkpoints(tmp_path):
    path = tmp_path / "text.pt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not an OpenNMT-py checkpoint that can be read safely"):
        load_checkpoint(path)
    torch.save([torch.ones(1)], path)
    with pytest.raises(ValueError, match="is a dict; this file holds a list"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    with zipfile.ZipFile(path, "w") as z:  # a zip, but not one torch.save wrote
        z.writestr("notes.txt", "hello")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(path)


@needs_safe_load
def test_cli_import_opennmt(tmp_path, capsys):
    from s2sext.cli import main

    twin = TwinNMT(2, "general", True, seed=1)
    torch.save(checkpoint(twin, transforms=["onmt_tokenize"]), tmp_path / "ck.pt")
    out = tmp_path / "imported.s2s"
    assert main(["import-opennmt", str(tmp_path / "ck.pt"), str(out)]) == 0
    captured = capsys.readouterr()
    assert "rnn encoder, 2 layer(s), hidden 8, attention general, input feeding on, vocabularies 11/13" in captured.out
    assert "s2sext: note:" in captured.err and "onmt_tokenize" in captured.err
    text = "s3 s0 zzz s5 s5"
    assert Seq2Seq.load(out).translate([text], max_length=8) == from_opennmt(
        checkpoint(twin)).translate([text], max_length=8)
    torch.save(checkpoint(TwinNMT(1, "mlp", True, brnn=True)), tmp_path / "mlp.pt")
    assert main(["import-opennmt", str(tmp_path / "mlp.pt"), str(tmp_path / "mlp.s2s")]) == 0
    assert "brnn encoder, 1 layer(s), hidden 8, attention mlp (concat with query bias" in capsys.readouterr().out
    # a refusal is one error line, and no model file is written
    torch.save(checkpoint(TwinNMT(1, "dot", False), encoder_type="brnn"), tmp_path / "bad.pt")  # opt vs weights
    assert main(["import-opennmt", str(tmp_path / "bad.pt"), str(tmp_path / "bad.s2s")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("s2sext: error: ") and err.count("\n") == 1
    assert not (tmp_path / "bad.s2s").exists()


def test_path_arguments_are_checked_by_name():
    for call, name in ((lambda: from_opennmt(42), "checkpoint"), (lambda: load_checkpoint(None), "path"),
                       (lambda: read_safetensors(3.5), "path"),
                       (lambda: from_opennmt({**checkpoint(TwinNMT(1, "dot", False)), "model": None}, weights=7),
                        "weights")):
        with pytest.raises(TypeError, match=rf"^{name}.* must be a path \(str or os.PathLike\), got "):
            call()
