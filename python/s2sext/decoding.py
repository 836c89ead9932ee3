"""Greedy and beam-search decoding for :class:`s2sext.Seq2Seq` (numpy + the C++ kernels).

Both feed each chosen token back as the next input, starting from ``<sos>``, and stop a row at
``<eos>``. Beam search runs the beams of every input as one batch of ``B * beam_size`` rows.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .data import EOS_ID, PAD_ID, SOS_ID
from .model import EncoderState


def check_beam_args(beam_size, n_best, length_penalty):
    """ValueError naming the argument unless beam_size >= n_best >= 1 are integers and
    length_penalty is a finite number >= 0."""
    for name, value in (("beam_size", beam_size), ("n_best", n_best)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    if n_best > beam_size:
        raise ValueError(f"n_best ({n_best}) must not exceed beam_size ({beam_size})")
    if (isinstance(length_penalty, bool) or not isinstance(length_penalty, numbers.Real)
            or not math.isfinite(length_penalty) or length_penalty < 0):
        raise ValueError(f"length_penalty must be a finite number >= 0; got {length_penalty!r}")


def check_lengths(max_length, min_length):
    for name, value, lo in (("max_length", max_length, 1), ("min_length", min_length, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
            raise ValueError(f"{name} must be an integer >= {lo}; got {value!r}")
    if min_length > max_length:
        raise ValueError(f"min_length ({min_length}) must not exceed max_length ({max_length})")


def _by_length(model, src_ids, lengths):
    """Checked source rows sorted longest first (the LSTM kernels skip finished rows), and the
    permutation that puts results back in input order."""
    src, lengths = model._check_source(src_ids, lengths)
    order = np.argsort(-lengths, kind="stable")
    restore = np.empty_like(order)
    restore[order] = np.arange(order.size)
    return src[order], lengths[order], restore


def greedy_search(model, src_ids, lengths=None, max_length=50, min_length=0, return_attention=False):
    """Greedy decoding: int [B, S] -> int [B, T] (and attention float [B, T, S] if asked).

    Row ``b`` holds the argmax tokens up to and including ``<eos>``, then ``<pad>``; decoding
    stops when every row has emitted ``<eos>`` or after ``max_length`` steps. Before step
    ``min_length`` the ``<eos>`` logit is excluded.
    """
    check_lengths(max_length, min_length)
    src, lengths, restore = _by_length(model, src_ids, lengths)
    enc = model.encoder.forward(model.params, src, lengths)  # src checked by _by_length
    decoder, params = model.decoder, model.params
    B, S = src.shape
    state = decoder.initial_step_state(enc)
    tokens = np.full(B, SOS_ID, np.int64)
    out = np.full((B, max_length), PAD_ID, np.int64)
    attention = np.zeros((B, max_length, S), np.float32) if return_attention else None
    done = np.zeros(B, bool)
    steps = 0
    for t in range(max_length):
        logits, a, state, _ = decoder.step_forward(params, enc, tokens, state)
        if t < min_length:
            logits[:, EOS_ID] = -np.inf
        chosen = logits.argmax(axis=-1)
        chosen[done] = PAD_ID
        out[:, t] = chosen
        if attention is not None and a is not None:
            attention[~done, t] = a[~done]
        done |= chosen == EOS_ID
        tokens = chosen
        steps = t + 1
        if done.all():
            break
    if return_attention:
        return out[restore, :steps], attention[restore, :steps]
    return out[restore, :steps]


def _log_softmax(logits):
    z = logits.astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def length_penalty_factor(length, alpha):
    """GNMT's length penalty ``((5 + |Y|) / 6) ** alpha``; scores are ``log P(Y) / factor``."""
    return ((5.0 + length) / 6.0) ** alpha


def _expand(enc: EncoderState, rows: np.ndarray) -> EncoderState:
    return EncoderState(
        memory=None if enc.memory is None else np.ascontiguousarray(enc.memory[rows]),
        lengths=enc.lengths[rows],
        h0=[h[rows] for h in enc.h0],
        c0=[c[rows] for c in enc.c0],
    )


