"""Greedy and beam-search decoding: beam 1 equals greedy, a wide beam finds what an exhaustive
search finds, scores are the sequences' log-probabilities, attention rows are distributions."""

import itertools
import math
import subprocess
import sys
import tracemalloc

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
    with pytest.raises(ValueError, match="beam_size must be >= 1, got 0"):
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
    with pytest.raises(ValueError, match="length_penalty must be a finite number"):
        model.beam_search(src, length_penalty=float("nan"))
    for bad in (True, "0.5"):  # not numbers: the type is wrong
        with pytest.raises(TypeError, match="length_penalty must be a finite number"):
            model.beam_search(src, length_penalty=bad)
    dec = model.compile()
    with pytest.raises(TypeError, match="max_length must be an int, got float 2.9"):
        dec.greedy(src, max_length=2.9)
    with pytest.raises(TypeError, match="beam_size must be an int, got str '5'"):
        dec.beam(src, beam_size="5")
    assert model.beam_search(src, beam_size=2, length_penalty=np.float32(0.5), max_length=3)


def eos_first_model():
    """A model whose first choice is <eos> at every step (its output bias favours it)."""
    model = small_model()
    model.params["out.bias"][EOS] = 100.0
    return model


def test_greedy_memory_grows_with_the_tokens_not_max_length():
    """greedy used to allocate [B, max_length] up front (max_length=10**8: 1.5 GB for B=2)."""
    model = eos_first_model()
    src = np.full((2, 4), 5)
    tracemalloc.start()
    try:
        ids, att = model.greedy(src, max_length=10**7, return_attention=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ids.tolist() == [[EOS], [EOS]] and att.shape == (2, 1, 4)
    assert peak < 1 << 20, f"greedy of one step traced {peak} bytes at peak"


def test_compiled_greedy_memory_grows_with_the_tokens_not_max_length():
    """Decoder.greedy's C++ buffers were [B, max_length] too: measured as the peak resident size of
    a fresh interpreter (the test process's own peak is long past)."""
    code = (
        "import resource, sys, numpy as np, s2sext\n"
        "model = s2sext.Seq2Seq(12, 9, embed_size=4, hidden_size=8, seed=0)\n"
        "model.params['out.bias'][2] = 100.0\n"
        "dec = model.compile()\n"
        "dec.greedy(np.full((2, 4), 5), max_length=2)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "ids = dec.greedy(np.full((2, 4), 5), max_length=2 * 10**7)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(ids.tolist(), after - before)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    ids, grown_kib = done.stdout.strip().rsplit(" ", 1)
    assert ids == "[[2], [2]]"
    assert int(grown_kib) < 32 * 1024, f"one step of greedy grew the resident size by {grown_kib} KiB"


# (arguments, exception, message): refused alike by Seq2Seq.beam_search and Decoder.beam/hypotheses
BEAM_ARGUMENT_ERRORS = [
    (dict(beam_size=2**63), ValueError, r"beam_size must be <= 65536, got 9223372036854775808"),
    (dict(beam_size=65537), ValueError, r"beam_size must be <= 65536, got 65537"),
    (dict(beam_size=True), TypeError, r"beam_size must be an int, got bool True"),
    (dict(beam_size=2.0), TypeError, r"beam_size must be an int, got float 2.0"),
    (dict(n_best=2**63), ValueError, r"n_best must be <= 65536"),
    (dict(n_best=0), ValueError, r"n_best must be >= 1, got 0"),
    (dict(max_length=2**63), ValueError, r"max_length must be <= 9223372036854775807"),
    (dict(max_length=np.uint64(2**63)), ValueError, r"max_length must be <= 9223372036854775807"),
    (dict(min_length=-1), ValueError, r"min_length must be >= 0, got -1"),
    (dict(min_length=3, max_length=2), ValueError, r"min_length \(3\) must not exceed max_length \(2\)"),
    (dict(length_penalty=math.inf), ValueError, r"length_penalty must be a finite number >= 0, got inf"),
    (dict(length_penalty=None), TypeError, r"length_penalty must be a finite number >= 0, got NoneType"),
]


@pytest.mark.parametrize("kwargs,error,message", BEAM_ARGUMENT_ERRORS, ids=[str(k) for k, _, _ in BEAM_ARGUMENT_ERRORS])
def test_beam_arguments_are_checked_alike_by_the_model_and_the_decoder(kwargs, error, message):
    """Seq2Seq.beam_search raised OverflowError/MemoryError (beam_size=2**63) where Decoder.beam
    raised ValueError: one checker (decoding.check_beam_args/check_lengths) serves both."""
    model = small_model()
    dec = model.compile()
    src = np.full((1, 4), 5)
    for search in (model.beam_search, dec.beam, dec.hypotheses):
        with pytest.raises(error, match=message):
            search(src, **kwargs)


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(max_length=2**63), ValueError, "max_length must be <= 9223372036854775807"),
    (dict(max_length=0), ValueError, "max_length must be >= 1, got 0"),
    (dict(max_length=True), TypeError, "max_length must be an int, got bool True"),
    (dict(min_length=1.0), TypeError, "min_length must be an int, got float 1.0"),
])
def test_greedy_arguments_are_checked_alike_by_the_model_and_the_decoder(kwargs, error, message):
    model = small_model()
    dec = model.compile()
    for search in (model.greedy, dec.greedy):
        with pytest.raises(error, match=message):
            search(np.full((1, 4), 5), **kwargs)


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(beam=True), TypeError, "beam must be an int, got bool True"),
    (dict(beam=2**63), ValueError, "beam must be <= 65536"),
    (dict(n_best=1.0), TypeError, "n_best must be an int, got float 1.0"),
    (dict(beam=0), ValueError, "beam must be >= 1, got 0"),
])
def test_translate_arguments_are_checked_alike_by_the_model_and_the_decoder(kwargs, error, message):
    model = Seq2Seq(list("abc"), list("xyz"), embed_size=4, hidden_size=8, seed=0)
    for translate in (model.translate, model.compile().translate):
        with pytest.raises(error, match=message):
            translate(["abc"], **kwargs)


