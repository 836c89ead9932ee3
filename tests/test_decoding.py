"""Greedy and beam-search decoding: beam 1 equals greedy, a wide beam finds what an exhaustive
search finds, scores are the sequences' log-probabilities, attention rows are distributions."""

import itertools

import numpy as np
import pytest

from s2sext.decoding import length_penalty_factor
from s2sext.model import Seq2Seq

EOS = 2


def small_model(attention="dot", style="luong", feeding=False, tgt_vocab=9, seed=0, scale=3.0):
    model = Seq2Seq(12, tgt_vocab, embed_size=6, hidden_size=8, num_layers=2, bidirectional=True,
                    attention=attention, attention_style=style, input_feeding=feeding, seed=seed,
                    max_source_length=10)
    # Larger output weights give peaked, varied distributions (a fresh model's are nearly flat).
    model.params["out.weight"] *= np.float32(scale)
    return model


def sequence_log_prob(model, src, length, seq):
    """log P(seq | src) by feeding seq (teacher forcing) one step at a time, in float64."""
    enc = model.encode(src[None, :], np.array([length]))
    state = model.decoder.initial_step_state(enc)
    tokens = np.array([1])
    total = 0.0
    for token in seq:
        logits, _, state, _ = model.decoder.step_forward(model.params, enc, tokens, state)
        z = logits[0].astype(np.float64)
        total += z[token] - (z.max() + np.log(np.exp(z - z.max()).sum()))
        tokens = np.array([token])
    return total


@pytest.mark.parametrize("attention,style,feeding", [("dot", "luong", False), ("concat", "bahdanau", False),
                                                     ("general", "luong", True), (None, "luong", False)])
def test_beam_one_equals_greedy(attention, style, feeding):
    rng = np.random.default_rng(0)
    model = small_model(attention, style, feeding, seed=1)
    src = rng.integers(4, 12, (5, 7))
    lengths = np.array([7, 1, 4, 6, 2])
    greedy = model.greedy(src, lengths, max_length=8, min_length=2)
    beams = model.beam_search(src, lengths, beam_size=1, max_length=8, min_length=2)
    for b in range(5):
        row = [int(t) for t in greedy[b] if t != 0]
        assert beams[b][0]["tokens"] == row
        lp = sequence_log_prob(model, src[b], lengths[b], row)
        assert abs(beams[b][0]["log_prob"] - lp) <= 1e-4 * max(1.0, abs(lp))


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_wide_beam_finds_the_exhaustive_best(alpha):
    """With 6 target tokens and max_length 3, a beam of 6**3 keeps every prefix: its n-best must be
    the exhaustive search's n-best (finished sequences ending in <eos>, and unfinished ones of
    length max_length, each scored log P / ((5 + len) / 6) ** alpha)."""
    V, max_length = 6, 3
    model = small_model(tgt_vocab=V, seed=3, scale=1.5)
    rng = np.random.default_rng(2)
    src = rng.integers(4, 12, (2, 5))
    lengths = np.array([5, 3])
    results = model.beam_search(src, lengths, beam_size=V**max_length, max_length=max_length, n_best=5,
                                length_penalty=alpha)
    for b in range(2):
        candidates = []
        for k in range(1, max_length + 1):
            for prefix in itertools.product([t for t in range(V) if t != EOS], repeat=k - 1):
                seqs = [list(prefix) + [EOS]]
                if k == max_length:
                    seqs += [list(prefix) + [t] for t in range(V) if t != EOS]
                for seq in seqs:
                    lp = sequence_log_prob(model, src[b], lengths[b], seq)
                    candidates.append((lp / length_penalty_factor(len(seq), alpha), seq))
        candidates.sort(key=lambda c: -c[0])
        got = results[b]
        assert [h["tokens"] for h in got] == [seq for _, seq in candidates[:5]]
        for h, (score, _) in zip(got, candidates):
            assert abs(h["score"] - score) <= 1e-5 * max(1.0, abs(score))


def test_beam_results_are_sorted_and_attention_is_a_distribution():
    model = small_model("location", "bahdanau", seed=4)
    rng = np.random.default_rng(5)
    src = rng.integers(4, 12, (3, 6))
    lengths = np.array([6, 2, 4])
    results = model.beam_search(src, lengths, beam_size=4, max_length=7, n_best=3, length_penalty=0.6)
    for b, hyps in enumerate(results):
        assert 1 <= len(hyps) <= 3
        scores = [h["score"] for h in hyps]
        assert scores == sorted(scores, reverse=True)
        for h in hyps:
            att = h["attention"]
            assert att.shape == (len(h["tokens"]), 6)
            np.testing.assert_allclose(att.sum(axis=1), 1.0, rtol=1e-5)
            assert np.all(att[:, lengths[b]:] == 0)
            assert abs(h["score"] - h["log_prob"] / length_penalty_factor(len(h["tokens"]), 0.6)) < 1e-9


def test_greedy_min_and_max_length_and_attention():
    model = small_model(seed=6)
    rng = np.random.default_rng(7)
    src = rng.integers(4, 12, (4, 5))
    ids, att = model.greedy(src, max_length=6, min_length=3, return_attention=True)
    assert ids.shape[1] <= 6 and att.shape == (4, ids.shape[1], 5)
    for row, a in zip(ids, att):
        tokens = [int(t) for t in row]
        if EOS in tokens:
            end = tokens.index(EOS)
            assert end >= 3, "<eos> before min_length"
            assert all(t == 0 for t in tokens[end + 1:])
            np.testing.assert_allclose(a[: end + 1].sum(axis=1), 1.0, rtol=1e-5)


def test_decoding_argument_errors():
    model = small_model()
    src = np.full((1, 4), 5)
    with pytest.raises(ValueError, match="n_best .* must not exceed beam_size"):
        model.beam_search(src, beam_size=2, n_best=3)
    with pytest.raises(ValueError, match="min_length .* must not exceed max_length"):
        model.greedy(src, max_length=3, min_length=4)
    with pytest.raises(ValueError, match="length_penalty must be a finite number >= 0"):
        model.beam_search(src, length_penalty=-1)
    with pytest.raises(ValueError, match="beam_size must be an integer >= 1"):
        model.beam_search(src, beam_size=0)


def test_translate_strings_round_trip_through_vocab():
    model = Seq2Seq(list("abc"), list("xyz"), embed_size=4, hidden_size=8, seed=0)
    out = model.translate(["abc", "cab"], max_length=5)
    assert len(out) == 2 and all(isinstance(s, str) and set(s) <= set("xyz") for s in out)
    nbest = model.translate(["abc"], beam=3, n_best=2, max_length=5)
    assert len(nbest) == 1 and len(nbest[0]) == 2 and nbest[0][0][1] >= nbest[0][1][1]
    with pytest.raises(TypeError, match="list of strings"):
        model.translate("abc")
    with pytest.raises(ValueError, match="empty after tokenisation"):
        model.translate([""])


def test_more_argument_errors():
    model = small_model()
    src = np.full((1, 4), 5)
    for bad in (float("nan"), True, "0.5"):
        with pytest.raises(ValueError, match="length_penalty must be a finite number"):
            model.beam_search(src, length_penalty=bad)
    dec = model.compile()
    with pytest.raises(ValueError, match="max_length must be an integer >= 1"):
        dec.greedy(src, max_length=2.9)
    with pytest.raises(ValueError, match="beam_size must be an integer >= 1"):
        dec.beam(src, beam_size="5")
    assert model.beam_search(src, beam_size=2, length_penalty=np.float32(0.5), max_length=3)
