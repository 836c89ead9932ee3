"""English lemmatisation (inflected form -> lemma, character by character) from a real lexicon.

    pip install lemminflect                     # or: pip install -e .[examples]
    python examples/english_lemmas.py build data/lemmas                  # train/valid/test.tsv
    python examples/english_lemmas.py baseline data/lemmas               # copy and suffix rules
    s2sext train --data data/lemmas/train.tsv --valid data/lemmas/valid.tsv \\
        --src-tokenizer char --tgt-tokenizer char --attention general --embed 64 --hidden 256 \\
        --epochs 10 --out lemmas.s2s
    s2sext eval --model lemmas.s2s --data data/lemmas/test.tsv
    cut -f1 data/lemmas/test.tsv | s2sext translate --model lemmas.s2s > test.out
    python examples/english_lemmas.py score data/lemmas/test.tsv test.out  # same metrics as baseline

The data
--------
``lemma_lu.csv.gz`` as shipped in the ``lemminflect`` package (PyPI, version 0.2.3; code MIT
licensed, Brad Jascob): lines ``word,category,lemma[/spelling variant...]``, 80,676 lines for
69,980 distinct words (nouns, verbs, adjectives, adverbs, auxiliaries; proper nouns included, case
kept). lemminflect's author extracted it from the SPECIALIST Lexicon of the U.S. National Library
of Medicine (https://lhncbc.nlm.nih.gov/LSG/Projects/lexicon/), a hand-curated lexicon of general
and biomedical English that NLM distributes as an open-source resource under its "SPECIALIST NLP
Tools Terms and Conditions" (free use and redistribution, acknowledging NLM as the source). The
file is read from the installed package (no network at run time); ``--lexicon`` reads another copy.

Pairs: one per distinct word, ``word<TAB>lemma``. A word listed with more than one lemma (across its
categories or as spelling variants, e.g. ``ranking`` -> ``rank`` as a verb and ``ranking`` as a
noun, ``clover leaf`` -> ``cloverleaf/clover-leaf``) is left out: without context no answer is
right, and keeping one by a rule would score the model on that rule. About 2.6 % of the words are
left out so; the count is printed. Words that are their own lemma (about half) stay in, which is
why copying the source is a strong baseline.

The split is by source: the distinct words are ordered, shuffled with ``--seed``, and the first
``--test`` become the test split, the next ``--valid`` the validation split, the rest (or the
first ``--train`` of the rest) the training split, so no test word is seen in training and the test
split does not change with ``--train``. Other forms of a test word's lemma may be in training
(``walked`` in test, ``walking`` in training), as in the usual form-level lemmatisation benchmarks.

The baselines
-------------
``copy``: the output is the source. ``suffix rules``: from each training pair an edit rule "remove
the last k characters, append s" (``studies`` -> ``study``: remove 3, append ``y``); a test word takes
the most frequent rule of the longest ending (up to ``n`` characters, or the whole word) that it
shares with a training word. ``n`` is chosen on the validation split (0 means the single most
frequent rule everywhere). Metrics: exact match, and token error rate, the edit distance between the
output's and the reference's tokens (characters here) summed over the split, over the reference
tokens summed, computed by ``s2sext.metrics`` as ``s2sext eval`` computes them.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import os
import sys
import time
from collections import Counter, defaultdict

import numpy as np

from s2sext.data import read_lines, read_tsv, write_tsv
from s2sext.text import get_tokenizer

PACKAGE = "lemminflect"
LEXICON_IN_PACKAGE = os.path.join("resources", "lemma_lu.csv.gz")
# The shipped table decompresses to about 2 MB; a file past this bound is not the lexicon.
MAX_LEXICON_BYTES = 64 * 1024 * 1024
CATEGORIES = frozenset({"noun", "verb", "adj", "adv", "aux"})
SPLIT_NAMES = ("train", "valid", "test")
MAX_SUFFIX_CHOICES = range(0, 11)
# The longest line the TSV and output files may have: the longest word of the lexicon has 22 characters.
MAX_LINE_BYTES = 4096


class LexiconError(ValueError):
    """The lexicon file is missing, too large or not in the expected format."""


# ----------------------------------------------------------------------------------------------------
# The lexicon and the pairs


def installed_lexicon_path() -> str:
    """The path of lemminflect's lemma table, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LexiconError(f"the package {PACKAGE!r} is not installed: pip install {PACKAGE} "
                           "(or give --lexicon PATH to a copy of lemma_lu.csv.gz)")
    path = os.path.join(list(spec.submodule_search_locations)[0], LEXICON_IN_PACKAGE)
    if not os.path.isfile(path):
        raise LexiconError(f"{PACKAGE} is installed but has no {LEXICON_IN_PACKAGE} (looked at {path})")
    return path


