"""The warning on stderr when inputs hold tokens the model's vocabulary lacks (they are read as
<unk>): translate, eval and plot name the input, count the texts and tokens and quote the most
frequent unknown tokens; training prints each vocabulary's coverage of the training tokens and warns
about the validation data. Known inputs give no warning."""

import re

import pytest

from cli_support import TINY, run, write_tsv_pairs
from s2sext.cli_inputs import UnknownTokens
from s2sext.text import Vocab

WARNING = re.compile(r"^s2sext: warning: (.*?): ([\d,]+) of ([\d,]+) (source|target)s? holds? tokens not in "
                     r"(.*?) (source|target) vocabulary, read as <unk> \(([\d,]+) of ([\d,]+) tokens, "
                     r"([\d,]+) distinct\): (.*)$")


def warnings_of(err):
    return [WARNING.match(line) for line in err.splitlines() if line.startswith("s2sext: warning:")]


def known_text(model):
    """A source the model's vocabulary holds entirely: its own first training-like tokens."""
    tokens = [t for t in model.src_vocab.tokens[4:]][:5]
    assert tokens
    return "".join(tokens) if model.config.src_tokenizer == "char" else " ".join(tokens)


def test_tally_counts_texts_tokens_and_examples_by_frequency(capsys):
    vocab = Vocab(["<pad>", "<sos>", "<eos>", "<unk>", "a", "b"])
    tally = UnknownTokens(vocab, "char").add(["ab", "axxy", "", "zzzx"])
    assert (tally.texts, tally.with_unknown, tally.tokens, tally.unknown) == (4, 2, 10, 7)
    assert tally.counts == {"x": 3, "z": 3, "y": 1}
    tally.warn("in.txt")
    (m,) = warnings_of(capsys.readouterr().err)
    assert m.group(1, 2, 3, 7, 8, 9) == ("in.txt", "2", "4", "7", "10", "3")
    assert m.group(10) == "'x' x3, 'z' x3, 'y' x1"


def test_tally_quotes_at_most_five_tokens_and_says_how_many_more(capsys):
    vocab = Vocab(["<pad>", "<sos>", "<eos>", "<unk>", "a"])
    UnknownTokens(vocab, "word", "target").add(["p q r s t u v a"]).warn("x.tsv", "the")
    (m,) = warnings_of(capsys.readouterr().err)
    assert m.group(2, 3, 4, 5) == ("1", "1", "target", "the")
    assert m.group(10).endswith("and 2 more") and m.group(10).count(" x1") == 5


def test_no_warning_when_every_token_is_known(capsys):
    vocab = Vocab(["<pad>", "<sos>", "<eos>", "<unk>", "a", "b"])
    UnknownTokens(vocab, "char").add(["ab", "ba"]).warn("in.txt")
    assert capsys.readouterr().err == ""


def test_translate_warns_once_for_all_batches(capsys, tmp_path, model_path, model):
    known = known_text(model)
    lines = [known, "Ω" + known, known, "ΩΩ", ""]
    path = tmp_path / "in.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rc, out, err = run(capsys, "translate", "--model", model_path, "--batch-size", "2", path)
    assert rc == 0 and len(out.splitlines()) == 5
    (m,) = warnings_of(err)
    assert m.group(1) == str(path)
    assert m.group(2, 3, 7, 9, 10) == ("2", "4", "3", "1", "'Ω' x3")  # the empty line is not counted


def test_translate_of_known_text_is_quiet(capsys, model_path, model, monkeypatch, tmp_path):
    path = tmp_path / "in.txt"
    path.write_text(known_text(model) + "\n", encoding="utf-8")
    rc, _, err = run(capsys, "translate", "--model", model_path, path)
    assert rc == 0 and "warning" not in err


def test_eval_warns_about_sources_and_targets(capsys, tmp_path, model_path, model):
    known = known_text(model)
    data = write_tsv_pairs(tmp_path / "t.tsv", [(known, known), ("€" + known, known), (known, known + "§§")])
    rc, _, err = run(capsys, "eval", "--model", model_path, "--data", data)
    assert rc == 0
    source, target = warnings_of(err)
    assert source.group(4, 2, 3, 10) == ("source", "1", "3", "'€' x1")
    assert target.group(4, 2, 3, 10) == ("target", "1", "3", "'§' x2")


def test_plot_warns_about_its_text(capsys, tmp_path, model_path, model):
    pytest.importorskip("matplotlib")
    rc, _, err = run(capsys, "plot", "--model", model_path, "Ω" + known_text(model), "--out", tmp_path / "p.png")
    assert rc == 0
    (m,) = warnings_of(err)
    assert m.group(1, 2, 3, 4) == ("TEXT", "1", "1", "source")


def test_train_reports_coverage_and_warns_about_validation(capsys, tmp_path):
    train = [("ab", "x y"), ("ba", "y x"), ("aab", "x x y"), ("abc", "x y z")] * 5
    valid = [("ab", "x y"), ("aQ", "x y"), ("b", "x w")]
    rc, out, err = run(capsys, "train", "--data", write_tsv_pairs(tmp_path / "t.tsv", train),
                       "--valid", write_tsv_pairs(tmp_path / "v.tsv", valid), "--tgt-tokenizer", "word",
                       "--src-vocab-size", "6", "--hidden", "8", "--embed", "4", "--epochs", "1", "--no-progress",
                       "--out", tmp_path / "m.s2s")
    assert rc == 0, err
    # 'c' (5 of 50 source tokens) and nothing of the target fall outside the vocabularies
    (coverage,) = [line for line in out.splitlines() if line.startswith("vocabulary: ")]
    assert "source 6 tokens covering 90.00% of the training sources' 50 tokens" in coverage
    assert "target 7 tokens covering 100.00% of the training targets' 50 tokens" in coverage
    source, target = warnings_of(err)
    assert source.group(1, 2, 3, 5, 10) == (str(tmp_path / "v.tsv"), "1", "3", "the", "'Q' x1")
    assert target.group(2, 3, 10) == ("1", "3", "'w' x1")
