"""The C++ search's choice of tokens (src/cpp/engine/search.cpp) where its shortcuts could go wrong:
beam search picks the K best of K*V candidates without scoring them all (it skips beams that cannot
beat the K-th best so far, and logits at or below one that already lost), and its first step runs
once per input. Exact ties (within a beam, across beams, and between a beam's score and the K-th
best) must go to the lower candidate index as numpy's stable argsort does, greedy's argmax to the
lower id, and wide vocabularies must give what tests/reference_search.py gives."""

import numpy as np
import pytest

from s2sext import Seq2Seq

import reference_search as ref


def tied_model(tgt_vocab, seed=0):
    """Logits that do not depend on the input: a zero output matrix and a bias of a few repeated
    values, so every step's candidates tie exactly (within a beam, and across beams of equal score)."""
    model = Seq2Seq(12, tgt_vocab, embed_size=6, hidden_size=8, attention="dot", seed=seed, max_source_length=10)
    model.params["out.weight"][...] = 0
    model.params["out.bias"][...] = np.resize(np.float32([2.0, 0.5, 2.0, -1.0]), tgt_vocab)
    model.params["out.bias"][2] = np.float32(-3.0)  # <eos> rare but possible
    return model


def peaked_model(tgt_vocab, seed):
    model = Seq2Seq(12, tgt_vocab, embed_size=6, hidden_size=8, attention="general", seed=seed,
                    max_source_length=10)
    model.params["out.weight"] *= np.float32(4.0)
    return model


def batch(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(4, 12, (3, 7)), np.array([7, 3, 5])


# as in test_generate.py: float64 sums over float32 logits computed in different orders
def close(a, b):
    return abs(a - b) <= 1e-4 * max(1.0, abs(b))


def assert_same(got, want):
    for g_hyps, w_hyps in zip(got, want):
        assert [list(map(int, h["tokens"])) for h in g_hyps] == [h["tokens"] for h in w_hyps]
        for g, w in zip(g_hyps, w_hyps):
            assert close(g["log_prob"], w["log_prob"]) and close(g["score"], w["score"])
            np.testing.assert_allclose(g["token_scores"], w["token_scores"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("vocab", [9, 37])
@pytest.mark.parametrize("beam_size,n_best", [(2, 2), (4, 3), (12, 5)])
def test_beam_ties_go_to_the_lower_candidate(vocab, beam_size, n_best):
    model = tied_model(vocab)
    src, lengths = batch()
    got = model.compile().generate(src, lengths, beam_size=beam_size, n_best=n_best, max_length=6,
                                   min_length=2, return_token_scores=True)
    want = ref.beam_search(model, src, lengths, beam_size=beam_size, n_best=n_best, max_length=6, min_length=2)
    assert_same(got, want)
    # the ties are real: hypotheses of equal score, told apart by the candidates' order only
    assert all(len({h["score"] for h in hyps}) < len(hyps) for hyps in got)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("options", [dict(), dict(min_length=3), dict(no_repeat_ngram_size=2),
                                     dict(target_prefix=[[40, 41], None, [3]]), dict(length_penalty=0.6)])
def test_beam_over_a_wide_vocabulary_equals_the_reference(seed, options):
    model = peaked_model(300, seed)
    src, lengths = batch(seed)
    got = model.compile().generate(src, lengths, beam_size=5, n_best=5, max_length=7, return_token_scores=True,
                                   **options)
    want = ref.beam_search(model, src, lengths, beam_size=5, n_best=5, max_length=7, **options)
    assert_same(got, want)


@pytest.mark.parametrize("vocab", [5, 16, 37, 300])
def test_greedy_argmax_ties_and_min_length(vocab):
    model = tied_model(vocab, seed=vocab)
    src, lengths = batch()
    dec = model.compile()
    for min_length in (0, 4):
        got = dec.greedy(src, lengths, max_length=6, min_length=min_length)
        want = ref.greedy_search(model, src, lengths, max_length=6, min_length=min_length)
        np.testing.assert_array_equal(got, want)
    # <eos> the largest: chosen at once, unless min_length masks it (then the first of the rest)
    model.unfreeze()  # (read-only while a decoder is kept)
    model.params["out.bias"][2] = np.float32(9.0)
    dec = model.compile()
    assert (dec.greedy(src, lengths, max_length=6)[:, 0] == 2).all()
    np.testing.assert_array_equal(dec.greedy(src, lengths, max_length=6, min_length=2),
                                  ref.greedy_search(model, src, lengths, max_length=6, min_length=2))
