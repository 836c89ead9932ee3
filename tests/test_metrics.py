"""s2sext.metrics against computations written here (a dynamic-programming edit distance, BLEU's
and chrF's formulas), its edge cases and errors; train.evaluate's hypotheses and scores; and
train(metric=...) picking the best epoch by the metric."""

import math
import random
import sys
from collections import Counter

import numpy as np
import pytest

import s2sext.train
from s2sext import Seq2Seq
from s2sext.data import build_vocabs, encode_pairs, make_task
from s2sext.metrics import (ERROR_RATE_NAMES, METRIC_NAMES, METRICS, MetricUnavailableError, bleu, chrf, describe,
                            exact_match, exact_matches, require, sacrebleu_available, score_corpus, selection_value,
                            token_edits, token_error_rate)
from s2sext.seq2seq_file import read_seq2seq
from s2sext.spec import EOS_ID, TOKENIZER_NAMES, UNK_ID
from s2sext.train import evaluate, train


def edit_distance(a, b):
    """Levenshtein distance by the textbook table: d[i][j] for the first i of a and j of b."""
    d = [[i + j if i == 0 or j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return d[len(a)][len(b)]


@pytest.fixture
def no_sacrebleu(monkeypatch):
    """``import sacrebleu`` fails, as where the extra is not installed."""
    for name in [m for m in sys.modules if m == "sacrebleu" or m.startswith("sacrebleu.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sacrebleu", None)


# ---------------------------------------------------------------------------------------------
# The table


def test_the_table():
    assert METRIC_NAMES == ("exact_match", "token_error_rate", "bleu", "chrf")
    assert [METRICS[n].higher_is_better for n in METRIC_NAMES] == [True, False, True, True]
    assert [METRICS[n].needs_sacrebleu for n in METRIC_NAMES] == [False, False, True, True]
    assert all(METRICS[n].name == n and METRICS[n].description for n in METRIC_NAMES)
    assert set(ERROR_RATE_NAMES) == set(TOKENIZER_NAMES)  # every target tokenizer has its common name
    assert describe("exact_match", 97.5) == "exact match 97.50%"
    assert describe("bleu", 35.123) == "BLEU 35.12"
    assert selection_value("exact_match", 3.0) == 3.0 and selection_value("token_error_rate", 3.0) == -3.0
    with pytest.raises(ValueError, match="metric must be one of exact_match, token_error_rate, bleu, chrf; got 'wer'"):
        require(["wer"])


# ---------------------------------------------------------------------------------------------
# Token lists


@pytest.mark.parametrize("kind", ["ids", "words"])
def test_token_error_rate_against_a_dynamic_programming_edit_distance(kind):
    rng = random.Random(7)
    alphabet = list(range(5)) if kind == "ids" else ["the", "a", "cat", "mat", "sat"]
    lengths = [0, 1, 13, 2, 7, 1, 0, 9, 4, 31]
    references = [[rng.choice(alphabet) for _ in range(rng.choice(lengths[1:]))] for _ in range(40)]
    hypotheses = [[rng.choice(alphabet) for _ in range(rng.choice(lengths))] for _ in range(40)]
    hypotheses[3] = list(references[3])  # some right
    want_edits = sum(edit_distance(h, r) for h, r in zip(hypotheses, references))
    want_tokens = sum(len(r) for r in references)
    assert token_edits(hypotheses, references) == (want_edits, want_tokens)
    assert token_error_rate(hypotheses, references) == pytest.approx(100 * want_edits / want_tokens, rel=1e-15)
    matched = sum(h == r for h, r in zip(hypotheses, references))
    assert exact_matches(hypotheses, references) == (matched, 40) and matched >= 1
    assert exact_match(hypotheses, references) == pytest.approx(100 * matched / 40, rel=1e-15)


def test_edge_cases():
    refs = [["a", "b", "c"], ["d"]]
    assert token_error_rate(refs, refs) == 0.0 and exact_match(refs, refs) == 100.0
    # empty hypotheses: every reference token deleted
    assert token_edits([[], []], refs) == (4, 4) and token_error_rate([[], []], refs) == 100.0
    assert exact_match([[], []], refs) == 0.0
    # more wrong tokens than reference tokens: above 100%
    assert token_error_rate([["x", "y", "z", "w", "v"], ["d", "e", "f"]], refs) == pytest.approx(100 * 7 / 4)
    # corpus-level: one long reference weighs more than a short one (not a mean of sentence rates)
    assert token_error_rate([["a", "b", "c"], ["x"]], refs) == 25.0
    # an empty reference among others counts its hypothesis' tokens as insertions
    assert token_edits([["a"], ["q", "r"]], [["a"], []]) == (2, 1)


@pytest.mark.parametrize("call", [exact_match, token_error_rate, exact_matches, token_edits])
def test_bad_corpora_are_refused(call):
    with pytest.raises(ValueError, match="references is empty"):
        call([], [])
    with pytest.raises(ValueError, match="equally many; got 1 and 2"):
        call([["a"]], [["a"], ["b"]])
    with pytest.raises(TypeError, match=r"hypotheses\[1\] must be a list of tokens; got str 'ab' \(tokenize"):
        call([["a"], "ab"], [["a"], ["b"]])
    with pytest.raises(TypeError, match="references must be a list of token lists; got str"):
        call([["a"]], "a")


def test_references_without_tokens_have_no_error_rate():
    with pytest.raises(ValueError, match="the references hold no tokens"):
        token_error_rate([["a"]], [[]])
    assert exact_match([[]], [[]]) == 100.0


# ---------------------------------------------------------------------------------------------
# Text (sacrebleu)


def plain_bleu(hypotheses, references):
    """Corpus BLEU (Papineni et al.): clipped n-gram counts summed over the corpus, the geometric
    mean of the four precisions, the brevity penalty; for text that 13a leaves as it is (lowercase
    words, no punctuation), where every order has a match (no smoothing then)."""
    matches, totals, hyp_len, ref_len = [0] * 4, [0] * 4, 0, 0
    for h, r in zip(hypotheses, references):
        h, r = h.split(), r.split()
        hyp_len, ref_len = hyp_len + len(h), ref_len + len(r)
        for n in range(1, 5):
            hc = Counter(tuple(h[i:i + n]) for i in range(len(h) - n + 1))
            rc = Counter(tuple(r[i:i + n]) for i in range(len(r) - n + 1))
            matches[n - 1] += sum(min(c, rc[g]) for g, c in hc.items())
            totals[n - 1] += max(len(h) - n + 1, 0)
    assert all(matches), "the example needs a match of every order"
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / 4
    brevity = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return 100 * brevity * math.exp(log_precision)


def plain_chrf(hypotheses, references, order=6, beta=2):
    """chrF (Popovic, 2015) as sacrebleu computes it by default: character n-grams (spaces
    removed) of orders 1..6 counted over the corpus, precision and recall averaged over the orders,
    then their F-beta; for text where every order has n-grams on both sides."""
    precisions, recalls = [], []
    for n in range(1, order + 1):
        hyp = ref = match = 0
        for h, r in zip(hypotheses, references):
            h, r = "".join(h.split()), "".join(r.split())
            hc = Counter(h[i:i + n] for i in range(len(h) - n + 1))
            rc = Counter(r[i:i + n] for i in range(len(r) - n + 1))
            hyp, ref = hyp + sum(hc.values()), ref + sum(rc.values())
            match += sum(min(c, rc[g]) for g, c in hc.items())
        precisions.append(match / hyp)
        recalls.append(match / ref)
    p, r = sum(precisions) / order, sum(recalls) / order
    return 100 * (1 + beta**2) * p * r / (beta**2 * p + r)


HYPOTHESES = ["the cat sat on the mat", "a dog ran in the park today", "there is a small house on the hill"]
REFERENCES = ["the cat sat on a mat", "the dog ran in the park", "there is a little house on the hill"]


def test_bleu_and_chrf_against_their_formulas():
    # 1e-9: the same sums in another order, in float64
    assert bleu(HYPOTHESES, REFERENCES) == pytest.approx(plain_bleu(HYPOTHESES, REFERENCES), rel=1e-9)
    assert chrf(HYPOTHESES, REFERENCES) == pytest.approx(plain_chrf(HYPOTHESES, REFERENCES), rel=1e-9)
    # a hypothesis shorter than its reference in total: the brevity penalty applies
    short = ["the cat sat on the", "the dog ran in", "there is a little house"]
    assert bleu(short, REFERENCES) == pytest.approx(plain_bleu(short, REFERENCES), rel=1e-9)
    assert bleu(REFERENCES, REFERENCES) == pytest.approx(100.0) and chrf(REFERENCES, REFERENCES) == pytest.approx(100.0)


def test_text_edge_cases():
    assert bleu(["", ""], ["a b c d", "e f g h"]) == 0.0 and chrf(["", ""], ["abc", "def"]) == 0.0
    with pytest.raises(ValueError, match="references is empty"):
        bleu([], [])
    with pytest.raises(TypeError, match=r"hypotheses\[0\] must be a str; got list"):
        chrf([["a"]], ["a"])
    with pytest.raises(ValueError, match="give hypothesis_texts and reference_texts"):
        score_corpus([["a"]], [["a"]], names=["bleu"])


def test_missing_sacrebleu_is_named_with_the_extra(no_sacrebleu):
    assert not sacrebleu_available()
    for call in (bleu, chrf):
        with pytest.raises(MetricUnavailableError, match=r"need sacrebleu: pip install 's2sext\[metrics\]'"):
            call(["a"], ["a"])
    with pytest.raises(MetricUnavailableError):
        require(["exact_match", "chrf"])
    # the others need no sacrebleu
    assert require(["exact_match", "token_error_rate"]) == ("exact_match", "token_error_rate")
    scores = score_corpus([["a"], ["b", "c"]], [["a"], ["b"]])
    assert scores.values == {"exact_match": 50.0, "token_error_rate": 50.0}
    assert (scores.matches, scores.sentences, scores.edits, scores.reference_tokens) == (1, 2, 1, 2)


def test_sacrebleu_is_installed_for_the_tests():
    assert sacrebleu_available()  # the test extra has it: the tests above would otherwise not run it


# ---------------------------------------------------------------------------------------------
# evaluate


@pytest.fixture(scope="module")
def tiny():
    """An untrained word-level model (its outputs are arbitrary but fixed) and pairs for it."""
    pairs = [(f"{a} {b}", f"w{a} w{b} end") for a in range(6) for b in range(6)]
    src_vocab, tgt_vocab = build_vocabs(pairs, "word", "word")
    model = Seq2Seq(src_vocab, tgt_vocab, embed_size=4, hidden_size=8, attention="dot", seed=3,
                    src_tokenizer="word", tgt_tokenizer="word")
    return model, pairs, encode_pairs(pairs, src_vocab, tgt_vocab, "word", "word")


@pytest.mark.parametrize("beam", [1, 3])
def test_evaluate_returns_the_decoded_hypotheses_and_their_scores(tiny, beam):
    model, pairs, (src, tgt) = tiny
    result = evaluate(model, src, tgt, batch_size=7, beam=beam, metrics=METRIC_NAMES)
    # the hypotheses: what translate decodes, in input order, without <eos>
    texts = model.translate([s for s, _ in pairs], beam=beam, max_length=8)
    assert [model.decode_ids(h) for h in result["hypotheses"]] == texts
    assert all(EOS_ID not in h for h in result["hypotheses"])
    hyp_tokens = [t.split() for t in texts]
    ref_tokens = [t.split() for _, t in pairs]
    matched = sum(h == r for h, r in zip(hyp_tokens, ref_tokens))
    edits = sum(edit_distance(h, r) for h, r in zip(hyp_tokens, ref_tokens))
    assert (result["correct"], result["total"], result["edits"], result["reference_tokens"]) == \
        (matched, len(pairs), edits, 3 * len(pairs))
    assert result["metrics"]["exact_match"] == pytest.approx(100 * matched / len(pairs))
    assert result["metrics"]["token_error_rate"] == pytest.approx(100 * edits / (3 * len(pairs)))
    assert result["metrics"]["bleu"] == bleu(texts, [t for _, t in pairs])
    assert result["metrics"]["chrf"] == chrf(texts, [t for _, t in pairs])
    assert result["signatures"]["bleu"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|")


def test_evaluate_counts_an_unknown_reference_token_as_unmatched_only_with_the_texts(tiny, monkeypatch):
    model, pairs, (src, tgt) = tiny
    # a model that answers <unk> to everything, against references all outside the vocabulary
    monkeypatch.setattr(model, "greedy", lambda ids, lengths, max_length: np.array([[UNK_ID, EOS_ID]] * len(ids)))
    unknown = [[UNK_ID]] * len(src)
    read_through_vocab = evaluate(model, src, unknown, with_loss=False)
    assert read_through_vocab["metrics"] == {"exact_match": 100.0, "token_error_rate": 0.0}
    as_written = evaluate(model, src, unknown, with_loss=False, references=["zebra"] * len(src))
    assert as_written["metrics"] == {"exact_match": 0.0, "token_error_rate": 100.0}


def test_evaluate_checks_its_metrics_before_decoding(tiny, monkeypatch, no_sacrebleu):
    model, _, (src, tgt) = tiny

    def must_not_decode(*args, **kwargs):
        raise AssertionError("decoded before the metrics were checked")

    monkeypatch.setattr(model, "greedy", must_not_decode)
    with pytest.raises(MetricUnavailableError, match="s2sext"):
        evaluate(model, src, tgt, metrics=["exact_match", "bleu"])
    with pytest.raises(ValueError, match="metric must be one of"):
        evaluate(model, src, tgt, metrics=["accuracy"])
    with pytest.raises(ValueError, match="one text per target"):
        evaluate(model, src, tgt, references=["a"])


# ---------------------------------------------------------------------------------------------
# train(metric=...)


def scripted_validation(monkeypatch, scores):
    """train's validation replaced by ``scores`` (one dict of metric -> value per epoch, and a
    loss); returns the model's weights as each epoch's validation saw them."""
    seen = []

    def fake_evaluate(model, src, tgt, batch_size, metrics):
        epoch = scores[len(seen)]
        seen.append({k: v.copy() for k, v in model.params.items()})
        return {"loss": epoch["loss"], "accuracy": epoch["exact_match"] / 100,
                "metrics": {name: epoch[name] for name in metrics}}

    monkeypatch.setattr(s2sext.train, "evaluate", fake_evaluate)
    return seen


# epoch 2 has the best exact match; epochs 1 and 2 tie on the lowest token error rate, and epoch 1 has
# the lower loss; epoch 3 has the best BLEU and chrF
SCRIPT = [
    {"exact_match": 40.0, "token_error_rate": 7.0, "bleu": 20.0, "chrf": 50.0, "loss": 1.0},
    {"exact_match": 50.0, "token_error_rate": 7.0, "bleu": 30.0, "chrf": 55.0, "loss": 1.5},
    {"exact_match": 45.0, "token_error_rate": 9.0, "bleu": 35.0, "chrf": 60.0, "loss": 2.0},
]


@pytest.mark.parametrize("metric, best_epoch", [("exact_match", 2), ("token_error_rate", 1), ("bleu", 3),
                                                 ("chrf", 3)])
def test_the_metric_picks_the_epoch_that_is_written(tmp_path, monkeypatch, tiny, metric, best_epoch):
    model, _, data = tiny
    model = Seq2Seq(model.src_vocab, model.tgt_vocab, embed_size=4, hidden_size=8, attention="dot", seed=3)
    weights = scripted_validation(monkeypatch, SCRIPT)
    lines = []
    history = train(model, data, data, epochs=3, batch_size=8, lr=0.01, progress=False, out=tmp_path / "best.s2s",
                    checkpoint=tmp_path / "ck.s2s", log=lines.append, metric=metric)
    written = read_seq2seq(tmp_path / "best.s2s")[3]
    for name, value in weights[best_epoch - 1].items():
        assert np.array_equal(written[name], value), name
    assert max(history, key=lambda r: s2sext.train.selection_key(r, metric))["epoch"] == best_epoch
    # every epoch records (and logs) exact match and token error rate; BLEU or chrF only when they pick
    extra_names = [metric] if METRICS[metric].needs_sacrebleu else []
    for record, script, line in zip(history, SCRIPT, lines):
        assert {k: record[f"valid_{k}"] for k in ["exact_match", "token_error_rate", *extra_names]} == \
            {k: script[k] for k in ["exact_match", "token_error_rate", *extra_names]}
        assert not {"valid_bleu", "valid_chrf"} - {f"valid_{n}" for n in extra_names} & set(record)
        assert line.startswith(f"epoch {record['epoch']}: train loss ")
        assert line.endswith(f"; valid loss {script['loss']:.4f}, exact match {script['exact_match']:.2f}%, "
                             f"token error rate {script['token_error_rate']:.2f}%"
                             + "".join(f", {describe(n, script[n])}" for n in extra_names))
    assert read_seq2seq(tmp_path / "ck.s2s", return_extra=True)[5]["metric"] == metric


def test_resuming_with_another_metric_is_refused(tmp_path, monkeypatch, tiny):
    model, _, data = tiny
    scripted_validation(monkeypatch, SCRIPT)
    train(model, data, data, epochs=1, batch_size=8, progress=False, checkpoint=tmp_path / "ck.s2s",
          log=lambda m: None, metric="token_error_rate")
    with pytest.raises(ValueError, match="picked its best epoch by token_error_rate, not exact_match"):
        train(model, data, data, epochs=2, batch_size=8, progress=False, resume=tmp_path / "ck.s2s",
              log=lambda m: None)
    # a checkpoint that does not say (an older s2sext's)
    _, extra, tensors = Seq2Seq.load(tmp_path / "ck.s2s", return_extra=True)
    del extra["metric"]
    model.save(tmp_path / "old.s2s", extra_tensors=tensors, extra=extra)
    with pytest.raises(ValueError, match="by the validation accuracy of an older s2sext, not exact_match"):
        train(model, data, data, epochs=2, batch_size=8, progress=False, resume=tmp_path / "old.s2s",
              log=lambda m: None)


def test_training_needs_sacrebleu_only_for_bleu_and_chrf(tmp_path, monkeypatch, tiny, no_sacrebleu):
    model, _, data = tiny
    for metric in ("bleu", "chrf"):
        with pytest.raises(MetricUnavailableError, match=r"pip install 's2sext\[metrics\]'"):
            train(model, data, data, epochs=1, progress=False, log=lambda m: None, metric=metric)
    history = train(model, data, data, epochs=1, progress=False, log=lambda m: None, metric="token_error_rate")
    assert "valid_token_error_rate" in history[0] and "valid_bleu" not in history[0]
    with pytest.raises(ValueError, match="metric must be one of"):
        train(model, data, data, epochs=1, progress=False, log=lambda m: None, metric="accuracy")
