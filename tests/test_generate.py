"""Decoder.generate, every feature of the one C++ search (src/cpp/engine/search.cpp) against the
plain references in tests/reference_search.py (written from the definitions, not from the C++):
target prefix, n-gram blocking, GNMT's coverage penalty, seeded sampling (top-k, top-p,
temperature), per-token log-probabilities, and the checks of bad values."""

import numpy as np
import pytest

from s2sext import Seq2Seq

import reference_search as ref

EOS = 2


def model_of(seed=1, scale=3.0, attention="dot", tgt_vocab=9):
    model = Seq2Seq(12, tgt_vocab, embed_size=6, hidden_size=8, num_layers=1, bidirectional=True,
                    attention=attention, seed=seed, max_source_length=10)
    # larger output weights: peaked distributions; smaller: nearly flat ones (for sampling)
    model.params["out.weight"] *= np.float32(scale)
    return model


def batch(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(4, 12, (4, 7)), np.array([7, 2, 5, 4])


# log-probabilities: float64 sums over float32 logits that the C++ and numpy steps compute in
# different orders (their logits agree to ~1e-6), so 1e-4 relative
def close(a, b):
    return abs(a - b) <= 1e-4 * max(1.0, abs(b))


def same_hypothesis(got, want):
    assert [int(t) for t in got["tokens"]] == want["tokens"]
    assert close(got["log_prob"], want["log_prob"]) and close(got["score"], want["score"])
    if "token_scores" in got:
        np.testing.assert_allclose(got["token_scores"], want["token_scores"], rtol=1e-4, atol=1e-5)


def test_mt19937_64_reference_is_the_standard_generator():
    rng = ref.MT19937_64(5489)  # the C++ standard: the 10000th draw of a default-seeded mt19937_64
    for _ in range(9999):
        rng()
    assert rng() == 9981545732273789042


def test_defaults_equal_greedy_and_beam():
    model = model_of()
    dec = model.compile()
    src, lengths = batch()
    greedy = dec.greedy(src, lengths, max_length=9)
    out = dec.generate(src, lengths, max_length=9, return_token_scores=True)
    for b, hyps in enumerate(out):
        assert len(hyps) == 1
        row = [int(t) for t in greedy[b][: len(hyps[0]["tokens"])]]
        assert [int(t) for t in hyps[0]["tokens"]] == row
        assert close(float(np.sum(hyps[0]["token_scores"])), hyps[0]["log_prob"])
    beams = dec.hypotheses(src, lengths, beam_size=3, max_length=9, n_best=2, length_penalty=0.6)
    out = dec.generate(src, lengths, beam_size=3, max_length=9, n_best=2, length_penalty=0.6)
    for want, got in zip(beams, out):
        assert [list(t) for t, _, _ in want] == [list(h["tokens"]) for h in got]
        assert [s for _, s, _ in want] == [h["score"] for h in got]


@pytest.mark.parametrize("beam_size", [1, 3])
def test_target_prefix_is_forced_then_decoding_continues(beam_size):
    model = model_of()
    dec = model.compile()
    src, lengths = batch()
    prefix = [[7, 7, 4], None, [3], [8, 5, 6, 4, 7]]
    got = dec.generate(src, lengths, beam_size=beam_size, n_best=min(2, beam_size), max_length=8,
                       target_prefix=prefix, return_token_scores=True)
    if beam_size == 1:
        want = [[h] for h in ref.generate_greedy(model, src, lengths, max_length=8, target_prefix=prefix)]
    else:
        want = ref.beam_search(model, src, lengths, beam_size=3, n_best=2, max_length=8, target_prefix=prefix)
    free = dec.generate(src, lengths, beam_size=beam_size, max_length=8)
    changed = 0
    for b in range(4):
        assert len(got[b]) == len(want[b])
        for g, w in zip(got[b], want[b]):
            same_hypothesis(g, w)
            assert list(g["tokens"][: len(prefix[b] or [])]) == list(prefix[b] or [])
        changed += list(got[b][0]["tokens"]) != list(free[b][0]["tokens"])
    assert changed >= 2  # the prefixes differ from what free decoding chose, so they were forced


def test_target_prefix_of_max_length_and_longer():
    model = model_of()
    dec = model.compile()
    src, lengths = batch()
    out = dec.generate(src[:1], lengths[:1], max_length=3, target_prefix=[[5, 6, 7]])
    assert list(out[0][0]["tokens"]) == [5, 6, 7]  # unfinished: no room for <eos>
    with pytest.raises(ValueError, match=r"target_prefix\[0\] has 4 tokens, more than max_length \(3\)"):
        dec.generate(src[:1], lengths[:1], max_length=3, target_prefix=[[5, 6, 7, 8]])


def repeats(tokens, n):
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) != len(set(grams))


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("beam_size", [1, 3])
def test_no_repeat_ngram_blocking(n, beam_size):
    model = model_of()
    dec = model.compile()
    src, lengths = batch()
    free = dec.generate(src, lengths, beam_size=beam_size, max_length=12)
    # the model repeats itself when free (it emits 5 5 5 ...): the blocking has work to do
    assert all(repeats([int(t) for t in hyps[0]["tokens"]], n) for hyps in free)
    got = dec.generate(src, lengths, beam_size=beam_size, max_length=12, no_repeat_ngram_size=n,
                       return_token_scores=True)
    if beam_size == 1:
        want = [[h] for h in ref.generate_greedy(model, src, lengths, max_length=12, no_repeat_ngram_size=n)]
    else:
        want = ref.beam_search(model, src, lengths, beam_size=3, max_length=12, no_repeat_ngram_size=n)
    for g, w in zip(got, want):
        same_hypothesis(g[0], w[0])
        assert not repeats([int(t) for t in g[0]["tokens"]], n)


