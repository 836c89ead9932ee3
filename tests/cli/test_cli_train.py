"""``s2sext train``: options reaching the model file, TSV data, teacher forcing, threads, and
--checkpoint/--resume.

Commands run in-process through ``main(argv)`` (output read with capsys) unless a test says
otherwise; the shared helpers are in cli_support.py and the shared tiny model in conftest.py.
"""
import math
import re

import numpy as np
import pytest

import s2sext
import s2sext.cli
from s2sext import Seq2Seq
from s2sext.data import make_task

from cli_support import TINY, assert_one_error_line, run, run_argparse_error, write_tsv_pairs


# ---------------------------------------------------------------------------------------------
# train


def test_train_builtin_task_writes_a_loadable_model(capsys, tmp_path):
    out_path = tmp_path / "m.s2s"
    rc, out, err = run(capsys, "train", *TINY, "--epochs", "2", "--out", out_path)
    assert rc == 0, err
    assert "Traceback" not in err
    loaded = Seq2Seq.load(out_path)
    cfg = loaded.config
    assert (cfg.embed_size, cfg.hidden_size, cfg.num_layers, cfg.attention, cfg.attention_style) == \
        (8, 16, 1, "dot", "luong")
    assert (cfg.src_tokenizer, cfg.tgt_tokenizer, cfg.bidirectional, cfg.reverse_source) == \
        ("char", "char", False, False)

    lines = out.splitlines()
    m = re.fullmatch(r"data: task reverse \(300 generated pairs, seed 0\): (\d+) training pairs, "
                     r"(\d+) validation pairs", lines[0])
    assert m, lines[0]
    n_train, n_valid = int(m.group(1)), int(m.group(2))
    assert n_train == 270 and 1 <= n_valid <= 30  # 10% held out, minus sources also seen in training
    assert lines[1].startswith(f"model: {loaded.num_parameters:,} parameters; attention dot (luong), "
                               f"embed 8, hidden 16, layers 1; vocab ")
    assert lines[1].endswith(f"vocab {cfg.src_vocab_size}/{cfg.tgt_vocab_size}")
    m = re.fullmatch(rf"best epoch ([12]): exact match (\d+\.\d\d)% on {n_valid} validation pairs; "
                     rf"model written to {re.escape(str(out_path))}", lines[-1])
    assert m, lines[-1]
    # one log line per epoch (on stderr, with the progress bar)
    epochs = re.findall(r"^epoch (\d+): train loss (\d+\.\d+), .*; valid loss \d+\.\d+, exact match "
                        r"\d+\.\d\d%, token error rate \d+\.\d\d%$", err, re.M)
    assert [e for e, _ in epochs] == ["1", "2"], err
    assert all(math.isfinite(float(loss)) for _, loss in epochs)


def test_train_architecture_options_reach_the_model_file(capsys, tmp_path):
    out_path = tmp_path / "m.s2s"
    rc, out, err = run(capsys, "train", *TINY, "--epochs", "1", "--out", out_path, "--attention", "concat",
                       "--style", "bahdanau", "--layers", "2", "--bidirectional", "--dropout", "0.2",
                       "--reverse-source", "--tokenizer", "word", "--optimizer", "sgd", "--lr", "0.1",
                       "--clip", "1", "--seed", "7")
    assert rc == 0, err
    cfg = Seq2Seq.load(out_path).config
    assert (cfg.attention, cfg.attention_style, cfg.num_layers, cfg.bidirectional, cfg.dropout,
            cfg.reverse_source, cfg.src_tokenizer, cfg.tgt_tokenizer) == \
        ("concat", "bahdanau", 2, True, 0.2, True, "word", "word")
    assert "attention concat (bahdanau)" in out and "layers 2, bidirectional" in out


def test_train_location_attention_and_max_source_length(capsys, tmp_path):
    out_path = tmp_path / "m.s2s"
    rc, _, err = run(capsys, "train", *TINY, "--epochs", "1", "--out", out_path, "--attention", "location",
                     "--max-source-length", "20", "--input-feeding")
    assert rc == 0, err
    cfg = Seq2Seq.load(out_path).config
    assert (cfg.attention, cfg.max_source_length, cfg.input_feeding) == ("location", 20, True)


