"""examples/english_lemmas.py: the lexicon reader, the pairs, the split by source, the baselines and
the metrics. The tests that read the real lexicon skip when lemminflect is not installed."""

import gzip
import importlib.util
import os

import pytest

from s2sext.data import read_tsv

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "english_lemmas.py")


def _load_example():
    spec = importlib.util.spec_from_file_location("english_lemmas_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lemmas = _load_example()

needs_lemminflect = pytest.mark.skipif(
    importlib.util.find_spec("lemminflect") is None,
    reason="lemminflect is not installed (pip install lemminflect, or the 'examples' extra)")


def _write_lexicon(path, lines):
    with gzip.open(path, "wb") as f:
        f.write("".join(line + "\n" for line in lines).encode("utf-8"))
    return str(path)


def _splits(folder):
    return {name: read_tsv(os.path.join(folder, f"{name}.tsv")) for name in lemmas.SPLIT_NAMES}


@needs_lemminflect
def test_build_a_tiny_subset_of_the_real_lexicon(tmp_path, capsys):
    out = tmp_path / "data"
    assert lemmas.main(["build", str(out), "--train", "300", "--valid", "40", "--test", "50", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    splits = _splits(out)
    assert [len(splits[n]) for n in lemmas.SPLIT_NAMES] == [300, 40, 50]
    assert "train: 300 pairs" in printed and "test: 50 pairs" in printed

    sources = {name: [s for s, _ in pairs] for name, pairs in splits.items()}
    for name in lemmas.SPLIT_NAMES:
        assert len(set(sources[name])) == len(sources[name]), f"a source twice in {name}"
    assert not set(sources["test"]) & set(sources["train"])
    assert not set(sources["test"]) & set(sources["valid"])
    assert not set(sources["valid"]) & set(sources["train"])

    # Every pair is a row of the lexicon, and its word has no other lemma there.
    lemmas_of = {}
    for word, _, spellings in lemmas.read_lexicon(lemmas.installed_lexicon_path()):
        lemmas_of.setdefault(word, set()).update(spellings)
    for pairs in splits.values():
        for source, target in pairs:
            assert lemmas_of[source] == {target}


@needs_lemminflect
def test_the_split_depends_on_the_seed_only_and_test_not_on_the_training_size(tmp_path, capsys):
    def build(folder, *extra):
        assert lemmas.main(["build", str(tmp_path / folder), "--valid", "30", "--test", "30", *extra]) == 0
        return _splits(tmp_path / folder)

    a = build("a", "--train", "100", "--seed", "5")
    again = build("again", "--train", "100", "--seed", "5")
    more = build("more", "--train", "400", "--seed", "5")
    other = build("other", "--train", "100", "--seed", "6")
    capsys.readouterr()
    assert a == again
    assert more["test"] == a["test"] and more["valid"] == a["valid"] and more["train"][:100] == a["train"]
    assert other["test"] != a["test"]


@needs_lemminflect
def test_baseline_and_score_on_a_tiny_split(tmp_path, capsys):
    pytest.importorskip("rapidfuzz")
    out = tmp_path / "data"
    assert lemmas.main(["build", str(out), "--train", "2000", "--valid", "200", "--test", "200"]) == 0
    test = read_tsv(out / "test.tsv")
    capsys.readouterr()
    assert lemmas.main(["baseline", str(out)]) == 0
    printed = capsys.readouterr().out
    identity = sum(s == t for s, t in test)
    assert f"exact match {100 * identity / len(test):6.2f}% ({identity:,}/200)" in printed.splitlines()[0]
    assert "suffix rules n=" in printed

    hypotheses = tmp_path / "hyp.txt"
    hypotheses.write_text("".join(t + "\n" for _, t in test), encoding="utf-8")
    assert lemmas.main(["score", str(out / "test.tsv"), str(hypotheses)]) == 0
    assert "exact match 100.00% (200/200)   token error rate   0.00%" in capsys.readouterr().out
    hypotheses.write_text("x\n", encoding="utf-8")
    assert lemmas.main(["score", str(out / "test.tsv"), str(hypotheses)]) == 2
    assert "error: " in capsys.readouterr().err


def test_one_pair_per_word_and_words_with_several_lemmas_left_out(tmp_path):
    path = _write_lexicon(tmp_path / "lu.csv.gz", [
        "walked,verb,walk",
        "walked,adj,walk",             # same lemma under another category: one pair
        "ranking,verb,rank",
        "ranking,noun,ranking",        # two lemmas: left out
        "cloverleaves,noun,cloverleaf/clover-leaf",  # two spellings: left out
        "cats,noun,cat",
    ])
    pairs, ambiguous = lemmas.unambiguous_pairs(lemmas.read_lexicon(path))
    assert pairs == [("cats", "cat"), ("walked", "walk")]
    assert ambiguous == 2


@pytest.mark.parametrize("line, message", [
    ("walked,verb", "expected 'word,category"),
    ("walked,verb,walk,x", "expected 'word,category"),
    (",verb,walk", "empty word or lemma"),
    ("walked,verb,walk/", "empty word or lemma"),
    ("walked,pronoun,walk", "category 'pronoun'"),
    ("wal\tked,verb,walk", "a TAB or line break"),
])
def test_read_lexicon_refuses_malformed_lines(tmp_path, line, message):
    path = _write_lexicon(tmp_path / "lu.csv.gz", ["cats,noun,cat", line])
    with pytest.raises(lemmas.LexiconError, match=message) as info:
        lemmas.read_lexicon(path)
    assert ":2:" in str(info.value)


def test_read_lexicon_refuses_an_empty_or_oversized_file(tmp_path, monkeypatch):
    with pytest.raises(lemmas.LexiconError, match="no rows"):
        lemmas.read_lexicon(_write_lexicon(tmp_path / "empty.csv.gz", []))
    monkeypatch.setattr(lemmas, "MAX_LEXICON_BYTES", 10)
    with pytest.raises(lemmas.LexiconError, match="more than 10 bytes"):
        lemmas.read_lexicon(_write_lexicon(tmp_path / "big.csv.gz", ["cats,noun,cat", "dogs,noun,dog"]))


def test_split_by_source_checks_its_counts():
    pairs = [(f"w{i}", "x") for i in range(10)]
    parts = lemmas.split_by_source(pairs, valid=2, test=3, seed=0)
    assert [len(parts[n]) for n in lemmas.SPLIT_NAMES] == [5, 2, 3]
    assert sorted(p for part in parts.values() for p in part) == sorted(pairs)
    with pytest.raises(ValueError, match="leaves no training pair"):
        lemmas.split_by_source(pairs, valid=5, test=5, seed=0)
    with pytest.raises(ValueError, match=r"train must be a count in \[1, 5\]"):
        lemmas.split_by_source(pairs, valid=2, test=3, seed=0, train=6)
    with pytest.raises(ValueError, match="one pair per source"):
        lemmas.split_by_source(pairs + [("w0", "y")], valid=2, test=3, seed=0)


@pytest.mark.parametrize("source, target, rule", [
    ("studies", "study", (3, "y")), ("walked", "walk", (2, "")), ("cat", "cat", (0, "")),
    ("men", "man", (2, "an")), ("was", "be", (3, "be")),
])
def test_edit_rule_turns_the_source_into_the_target(source, target, rule):
    assert lemmas.edit_rule(source, target) == rule
    assert lemmas.apply_rule(source, rule) == target


def test_suffix_rules_take_the_longest_ending_seen_in_training():
    train = [("walked", "walk"), ("talked", "talk"), ("tried", "try"), ("cried", "cry"), ("dried", "dry"),
             ("red", "red"), ("bed", "bed"), ("bred", "breed"), ("cats", "cat"), ("dogs", "dog"), ("glass", "glass")]
    rules = lemmas.SuffixRules(train, max_suffix=4)
    assert rules("stalked") == "stalk"     # ending "lked"
    assert rules("fried") == "fry"         # "ried": 3 of its kind
    assert rules("bred") == "breed"        # the whole word seen in training
    assert rules("hogs") == "hog"          # "ogs"
    # No ending but the empty one: the most frequent rule overall. (3, "y") and (0, "") are seen 3
    # times each; the tie goes to the smaller rule, (0, ""), whatever the order of the pairs.
    assert rules("zzz") == "zzz"
    assert lemmas.SuffixRules(train[::-1], max_suffix=0)("walked") == "walked"
    train.append(("spied", "spy"))
    assert lemmas.SuffixRules(train, max_suffix=0)("walked") == "waly"  # remove 3, append "y"


def test_scores_exact_match_and_token_error_rate():
    pytest.importorskip("rapidfuzz")
    result = lemmas.scores(["walk", "cat", "ab"], ["walk", "cats", "ba"])
    assert result["exact"] == 1 and result["total"] == 3
    assert result["exact_match"] == pytest.approx(1 / 3)
    # Edits: 0 + 1 (insert "s") + 2 (swap = two substitutions) over 4 + 4 + 2 reference characters.
    assert result["token_error_rate"] == pytest.approx(3 / 10)
    words = lemmas.scores(["a b c"], ["a c"], tokenizer="word")
    assert words["token_error_rate"] == pytest.approx(1 / 2)
    with pytest.raises(ValueError, match="2 hypotheses for 1 references"):
        lemmas.scores(["a", "b"], ["a"])