def test_blocked_tokens_reference():
    assert ref.blocked_tokens([5, 6, 5], 2) == [6]
    assert ref.blocked_tokens([5, 6, 7, 5, 6], 3) == [7]
    assert ref.blocked_tokens([4, 9], 1) == [4, 9]
    assert ref.blocked_tokens([4], 2) == []


def test_coverage_penalty_matches_the_reference_and_changes_the_ranking():
    src, lengths = batch(3)
    changed = 0
    for seed in range(4):
        model = model_of(seed=seed, scale=1.5)
        dec = model.compile()
        plain = dec.generate(src, lengths, beam_size=4, n_best=4, max_length=6)
        for beta in (0.2, 2.0):
            got = dec.generate(src, lengths, beam_size=4, n_best=4, max_length=6, coverage_penalty=beta,
                               return_attention=True)
            want = ref.beam_search(model, src, lengths, beam_size=4, n_best=4, max_length=6, coverage_penalty=beta)
            for g, w, p in zip(got, want, plain):
                assert len(g) == len(w)
                for gh, wh in zip(g, w):
                    same_hypothesis(gh, wh)
                    # the score is the length-penalised log-prob plus beta * sum log min(coverage, 1)
                    cov = gh["attention"].astype(np.float64).sum(axis=0)
                    assert gh["score"] <= gh["log_prob"] + 1e-9
                    assert cov.shape == (src.shape[1],)
                changed += [list(h["tokens"]) for h in g] != [list(h["tokens"]) for h in p]
    assert changed > 0


def test_coverage_penalty_in_greedy_scores_only():
    model = model_of()
    dec = model.compile()
    src, lengths = batch()
    got = dec.generate(src, lengths, max_length=4, coverage_penalty=1.0)
    want = ref.generate_greedy(model, src, lengths, max_length=4, coverage_penalty=1.0)
    assert any(w["score"] < w["log_prob"] for w in want)  # 4 steps cannot cover 7 positions fully
    for g, w in zip(got, want):
        same_hypothesis(g[0], w)