def test_train_and_valid_from_tsv_files(capsys, tmp_path):
    pairs = make_task("reverse", 50, seed=3)
    train_tsv = write_tsv_pairs(tmp_path / "train.tsv", pairs[:40])
    valid_tsv = write_tsv_pairs(tmp_path / "valid.tsv", pairs[40:])
    out_path = tmp_path / "m.s2s"
    rc, out, err = run(capsys, "train", "--data", train_tsv, "--valid", valid_tsv, "--hidden", "16",
                       "--embed", "8", "--epochs", "1", "--batch-size", "16", "--no-progress", "--out", out_path)
    assert rc == 0, err
    assert out.splitlines()[0] == f"data: {train_tsv}: 40 training pairs, 10 validation pairs"
    assert out.splitlines()[-1].endswith(f"on 10 validation pairs; model written to {out_path}")
    loaded = Seq2Seq.load(out_path)
    # the vocabularies come from the training file only
    assert set(loaded.src_vocab.tokens[4:]) == {c for s, _ in pairs[:40] for c in s}


def test_train_tsv_with_valid_split_count(capsys, tmp_path):
    pairs = make_task("reverse", 50, seed=4)
    data = write_tsv_pairs(tmp_path / "all.tsv", pairs)
    rc, out, err = run(capsys, "train", "--data", data, "--valid-split", "12", "--hidden", "8", "--embed", "4",
                       "--epochs", "1", "--no-progress", "--out", tmp_path / "m.s2s")
    assert rc == 0, err
    assert out.splitlines()[0] == f"data: {data}: 38 training pairs, 12 validation pairs"


def test_train_word_tokenizer_from_tsv_and_translate(capsys, tmp_path):
    pairs = [("the cat sleeps", "le chat dort"), ("a dog runs", "un chien court"),
             ("the dog sleeps", "le chien dort"), ("a cat runs", "un chat court")] * 3
    data = write_tsv_pairs(tmp_path / "w.tsv", pairs)
    out_path = tmp_path / "w.s2s"
    rc, out, err = run(capsys, "train", "--data", data, "--valid", data, "--tokenizer", "word", "--hidden", "8",
                       "--embed", "4", "--epochs", "2", "--no-progress", "--out", out_path)
    assert rc == 0, err
    loaded = Seq2Seq.load(out_path)
    assert loaded.config.src_tokenizer == loaded.config.tgt_tokenizer == "word"
    words = {"le", "chat", "dort", "un", "chien", "court"}
    assert set(loaded.tgt_vocab.tokens[4:]) == words
    inputs = tmp_path / "in.txt"
    inputs.write_text("the cat runs\n\na dog sleeps\n", encoding="utf-8")
    rc, out, err = run(capsys, "translate", "--model", out_path, "--max-length", "6", inputs)
    assert rc == 0, err
    lines = out.split("\n")
    assert lines[-1] == "" and len(lines) == 4  # three lines, each ended by a newline
    assert lines[1] == ""
    for line in (lines[0], lines[2]):
        assert set(line.split()) <= words | {"<unk>"}
        assert "  " not in line  # words joined by single spaces
    assert [lines[0], lines[2]] == loaded.translate(["the cat runs", "a dog sleeps"], max_length=6)


def test_train_per_side_tokenizers(capsys, tmp_path):
    """Characters in, words out (a pronunciation lexicon's shape): --src-tokenizer and
    --tgt-tokenizer each override --tokenizer for their side, and the model file keeps both."""
    pairs = [("cat", "K AE T"), ("act", "AE K T"), ("tack", "T AE K"), ("at", "AE T")] * 3
    data = write_tsv_pairs(tmp_path / "g2p.tsv", pairs)
    for argv, sides in [(("--src-tokenizer", "char", "--tgt-tokenizer", "word"), ("char", "word")),
                        (("--tokenizer", "word", "--src-tokenizer", "char"), ("char", "word")),
                        (("--tgt-tokenizer", "word"), ("char", "word")),
                        (("--tokenizer", "word", "--tgt-tokenizer", "char"), ("word", "char"))]:
        out_path = tmp_path / "g2p.s2s"
        rc, out, err = run(capsys, "train", "--data", data, "--valid", data, *argv, "--hidden", "8", "--embed", "4",
                           "--epochs", "1", "--no-progress", "--out", out_path)
        assert rc == 0, err
        loaded = Seq2Seq.load(out_path)
        assert (loaded.config.src_tokenizer, loaded.config.tgt_tokenizer) == sides
        src_tokens = {"c", "a", "t", "k"} if sides[0] == "char" else {"cat", "act", "tack", "at"}
        tgt_tokens = {"K", "AE", "T"} if sides[1] == "word" else {"K", "A", "E", "T", " "}
        assert set(loaded.src_vocab.tokens[4:]) == src_tokens
        assert set(loaded.tgt_vocab.tokens[4:]) == tgt_tokens
    err = run_argparse_error(capsys, "train", "--data", data, "--src-tokenizer", "bytes", "--out", tmp_path / "x.s2s")
    assert "--src-tokenizer: invalid choice: 'bytes' (choose from 'char', 'word', 'sentencepiece')" in err


