"""The reference for s2sext.opennmt's tests: a small PyTorch twin of OpenNMT-py's RNN NMT model.

OpenNMT-py is not installed (its wheels pin an older torch), so the twin is written here from
OpenNMT-py's equations, with its submodule names so that its state dict has OpenNMT-py's keys;
with it, tiny checkpoints of its layouts and the twin's log-probabilities and greedy tokens.
"""
import argparse
import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from reference import assert_close
from s2sext.opennmt import safe_load_supported


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


def _drop_opt(ck):
    ck["opt"] = argparse.Namespace()