def test_coverage_penalty_needs_attention():
    dec = model_of(attention=None).compile()
    src, lengths = batch()
    with pytest.raises(ValueError, match="coverage_penalty needs a model with attention"):
        dec.generate(src, lengths, coverage_penalty=0.5)


SAMPLING = [dict(sampling_topk=0), dict(sampling_topk=3), dict(sampling_topk=0, sampling_topp=0.6),
            dict(sampling_topk=5, sampling_topp=0.9, sampling_temperature=0.7),
            dict(sampling_topk=0, sampling_temperature=2.5)]


@pytest.mark.parametrize("options", SAMPLING, ids=lambda o: ",".join(f"{k[9:]}={v}" for k, v in o.items()))
def test_sampling_draws_what_the_reference_draws(options):
    model = model_of(scale=1.0)
    dec = model.compile()
    src, lengths = batch()
    for seed in (0, 7, 2**64 - 5):
        got = dec.generate(src, lengths, max_length=10, seed=seed, return_token_scores=True, **options)
        want = ref.generate_greedy(model, src, lengths, max_length=10, seed=seed, **options)
        for g, w in zip(got, want):
            same_hypothesis(g[0], w)


def test_sampling_topk_one_is_greedy_and_seeds_reproduce():
    model = model_of(scale=0.3)  # nearly flat distributions
    dec = model.compile()
    src, lengths = batch()
    greedy = dec.generate(src, lengths, max_length=10)
    for options in (dict(sampling_topk=1, sampling_temperature=3.0, seed=5), dict(sampling_topk=1, sampling_topp=0.3)):
        assert [list(h[0]["tokens"]) for h in dec.generate(src, lengths, max_length=10, **options)] == \
            [list(h[0]["tokens"]) for h in greedy]
    # a temperature near zero leaves only the argmax
    cold = dec.generate(src, lengths, max_length=10, sampling_topk=0, sampling_temperature=1e-4, seed=3)
    assert [list(h[0]["tokens"]) for h in cold] == [list(h[0]["tokens"]) for h in greedy]
    runs = {}
    for seed in (1, 1, 2):
        out = dec.generate(src, lengths, max_length=10, sampling_topk=0, seed=seed)
        runs.setdefault(seed, []).append([list(h[0]["tokens"]) for h in out])
    assert runs[1][0] == runs[1][1]
    assert runs[1][0] != runs[2][0]
    # an input's draws depend on its index and the seed, not on the batch around it
    alone = dec.generate(src[:1], lengths[:1], max_length=10, sampling_topk=0, seed=1)
    assert list(alone[0][0]["tokens"]) == runs[1][0][0]