def test_train_vocabulary_limits(capsys, tmp_path):
    """--src-vocab-size / --tgt-vocab-size keep each side's most frequent tokens (the four specials
    counted), --min-frequency drops rare tokens on both sides; dropped tokens read as <unk>."""
    pairs = [("aab", "xxy"), ("aac", "xxz"), ("abd", "xyw")] * 2
    data = write_tsv_pairs(tmp_path / "v.tsv", pairs)
    out_path = tmp_path / "v.s2s"
    common = ("--data", data, "--valid", data, "--hidden", "8", "--embed", "4", "--epochs", "1", "--no-progress",
              "--out", out_path)
    rc, out, err = run(capsys, "train", *common, "--src-vocab-size", "6", "--tgt-vocab-size", "5")
    assert rc == 0, err
    loaded = Seq2Seq.load(out_path)
    assert list(loaded.src_vocab.tokens[4:]) == ["a", "b"] and list(loaded.tgt_vocab.tokens[4:]) == ["x"]
    rc, out, err = run(capsys, "train", *common, "--min-frequency", "3")  # counts: a 10, b 4, c 2, d 2; x 10, y 4
    assert rc == 0, err
    loaded = Seq2Seq.load(out_path)
    assert set(loaded.src_vocab.tokens[4:]) == {"a", "b"} and set(loaded.tgt_vocab.tokens[4:]) == {"x", "y"}
    rc, out, err = run(capsys, "train", *common, "--min-frequency", "100")
    assert_one_error_line(rc, err, "--min-frequency 100 leaves no source token besides the four specials")
    err = run_argparse_error(capsys, "train", *common, "--src-vocab-size", "4")
    assert "--src-vocab-size: expected an integer from 5 to 10,000,000, got '4'" in err


def test_train_teacher_forcing_schedule(capsys, tmp_path):
    out_path = tmp_path / "m.s2s"
    rc, out, err = run(capsys, "train", *TINY, "--epochs", "1", "--out", out_path,
                       "--teacher-forcing", "linear:c=0.01,floor=0.5")
    assert rc == 0, err
    assert out_path.exists()
    # 270 training pairs in batches of 32: 9 updates with eps_i = max(0.5, 1 - 0.01 i)
    expected = np.mean([max(0.5, 1 - 0.01 * i) for i in range(9)])
    assert re.search(rf"^epoch 1: .*teacher forcing {expected:.3f}; ", err, re.M), err


def test_train_threads_option(capsys, tmp_path):
    rc, _, err = run(capsys, "train", *TINY, "--epochs", "1", "--threads", "1", "--out", tmp_path / "m.s2s")
    assert rc == 0, err
    assert s2sext.get_num_threads() == 1  # (the autouse fixture restores it)


def _weights_and_state(path):
    model, extra, extra_tensors = Seq2Seq.load(path, return_extra=True)
    return model.params, extra, extra_tensors


