"""A plain, readable reference of greedy and beam search, written step by step in numpy over the
model layer's decoder step (``RecurrentDecoder.step_forward``, the path training uses for scheduled
sampling). s2sext's own search is the C++ one (src/cpp/engine/search.cpp), which Seq2Seq.greedy,
Seq2Seq.beam_search, translate and the compiled Decoder run; tests hold the two to the same tokens,
scores and attention weights.

Both feed each chosen token back as the next input, starting from ``<sos>``, and stop a row at
``<eos>``. Beam search runs the beams of every input as one batch of ``B * beam_size`` rows.
"""

from __future__ import annotations

import math

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
                length_penalty=0.0, coverage_penalty=0.0, no_repeat_ngram_size=0, target_prefix=None):
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
    ``log_prob`` (float), ``token_scores`` (each token's log-probability) and ``attention``
    (float [len(tokens), S], zeros without attention).

    ``target_prefix`` (per input a list of ids or None) forces each input's first tokens: every
    other extension of its beams is -inf. ``no_repeat_ngram_size``: :func:`blocked_tokens` gets
    -inf. ``coverage_penalty``: :func:`coverage_term` is added to a finished hypothesis's score.
    """
    max_length, min_length = check_lengths(max_length, min_length)
    K, n_best, alpha = check_beam_args(beam_size, n_best, length_penalty)
    src, lengths, restore = _by_length(model, src_ids, lengths)
    order = np.argsort(restore)  # sorted row i is input order[i]
    prefixes = [[] if target_prefix is None or target_prefix[i] is None else list(target_prefix[i]) for i in order]
    enc0 = model.encoder.forward(model.params, src, lengths)  # src checked by _by_length
    decoder, params = model.decoder, model.params
    B = enc0.lengths.shape[0]
    S = src.shape[1]
    enc = _expand(enc0, np.repeat(np.arange(B), K))
    state = decoder.initial_step_state(enc)
    scores = np.full((B, K), -np.inf)
    scores[:, 0] = 0.0
    tokens = np.full(B * K, SOS_ID, np.int64)
    hist_tokens, hist_parents, hist_attention, hist_logp = [], [], [], []
    seqs = [[] for _ in range(B * K)]
    finished = [[] for _ in range(B)]
    done = np.zeros(B, bool)
    best_bound_factor = length_penalty_factor(max_length, alpha)

    def trace(step, slot):
        seq, att, tok_scores = [], [], []
        for s in range(step, -1, -1):
            parent = hist_parents[s][slot]
            seq.append(int(hist_tokens[s][slot]))
            att.append(hist_attention[s][parent])
            tok_scores.append(hist_logp[s][slot])
            slot = parent
        return seq[::-1], np.stack(att[::-1]), tok_scores[::-1]

    for t in range(max_length):
        logits, a, state, _ = decoder.step_forward(params, enc, tokens, state)
        logp = _log_softmax(logits)
        if t < min_length:
            logp[:, EOS_ID] = -np.inf
        for r in range(B * K):
            prefix = prefixes[r // K]
            if t < len(prefix):
                keep = logp[r, prefix[t]]
                logp[r] = -np.inf
                logp[r, prefix[t]] = keep
            elif no_repeat_ngram_size > 0 and scores.reshape(-1)[r] != -np.inf:
                for token in blocked_tokens(seqs[r], no_repeat_ngram_size):
                    logp[r, token] = -np.inf
        V = logp.shape[1]
        cand = (scores.reshape(B * K, 1) + logp).reshape(B, K * V)
        order = np.argsort(-cand, axis=1, kind="stable")[:, :K]
        new_scores = np.take_along_axis(cand, order, axis=1)
        parents = (order // V) + (np.arange(B) * K)[:, None]
        chosen = order % V
        hist_tokens.append(chosen.reshape(-1))
        hist_parents.append(parents.reshape(-1))
        hist_attention.append(a if a is not None else np.zeros((B * K, S), np.float32))
        hist_logp.append(logp[parents.reshape(-1), chosen.reshape(-1)])
        last = t == max_length - 1
        for b in np.flatnonzero(~done):
            for j in range(K):
                score = new_scores[b, j]
                if score == -np.inf:
                    continue
                if chosen[b, j] == EOS_ID or last:
                    seq, att, tok_scores = trace(t, b * K + j)
                    final = float(score / length_penalty_factor(len(seq), alpha))
                    if coverage_penalty > 0:
                        final += coverage_term(att, lengths[b], coverage_penalty)
                    finished[b].append(
                        {"tokens": seq, "score": final, "log_prob": float(score), "attention": att,
                         "token_scores": tok_scores}
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
        seqs = [seqs[p] + [int(tok)] for p, tok in zip(flat_parents, tokens)]
        scores = new_scores
    return [finished[b][:n_best] for b in restore]


def blocked_tokens(seq, n):
    """The tokens that would complete an n-gram already in ``seq``: those ending an earlier n-gram
    whose first n - 1 tokens are the last n - 1 of ``seq``."""
    grams = {tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)}
    context = tuple(seq[len(seq) - n + 1:]) if n > 1 else ()
    return sorted({g[-1] for g in grams if g[:-1] == context})


def coverage_term(attention, length, beta):
    """GNMT's coverage penalty (OpenNMT-py's coverage_wu, added to the score): ``beta * sum_s
    log(min(sum_t a_ts, 1))`` over the first ``length`` source positions of attention [n, S]."""
    coverage = np.asarray(attention, np.float64).sum(axis=0)[:length]
    with np.errstate(divide="ignore"):
        return float(beta * np.log(np.minimum(coverage, 1.0)).sum())


class MT19937_64:
    """The 64-bit Mersenne Twister (std::mt19937_64), from its published definition: the C++
    search's sampling draws from it, so the reference can draw the same numbers."""

    def __init__(self, seed):
        self.mt = [0] * 312
        self.mt[0] = seed & (2**64 - 1)
        for i in range(1, 312):
            self.mt[i] = (6364136223846793005 * (self.mt[i - 1] ^ (self.mt[i - 1] >> 62)) + i) & (2**64 - 1)
        self.index = 312

    def __call__(self):
        if self.index >= 312:
            for i in range(312):
                x = (self.mt[i] & 0xFFFFFFFF80000000) | (self.mt[(i + 1) % 312] & 0x7FFFFFFF)
                xa = x >> 1
                if x & 1:
                    xa ^= 0xB5026F5AA96619E9
                self.mt[i] = self.mt[(i + 156) % 312] ^ xa
            self.index = 0
        y = self.mt[self.index]
        self.index += 1
        y ^= (y >> 29) & 0x5555555555555555
        y ^= (y << 17) & 0x71D67FFFEDA60000
        y ^= (y << 37) & 0xFFF7EEE000000000
        y ^= y >> 43
        return y & (2**64 - 1)


