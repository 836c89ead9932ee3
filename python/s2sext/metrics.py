"""How good a corpus of outputs is: exact match, token error rate, BLEU and chrF.

=================  ===============  ==============  ===========================================  ====
name               higher better    needs           what                                         unit
=================  ===============  ==============  ===========================================  ====
exact_match        yes              --              hypotheses whose tokens equal the reference  %
token_error_rate   no               --              edits over target tokens / reference tokens  %
bleu               yes              sacrebleu       sacrebleu's corpus BLEU of the text          0-100
chrf               yes              sacrebleu       sacrebleu's corpus chrF of the text          0-100
=================  ===============  ==============  ===========================================  ====

The first two compare token lists (any hashable tokens: strings or ids); the token error rate is
the corpus-level rate, as WER is reported: the Levenshtein distances of all pairs (rapidfuzz)
summed, over the reference tokens summed. It is the word error rate (WER) for word tokens, the
character error rate (CER) for characters, the phoneme error rate (PER) when the words are
phonemes, and exceeds 100% when the hypotheses hold more wrong tokens than the references hold
tokens. BLEU and chrF score the detokenized text with sacrebleu (an optional extra:
``pip install 's2sext[metrics]'``) at its default settings, one reference per hypothesis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .checks import short_repr

__all__ = ["Metric", "METRICS", "METRIC_NAMES", "ERROR_RATE_NAMES", "MetricUnavailableError", "CorpusScores",
           "exact_matches", "token_edits", "exact_match", "token_error_rate", "bleu", "chrf",
           "score_corpus", "require", "sacrebleu_available", "describe", "selection_value"]


@dataclass(frozen=True)
class Metric:
    """One row of the table above."""

    name: str
    label: str  # as the command and the logs write it
    higher_is_better: bool
    needs_sacrebleu: bool
    description: str
    unit: str  # "%" for the rates; BLEU and chrF are written bare on their 0-100 scale, as sacrebleu does


METRICS = {metric.name: metric for metric in (
    Metric("exact_match", "exact match", True, False, "hypotheses whose tokens equal the reference's", "%"),
    Metric("token_error_rate", "token error rate", False, False,
           "edit distance over target tokens / reference tokens (WER, CER)", "%"),
    Metric("bleu", "BLEU", True, True, "sacrebleu's corpus BLEU of the detokenized text (13a tokenization)", ""),
    Metric("chrf", "chrF", True, True,
           "sacrebleu's corpus chrF of the detokenized text (character 6-grams, beta 2)", ""),
)}
METRIC_NAMES = tuple(METRICS)

# The usual name of the token error rate for a target tokenizer (spec.TOKENIZER_NAMES).
ERROR_RATE_NAMES = {"word": "WER", "char": "CER", "sentencepiece": "over pieces"}

INSTALL_HINT = "pip install 's2sext[metrics]'"


class MetricUnavailableError(ImportError):
    """BLEU or chrF was asked for and sacrebleu is not installed."""


def _check_name(name) -> Metric:
    if not isinstance(name, str) or name not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRIC_NAMES)}; got {short_repr(name)}")
    return METRICS[name]


def _sacrebleu():
    try:
        import sacrebleu
    except ImportError:
        raise MetricUnavailableError(f"BLEU and chrF need sacrebleu: {INSTALL_HINT}") from None
    return sacrebleu


def sacrebleu_available() -> bool:
    """Whether BLEU and chrF can be computed."""
    try:
        _sacrebleu()
    except MetricUnavailableError:
        return False
    return True


def require(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` as a tuple, each checked to be a metric (ValueError) that can be computed here
    (:class:`MetricUnavailableError` when one needs sacrebleu and it is missing): called before
    any work, so that a long decode does not end in the missing library."""
    if isinstance(names, str):
        names = (names,)
    metrics = [_check_name(name) for name in names]
    if any(metric.needs_sacrebleu for metric in metrics):
        _sacrebleu()
    return tuple(metric.name for metric in metrics)


def describe(name: str, value: float) -> str:
    """A score as the command and the logs write it: ``exact match 97.50%``, ``BLEU 35.20``."""
    metric = _check_name(name)
    return f"{metric.label} {value:.2f}{metric.unit}"


def selection_value(name: str, value: float) -> float:
    """``value`` of metric ``name`` turned so that more is better (a rate of errors negated)."""
    return value if _check_name(name).higher_is_better else -value


# ---------------------------------------------------------------------------------------------
# Token lists


def _check_corpus(hypotheses, references, kind: str) -> tuple[list, list]:
    """Both corpora as lists of equal length > 0, each item a token list (``kind="tokens"``) or a
    str (``kind="text"``)."""
    corpora = []
    for name, corpus in (("hypotheses", hypotheses), ("references", references)):
        if isinstance(corpus, (str, bytes)) or not isinstance(corpus, Sequence):
            raise TypeError(f"{name} must be a list of {'token lists' if kind == 'tokens' else 'str'}; "
                            f"got {type(corpus).__name__}")
        corpus = list(corpus)
        for i, item in enumerate(corpus):
            if kind == "text" and not isinstance(item, str):
                raise TypeError(f"{name}[{i}] must be a str; got {type(item).__name__}")
            if kind == "tokens" and (isinstance(item, (str, bytes)) or not isinstance(item, Sequence)):
                raise TypeError(f"{name}[{i}] must be a list of tokens; got {type(item).__name__} "
                                f"{short_repr(item)} (tokenize text first)")
        corpora.append(corpus)
    hypotheses, references = corpora
    if not references:
        raise ValueError("references is empty: a metric needs at least one reference")
    if len(hypotheses) != len(references):
        raise ValueError(f"hypotheses and references must be equally many; got {len(hypotheses)} and "
                         f"{len(references)}")
    return hypotheses, references