def test_checkpoint_resume_equals_uninterrupted_run(capsys, tmp_path):
    """Train 1 epoch with --checkpoint, then --resume to 2 epochs: the weights, optimiser state and
    best model equal those of one uninterrupted 2-epoch run exactly (same seed, same threads)."""
    common = [*TINY, "--seed", "3", "--threads", "1"]
    full_ck, full_out = tmp_path / "full.ckpt", tmp_path / "full.s2s"
    rc, full_stdout, err = run(capsys, "train", *common, "--epochs", "2", "--checkpoint", full_ck, "--out", full_out)
    assert rc == 0, err

    part_ck, part_out = tmp_path / "part.ckpt", tmp_path / "part.s2s"
    rc, _, err = run(capsys, "train", *common, "--epochs", "1", "--checkpoint", part_ck, "--out", part_out)
    assert rc == 0, err
    _, extra, _ = _weights_and_state(part_ck)
    assert extra["epoch"] == 1 and extra["updates"] == 9 and extra["optimizer"] == "adam"

    resumed_ck = tmp_path / "resumed.ckpt"
    rc, resumed_stdout, err = run(capsys, "train", *common, "--epochs", "2", "--resume", part_ck,
                                  "--checkpoint", resumed_ck, "--out", part_out)
    assert rc == 0, err
    assert f"resumed from {part_ck} after epoch 1 (9 updates)" in err
    assert re.findall(r"^epoch (\d+):", err, re.M) == ["2"]  # only the remaining epoch is trained

    full_params, full_extra, full_tensors = _weights_and_state(full_ck)
    resumed_params, resumed_extra, resumed_tensors = _weights_and_state(resumed_ck)
    assert full_params.keys() == resumed_params.keys()
    for name in full_params:
        assert np.array_equal(full_params[name], resumed_params[name]), name
    assert full_tensors.keys() == resumed_tensors.keys() and full_tensors
    for name in full_tensors:  # Adam's moments
        assert np.array_equal(full_tensors[name], resumed_tensors[name]), name
    assert resumed_extra["epoch"] == full_extra["epoch"] == 2
    assert resumed_extra["updates"] == full_extra["updates"] == 18
    assert resumed_extra["best"] == full_extra["best"]
    assert [r["epoch"] for r in resumed_extra["history"]] == [1, 2]
    for a, b in zip(full_extra["history"], resumed_extra["history"]):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}

    # the best model (--out) and the summary line agree too
    best_full, best_resumed = Seq2Seq.load(full_out).params, Seq2Seq.load(part_out).params
    for name in best_full:
        assert np.array_equal(best_full[name], best_resumed[name]), name
    summary = re.compile(r"^best epoch (\d+): exact match (\S+)% on (\d+) validation pairs", re.M)
    assert summary.search(full_stdout).groups() == summary.search(resumed_stdout).groups()


def test_resume_with_another_optimizer_is_one_error_line(capsys, tmp_path):
    ck = tmp_path / "ck.s2s"
    assert run(capsys, "train", *TINY, "--epochs", "1", "--checkpoint", ck, "--out", tmp_path / "m.s2s")[0] == 0
    rc, _, err = run(capsys, "train", *TINY, "--epochs", "2", "--resume", ck, "--optimizer", "sgd",
                     "--out", tmp_path / "m.s2s")
    assert_one_error_line(rc, err, ck, "sgd")


def test_resume_that_trains_nothing_does_not_claim_a_written_model(capsys, tmp_path):
    ck = tmp_path / "ck.s2s"
    assert run(capsys, "train", *TINY, "--epochs", "1", "--checkpoint", ck, "--out", tmp_path / "a.s2s")[0] == 0
    new_out = tmp_path / "new.s2s"
    rc, out, err = run(capsys, "train", *TINY, "--epochs", "1", "--resume", ck, "--out", new_out)
    if rc == 0 and f"model written to {new_out}" in out:
        assert new_out.exists()
    else:
        assert_one_error_line(rc, err)


def test_resume_reads_targets_with_the_checkpoints_target_tokenizer(capsys, tmp_path):
    """train --resume once applied the source tokenizer to both sides."""
    pairs = [(f"{a}{b}", f"w{a} w{b}") for a in range(10) for b in range(10)]
    model = Seq2Seq([s for s, _ in pairs], [t for _, t in pairs], embed_size=4, hidden_size=8,
                    src_tokenizer="char", tgt_tokenizer="word", seed=0)
    data = write_tsv_pairs(tmp_path / "d.tsv", pairs)
    checkpoint = tmp_path / "ck.s2s"
    from s2sext.data import encode_pairs, split_pairs
    from s2sext.train import train

    train_pairs, valid_pairs = split_pairs(pairs, 0.1, seed=0)
    encode = lambda p: encode_pairs(p, model.src_vocab, model.tgt_vocab, "char", "word")  # noqa: E731
    train(model, encode(train_pairs), encode(valid_pairs), epochs=1, batch_size=32, checkpoint=checkpoint,
          out=tmp_path / "m.s2s", seed=0, progress=False, log=lambda m: None)
    # targets of two words but five characters: within --max-target-length 2 in word tokens only
    rc, out, err = run(capsys, "train", "--data", data, "--resume", checkpoint, "--checkpoint", checkpoint,
                       "--epochs", "2", "--max-target-length", "2", "--no-progress", "--out", tmp_path / "m.s2s")
    assert rc == 0, err
    assert "resuming" in out