def sample(masked, temperature, topk, topp, rng):
    """One draw from float32 logits ``masked`` (-inf: excluded): softmax(z / temperature) over
    the topk most likely (0: all), then the smallest most-likely-first set of probability >= topp;
    the token whose cumulative probability first exceeds u * kept, u = (rng() >> 11) / 2**53."""
    order = sorted((v for v in range(len(masked)) if masked[v] > -np.inf), key=lambda v: (-masked[v], v))
    if topk:
        order = order[:topk]
    top = float(masked[order[0]])
    p = [math.exp((float(masked[v]) - top) / temperature) for v in order]
    total = 0.0
    for x in p:
        total += x
    if topp < 1.0:
        cum, keep = 0.0, 0
        while keep < len(p):
            cum += p[keep]
            keep += 1
            if cum >= topp * total:
                break
        order, p = order[:keep], p[:keep]
    kept = 0.0
    for x in p:
        kept += x
    target = (rng() >> 11) * 2.0**-53 * kept
    cum = 0.0
    for v, x in zip(order, p):
        cum += x
        if cum > target:
            return v
    return order[-1]


def generate_greedy(model, src_ids, lengths=None, max_length=50, min_length=0, length_penalty=0.0,
                    coverage_penalty=0.0, no_repeat_ngram_size=0, target_prefix=None, sampling_temperature=1.0,
                    sampling_topk=1, sampling_topp=1.0, seed=0):
    """Greedy decoding or sampling of each input on its own (a batch of one), with the features of
    ``Decoder.generate(beam_size=1)``: per input one dict (tokens, score, log_prob, token_scores,
    attention). Input b's random numbers come from MT19937_64(seed + b)."""
    src_ids = np.asarray(src_ids)
    B, S = src_ids.shape
    lengths = np.full(B, S) if lengths is None else np.asarray(lengths)
    params, decoder = model.params, model.decoder
    results = []
    for b in range(B):
        prefix = [] if target_prefix is None or target_prefix[b] is None else list(target_prefix[b])
        rng = MT19937_64(seed + b)
        enc = model.encode(src_ids[b:b + 1], lengths[b:b + 1])
        state = decoder.initial_step_state(enc)
        token, seq, tok_scores, att = SOS_ID, [], [], []
        for t in range(max_length):
            logits, a, state, _ = decoder.step_forward(params, enc, np.array([token]), state)
            z = logits[0].astype(np.float64)
            logp = z - (z.max() + np.log(np.exp(z - z.max()).sum()))
            if t < len(prefix):
                token = prefix[t]
            else:
                masked = logits[0].astype(np.float32).copy()
                if t < min_length:
                    masked[EOS_ID] = -np.inf
                if no_repeat_ngram_size > 0:
                    masked[blocked_tokens(seq, no_repeat_ngram_size)] = -np.inf
                if sampling_topk == 1:
                    token = int(np.argmax(masked))
                else:
                    token = sample(masked, sampling_temperature, sampling_topk, sampling_topp, rng)
            seq.append(token)
            tok_scores.append(float(logp[token]))
            att.append(a[0] if a is not None else np.zeros(S, np.float32))
            if token == EOS_ID:
                break
        log_prob = 0.0
        for x in tok_scores:
            log_prob += x
        score = log_prob / length_penalty_factor(len(seq), length_penalty)
        if coverage_penalty > 0:
            score += coverage_term(np.stack(att), lengths[b], coverage_penalty)
        results.append({"tokens": seq, "score": score, "log_prob": log_prob, "token_scores": tok_scores,
                        "attention": np.stack(att)})
    return results
