"""``s2sext eval``'s scores (one line each), --metric, --output, a missing sacrebleu; and
``s2sext train --metric``.

Commands run in-process through ``main(argv)`` (output read with capsys); the shared helpers are in
cli_support.py and the shared tiny model in conftest.py.
"""
import re
import sys

import pytest
import sacrebleu

import s2sext.train
from s2sext import Seq2Seq
from s2sext.data import build_vocabs, make_task
from s2sext.seq2seq_file import read_seq2seq

from cli_support import TINY, assert_one_error_line, run, run_argparse_error, write_tsv_pairs


def edit_distance(a, b):
    """Levenshtein distance, one row of the textbook table at a time."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


@pytest.fixture
def no_sacrebleu(monkeypatch):
    for name in [m for m in sys.modules if m == "sacrebleu" or m.startswith("sacrebleu.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sacrebleu", None)


# eval's and translate's longest output, given to both (eval's default depends on the targets)
LONGEST = ["--max-length", "12"]


@pytest.fixture
def scored(tmp_path, model):
    """25 reverse pairs, half of them with the target the model produces (so some match)."""
    pairs = make_task("reverse", 25, seed=22)
    outputs = model.translate([s for s, _ in pairs], beam=2, max_length=12)
    pairs = [(s, outputs[i] if i % 2 and outputs[i] else t) for i, (s, t) in enumerate(pairs)]
    return pairs, write_tsv_pairs(tmp_path / "test.tsv", pairs)


def test_eval_prints_every_score_computed_from_what_translate_gets(capsys, tmp_path, model_path, model, scored):
    pairs, data = scored
    output = tmp_path / "hyps.txt"
    rc, out, err = run(capsys, "eval", "--model", model_path, "--data", data, "--beam", "2", "--output", output,
                       *LONGEST)
    assert rc == 0 and err == "", err
    outputs = model.translate([s for s, _ in pairs], beam=2, max_length=12)
    targets = [t for _, t in pairs]
    correct = sum(o == t for o, t in zip(outputs, targets))
    edits = sum(edit_distance(o, t) for o, t in zip(outputs, targets))  # char targets: a token is a character
    tokens = sum(len(t) for t in targets)
    assert 0 < correct < len(pairs)
    bleu, chrf = sacrebleu.corpus_bleu(outputs, [targets]), sacrebleu.corpus_chrf(outputs, [targets])
    assert out.splitlines() == [
        f"exact match: {100 * correct / 25:.2f}% ({correct}/25)",
        f"token error rate (CER): {100 * edits / tokens:.2f}% ({edits} edits / {tokens} reference char tokens)",
        f"BLEU: {bleu.score:.2f} (nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{sacrebleu.__version__})",
        f"chrF: {chrf.score:.2f} (nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:{sacrebleu.__version__})",
    ]
    # --output: the outputs, one a line, in input order
    assert output.read_text(encoding="utf-8") == "".join(o + "\n" for o in outputs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hyps.txt", "test.tsv"]  # no temporary left


def test_eval_metric_chooses_the_lines(capsys, model_path, scored):
    _, data = scored
    rc, out, err = run(capsys, "eval", "--model", model_path, "--data", data)
    assert rc == 0, err
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    for metric, label in (["chrf", "chrF"], ["token_error_rate", "token error rate (CER)"]):
        rc, out, err = run(capsys, "eval", "--model", model_path, "--data", data, "--metric", metric)
        assert rc == 0 and out == f"{label}: {lines[label]}\n", err
    rc, out, err = run(capsys, "eval", "--model", model_path, "--data", data, "--metric", "bleu",
                       "--metric", "exact_match", "--metric", "bleu")
    assert rc == 0 and out == f"BLEU: {lines['BLEU']}\nexact match: {lines['exact match']}\n", err
    err = run_argparse_error(capsys, "eval", "--model", model_path, "--data", data, "--metric", "wer")
    assert "--metric: invalid choice: 'wer'" in err
    assert all(name in err for name in ("exact_match", "token_error_rate", "bleu", "chrf"))


def test_eval_names_the_word_error_rate_for_a_word_model(capsys, tmp_path):
    pairs = [(f"{a} {b}", f"w{a} w{b} end") for a in range(4) for b in range(4)]
    model = Seq2Seq(*build_vocabs(pairs, "word", "word"), embed_size=4, hidden_size=8, src_tokenizer="word",
                    tgt_tokenizer="word", seed=0)
    model.save(tmp_path / "m.s2s")
    output = tmp_path / "out.txt"
    data = write_tsv_pairs(tmp_path / "d.tsv", pairs)
    rc, out, err = run(capsys, "eval", "--model", tmp_path / "m.s2s", "--data", data,
                       "--metric", "token_error_rate", "--output", output)
    assert rc == 0, err
    outputs = model.translate([s for s, _ in pairs], max_length=8)
    edits = sum(edit_distance(o.split(), t.split()) for o, (_, t) in zip(outputs, pairs))
    assert out == f"token error rate (WER): {100 * edits / 48:.2f}% ({edits} edits / 48 reference word tokens)\n"
    assert output.read_text(encoding="utf-8").splitlines() == outputs


def test_eval_without_sacrebleu(capsys, tmp_path, model_path, scored, no_sacrebleu):
    _, data = scored
    rc, out, err = run(capsys, "eval", "--model", model_path, "--data", data)
    assert rc == 0
    assert [line.split(":")[0] for line in out.splitlines()] == ["exact match", "token error rate (CER)"]
    assert err == "s2sext: note: BLEU and chrF need sacrebleu: pip install 's2sext[metrics]'\n"
    output = tmp_path / "hyps.txt"
    for metric in ("bleu", "chrf"):
        rc, out, err = run(capsys, "eval", "--model", model_path, "--data", data, "--metric", metric,
                           "--output", output)
        assert out == "" and not output.exists()
        assert_one_error_line(rc, err, f"--metric {metric}: BLEU and chrF need sacrebleu: "
                                       "pip install 's2sext[metrics]'")


def test_eval_output_is_checked_before_the_work(capsys, tmp_path, monkeypatch, model_path, scored):
    _, data = scored
    monkeypatch.setattr(s2sext.train, "evaluate", lambda *a, **k: pytest.fail("evaluated before --output was checked"))
    folder = tmp_path / "out"
    folder.mkdir()
    rc, out, err = run(capsys, "eval", "--model", model_path, "--data", data, "--output", folder)
    assert_one_error_line(rc, err, f"--output {folder}: is a directory")
    rc, out, err = run(capsys, "eval", "--model", model_path, "--data", data, "--output", tmp_path / "no" / "h.txt")
    assert_one_error_line(rc, err, "--output", "does not exist")
    assert out == "" and list(folder.iterdir()) == []


def test_eval_output_replaces_a_file_atomically(capsys, tmp_path, model_path, model, scored):
    pairs, data = scored
    output = tmp_path / "hyps.txt"
    output.write_text("old\n", encoding="utf-8")
    link = tmp_path / "link.txt"
    link.symlink_to(output)
    rc, out, err = run(capsys, "eval", "--model", model_path, "--data", data, "--output", link, "--metric",
                       "exact_match", *LONGEST)
    assert rc == 0, err
    assert link.is_symlink()  # written through the link, as every output of s2sext is
    assert output.read_text(encoding="utf-8").splitlines() == model.translate([s for s, _ in pairs], max_length=12)


# ---------------------------------------------------------------------------------------------
# train --metric


def test_train_metric_is_recorded_and_reported(capsys, tmp_path):
    out_path, ck = tmp_path / "m.s2s", tmp_path / "ck.s2s"
    rc, out, err = run(capsys, "train", *TINY, "--epochs", "2", "--out", out_path, "--checkpoint", ck,
                       "--metric", "token_error_rate")
    assert rc == 0, err
    extra = read_seq2seq(ck, return_extra=True)[5]
    assert extra["metric"] == "token_error_rate"
    rates = [r["valid_token_error_rate"] for r in extra["history"]]
    losses = [r["valid_loss"] for r in extra["history"]]
    best = min(range(2), key=lambda i: (rates[i], losses[i])) + 1
    m = re.fullmatch(r"best epoch (\d): token error rate (\d+\.\d\d)% on (\d+) validation pairs; model written to .*",
                     out.splitlines()[-1])
    assert m and int(m.group(1)) == best and m.group(2) == f"{rates[best - 1]:.2f}", out
    # resuming with another metric is one error line
    rc, out, err = run(capsys, "train", *TINY, "--epochs", "3", "--out", out_path, "--resume", ck)
    assert_one_error_line(rc, err, "picked its best epoch by token_error_rate, not exact_match")


@pytest.mark.parametrize("metric", ["bleu", "chrf"])
def test_train_metric_needing_sacrebleu_is_refused_before_training_without_it(capsys, tmp_path, no_sacrebleu, metric):
    rc, out, err = run(capsys, "train", *TINY, "--epochs", "1", "--out", tmp_path / "m.s2s", "--metric", metric)
    assert_one_error_line(rc, err, f"--metric {metric}: BLEU and chrF need sacrebleu: pip install 's2sext[metrics]'")
    assert out == "" and not (tmp_path / "m.s2s").exists()


def test_train_metric_bleu_logs_it(capsys, tmp_path):
    rc, out, err = run(capsys, "train", *TINY, "--epochs", "1", "--out", tmp_path / "m.s2s", "--metric", "bleu")
    assert rc == 0, err
    assert re.search(r"^epoch 1: train loss .*, exact match \d+\.\d\d%, token error rate \d+\.\d\d%, BLEU \d+\.\d\d$",
                     err, re.M), err
    assert re.fullmatch(r"best epoch 1: BLEU \d+\.\d\d on \d+ validation pairs; model written to .*",
                        out.splitlines()[-1])


def test_help_lists_the_metric_options(capsys):
    for command, texts in (("train", ["--metric", "(default: exact_match)"]), ("eval", ["--metric", "--output FILE"])):
        with pytest.raises(SystemExit):
            run(capsys, command, "--help")
        help_text = " ".join(capsys.readouterr().out.split())
        assert all(text in help_text for text in texts), help_text
        assert "{exact_match,token_error_rate,bleu,chrf}" in help_text