def test_word_model_max_source_length_is_counted_in_tokens(capsys, tmp_path):
    """--tokenizer word once set max_source_length from the characters of the longest source."""
    pairs = [(" ".join(["longword"] * 70), "x"), ("a b", "y")] * 10
    data = write_tsv_pairs(tmp_path / "d.tsv", pairs)
    out_path = tmp_path / "m.s2s"
    rc, _, err = run(capsys, "train", "--data", data, "--tokenizer", "word", "--valid-split", "2", "--hidden", "8",
                     "--embed", "4", "--epochs", "1", "--no-progress", "--out", out_path)
    assert rc == 0, err
    assert Seq2Seq.load(out_path).config.max_source_length == 140  # 2 x 70 words (not 2 x 629 characters)


# ---------------------------------------------------------------------------------------------
# Training that converges on real data: schedules, smoothing, stopping, token batches, filtering


def test_train_the_documented_command_records_its_settings(capsys, tmp_path, monkeypatch):
    """The command issue 12 names, verbatim (plus a tiny model's sizes), on a small pair of TSV files."""
    pairs = [(f"{a}{b}{c}", f"w{c} w{b} w{a}") for a in range(6) for b in range(6) for c in range(3)]
    write_tsv_pairs(tmp_path / "T.tsv", pairs[:90])
    write_tsv_pairs(tmp_path / "V.tsv", pairs[90:])
    monkeypatch.chdir(tmp_path)
    rc, out, err = run(capsys, "train", "--data", "T.tsv", "--valid", "V.tsv", "--src-tokenizer", "char",
                       "--tgt-tokenizer", "word", "--time-budget", "1800", "--patience", "3", "--lr-schedule",
                       "plateau", "--label-smoothing", "0.1", "--out", "M.s2s", "--hidden", "8", "--embed", "4",
                       "--no-progress")
    assert rc == 0, err
    assert re.findall(r"^epoch (\d+): train loss \d+\.\d+, lr 0\.001, ", err, re.M) == ["1", "2", "3"]
    model, extra, _ = Seq2Seq.load(tmp_path / "M.s2s", return_extra=True)
    record = extra["training"]
    assert record["lr_schedule"]["kind"] == "plateau" and record["lr_schedule"]["lr"] == 0.001
    assert (record["label_smoothing"], record["patience"], record["time_budget"]) == (0.1, 3, 1800.0)
    assert (record["epochs_run"], record["stop_reason"], record["seed"]) == (3, "epochs", 0)
    assert (record["batch_size"], record["batch_tokens"], record["length_filter"]) == (128, None, None)
    assert (model.config.src_tokenizer, model.config.tgt_tokenizer) == ("char", "word")


def test_train_schedule_options_reach_the_rates(capsys, tmp_path):
    out_path = tmp_path / "m.s2s"
    rc, _, err = run(capsys, "train", *TINY, "--epochs", "3", "--out", out_path, "--lr", "0.01", "--lr-schedule",
                     "step", "--lr-decay", "0.1", "--lr-step-epochs", "2", "--warmup-steps", "4", "--min-lr",
                     "0.0005", "--embed-dropout", "0.1", "--batch-tokens", "100")
    assert rc == 0, err
    assert re.findall(r"^epoch \d+: train loss \d+\.\d+, lr (\S+), ", err, re.M) == ["0.01", "0.01", "0.001"]
    record = Seq2Seq.load(out_path, return_extra=True)[1]["training"]
    assert record["lr_schedule"] == {"kind": "step", "lr": 0.01, "decay": 0.1, "step_epochs": 2, "warmup_steps": 4,
                                     "min_lr": 0.0005, "patience": 1}
    assert (record["embed_dropout"], record["batch_size"], record["batch_tokens"]) == (0.1, None, 100)