@pytest.mark.parametrize("k,p", [(3, 1.0), (0, 0.5), (4, 0.7)])
def test_sampling_support_is_the_top_k_and_the_nucleus(k, p):
    model = model_of(scale=0.5)
    dec = model.compile()
    src, lengths = batch()
    enc = model.encode(src[:1], lengths[:1])
    logits, _, _, _ = model.decoder.step_forward(model.params, enc, np.array([1]),
                                                 model.decoder.initial_step_state(enc))
    z = logits[0].astype(np.float64)
    order = sorted(range(z.size), key=lambda v: (-z[v], v))[: k or z.size]
    prob = np.exp(z[order] - z[order].max())
    prob /= prob.sum()
    nucleus = int(np.searchsorted(np.cumsum(prob), p - 1e-12)) + 1  # smallest prefix with mass >= p
    allowed = set(order[:nucleus])
    first = {int(dec.generate(src[:1], lengths[:1], max_length=1, sampling_topk=k, sampling_topp=p,
                              seed=s)[0][0]["tokens"][0]) for s in range(300)}
    assert first <= allowed
    assert len(first) == len(allowed)  # 300 draws from a flat distribution reach every allowed token


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(beam_size=-1), ValueError, "beam_size must be >= 1"),
    (dict(no_repeat_ngram_size=-2), ValueError, "no_repeat_ngram_size must be >= 0"),
    (dict(no_repeat_ngram_size=1.5), TypeError, "no_repeat_ngram_size must be an int"),
    (dict(sampling_topk=-1), ValueError, "sampling_topk must be >= 0"),
    (dict(sampling_topp=0.0), ValueError, r"sampling_topp must be a number in \(0, 1\]"),
    (dict(sampling_topp=1.5), ValueError, r"sampling_topp must be a number in \(0, 1\]"),
    (dict(sampling_topp="x"), TypeError, "sampling_topp must be"),
    (dict(sampling_temperature=0.0), ValueError, "sampling_temperature must be a finite number > 0"),
    (dict(sampling_temperature=-1.0), ValueError, "sampling_temperature must be a finite number > 0"),
    (dict(sampling_temperature=float("inf")), ValueError, "sampling_temperature must be a finite number > 0"),
    (dict(coverage_penalty=-0.1), ValueError, "coverage_penalty must be a finite number >= 0"),
    (dict(coverage_penalty=float("nan")), ValueError, "coverage_penalty must be a finite number >= 0"),
    (dict(seed=-1), ValueError, "seed must be >= 0"),
    (dict(seed=2**64), ValueError, "seed must be <="),
    (dict(seed=True), TypeError, "seed must be an int"),
    (dict(beam_size=2, sampling_topk=0), ValueError, "sampling .* needs beam_size 1, got beam_size 2"),
    (dict(beam_size=2, sampling_temperature=0.5), ValueError, "needs beam_size 1"),
    (dict(return_token_scores=1), TypeError, "return_token_scores must be a bool"),
    (dict(target_prefix=[[5]]), ValueError, r"target_prefix must have one entry per input \(2\), got 1"),
    (dict(target_prefix=[[5], [9]]), ValueError, r"target_prefix\[1\] ids must lie in \[3, 9\).*got 9"),
    (dict(target_prefix=[[0], None]), ValueError, r"target_prefix\[0\] ids must lie in \[3, 9\).*got 0"),
    (dict(target_prefix=[[5], [2]]), ValueError, r"target_prefix\[1\] ids must lie in \[3, 9\).*got 2"),
    (dict(target_prefix=[[5], ["a"]]), TypeError, r"target_prefix\[1\] must be a list of int token ids"),
    (dict(target_prefix="57"), TypeError, "target_prefix must be a list"),
])
def test_bad_values_are_refused(kwargs, error, match):
    dec = model_of().compile()
    src, lengths = batch()
    with pytest.raises(error, match=match):
        dec.generate(src[:2], lengths[:2], **kwargs)


def test_translate_takes_the_generate_options():
    from s2sext.data import build_vocabs, make_task

    pairs = make_task("reverse", 50, seed=2)
    src_vocab, tgt_vocab = build_vocabs(pairs, "char", "char")
    model = Seq2Seq(src_vocab, tgt_vocab, embed_size=6, hidden_size=8, attention="dot", seed=0)
    model.params["out.weight"] *= np.float32(3.0)
    texts = [s for s, _ in pairs[:3]]
    dec = model.compile()
    out = dec.translate(texts, beam=3, n_best=2, no_repeat_ngram_size=1)
    unique = lambda text: len(set(text)) == len(text)  # noqa: E731
    # blocked unigrams: no character twice (<unk> is one token, so drop its spelling)
    assert all(len(hyps) == 2 and all(unique(t.replace("<unk>", "")) for t, _ in hyps) for hyps in out)
    assert not all(unique(t.replace("<unk>", "")) for t in dec.translate(texts, beam=3))  # without blocking
    assert all(t.startswith("ab") for t in dec.translate(texts, target_prefix="ab", max_length=6))
    assert dec.translate(texts, target_prefix="") == dec.translate(texts)  # no tokens: no prefix
    with pytest.raises(TypeError, match="target_prefix must be a str or None, got list"):
        dec.translate(texts, target_prefix=[4])