@pytest.mark.parametrize("penalty,max_length", [(1e308, 6), (0.6, 6), (0.0, 2**63 - 1)])
def test_huge_length_penalty_and_max_length_decode_alike(penalty, max_length):
    """length_penalty=1e308 overflowed Python's float power (OverflowError) where C's pow gives inf:
    both now score with an infinite factor. A huge max_length costs nothing up front (with
    length_penalty 0 the search stops once no live hypothesis can win; with a positive one it may
    run to max_length, as the bound is then that of a hypothesis max_length long)."""
    model = eos_first_model()
    model.params["out.bias"][EOS] = 3.0  # <eos> likely, not certain: several hypotheses finish
    dec = model.compile()
    src = np.full((2, 4), 5)
    ref = model.beam_search(src, beam_size=3, n_best=2, max_length=max_length, length_penalty=penalty)
    ours = dec.hypotheses(src, beam_size=3, n_best=2, max_length=max_length, length_penalty=penalty)
    assert [[list(t) for t, _, _ in hyps] for hyps in ours] == [[h["tokens"] for h in hyps] for hyps in ref]
    for hyps_engine, hyps_model in zip(ours, ref):
        for (_, score, _), h in zip(hyps_engine, hyps_model):
            # float32 logits that differ in the last bits, log-softmax in float64 (test_engine.py)
            assert abs(score - h["score"]) <= 1e-5 * max(1.0, abs(h["score"]))


def test_the_compiled_decoder_is_kept_until_the_parameters_change():
    """Seq2Seq decodes through one compiled decoder while its parameters stay as they are; every
    way of changing them (s2sext's optimisers, an in-place edit after unfreeze, a new array in the
    dict) makes the next decode compile the new weights, and an edit without unfreeze raises
    instead of decoding with stale weights."""
    from s2sext.train import SGD, Adam

    model = small_model()
    src = np.array([[5, 6, 7, 8]])
    first = model.greedy(src, max_length=6)
    kept = model.search_decoder()
    model.greedy(src, max_length=6)
    assert model.search_decoder() is kept
    with pytest.raises(ValueError, match="read-only"):
        model.params["out.bias"][EOS] = 100.0
    model.unfreeze()
    model.params["out.bias"][EOS] = 100.0
    assert model.greedy(src, max_length=6).tolist() == [[EOS]] != first.tolist()
    assert model.search_decoder() is not kept
    model.params["out.bias"] = np.zeros_like(model.params["out.bias"])  # a new array: seen by its identity
    np.testing.assert_array_equal(model.greedy(src, max_length=6), first)
    grads = {name: np.ones_like(value) for name, value in model.params.items()}
    for optimizer in (Adam(model.params, lr=0.5), SGD(model.params, lr=0.5)):
        before = model.search_decoder()
        optimizer.step(grads)
        assert model.search_decoder() is not before
        np.testing.assert_array_equal(model.greedy(src, max_length=6),
                                      model.compile().greedy(src, max_length=6))  # the new weights


def test_a_model_that_decoded_can_be_copied():
    import copy
    import pickle

    model = small_model()
    src = np.array([[5, 6, 7, 8]])
    expected = model.greedy(src, max_length=6)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        np.testing.assert_array_equal(clone.greedy(src, max_length=6), expected)
        clone.unfreeze()
        clone.params["out.bias"][...] += 1.0  # the copy's arrays are its own
    np.testing.assert_array_equal(model.greedy(src, max_length=6), expected)


def test_the_old_names_of_the_search_still_decode():
    from s2sext import decoding

    model = small_model()
    src = np.array([[5, 6, 7, 8], [4, 5, 6, 7]])
    np.testing.assert_array_equal(decoding.greedy_search(model, src, max_length=6), model.greedy(src, max_length=6))
    assert [[h["tokens"] for h in hyps] for hyps in decoding.beam_search(model, src, beam_size=3, n_best=2)] == \
        [[h["tokens"] for h in hyps] for hyps in model.beam_search(src, beam_size=3, n_best=2)]