def read_lexicon(path) -> list[tuple[str, str, tuple[str, ...]]]:
    """The ``(word, category, lemma spellings)`` rows of a ``lemma_lu.csv.gz`` file, each checked."""
    path = os.fspath(path)
    with gzip.open(path, "rb") as file:
        data = file.read(MAX_LEXICON_BYTES + 1)
    if len(data) > MAX_LEXICON_BYTES:
        raise LexiconError(f"{path}: decompresses to more than {MAX_LEXICON_BYTES:,} bytes; "
                           "lemma_lu.csv.gz is about 2 MB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LexiconError(f"{path}: not UTF-8 ({e})") from None
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        fields = line.split(",")
        if len(fields) != 3:
            raise LexiconError(f"{path}:{lineno}: expected 'word,category,lemma[/lemma...]', got {line!r}")
        word, category, lemmas = fields
        spellings = tuple(lemmas.split("/"))
        if not word or not all(spellings):
            raise LexiconError(f"{path}:{lineno}: empty word or lemma in {line!r}")
        if category not in CATEGORIES:
            raise LexiconError(f"{path}:{lineno}: category {category!r} is not one of {sorted(CATEGORIES)}")
        for text_field in (word,) + spellings:
            if any(c in text_field for c in "\t\r\n"):
                raise LexiconError(f"{path}:{lineno}: a TAB or line break in {text_field!r}")
        rows.append((word, category, spellings))
    if not rows:
        raise LexiconError(f"{path}: no rows")
    return rows


def unambiguous_pairs(rows) -> tuple[list[tuple[str, str]], int]:
    """One ``(word, lemma)`` pair per word that has exactly one lemma, sorted by word; and the
    number of words left out for having several."""
    lemmas_of = defaultdict(set)
    for word, _, spellings in rows:
        lemmas_of[word].update(spellings)
    pairs = sorted((word, next(iter(lemmas))) for word, lemmas in lemmas_of.items() if len(lemmas) == 1)
    return pairs, len(lemmas_of) - len(pairs)


def split_by_source(pairs, valid: int, test: int, seed: int, train: int | None = None) -> dict[str, list]:
    """``{"train", "valid", "test"}`` splits of ``pairs`` (one pair per source), shuffled by ``seed``:
    test first, then valid, then train (its first ``train`` pairs when given)."""
    sources = [source for source, _ in pairs]
    if len(set(sources)) != len(sources):
        raise ValueError("pairs must have one pair per source; found a source twice")
    for name, count in (("valid", valid), ("test", test)):
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"{name} must be a count >= 1, got {count!r}")
    rest = len(pairs) - valid - test
    if rest < 1:
        raise ValueError(f"valid + test = {valid + test:,} leaves no training pair of {len(pairs):,}")
    if train is not None and not (isinstance(train, int) and 1 <= train <= rest):
        raise ValueError(f"train must be a count in [1, {rest:,}] (the pairs left after valid and test), "
                         f"got {train!r}")
    order = np.random.default_rng(seed).permutation(len(pairs))
    shuffled = [pairs[i] for i in order]
    train_part = shuffled[test + valid:]
    return {"test": shuffled[:test], "valid": shuffled[test:test + valid],
            "train": train_part if train is None else train_part[:train]}


# ----------------------------------------------------------------------------------------------------
# Metrics and baselines


def scores(hypotheses, references, tokenizer="char") -> dict[str, float]:
    """Exact match and token error rate (summed token edit distance / summed reference tokens), as
    ``s2sext eval`` computes them (s2sext.metrics)."""
    from s2sext.metrics import exact_matches, token_edits

    tok = get_tokenizer(tokenizer)
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    hyp_tokens = [tok.tokenize(h) for h in hypotheses]
    ref_tokens = [tok.tokenize(r) for r in references]
    exact, total = exact_matches(hyp_tokens, ref_tokens)
    edits, reference_tokens = token_edits(hyp_tokens, ref_tokens)
    return {"exact_match": exact / total, "token_error_rate": edits / reference_tokens,
            "exact": exact, "total": total}


def edit_rule(source: str, target: str) -> tuple[int, str]:
    """``(k, s)``: ``target`` is ``source`` without its last ``k`` characters, then ``s``."""
    common = 0
    for a, b in zip(source, target):
        if a != b:
            break
        common += 1
    return len(source) - common, target[common:]


def apply_rule(source: str, rule: tuple[int, str]) -> str:
    strip, append = rule
    return source[:len(source) - strip] + append


def _ending_keys(word: str, max_suffix: int):
    """The keys a word is looked up by, longest first: the whole word (marked so that it differs
    from an ending of a longer word) when it is at most ``max_suffix`` long, then its endings down
    to the empty one."""
    if len(word) <= max_suffix:
        yield "^" + word
    for k in range(min(len(word) - 1, max_suffix), -1, -1):
        yield word[len(word) - k:]