def test_train_skip_long_drops_pairs_and_says_how_many(capsys, tmp_path):
    pairs = [("ab", "ba"), ("abcdefg", "gfedcba"), ("abc", "cba"), ("bca", "acbacbacb"), ("cab", "bac")] * 4
    data = write_tsv_pairs(tmp_path / "d.tsv", pairs)
    valid = write_tsv_pairs(tmp_path / "v.tsv", pairs[:5])
    common = ["train", "--data", data, "--valid", valid, "--hidden", "8", "--embed", "4", "--epochs", "1",
              "--no-progress", "--out", tmp_path / "m.s2s", "--max-source-length", "5", "--max-target-length", "6"]
    rc, _, err = run(capsys, *common)
    assert_one_error_line(rc, err, "the source has 7 char tokens; the longest accepted is 5")
    rc, _, err = run(capsys, *common, "--skip-long")
    assert rc == 0, err
    assert ("dropped 8 of 20 training pairs and 2 of 5 validation pairs longer than 5 source / 6 target tokens"
            in err.splitlines())
    model, extra, _ = Seq2Seq.load(tmp_path / "m.s2s", return_extra=True)
    # the vocabularies come from the pairs kept: d, e, f, g occur only in dropped ones
    assert set(model.src_vocab.tokens[4:]) == set(model.tgt_vocab.tokens[4:]) == set("abc")
    record = extra["training"]
    assert record["length_filter"] == {"max_source_length": 5, "max_target_length": 6, "train_pairs_dropped": 8,
                                       "train_pairs_kept": 12, "valid_pairs_dropped": 2, "valid_pairs_kept": 3}
    rc, _, err = run(capsys, *common, "--skip-long", "--truncate")
    assert_one_error_line(rc, err, "--truncate", "--skip-long", "not both")
    rc, _, err = run(capsys, *common[:-4], "--max-source-length", "1", "--skip-long")
    assert_one_error_line(rc, err, "every training pair is longer than 1 source or 1024 target tokens")


def test_train_resume_continues_schedule_and_stopping(capsys, tmp_path):
    """--resume with a plateau schedule, warmup, token batches and --patience: the checkpoint of two
    runs split by --resume equals that of one run, history (rates) included."""
    common = [*TINY, "--seed", "5", "--threads", "1", "--lr", "0.02", "--lr-schedule", "plateau", "--lr-patience",
              "0", "--warmup-steps", "5", "--batch-tokens", "90", "--patience", "4", "--label-smoothing", "0.05"]
    rc, _, err = run(capsys, "train", *common, "--epochs", "3", "--checkpoint", tmp_path / "full.ck",
                     "--out", tmp_path / "full.s2s")
    assert rc == 0, err
    rc, _, err = run(capsys, "train", *common, "--epochs", "1", "--checkpoint", tmp_path / "part.ck",
                     "--out", tmp_path / "part.s2s")
    assert rc == 0, err
    rc, _, err = run(capsys, "train", *common, "--epochs", "3", "--resume", tmp_path / "part.ck",
                     "--checkpoint", tmp_path / "resumed.ck", "--out", tmp_path / "part.s2s")
    assert rc == 0, err
    full_params, full_extra, _ = _weights_and_state(tmp_path / "full.ck")
    resumed_params, resumed_extra, _ = _weights_and_state(tmp_path / "resumed.ck")
    for name in full_params:
        assert np.array_equal(full_params[name], resumed_params[name]), name
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(full_extra["history"]) == strip(resumed_extra["history"])
    assert full_extra["lr_schedule"] == resumed_extra["lr_schedule"]
    rc, _, err = run(capsys, "train", *common, "--epochs", "3", "--resume", tmp_path / "part.ck", "--lr-decay", "0.2",
                     "--out", tmp_path / "part.s2s")
    assert_one_error_line(rc, err, "learning-rate settings", "differ")


@pytest.mark.parametrize("option, value", [
    ("--lr-decay", "0"), ("--lr-decay", "1"), ("--lr-decay", "nan"), ("--lr-decay", "-0.5"),
    ("--lr-step-epochs", "0"), ("--lr-patience", "-1"), ("--warmup-steps", "-1"), ("--min-lr", "-1"),
    ("--min-lr", "nan"), ("--label-smoothing", "1.5"), ("--label-smoothing", "nan"), ("--embed-dropout", "1"),
    ("--embed-dropout", "-0.1"), ("--patience", "0"), ("--patience", "-2"), ("--time-budget", "0"),
    ("--time-budget", "-10"), ("--time-budget", "nan"), ("--time-budget", "inf"), ("--batch-tokens", "0"),
    ("--lr-schedule", "cosine"),
])
def test_train_refuses_bad_schedule_and_stopping_values(capsys, option, value):
    err = run_argparse_error(capsys, "train", *TINY, option, value)
    assert option in err and value in err


def test_train_refuses_min_lr_above_lr(capsys, tmp_path):
    rc, _, err = run(capsys, "train", *TINY, "--lr", "0.001", "--min-lr", "0.01", "--out", tmp_path / "m.s2s")
    assert_one_error_line(rc, err, "min_lr must be a number in [0, lr=0.001]", "0.01")