def beam_search(model, src_ids, lengths=None, beam_size=5, max_length=50, min_length=0, n_best=1,
                length_penalty=0.0):
    """Beam search over a batch of inputs of different lengths.

    At each step every live hypothesis is extended by every token; the ``beam_size`` best
    extensions of each input (by total log-probability) are kept. An extension ending in
    ``<eos>`` is finished and leaves the beam, so with ``beam_size=1`` this is greedy decoding.
    An input stops when it has ``n_best`` finished hypotheses and no live one can still beat them
    (a bound that holds for ``length_penalty >= 0``), when no hypothesis is live, or at
    ``max_length``, where live hypotheses are finished without ``<eos>``.

    Returns
    -------
    list (one per input) of up to ``n_best`` dicts, best first: ``tokens`` (list of int, ending in
    ``<eos>`` when finished), ``score`` (``log_prob / length_penalty_factor(len(tokens), alpha)``),
    ``log_prob`` (float) and ``attention`` (float [len(tokens), S], zeros without attention).
    """
    check_lengths(max_length, min_length)
    check_beam_args(beam_size, n_best, length_penalty)
    alpha = float(length_penalty)
    src, lengths, restore = _by_length(model, src_ids, lengths)
    enc0 = model.encoder.forward(model.params, src, lengths)  # src checked by _by_length
    decoder, params = model.decoder, model.params
    B, K = enc0.lengths.shape[0], int(beam_size)
    S = src.shape[1]
    enc = _expand(enc0, np.repeat(np.arange(B), K))
    state = decoder.initial_step_state(enc)
    scores = np.full((B, K), -np.inf)
    scores[:, 0] = 0.0
    tokens = np.full(B * K, SOS_ID, np.int64)
    hist_tokens, hist_parents, hist_attention = [], [], []
    finished = [[] for _ in range(B)]
    done = np.zeros(B, bool)
    best_bound_factor = length_penalty_factor(max_length, alpha)

    def trace(step, slot):
        seq, att = [], []
        for s in range(step, -1, -1):
            parent = hist_parents[s][slot]
            seq.append(int(hist_tokens[s][slot]))
            att.append(hist_attention[s][parent])
            slot = parent
        return seq[::-1], np.stack(att[::-1])

    for t in range(max_length):
        logits, a, state, _ = decoder.step_forward(params, enc, tokens, state)
        logp = _log_softmax(logits)
        if t < min_length:
            logp[:, EOS_ID] = -np.inf
        V = logp.shape[1]
        cand = (scores.reshape(B * K, 1) + logp).reshape(B, K * V)
        order = np.argsort(-cand, axis=1, kind="stable")[:, :K]
        new_scores = np.take_along_axis(cand, order, axis=1)
        parents = (order // V) + (np.arange(B) * K)[:, None]
        chosen = order % V
        hist_tokens.append(chosen.reshape(-1))
        hist_parents.append(parents.reshape(-1))
        hist_attention.append(a if a is not None else np.zeros((B * K, S), np.float32))
        last = t == max_length - 1
        for b in np.flatnonzero(~done):
            for j in range(K):
                score = new_scores[b, j]
                if score == -np.inf:
                    continue
                if chosen[b, j] == EOS_ID or last:
                    seq, att = trace(t, b * K + j)
                    finished[b].append(
                        {"tokens": seq, "score": float(score / length_penalty_factor(len(seq), alpha)),
                         "log_prob": float(score), "attention": att}
                    )
                    new_scores[b, j] = -np.inf
            finished[b].sort(key=lambda h: -h["score"])
            alive_best = new_scores[b].max()
            if alive_best == -np.inf:
                done[b] = True
            elif len(finished[b]) >= n_best and alive_best / best_bound_factor <= finished[b][n_best - 1]["score"]:
                done[b] = True
            if done[b]:
                new_scores[b] = -np.inf
        if done.all():
            break
        flat_parents = parents.reshape(-1)
        h, c, feed = state
        state = ([x[flat_parents] for x in h], [x[flat_parents] for x in c],
                 None if feed is None else feed[flat_parents])
        tokens = chosen.reshape(-1).astype(np.int64)
        scores = new_scores
    return [finished[b][:n_best] for b in restore]