class SuffixRules:
    """The most frequent edit rule of each word ending seen in training (see the module's doc)."""

    def __init__(self, pairs, max_suffix: int):
        self.max_suffix = max_suffix
        counts = defaultdict(Counter)
        for source, target in pairs:
            rule = edit_rule(source, target)
            for key in _ending_keys(source, max_suffix):
                counts[key][rule] += 1
        # Ties go to the smaller rule so that the choice does not depend on the order of the pairs.
        self.best = {key: min(c.items(), key=lambda item: (-item[1], item[0]))[0] for key, c in counts.items()}

    def __call__(self, word: str) -> str:
        for key in _ending_keys(word, self.max_suffix):
            rule = self.best.get(key)
            if rule is not None and rule[0] <= len(word):
                return apply_rule(word, rule)
        return word


# ----------------------------------------------------------------------------------------------------
# Commands


def cmd_build(args) -> int:
    path = args.lexicon or installed_lexicon_path()
    rows = read_lexicon(path)
    pairs, ambiguous = unambiguous_pairs(rows)
    splits = split_by_source(pairs, args.valid, args.test, args.seed, args.train)
    os.makedirs(args.out_dir, exist_ok=True)
    identity = sum(s == t for s, t in pairs)
    print(f"{path}: {len(rows):,} rows, {len(pairs) + ambiguous:,} distinct words; "
          f"{ambiguous:,} left out for having several lemmas; {len(pairs):,} pairs "
          f"({100 * identity / len(pairs):.1f}% are their own lemma)")
    for name in SPLIT_NAMES:
        out = os.path.join(args.out_dir, f"{name}.tsv")
        write_tsv(out, splits[name])
        print(f"{name}: {len(splits[name]):,} pairs -> {out}")
    return 0


def _split_path(folder, name):
    return os.path.join(folder, f"{name}.tsv")


def _report(name, result):
    print(f"{name:<28} exact match {100 * result['exact_match']:6.2f}% ({result['exact']:,}/{result['total']:,})"
          f"   token error rate {100 * result['token_error_rate']:6.2f}%")


def cmd_baseline(args) -> int:
    train = read_tsv(_split_path(args.data_dir, "train"), max_line_bytes=MAX_LINE_BYTES)
    valid = read_tsv(_split_path(args.data_dir, "valid"), max_line_bytes=MAX_LINE_BYTES)
    test = read_tsv(_split_path(args.data_dir, "test"), max_line_bytes=MAX_LINE_BYTES)
    references = [t for _, t in test]
    _report("copy (test)", scores([s for s, _ in test], references))
    start = time.perf_counter()
    on_valid = {}
    for n in MAX_SUFFIX_CHOICES:
        rules = SuffixRules(train, n)
        on_valid[n] = scores([rules(s) for s, _ in valid], [t for _, t in valid])["exact_match"]
    best_n = max(MAX_SUFFIX_CHOICES, key=lambda n: (on_valid[n], -n))
    print("suffix rules, valid exact match by longest ending n: "
          + ", ".join(f"{n}: {100 * on_valid[n]:.2f}%" for n in MAX_SUFFIX_CHOICES))
    rules = SuffixRules(train, best_n)
    _report(f"suffix rules n={best_n} (test)", scores([rules(s) for s, _ in test], references))
    print(f"(suffix rules learned from {len(train):,} training pairs and tuned on {len(valid):,} "
          f"in {time.perf_counter() - start:.1f} s)")
    return 0


def cmd_score(args) -> int:
    pairs = read_tsv(args.data, max_line_bytes=MAX_LINE_BYTES)
    hypotheses = read_lines(args.hypotheses, max_line_bytes=MAX_LINE_BYTES)
    if len(hypotheses) != len(pairs):
        raise ValueError(f"{args.hypotheses} has {len(hypotheses):,} lines for {len(pairs):,} pairs in {args.data}")
    _report(os.path.basename(args.hypotheses), scores(hypotheses, [t for _, t in pairs]))
    return 0


def _count(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a count >= 1, got {value}")
    return value


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("build", help="write train.tsv, valid.tsv and test.tsv")
    p.add_argument("out_dir", help="folder for the three TSV files (made if missing)")
    p.add_argument("--valid", type=_count, default=5000, help="validation pairs (default: 5000)")
    p.add_argument("--test", type=_count, default=5000, help="test pairs (default: 5000)")
    p.add_argument("--train", type=_count, default=None, help="training pairs (default: all the rest)")
    p.add_argument("--seed", type=int, default=0, help="seeds the split (default: 0)")
    p.add_argument("--lexicon", default=None, help="a lemma_lu.csv.gz (default: the installed lemminflect's)")
    p.set_defaults(run=cmd_build)
    p = sub.add_parser("baseline", help="copy and suffix-rule baselines on the test split")
    p.add_argument("data_dir", help="the folder 'build' wrote")
    p.set_defaults(run=cmd_baseline)
    p = sub.add_parser("score", help="exact match and token error rate of outputs, one line per pair")
    p.add_argument("data", help="the TSV file whose targets are the references")
    p.add_argument("hypotheses", help="the outputs, e.g. from s2sext translate")
    p.set_defaults(run=cmd_score)
    args = ap.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, OSError) as e:
        print(f"english_lemmas.py: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