def exact_matches(hypotheses, references) -> tuple[int, int]:
    """(how many hypotheses equal their reference token for token, how many pairs there are)."""
    hypotheses, references = _check_corpus(hypotheses, references, "tokens")
    return sum(list(h) == list(r) for h, r in zip(hypotheses, references)), len(references)


def token_edits(hypotheses, references) -> tuple[int, int]:
    """(the Levenshtein distances of the pairs summed, the reference tokens summed): insertions,
    deletions and substitutions of whole tokens, each costing 1."""
    from rapidfuzz.distance import Levenshtein

    hypotheses, references = _check_corpus(hypotheses, references, "tokens")
    edits = sum(Levenshtein.distance(list(h), list(r)) for h, r in zip(hypotheses, references))
    return edits, sum(len(r) for r in references)


def _error_rate(edits: int, reference_tokens: int) -> float:
    if reference_tokens == 0:
        raise ValueError("the references hold no tokens, so the token error rate (edits / reference tokens) "
                         "is undefined")
    return 100.0 * edits / reference_tokens


def exact_match(hypotheses, references) -> float:
    """Percent of the hypotheses (token lists) that equal their reference."""
    matched, total = exact_matches(hypotheses, references)
    return 100.0 * matched / total


def token_error_rate(hypotheses, references) -> float:
    """Percent: the corpus's edit distance over target tokens / its reference tokens (may exceed 100)."""
    return _error_rate(*token_edits(hypotheses, references))


# ---------------------------------------------------------------------------------------------
# Text (sacrebleu)


def _sacrebleu_metric(name: str):
    """sacrebleu's metric object at its default settings. BLEU's default tokenization, 13a (the
    mteval-v13a script of WMT), is kept: it splits the detokenized text the same way whatever the
    model's own tokenizer was, so char- and word-level models get comparable scores, and the
    scores are comparable with those published with sacrebleu's default signature. (Text in a
    language written without spaces would want sacrebleu's "zh" or "ja-mecab" instead; chrF,
    which needs no tokenization, is the better measure there.)"""
    metrics = _sacrebleu().metrics
    return metrics.BLEU() if name == "bleu" else metrics.CHRF()


def _corpus_score(name: str, hypotheses, references) -> tuple[float, str]:
    """(the score, sacrebleu's signature of it: its settings and version, to report with it)."""
    hypotheses, references = _check_corpus(hypotheses, references, "text")
    metric = _sacrebleu_metric(name)
    score = float(metric.corpus_score(hypotheses, [references]).score)
    return score, metric.get_signature().format()  # (the signature needs a score first: its count of references)


def bleu(hypotheses, references) -> float:
    """sacrebleu's corpus BLEU (0-100) of ``hypotheses`` against one reference each (lists of str)."""
    return _corpus_score("bleu", hypotheses, references)[0]


def chrf(hypotheses, references) -> float:
    """sacrebleu's corpus chrF (0-100) of ``hypotheses`` against one reference each (lists of str)."""
    return _corpus_score("chrf", hypotheses, references)[0]


# ---------------------------------------------------------------------------------------------
# All at once


@dataclass(frozen=True)
class CorpusScores:
    """``values``: each asked-for metric's score in its unit; the counts behind the first two; and
    ``signatures``: sacrebleu's signature of each score it computed (name -> str)."""

    values: dict
    matches: int
    sentences: int
    edits: int
    reference_tokens: int
    signatures: dict


def score_corpus(hypotheses, references, hypothesis_texts=None, reference_texts=None,
                 names: Sequence[str] = ("exact_match", "token_error_rate")) -> CorpusScores:
    """Score token lists (``hypotheses`` against ``references``) and, for BLEU and chrF, the same
    outputs as detokenized text (``hypothesis_texts``, ``reference_texts``, needed only for them).

    Raises
    ------
    ValueError
        An unknown name, corpora of different lengths, no references, or references without a token.
    TypeError
        An item that is not a token list (or, for the texts, not a str).
    MetricUnavailableError
        BLEU or chrF is asked for and sacrebleu is not installed.
    """
    names = require(names)
    matches, sentences = exact_matches(hypotheses, references)
    edits, reference_tokens = token_edits(hypotheses, references)
    values, signatures = {}, {}
    for name in names:
        if name == "exact_match":
            values[name] = 100.0 * matches / sentences
        elif name == "token_error_rate":
            values[name] = _error_rate(edits, reference_tokens)
        else:
            if hypothesis_texts is None or reference_texts is None:
                raise ValueError(f"{name} scores text: give hypothesis_texts and reference_texts")
            if len(hypothesis_texts) != sentences:
                raise ValueError(f"hypothesis_texts must hold one text per hypothesis ({sentences}); "
                                 f"got {len(hypothesis_texts)}")
            values[name], signatures[name] = _corpus_score(name, hypothesis_texts, reference_texts)
    return CorpusScores(values, matches, sentences, edits, reference_tokens, signatures)
