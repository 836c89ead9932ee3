"""A plain, readable reference of greedy and beam search, written step by step in numpy over the
model layer's decoder step (``RecurrentDecoder.step_forward``, the path training uses for scheduled
sampling). s2sext's own search is the C++ one (src/cpp/engine/search.cpp), which Seq2Seq.greedy,
Seq2Seq.beam_search, translate and the compiled Decoder run; tests hold the two to the same tokens,
scores and attention weights.

Both feed each chosen token back as the next input, starting from ``<sos>``, and stop a row at
``<eos>``. Beam search runs the beams of every input as one batch of ``B * beam_size`` rows.
"""

from __future__ import annotations

import numpy as np

from s2sext.decoding import check_beam_args, check_lengths, length_penalty_factor
from s2sext.layers import EncoderState
from s2sext.spec import EOS_ID, PAD_ID, SOS_ID


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
    max_length, min_length = check_lengths(max_length, min_length)
    src, lengths, restore = _by_length(model, src_ids, lengths)
    enc = model.encoder.forward(model.params, src, lengths)  # src checked by _by_length
    decoder, params = model.decoder, model.params
    B, S = src.shape
    state = decoder.initial_step_state(enc)
    tokens = np.full(B, SOS_ID, np.int64)
    # one column per step taken, so memory grows with the tokens produced, not with max_length
    columns, att_columns = [], []
    done = np.zeros(B, bool)
    for t in range(max_length):
        logits, a, state, _ = decoder.step_forward(params, enc, tokens, state)
        if t < min_length:
            logits[:, EOS_ID] = -np.inf
        chosen = logits.argmax(axis=-1)
        chosen[done] = PAD_ID
        columns.append(chosen)
        if return_attention:
            step_attention = np.zeros((B, S), np.float32)
            if a is not None:
                step_attention[~done] = a[~done]
            att_columns.append(step_attention)
        done |= chosen == EOS_ID
        tokens = chosen
        if done.all():
            break
    out = np.stack(columns, axis=1)[restore]
    if return_attention:
        return out, np.stack(att_columns, axis=1)[restore]
    return out


def _log_softmax(logits):
    z = logits.astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


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
    max_length, min_length = check_lengths(max_length, min_length)
    K, n_best, alpha = check_beam_args(beam_size, n_best, length_penalty)
    src, lengths, restore = _by_length(model, src_ids, lengths)
    enc0 = model.encoder.forward(model.params, src, lengths)  # src checked by _by_length
    decoder, params = model.decoder, model.params
    B = enc0.lengths.shape[0]
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
