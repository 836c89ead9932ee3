"""The ``s2sext`` command (s2sext.cli): help, train/resume, translate, eval, plot, kernels, demo,
and the error contract -- bad arguments and bad data end in one ``s2sext: error: ...`` line on
stderr with exit status 2, never a traceback.

Commands run in-process through ``main(argv)`` (output read with capsys); a few run in a
subprocess (``python -m s2sext --help``, real stdin, a peak-memory measurement). Models are tiny
(reverse task, 300 pairs, hidden 16, embed 8, one or two epochs), so the whole file takes a few
seconds.

Each bug found in the CLI has a test here that reproduces it.
"""
import io
import math
import os
import re
import runpy
import stat
import subprocess
import sys
import threading

import numpy as np
import pytest

import s2sext
import s2sext.cli
from s2sext import Seq2Seq
from s2sext.cli import main
from s2sext.data import make_task
from s2sext.plot import PlotUnavailableError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# The tiny model every training run here uses (epochs are given per call).
TINY = ["--task", "reverse", "--task-size", "300", "--hidden", "16", "--embed", "8",
        "--batch-size", "32", "--no-progress"]


# ---------------------------------------------------------------------------------------------
# Helpers and fixtures


def run(capsys, *argv):
    """main(argv) in-process -> (exit status, stdout, stderr)."""
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def run_argparse_error(capsys, *argv):
    """A call that argparse rejects: SystemExit(2); returns stderr."""
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert info.value.code == 2, (out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("s2sext: error: "), err  # one line, as the README says
    return err


def assert_one_error_line(rc, err, *fragments):
    """Exit status 2 and exactly one ``s2sext: error: ...`` line holding every fragment."""
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one error line, got {lines!r}"
    line = lines[0]
    assert line.startswith("s2sext: error: "), line
    for fragment in fragments:
        assert str(fragment) in line, f"{fragment!r} not in {line!r}"
    return line


def write_tsv_pairs(path, pairs):
    path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _restore_threads():
    """--threads changes the process-wide kernel thread count; put it back after every test."""
    before = s2sext.get_num_threads()
    yield
    s2sext.set_num_threads(before)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A tiny dot-attention model trained for two epochs by the CLI (shared, read-only)."""
    path = tmp_path_factory.mktemp("model") / "tiny.s2s"
    assert main(["train", *TINY, "--epochs", "2", "--seed", "1", "--out", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def model(model_path):
    return Seq2Seq.load(model_path)


# ---------------------------------------------------------------------------------------------
# --help

COMMAND_OPTIONS = {
    "train": ["--data", "--task", "--task-size", "--valid", "--valid-split", "--tokenizer",
              "--reverse-source", "--attention", "--style", "--input-feeding", "--embed", "--hidden",
              "--layers", "--bidirectional", "--dropout", "--max-source-length", "--batch-size",
              "--epochs", "--lr", "--optimizer", "--clip", "--teacher-forcing", "--seed", "--out",
              "--checkpoint", "--resume", "--threads", "--no-progress"],
    "translate": ["--model", "input", "--beam", "--n-best", "--max-length", "--length-penalty",
                  "--batch-size", "--threads"],
    "eval": ["--model", "--data", "--beam", "--max-length", "--batch-size", "--threads"],
    "plot": ["--model", "text", "--out"],
    "demo": ["--out-dir", "--size", "--valid", "--epochs", "--seed", "--threads", "--no-progress"],
    "kernels": [],
}


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    out, err = capsys.readouterr()
    assert info.value.code == 0
    assert out.startswith("usage: s2sext")
    for command in COMMAND_OPTIONS:
        assert re.search(rf"^\s+{command}\s+\S", out, re.M), f"{command} not listed with a help line:\n{out}"
    assert err == ""


@pytest.mark.parametrize("command", list(COMMAND_OPTIONS))
def test_command_help_lists_its_options(capsys, command):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    out, err = capsys.readouterr()
    assert info.value.code == 0
    assert out.startswith(f"usage: s2sext {command}")
    assert "-h, --help" in out
    for option in COMMAND_OPTIONS[command]:
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", out), f"{option} missing from {command} --help"
    assert err == ""


def test_train_help_documents_choices_and_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for text in ("dates,addition,reverse", "char,word", "luong,bahdanau", "adam,sgd",
                 "none,dot,scaled_dot,general,concat,location", "linear:c=1e-4,floor=0.5"):
        assert text in out, text


def test_no_command_prints_help_and_returns_2(capsys):
    rc, out, err = run(capsys)
    assert rc == 2
    assert "usage: s2sext" in out + err
    assert "train" in out + err


def test_python_dash_m_help_in_a_subprocess():
    result = subprocess.run([sys.executable, "-m", "s2sext", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: s2sext")
    for command in COMMAND_OPTIONS:
        assert command in result.stdout
    assert "Traceback" not in result.stderr


def test_dunder_main_passes_the_exit_status_on(capsys, monkeypatch, tmp_path):
    """``python -m s2sext`` exits with main()'s return value (here 2, for a missing model file)."""
    missing = tmp_path / "missing.s2s"
    monkeypatch.setattr(sys, "argv", ["s2sext", "translate", "--model", str(missing), str(tmp_path / "in.txt")])
    monkeypatch.delitem(sys.modules, "s2sext.__main__", raising=False)
    with pytest.raises(SystemExit) as info:
        runpy.run_module("s2sext", run_name="__main__")
    assert info.value.code == 2
    assert_one_error_line(2, capsys.readouterr().err, missing)


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
                        r"\d+\.\d\d%$", err, re.M)
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


# ---------------------------------------------------------------------------------------------
# translate


def test_translate_file_one_line_per_input_line(capsys, tmp_path, model_path, model):
    sources = [s for s, _ in make_task("reverse", 5, seed=11)]
    lines = [sources[0], "", sources[1], "   ", sources[2], sources[3], "", sources[4]]
    inputs = tmp_path / "in.txt"
    inputs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rc, out, err = run(capsys, "translate", "--model", model_path, inputs)
    assert rc == 0, err
    assert err == ""
    got = out.split("\n")
    assert got[-1] == ""
    got = got[:-1]
    assert len(got) == len(lines)
    expected = iter(model.translate(sources))
    for line, result in zip(lines, got):
        if line.strip():
            assert result == next(expected)
        else:
            assert result == ""  # empty (or blank) input lines give empty output lines


def test_translate_stdin_and_crlf(capsys, monkeypatch, model_path, model):
    sources = [s for s, _ in make_task("reverse", 3, seed=12)]
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{sources[0]}\r\n\r\n{sources[1]}\n{sources[2]}"))
    rc, out, err = run(capsys, "translate", "--model", model_path)
    assert rc == 0, err
    want = model.translate(sources)
    assert out == f"{want[0]}\n\n{want[1]}\n{want[2]}\n"
    # "-" reads stdin too
    monkeypatch.setattr(sys, "stdin", io.StringIO(sources[0] + "\n"))
    rc, out2, err = run(capsys, "translate", "--model", model_path, "-")
    assert rc == 0 and out2 == f"{want[0]}\n"


def test_translate_empty_input_prints_nothing(capsys, monkeypatch, model_path):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert run(capsys, "translate", "--model", model_path) == (0, "", "")


def test_translate_batch_size_does_not_change_the_output(capsys, tmp_path, model_path):
    sources = [s for s, _ in make_task("reverse", 9, seed=13)]
    inputs = tmp_path / "in.txt"
    inputs.write_text("\n".join(sources) + "\n", encoding="utf-8")
    outputs = [run(capsys, "translate", "--model", model_path, "--batch-size", bs, inputs)[1] for bs in (1, 4, 64)]
    assert outputs[0] == outputs[1] == outputs[2]
    assert len(outputs[0].splitlines()) == 9


def test_translate_max_length_bounds_the_output(capsys, tmp_path, model_path, model):
    inputs = tmp_path / "in.txt"
    inputs.write_text("abcdef\n", encoding="utf-8")
    rc, out, _ = run(capsys, "translate", "--model", model_path, "--max-length", "3", inputs)
    assert rc == 0
    assert out == model.translate(["abcdef"], max_length=3)[0] + "\n"
    assert len(out.rstrip("\n")) <= 3  # char tokens: at most 3 characters


def test_translate_beam_n_best(capsys, tmp_path, model_path, model):
    sources = [s for s, _ in make_task("reverse", 3, seed=14)]
    inputs = tmp_path / "in.txt"
    inputs.write_text(f"{sources[0]}\n\n{sources[1]}\n{sources[2]}\n", encoding="utf-8")
    rc, out, err = run(capsys, "translate", "--model", model_path, "--beam", "3", "--n-best", "2", inputs)
    assert rc == 0, err
    lines = out.split("\n")[:-1]
    assert len(lines) == 4 and lines[1] == ""
    best1 = model.translate(sources, beam=3)
    for line, source, best in zip([lines[0], lines[2], lines[3]], sources, best1):
        candidates = line.split(" ||| ")
        assert len(candidates) == 2, line
        parsed = [re.fullmatch(r"(.*) \((-?\d+\.\d{4})\)", c) for c in candidates]
        assert all(parsed), line
        texts = [p.group(1) for p in parsed]
        scores = [float(p.group(2)) for p in parsed]
        assert scores[0] >= scores[1]
        assert texts[0] == best  # the first candidate is what --beam 3 alone prints
        assert texts[0] != texts[1]
        want = model.translate([source], beam=3, n_best=2)[0]
        assert texts == [t for t, _ in want]


def test_translate_beam_alone_prints_plain_lines(capsys, tmp_path, model_path, model):
    inputs = tmp_path / "in.txt"
    inputs.write_text("abc\nhello\n", encoding="utf-8")
    rc, out, _ = run(capsys, "translate", "--model", model_path, "--beam", "4", "--length-penalty", "0.6", inputs)
    assert rc == 0
    want = model.translate(["abc", "hello"], beam=4, length_penalty=0.6)
    assert out == "".join(w + "\n" for w in want)
    assert " ||| " not in out


def test_translate_n_best_above_beam_is_one_error_line(capsys, tmp_path, model_path):
    inputs = tmp_path / "in.txt"
    inputs.write_text("abc\n", encoding="utf-8")
    rc, out, err = run(capsys, "translate", "--model", model_path, "--beam", "2", "--n-best", "3", inputs)
    assert out == ""
    assert_one_error_line(rc, err, "--n-best", "3", "--beam", "2")


class _UnreadableStdin(io.StringIO):
    def __iter__(self):
        raise AssertionError("stdin was read")

    def read(self, *args):
        raise AssertionError("stdin was read")


def test_translate_n_best_above_beam_fails_before_reading_stdin(capsys, monkeypatch, model_path):
    monkeypatch.setattr(sys, "stdin", _UnreadableStdin())
    rc, _, err = run(capsys, "translate", "--model", model_path, "--n-best", "2")
    assert_one_error_line(rc, err, "--n-best")


def test_translate_input_not_utf8_is_one_error_line(capsys, tmp_path, model_path):
    inputs = tmp_path / "latin1.txt"
    inputs.write_bytes("abc\ncaf\xe9\n".encode("latin-1"))
    rc, out, err = run(capsys, "translate", "--model", model_path, inputs)
    assert out == ""
    assert_one_error_line(rc, err, inputs, "UTF-8")


def test_translate_missing_input_file_is_one_error_line(capsys, tmp_path, model_path):
    missing = tmp_path / "no-such-input.txt"
    rc, out, err = run(capsys, "translate", "--model", model_path, missing)
    assert out == ""
    assert_one_error_line(rc, err, missing)


def test_translate_without_model_option_is_an_argparse_error(capsys):
    err = run_argparse_error(capsys, "translate", "x.txt")
    assert "--model" in err.strip().splitlines()[-1]


# ---------------------------------------------------------------------------------------------
# eval


def test_eval_exact_match_agrees_with_the_python_api(capsys, tmp_path):
    from s2sext.data import build_vocabs, encode_pairs
    from s2sext.train import train

    # a model that has learned enough to end its outputs with <eos>
    pairs = make_task("reverse", 1500, seed=0, max_length=5)
    src_vocab, tgt_vocab = build_vocabs(pairs, "char", "char")
    trained = Seq2Seq(src_vocab, tgt_vocab, embed_size=16, hidden_size=48, seed=0)
    train(trained, encode_pairs(pairs, src_vocab, tgt_vocab, "char", "char"), epochs=3, batch_size=32, lr=0.01,
          progress=False, log=lambda m: None)
    path = tmp_path / "trained.s2s"
    trained.save(path)
    sources = [s for s, _ in make_task("reverse", 30, seed=21, max_length=5)]
    src_ids, lengths = trained.encode_texts(sources)
    ids = trained.greedy(src_ids, lengths, max_length=60)
    finished = [2 in row.tolist() and row.tolist().index(2) > 0 for row in ids]
    assert sum(finished[0::2]) >= 4
    predictions = [trained.decode_ids(row) for row in ids]
    # targets: the model's own finished output on the even lines, something else elsewhere
    eval_pairs, expected = [], 0
    for i, (source, prediction) in enumerate(zip(sources, predictions)):
        if i % 2 == 0 and finished[i]:
            eval_pairs.append((source, prediction))
            expected += 1
        else:
            eval_pairs.append((source, prediction + "q" if prediction else "q"))
    data = write_tsv_pairs(tmp_path / "test.tsv", eval_pairs)
    for batch_size in ("256", "7"):
        rc, out, err = run(capsys, "eval", "--model", path, "--data", data, "--batch-size", batch_size)
        assert rc == 0, err
        m = re.fullmatch(r"exact match: (\d+\.\d\d)% \((\d+)/(\d+)\)\n", out)
        assert m, out
        assert int(m.group(3)) == len(eval_pairs)
        assert int(m.group(2)) == expected
        assert m.group(1) == f"{100 * expected / len(eval_pairs):.2f}"


def test_eval_on_task_pairs_counts_what_translate_gets_right(capsys, tmp_path, model_path, model):
    pairs = make_task("reverse", 25, seed=22)
    data = write_tsv_pairs(tmp_path / "test.tsv", pairs)
    rc, out, err = run(capsys, "eval", "--model", model_path, "--data", data, "--beam", "2")
    assert rc == 0, err
    correct = sum(p == t for p, (_, t) in zip(model.translate([s for s, _ in pairs], beam=2), pairs))
    assert out == f"exact match: {100 * correct / 25:.2f}% ({correct}/25)\n"


# ---------------------------------------------------------------------------------------------
# plot


def test_plot_writes_a_png(capsys, tmp_path, model_path, model):
    pytest.importorskip("matplotlib")
    png = tmp_path / "heat.png"
    rc, out, err = run(capsys, "plot", "--model", model_path, "abc de", "--out", png)
    assert rc == 0, err
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    assert out == f"abc de -> {model.translate(['abc de'])[0]}; heatmap written to {png}\n"
    assert not [p for p in tmp_path.iterdir() if p != png]  # no temporary file left behind


def test_plot_of_a_model_without_attention_is_one_error_line(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    no_attention = tmp_path / "none.s2s"
    assert run(capsys, "train", *TINY, "--epochs", "1", "--attention", "none", "--out", no_attention)[0] == 0
    png = tmp_path / "heat.png"
    rc, _, err = run(capsys, "plot", "--model", no_attention, "abc", "--out", png)
    assert_one_error_line(rc, err, "attention")
    assert not png.exists()


def test_plot_refuses_a_text_longer_than_the_model_accepts(capsys, tmp_path, model_path):
    png = tmp_path / "heat.png"
    rc, out, err = run(capsys, "plot", "--model", model_path, "x" * 129, "--out", png)
    assert out == "" and not png.exists()
    assert_one_error_line(rc, err, "TEXT: the source has 129 char tokens; the longest accepted is 128 "
                                   "(the model's max_source_length)")


def test_plot_without_matplotlib_is_one_error_line(capsys, monkeypatch, tmp_path, model_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    rc, _, err = run(capsys, "plot", "--model", model_path, "abc", "--out", tmp_path / "heat.png")
    assert_one_error_line(rc, err, "matplotlib")


# ---------------------------------------------------------------------------------------------
# kernels, demo


def test_kernels_gradient_check(capsys):
    rc, out, err = run(capsys, "kernels")
    assert rc == 0, out + err
    assert "gradient check: ok" in out.splitlines()
    assert re.search(r"dL/dw_hh\[0,0\]: backward -?\d+\.\d+, finite difference -?\d+\.\d+", out)


def test_demo_small(capsys, tmp_path):
    out_dir = tmp_path / "demo"
    rc, out, err = run(capsys, "demo", "--size", "600", "--valid", "100", "--epochs", "1", "--out-dir", out_dir,
                       "--no-progress")
    assert rc == 0, err
    m = re.search(r"^held-out exact match: (\d+\.\d\d)% \((\d+)/(\d+)\)$", out, re.M)
    assert m, out
    assert int(m.group(2)) <= int(m.group(3)) <= 100
    assert re.search(r"^data: (\d+) training pairs, (\d+) held-out pairs", out, re.M)
    assert re.search(r"^epoch 1: train loss \d+\.\d+", out, re.M)
    model_file = out_dir / "dates.s2s"
    cfg = Seq2Seq.load(model_file).config
    assert (cfg.attention, cfg.hidden_size, cfg.reverse_source) == ("dot", 256, True)
    assert f"model: {model_file}; total time" in out
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "attention heatmap skipped:" in out
    else:
        assert (out_dir / "attention.png").read_bytes()[:8] == PNG_SIGNATURE


# ---------------------------------------------------------------------------------------------
# Errors: one line, exit status 2, no traceback

BAD_TSV = [
    (b"ab\tba\ncd\tdc\nno tab here\n", 3, "TAB"),
    (b"ab\tba\n\n\ncd\t\n", 4, "empty target"),
    (b"ab\tba\n\tdc\n", 2, "empty source"),
    (b"ab\tba\ncd\tdc\tx\n", 2, "TAB"),
    (b"ab\tba\n\xff\xfe\tdc\n", 2, "UTF-8"),
]


@pytest.mark.parametrize("content, lineno, problem", BAD_TSV)
@pytest.mark.parametrize("role", ["train --data", "train --valid", "eval --data"])
def test_bad_tsv_line_names_file_and_line(capsys, tmp_path, model_path, content, lineno, problem, role):
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(content)
    good = write_tsv_pairs(tmp_path / "good.tsv", make_task("reverse", 20, seed=5))
    if role == "train --data":
        argv = ["train", "--data", bad, "--valid", good, "--out", tmp_path / "m.s2s", "--no-progress"]
    elif role == "train --valid":
        argv = ["train", "--data", good, "--valid", bad, "--out", tmp_path / "m.s2s", "--no-progress"]
    else:
        argv = ["eval", "--model", model_path, "--data", bad]
    rc, out, err = run(capsys, *argv)
    assert out == ""
    assert_one_error_line(rc, err, f"{bad}:{lineno}: ", problem)
    assert not (tmp_path / "m.s2s").exists()


def test_empty_tsv_is_one_error_line(capsys, tmp_path):
    empty = tmp_path / "empty.tsv"
    empty.write_bytes(b"\n\n")
    rc, _, err = run(capsys, "train", "--data", empty, "--out", tmp_path / "m.s2s", "--no-progress")
    assert_one_error_line(rc, err, empty, "no pairs")


@pytest.mark.parametrize("command", ["train", "eval"])
def test_word_tsv_with_blank_source_names_file_and_line(capsys, tmp_path, command):
    good = write_tsv_pairs(tmp_path / "good.tsv", [("the cat", "le chat"), ("a dog", "un chien")])
    bad = tmp_path / "bad.tsv"
    bad.write_text("the cat\tle chat\n \tun chien\n", encoding="utf-8")
    word_model = tmp_path / "w.s2s"
    if command == "train":
        argv = ["train", "--data", bad, "--valid", good, "--tokenizer", "word", "--hidden", "8", "--embed", "4",
                "--epochs", "1", "--no-progress", "--out", word_model]
    else:
        assert run(capsys, "train", "--data", good, "--valid", good, "--tokenizer", "word", "--hidden", "8",
                   "--embed", "4", "--epochs", "1", "--no-progress", "--out", word_model)[0] == 0
        argv = ["eval", "--model", word_model, "--data", bad]
    rc, _, err = run(capsys, *argv)
    assert rc == 2
    assert f"{bad}:2:" in err.strip().splitlines()[-1]


@pytest.mark.parametrize("command", ["translate", "eval", "plot", "train --resume"])
def test_missing_model_file_is_one_error_line(capsys, tmp_path, command):
    missing = tmp_path / "no-such-model.s2s"
    data = write_tsv_pairs(tmp_path / "d.tsv", make_task("reverse", 20, seed=6))
    argv = {
        "translate": ["translate", "--model", missing, data],
        "eval": ["eval", "--model", missing, "--data", data],
        "plot": ["plot", "--model", missing, "abc", "--out", tmp_path / "p.png"],
        "train --resume": ["train", *TINY, "--resume", missing, "--out", tmp_path / "m.s2s"],
    }[command]
    rc, out, err = run(capsys, *argv)
    assert "model written" not in out
    assert_one_error_line(rc, err, missing, "No such file")


def _corrupt(path, how):
    data = bytearray(path.read_bytes())
    if how == "flipped":
        for i in range(len(data) // 2, len(data) // 2 + 4):
            data[i] ^= 0xFF
    elif how == "header-flipped":
        data[40] ^= 0x01
    elif how == "truncated":
        data = data[: len(data) - 100]
    elif how == "not-a-model":
        data = bytearray(b"source\ttarget\n" * 10)
    elif how == "empty":
        data = bytearray()
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["flipped", "header-flipped", "truncated", "not-a-model", "empty"])
@pytest.mark.parametrize("command", ["translate", "eval", "plot", "train --resume"])
def test_corrupted_model_file_is_one_error_line_naming_it(capsys, tmp_path, model_path, command, how):
    bad = tmp_path / "bad.s2s"
    bad.write_bytes(model_path.read_bytes())
    _corrupt(bad, how)
    data = write_tsv_pairs(tmp_path / "d.tsv", make_task("reverse", 20, seed=6))
    argv = {
        "translate": ["translate", "--model", bad, data],
        "eval": ["eval", "--model", bad, "--data", data],
        "plot": ["plot", "--model", bad, "abc", "--out", tmp_path / "p.png"],
        "train --resume": ["train", *TINY, "--resume", bad, "--out", tmp_path / "m.s2s"],
    }[command]
    rc, out, err = run(capsys, *argv)
    assert "model written" not in out and "exact match" not in out
    assert_one_error_line(rc, err, bad)
    assert not (tmp_path / "p.png").exists() and not (tmp_path / "m.s2s").exists()


def test_data_and_task_together_is_one_error_line(capsys, tmp_path):
    data = write_tsv_pairs(tmp_path / "d.tsv", make_task("reverse", 20, seed=6))
    rc, out, err = run(capsys, "train", "--data", data, *TINY, "--out", tmp_path / "m.s2s")
    assert out == ""
    assert_one_error_line(rc, err, "--data", "--task")
    assert not (tmp_path / "m.s2s").exists()


def test_neither_data_nor_task_is_one_error_line(capsys, tmp_path):
    rc, out, err = run(capsys, "train", "--epochs", "1", "--out", tmp_path / "m.s2s")
    assert out == ""
    assert_one_error_line(rc, err, "--data", "--task")


def test_missing_data_file_is_one_error_line(capsys, tmp_path):
    missing = tmp_path / "nope.tsv"
    rc, _, err = run(capsys, "train", "--data", missing, "--out", tmp_path / "m.s2s")
    assert_one_error_line(rc, err, missing, "No such file")


@pytest.mark.parametrize("option, value, fragment", [
    ("--attention", "bogus", "invalid choice"),
    ("--style", "vaswani", "invalid choice"),
    ("--tokenizer", "bpe", "invalid choice"),
    ("--optimizer", "rmsprop", "invalid choice"),
    ("--task", "sorting", "invalid choice"),
    ("--teacher-forcing", "bogus", "bogus"),
    ("--teacher-forcing", "linear:floor=0.5", "needs c"),
    ("--teacher-forcing", "constant:1.5", "1.5"),
    ("--teacher-forcing", "exponential:k=2", "k=2"),
    ("--teacher-forcing", "linear:c=0.1,q=3", "q"),
    ("--teacher-forcing", "linear:c=nan", "c=nan"),  # once trained silently with teacher forcing 0
    ("--teacher-forcing", "inverse_sigmoid:k=inf", "k=inf"),
    ("--hidden", "0", "positive integer"),
    ("--epochs", "two", "positive integer"),
    ("--dropout", "-0.5", ">= 0"),
    ("--dropout", "1", "< 1"),  # once refused only after the data had been loaded
    ("--dropout", "5", "< 1"),
    ("--teacher-forcing", "linear:c=1,c=2", "c is given twice"),  # once: the last value won
    ("--lr", "0", "> 0"),
    ("--clip", "nan", ">= 0"),
    ("--valid-split", "0", "fraction"),
    ("--valid-split", "2.5", "whole number"),
    ("--threads", "0", "positive integer"),
])
def test_bad_train_argument_is_an_argparse_error(capsys, option, value, fragment):
    err = run_argparse_error(capsys, "train", "--task", "reverse", option, value)
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"s2sext: error: s2sext train: argument {option}"), last
    assert fragment in last


@pytest.mark.parametrize("argv", [
    ["translate", "--model", "m.s2s", "--beam", "0"],
    ["translate", "--model", "m.s2s", "--length-penalty", "-1"],
    ["eval", "--model", "m.s2s"],
    ["plot", "--model", "m.s2s", "abc"],
    ["demo", "--size", "0"],
    ["frobnicate"],
])
def test_other_argparse_errors_exit_2(capsys, argv):
    run_argparse_error(capsys, *argv)


@pytest.mark.parametrize("argv", [["train", "--task", "reverse", "--valid-split", "inf"],
                                  ["demo", "--valid", "inf"]])
def test_infinite_valid_split_is_an_argparse_error(capsys, argv):
    err = run_argparse_error(capsys, *argv)
    assert "inf" in err.strip().splitlines()[-1]


def test_bad_model_values_are_one_error_line(capsys, tmp_path):
    rc, _, err = run(capsys, "train", *TINY, "--epochs", "1", "--attention", "none", "--style", "bahdanau",
                     "--out", tmp_path / "m.s2s")
    assert_one_error_line(rc, err, "bahdanau")
    rc, _, err = run(capsys, "train", *TINY, "--valid-split", "400", "--out", tmp_path / "m.s2s")
    assert_one_error_line(rc, err, "400")
    assert not (tmp_path / "m.s2s").exists()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_diverging_training_is_one_error_line(capsys, tmp_path):
    rc, _, err = run(capsys, "train", *TINY, "--epochs", "2", "--optimizer", "sgd", "--lr", "1e38", "--clip", "0",
                     "--out", tmp_path / "m.s2s")
    assert rc == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("s2sext: error: ") and "loss" in last


def test_out_in_missing_directory_names_the_out_path(capsys, tmp_path):
    out_path = tmp_path / "no-such-dir" / "m.s2s"
    rc, _, err = run(capsys, "train", *TINY, "--epochs", "1", "--out", out_path)
    assert rc == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("s2sext: error: ")
    assert str(out_path) in last and ".tmp" not in last


# ---------------------------------------------------------------------------------------------
# Numeric options: every one range-checked when parsed, one error line naming it


@pytest.mark.parametrize("argv, option, value", [
    (["translate", "--model", "m.s2s", "--max-length", "1000000000000"], "--max-length", "1000000000000"),
    (["translate", "--model", "m.s2s", "--max-length", "100001"], "--max-length", "100001"),
    (["translate", "--model", "m.s2s", "--beam", "1001"], "--beam", "1001"),
    (["translate", "--model", "m.s2s", "--beam", "9223372036854775808"], "--beam", "9223372036854775808"),
    (["translate", "--model", "m.s2s", "--n-best", "0"], "--n-best", "0"),
    (["translate", "--model", "m.s2s", "--batch-size", "10000000"], "--batch-size", "10000000"),
    (["translate", "--model", "m.s2s", "--length-penalty", "1e308"], "--length-penalty", "1e308"),
    (["translate", "--model", "m.s2s", "--length-penalty", "nan"], "--length-penalty", "nan"),
    (["translate", "--model", "m.s2s", "--threads", "99999999999"], "--threads", "99999999999"),
    (["translate", "--model", "m.s2s", "--threads", "1025"], "--threads", "1025"),
    (["translate", "--model", "m.s2s", "--max-source-length", "0"], "--max-source-length", "0"),
    (["eval", "--model", "m.s2s", "--data", "d.tsv", "--max-length", "1000000000000"], "--max-length",
     "1000000000000"),
    (["eval", "--model", "m.s2s", "--data", "d.tsv", "--beam", "0"], "--beam", "0"),
    (["eval", "--model", "m.s2s", "--data", "d.tsv", "--max-target-length", "1000001"], "--max-target-length",
     "1000001"),
    (["train", "--task", "reverse", "--hidden", "1000000"], "--hidden", "1000000"),
    (["train", "--task", "reverse", "--embed", "65537"], "--embed", "65537"),
    (["train", "--task", "reverse", "--layers", "65"], "--layers", "65"),
    (["train", "--task", "reverse", "--task-size", "100000000"], "--task-size", "100000000"),
    (["train", "--task", "reverse", "--epochs", "10000000"], "--epochs", "10000000"),
    (["train", "--task", "reverse", "--batch-size", "0"], "--batch-size", "0"),
    (["train", "--task", "reverse", "--lr", "inf"], "--lr", "inf"),
    (["train", "--task", "reverse", "--clip", "inf"], "--clip", "inf"),
    (["train", "--task", "reverse", "--dropout", "inf"], "--dropout", "inf"),
    (["train", "--task", "reverse", "--seed", "-1"], "--seed", "-1"),
    (["train", "--task", "reverse", "--seed", str(2**63)], "--seed", str(2**63)),
    (["train", "--task", "reverse", "--max-source-length", "1000000"], "--max-source-length", "1000000"),
    (["train", "--task", "reverse", "--max-target-length", "0"], "--max-target-length", "0"),
    (["train", "--task", "reverse", "--threads", "5000"], "--threads", "5000"),
    (["demo", "--size", "100000000"], "--size", "100000000"),
    (["demo", "--valid", "1e300"], "--valid", "1e300"),
    (["train", "--task", "reverse", "--valid-split", "1e300"], "--valid-split", "1e300"),
    (["demo", "--seed", "-3"], "--seed", "-3"),
])
def test_numeric_option_out_of_range_is_an_argparse_error(capsys, argv, option, value):
    """--max-length 1000000000000 once ended in a traceback (a 7 TiB allocation); --threads
    99999999999 was refused only after the model had loaded."""
    err = run_argparse_error(capsys, *argv)
    line = err.strip()
    assert f"argument {option}: expected " in line and repr(value) in line, line


@pytest.mark.parametrize("argv", [
    ["translate", "--model", "m.s2s", "--max-length", "100000", "--beam", "1000", "--n-best", "1000",
     "--length-penalty", "10", "--threads", "1024", "--batch-size", "1000000", "--max-source-length", "100000"],
    ["train", "--task", "reverse", "--hidden", "65536", "--layers", "64", "--seed", str(2**63 - 1),
     "--lr", "1e38", "--clip", "0", "--max-target-length", "100000", "--task-size", "10000000"],
])
def test_numeric_options_at_their_bounds_parse(argv):
    args = s2sext.cli.build_parser().parse_args(argv)
    assert args.func.__name__ == f"cmd_{argv[0]}"


# ---------------------------------------------------------------------------------------------
# Input limits: a line longer than the limit is refused naming it (or cut with --truncate)
# before anything is encoded


def _forbid_encoding(monkeypatch):
    """Make any encoding or translating an AssertionError (main() does not catch it)."""
    def refuse(*args, **kwargs):
        raise AssertionError("the input was encoded before its length was checked")

    monkeypatch.setattr(Seq2Seq, "encode_texts", refuse)
    monkeypatch.setattr(Seq2Seq, "translate", refuse)
    monkeypatch.setattr(s2sext.cli, "_encode", refuse)


@pytest.mark.parametrize("options", [[], ["--beam", "2"], ["--beam", "3", "--n-best", "2"]])
def test_translate_refuses_a_10_mb_line_before_encoding_it(capsys, monkeypatch, tmp_path, model_path, model,
                                                           options):
    """One 10 MB line once made translate take 5.5 GB and --beam end in a MemoryError traceback."""
    assert model.config.max_source_length == 128  # max(128, 2 x the longest training source)
    inputs = tmp_path / "in.txt"
    inputs.write_text("abc\n" + "x" * 10_000_000 + "\nabc\n", encoding="utf-8")
    _forbid_encoding(monkeypatch)
    rc, out, err = run(capsys, "translate", "--model", model_path, *options, inputs)
    assert out == ""
    # 64 bytes a token of the limit: the line is refused before it is read whole
    assert_one_error_line(rc, err, f"{inputs}:2: the line has more than 8,192 bytes")
    inputs.write_text("abc\n" + "x" * 1_000 + "\nabc\n", encoding="utf-8")
    rc, out, err = run(capsys, "translate", "--model", model_path, *options, inputs)
    assert out == ""
    assert_one_error_line(rc, err, f"{inputs}:2: the source has 1,000 char tokens; the longest accepted "
                                   "is 128 (the model's max_source_length", "--truncate")


def test_translate_refuses_a_long_line_on_stdin(capsys, monkeypatch, model_path):
    monkeypatch.setattr(sys, "stdin", io.StringIO("abc\n\n" + "y" * 129 + "\n"))
    rc, out, err = run(capsys, "translate", "--model", model_path)
    assert out == ""
    assert_one_error_line(rc, err, "<stdin>:3: the source has 129 char tokens; the longest accepted is 128")


# Runs argv[2:] with an address-space cap (so that a regression fails instead of swapping) and
# writes its peak resident memory to argv[1]. A child's peak includes the memory of the process it
# was forked from (Linux keeps the larger of the two across exec), so the command is started from
# this small interpreter and not from pytest.
MEASURE_PEAK = """
import resource, subprocess, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
rc = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as f:
    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(rc)
"""


def test_translate_10_mb_line_on_stdin_in_bounded_memory(tmp_path, model_path):
    """The real command in a subprocess, its peak memory measured: before the limit, the
    encoder's states for 10**7 steps took gigabytes."""
    pytest.importorskip("resource")  # the measuring interpreter's; POSIX only
    if "asan" in os.environ.get("LD_PRELOAD", ""):
        pytest.skip("AddressSanitizer reserves terabytes of address space and inflates resident memory")
    big = tmp_path / "big.txt"
    big.write_bytes(b"z" * 10_000_000 + b"\n")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", S2SEXT_NUM_THREADS="1")  # no thread pools to reserve
    peak_file = tmp_path / "peak"
    with open(big, "rb") as stdin:
        result = subprocess.run([sys.executable, "-c", MEASURE_PEAK, str(peak_file), sys.executable, "-m", "s2sext",
                                 "translate", "--model", str(model_path)], stdin=stdin, capture_output=True,
                                env=env, timeout=120)
    assert_one_error_line(result.returncode, result.stderr.decode(), "<stdin>:1: the line has more than 8,192 bytes")
    assert result.stdout == b""
    peak = int(peak_file.read_text()) * (1 if sys.platform == "darwin" else 1024)  # bytes on macOS, else KiB
    # the interpreter, numpy and the model, and at most 8 KiB of the line
    assert peak < 250e6, f"peak resident memory {peak / 1e6:.0f} MB"


def test_translate_truncate_cuts_long_lines(capsys, tmp_path, model_path, model):
    long = "".join(chr(ord("a") + i % 26) for i in range(300))
    inputs = tmp_path / "in.txt"
    inputs.write_text(f"abc\n{long}\n\n{long[:128]}\n", encoding="utf-8")
    rc, out, err = run(capsys, "translate", "--model", model_path, "--truncate", "--max-length", "8", inputs)
    assert rc == 0, err
    want = model.translate(["abc", long[:128]], max_length=8)
    assert out == f"{want[0]}\n{want[1]}\n\n{want[1]}\n"
    assert err == f"s2sext: {inputs}: cut 1 source longer than 128 tokens to their first 128 (--truncate)\n"


def test_translate_max_source_length_raises_the_limit(capsys, tmp_path, model_path, model):
    long = "abcdefghij" * 20
    inputs = tmp_path / "in.txt"
    inputs.write_text(long + "\n", encoding="utf-8")
    rc, out, err = run(capsys, "translate", "--model", model_path, "--max-source-length", "200",
                       "--max-length", "5", inputs)
    assert rc == 0, err
    assert out == model.translate([long], max_length=5)[0] + "\n"
    rc, out, err = run(capsys, "translate", "--model", model_path, "--max-source-length", "199", inputs)
    assert_one_error_line(rc, err, f"{inputs}:1: the source has 200 char tokens; the longest accepted is 199 "
                                   "(--max-source-length")


def test_location_attention_model_refuses_a_longer_limit(capsys, tmp_path):
    location = tmp_path / "loc.s2s"
    rc, _, err = run(capsys, "train", *TINY, "--epochs", "1", "--attention", "location", "--max-source-length",
                     "20", "--out", location)
    assert rc == 0, err
    inputs = tmp_path / "in.txt"
    inputs.write_text("a" * 21 + "\n", encoding="utf-8")
    rc, _, err = run(capsys, "translate", "--model", location, "--max-source-length", "21", inputs)
    assert_one_error_line(rc, err, "--max-source-length 21", "location attention accepts at most 20")
    rc, _, err = run(capsys, "translate", "--model", location, inputs)
    assert_one_error_line(rc, err, f"{inputs}:1: the source has 21 char tokens; the longest accepted is 20")
    rc, out, err = run(capsys, "translate", "--model", location, "--truncate", "--max-length", "4", inputs)
    assert rc == 0 and out == Seq2Seq.load(location).translate(["a" * 20], max_length=4)[0] + "\n"


def test_eval_refuses_long_sources_and_targets_naming_the_line(capsys, monkeypatch, tmp_path, model_path, model):
    """A 10 MB line once made eval end in a MemoryError traceback."""
    data = tmp_path / "test.tsv"
    # a line of more bytes than its token limits allow (64 a token: 64 x (128 + 1,024)) is refused
    # before it is read whole, with --truncate too
    data.write_text("abc\tcba\n" + "x" * 10_000_000 + "\txyz\n", encoding="utf-8")
    for options in ([], ["--truncate"]):
        with monkeypatch.context() as patch:
            _forbid_encoding(patch)
            rc, out, err = run(capsys, "eval", "--model", model_path, "--data", data, *options)
        assert out == ""
        assert_one_error_line(rc, err, f"{data}:2: the line has more than 73,728 bytes")
    data.write_text("abc\tcba\n" + "x" * 1_000 + "\txyz\n", encoding="utf-8")
    with monkeypatch.context() as patch:
        _forbid_encoding(patch)
        rc, out, err = run(capsys, "eval", "--model", model_path, "--data", data)
    assert out == ""
    assert_one_error_line(rc, err, f"{data}:2: the source has 1,000 char tokens; the longest accepted is 128")
    # --truncate cuts the source and evaluates
    rc, out, err = run(capsys, "eval", "--model", model_path, "--data", data, "--truncate")
    assert rc == 0, err
    assert out.startswith("exact match: ") and out.endswith("/2)\n")
    assert "cut 1 source longer than 128 tokens" in err
    # a target is never cut: exact match against a cut reference would mean nothing
    data.write_text("abc\tcba\nxyz\t" + "x" * 1025 + "\n", encoding="utf-8")
    for options in ([], ["--truncate"]):
        rc, out, err = run(capsys, "eval", "--model", model_path, "--data", data, *options)
        assert_one_error_line(rc, err, f"{data}:2: the target has 1,025 char tokens; the longest accepted is "
                                       "1,024 (--max-target-length raises the limit)")
    rc, out, err = run(capsys, "eval", "--model", model_path, "--data", data, "--max-target-length", "1025",
                       "--max-length", "3")
    assert rc == 0 and out.endswith("/2)\n"), err


def test_train_refuses_long_lines_naming_them(capsys, monkeypatch, tmp_path):
    """A 10 MB line once made train end in a MemoryError traceback."""
    good = write_tsv_pairs(tmp_path / "good.tsv", make_task("reverse", 20, seed=5))
    bad = tmp_path / "bad.tsv"
    bad.write_text("ab\tba\n" + "x" * 10_000 + "\tx\n", encoding="utf-8")
    common = ["--hidden", "8", "--embed", "4", "--epochs", "1", "--no-progress", "--out", tmp_path / "m.s2s"]
    for argv in (["--data", bad, "--valid", good], ["--data", good, "--valid", bad]):
        with monkeypatch.context() as patch:
            _forbid_encoding(patch)
            rc, out, err = run(capsys, "train", *argv, *common)
        assert out == ""
        assert_one_error_line(rc, err, f"{bad}:2: the source has 10,000 char tokens; the longest accepted is "
                                       "1,024 (--max-source-length raises the limit; --truncate cuts")
    assert not (tmp_path / "m.s2s").exists()
    huge = tmp_path / "huge.tsv"  # over 64 bytes a token of the limits: refused before it is read whole
    huge.write_text("ab\tba\n" + "x" * 10_000_000 + "\tx\n", encoding="utf-8")
    rc, out, err = run(capsys, "train", "--data", huge, "--valid", good, *common)
    assert_one_error_line(rc, err, f"{huge}:2: the line has more than {64 * (1024 + 1024):,} bytes")
    rc, _, err = run(capsys, "train", "--data", good, "--valid", bad, "--max-source-length", "5000", *common)
    assert_one_error_line(rc, err, f"{bad}:2:", "the longest accepted is 5,000 (--max-source-length")
    long_target = tmp_path / "target.tsv"
    long_target.write_text("ab\tba\ncd\t" + "x" * 30 + "\n", encoding="utf-8")
    rc, _, err = run(capsys, "train", "--data", long_target, "--valid", good, "--max-target-length", "29", *common)
    assert_one_error_line(rc, err, f"{long_target}:2: the target has 30 char tokens; the longest accepted is 29")
    assert not (tmp_path / "m.s2s").exists()


def test_train_truncate_cuts_sources_and_keeps_the_limit(capsys, tmp_path):
    pairs = make_task("reverse", 40, seed=8)
    pairs[3] = ("q" * 60, "short")
    data = write_tsv_pairs(tmp_path / "d.tsv", pairs)
    out_path = tmp_path / "m.s2s"
    rc, _, err = run(capsys, "train", "--data", data, "--valid-split", "5", "--max-source-length", "50",
                     "--truncate", "--hidden", "8", "--embed", "4", "--epochs", "1", "--no-progress",
                     "--out", out_path)
    assert rc == 0, err
    assert f"s2sext: {data}: cut 1 source longer than 50 tokens to their first 50 (--truncate)" in err
    assert Seq2Seq.load(out_path).config.max_source_length == 50


def test_train_task_pairs_are_checked_too(capsys, tmp_path):
    rc, _, err = run(capsys, "train", *TINY, "--epochs", "1", "--max-source-length", "5", "--out", tmp_path / "m")
    assert_one_error_line(rc, err, "task reverse, pair ", "char tokens; the longest accepted is 5")
    rc, _, err = run(capsys, "train", *TINY, "--epochs", "1", "--max-source-length", "5", "--truncate",
                     "--out", tmp_path / "m.s2s")
    assert rc == 0, err
    assert "s2sext: task reverse: cut " in err


# ---------------------------------------------------------------------------------------------
# Running out of memory: one error line


@pytest.mark.parametrize("command", ["translate", "eval", "train"])
def test_memory_error_is_one_error_line(capsys, monkeypatch, tmp_path, model_path, command):
    def out_of_memory(*args, **kwargs):
        raise MemoryError("std::bad_alloc")

    data = write_tsv_pairs(tmp_path / "d.tsv", make_task("reverse", 20, seed=6))
    if command == "translate":
        monkeypatch.setattr(Seq2Seq, "translate", out_of_memory)
        argv = ["translate", "--model", model_path, "--beam", "2", data]
    elif command == "eval":
        monkeypatch.setattr(s2sext.train, "evaluate", out_of_memory)
        argv = ["eval", "--model", model_path, "--data", data]
    else:
        monkeypatch.setattr(s2sext.train, "train", out_of_memory)
        argv = ["train", *TINY, "--out", tmp_path / "m.s2s"]
    rc, _, err = run(capsys, *argv)
    assert_one_error_line(rc, err, "out of memory (std::bad_alloc)")


def test_numpy_memory_error_is_one_error_line(capsys, monkeypatch, tmp_path, model_path):
    def huge(*args, **kwargs):
        return np.empty(2**50, np.uint8)  # 1 PiB: numpy's _ArrayMemoryError, a MemoryError

    monkeypatch.setattr(Seq2Seq, "translate", huge)
    inputs = tmp_path / "in.txt"
    inputs.write_text("abc\n", encoding="utf-8")
    rc, _, err = run(capsys, "translate", "--model", model_path, inputs)
    assert_one_error_line(rc, err, "out of memory (Unable to allocate")


# ---------------------------------------------------------------------------------------------
# stdin is checked for UTF-8 as files are


def test_non_utf8_stdin_is_refused_like_a_file(capsys, monkeypatch, tmp_path, model_path):
    """Invalid UTF-8 on stdin was once translated as <unk> with exit status 0."""
    content = b"abc\n\ncaf\xe9\n"
    inputs = tmp_path / "latin1.txt"
    inputs.write_bytes(content)
    rc, out, file_err = run(capsys, "translate", "--model", model_path, inputs)
    assert out == ""
    assert_one_error_line(rc, file_err, f"{inputs}:3: invalid UTF-8 at byte 3 of the line")
    # a real stdin: a text layer over bytes (strict or surrogateescape, as the locale decides)
    for errors in ("strict", "surrogateescape"):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(content), encoding="utf-8", errors=errors))
        rc, out, err = run(capsys, "translate", "--model", model_path)
        assert out == ""
        assert_one_error_line(rc, err)
        assert err == file_err.replace(str(inputs), "<stdin>")
    # a text stream in place of stdin, holding the escaped bytes
    monkeypatch.setattr(sys, "stdin", io.StringIO(content.decode("utf-8", "surrogateescape")))
    rc, _, err = run(capsys, "translate", "--model", model_path)
    assert err == file_err.replace(str(inputs), "<stdin>")


@pytest.mark.parametrize("locale", ["C", "C.UTF-8"])
def test_non_utf8_stdin_in_a_subprocess(tmp_path, model_path, locale):
    env = dict(os.environ, LC_ALL=locale, PYTHONIOENCODING="", OPENBLAS_NUM_THREADS="1")
    env.pop("PYTHONUTF8", None)
    result = subprocess.run([sys.executable, "-m", "s2sext", "translate", "--model", str(model_path)],
                            input=b"abc\n\xff\xfe\n", capture_output=True, env=env, timeout=120)
    assert result.stdout == b""
    assert_one_error_line(result.returncode, result.stderr.decode(),
                          "<stdin>:2: invalid UTF-8 at byte 0 of the line: invalid start byte")


# ---------------------------------------------------------------------------------------------
# Outputs are checked before training starts, leaving nothing behind


def test_out_that_is_a_directory_is_refused_before_training(capsys, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    rc, out, err = run(capsys, "train", *TINY, "--epochs", "1", "--out", folder)
    assert_one_error_line(rc, err, f"--out {folder}: is a directory")
    assert out == "" and "epoch" not in err
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("option", ["--out", "--checkpoint"])
def test_output_in_a_file_not_a_directory_is_refused(capsys, tmp_path, option):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    argv = ["--out", tmp_path / "m.s2s", "--checkpoint", tmp_path / "ck.s2s"]
    argv[argv.index(option) + 1] = a_file / "m.s2s"
    rc, out, err = run(capsys, "train", *TINY, "--epochs", "1", *argv)
    assert_one_error_line(rc, err, f"{option} {a_file / 'm.s2s'}: the directory {a_file} is not a directory")
    assert out == "" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("option", ["--out", "--checkpoint"])
def test_unwritable_output_directory_is_refused_before_training(capsys, monkeypatch, tmp_path, option):
    """An unwritable --out/--checkpoint was once found only when the first epoch was saved. The
    probe is made to fail (as it would in a read-only directory for a user other than root)."""
    import errno
    import tempfile

    locked = tmp_path / "locked"
    locked.mkdir()
    probe = tempfile.TemporaryFile

    def denied_in_locked(*args, dir=None, **kwargs):
        if os.path.realpath(dir) == os.path.realpath(locked):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return probe(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", denied_in_locked)
    path = locked / "m.s2s"
    argv = ["--out", tmp_path / "best.s2s", "--checkpoint", tmp_path / "ck.s2s"]
    argv[argv.index(option) + 1] = path
    rc, out, err = run(capsys, "train", *TINY, "--epochs", "1", *argv)
    assert_one_error_line(rc, err, f"{option} {path}: cannot write in {locked} ({os.strerror(errno.EACCES)})")
    assert out == "" and "epoch" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["locked"] and list(locked.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root may write in a read-only directory")
def test_read_only_output_directory_is_refused_before_training(capsys, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        rc, out, err = run(capsys, "train", *TINY, "--epochs", "1", "--checkpoint", folder / "ck.s2s",
                           "--out", tmp_path / "m.s2s")
        assert_one_error_line(rc, err, f"--checkpoint {folder / 'ck.s2s'}: cannot write in {folder}")
        assert "epoch" not in err and list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_out_and_checkpoint_the_same_file_is_refused(capsys, tmp_path):
    path = tmp_path / "m.s2s"
    rc, _, err = run(capsys, "train", *TINY, "--epochs", "1", "--out", path, "--checkpoint", path)
    assert_one_error_line(rc, err, "--out and --checkpoint are the same file")
    assert not path.exists()


def test_checked_outputs_leave_nothing_behind(capsys, tmp_path):
    rc, _, err = run(capsys, "train", *TINY, "--epochs", "1", "--out", tmp_path / "m.s2s",
                     "--checkpoint", tmp_path / "ck.s2s")
    assert rc == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.s2s", "m.s2s"]


def test_output_through_a_symlink_checks_the_target_directory(capsys, tmp_path):
    link = tmp_path / "link.s2s"
    link.symlink_to(tmp_path / "gone" / "m.s2s")
    rc, _, err = run(capsys, "train", *TINY, "--epochs", "1", "--out", link)
    assert_one_error_line(rc, err, f"--out {link}: the directory {tmp_path / 'gone'} does not exist")


# ---------------------------------------------------------------------------------------------
# --help shows the defaults


@pytest.mark.parametrize("command, texts", [
    ("train", ["(default: 50000)", "(default: model.s2s)", "(default: 1024)", "(default: 1.0)", "(default: adam)"]),
    ("translate", ["(default: 50)", "(default: 64)", "(default: the model's max_source_length)"]),
    ("eval", ["(default: 256)", "(default: 1024)"]),
    ("demo", ["(default: s2sext-demo)", "(default: 5000)"]),
])
def test_help_shows_defaults(capsys, command, texts):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for text in texts:
        assert text in out, text
    assert "(default: None)" not in out and "(default: False)" not in out


# ---------------------------------------------------------------------------------------------
# Findings of the review after issue 10: each test failed before its fix


def test_output_that_is_a_fifo_is_refused_and_kept(capsys, tmp_path):
    """--out naming a FIFO or a device (run as root: --out /dev/null) once replaced it with a
    regular file; only a FIFO in a temporary folder is used here."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "link.s2s"
    link.symlink_to(fifo)
    for option, path in (("--out", fifo), ("--checkpoint", link)):
        argv = ["--out", tmp_path / "m.s2s", "--checkpoint", tmp_path / "ck.s2s"]
        argv[argv.index(option) + 1] = path
        rc, out, err = run(capsys, "train", *TINY, "--epochs", "1", *argv)
        assert_one_error_line(rc, err, f"{option} {path}: is a FIFO, not a regular file")
        assert out == "" and "epoch" not in err
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.s2s", "pipe"]


def test_translate_with_stdin_closed_is_one_error_line(tmp_path, model_path):
    """``s2sext translate --model m.s2s <&-`` (sys.stdin is None) once ended in a traceback."""
    result = subprocess.run([sys.executable, "-m", "s2sext", "translate", "--model", str(model_path)],
                            stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
                            preexec_fn=lambda: os.close(0))
    assert result.stdout == b""
    assert_one_error_line(result.returncode, result.stderr.decode(), "stdin is closed")


def test_translate_into_a_closed_pipe_exits_quietly(tmp_path, model_path):
    """``| head -1`` once ended in "s2sext: error: Broken pipe", status 2."""
    inputs = tmp_path / "in.txt"
    inputs.write_text("abc\n" * 20_000, encoding="utf-8")
    read, write = os.pipe()
    os.close(read)  # the reader has gone before the first line is written
    try:
        result = subprocess.run([sys.executable, "-m", "s2sext", "translate", "--model", str(model_path),
                                 "--max-length", "2", str(inputs)], stdout=write, stderr=subprocess.PIPE,
                                timeout=120)
    finally:
        os.close(write)
    assert result.returncode == 141, result.stderr
    assert result.stderr == b""


def test_an_endless_line_on_stdin_is_refused_in_bounded_memory(tmp_path, model_path):
    """``translate /dev/zero`` and an endless line on stdin once read the whole input first:
    the line is refused after 64 bytes a token of the limit, under a 2 GiB address-space cap."""
    pytest.importorskip("resource")
    if "asan" in os.environ.get("LD_PRELOAD", ""):
        pytest.skip("AddressSanitizer reserves terabytes of address space")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", S2SEXT_NUM_THREADS="1")
    endless = "import sys\nwhile True: sys.stdout.buffer.write(bytes(1 << 16))\n"
    producer = subprocess.Popen([sys.executable, "-c", endless], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        result = subprocess.run([sys.executable, "-c", MEASURE_PEAK, str(tmp_path / "peak"), sys.executable, "-m",
                                 "s2sext", "translate", "--model", str(model_path)], stdin=producer.stdout,
                                capture_output=True, env=env, timeout=120)
    finally:
        producer.stdout.close()
        producer.kill()
        producer.wait()
    assert_one_error_line(result.returncode, result.stderr.decode(), "<stdin>:1: the line has more than 8,192 bytes")
    if os.path.exists("/dev/zero"):  # the same from a file that never ends
        result = subprocess.run([sys.executable, "-m", "s2sext", "eval", "--model", str(model_path), "--data",
                                 "/dev/zero"], capture_output=True, env=env, timeout=120)
        assert_one_error_line(result.returncode, result.stderr.decode(), "/dev/zero:1: the line has more than")


def test_eval_counts_targets_with_the_target_tokenizer(capsys, tmp_path):
    """eval once counted target tokens with the source tokenizer: a char source / word target
    model refused a 3-word target of 17 characters as longer than --max-target-length 5."""
    pairs = [(f"{a} {b}", f"word{a} word{b} end") for a in range(10) for b in range(10)]
    model = Seq2Seq([s for s, _ in pairs], [t for _, t in pairs], embed_size=4, hidden_size=8,
                    src_tokenizer="char", tgt_tokenizer="word", seed=0)
    model_path = tmp_path / "m.s2s"
    model.save(model_path)
    data = write_tsv_pairs(tmp_path / "d.tsv", pairs[:5])
    rc, out, err = run(capsys, "eval", "--model", model_path, "--data", data, "--max-target-length", "5",
                       "--max-length", "4")
    assert rc == 0, err
    assert out.endswith("/5)\n")
    # a target of spaces has char tokens but no words: refused naming the target's tokenizer
    (tmp_path / "spaces.tsv").write_text("1 2\t   \n", encoding="utf-8")
    rc, out, err = run(capsys, "eval", "--model", model_path, "--data", tmp_path / "spaces.tsv")
    assert_one_error_line(rc, err, "the target '   ' has no word tokens")


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


def test_truncate_message_is_singular_for_one_token(capsys, tmp_path, model_path):
    inputs = tmp_path / "in.txt"
    inputs.write_text("abc\nabd\n", encoding="utf-8")
    rc, out, err = run(capsys, "translate", "--model", model_path, "--max-source-length", "1", "--truncate",
                       "--max-length", "2", inputs)
    assert rc == 0, err
    assert err == f"s2sext: {inputs}: cut 2 sources longer than 1 token to their first token (--truncate)\n"


def test_a_bug_keeps_its_traceback(capsys, monkeypatch, tmp_path):
    """main() once turned every ValueError/TypeError into one error line, a bug's too."""
    def buggy(args):
        return None + 1  # a TypeError raised by Python, not by an s2sext check

    monkeypatch.setattr(s2sext.cli, "cmd_kernels", buggy)
    with pytest.raises(TypeError, match="unsupported operand"):
        main(["kernels"])
    # code of the package itself: a builtin's ValueError is a bug, a raise statement's is a check
    source = ("def bug(args):\n    return int('not a number')\n"
              "def check(args):\n    raise ValueError(\n        'a check of the arguments failed')\n")
    namespace = {}
    exec(compile(source, os.path.join(os.path.dirname(s2sext.cli.__file__), "commands.py"), "exec"), namespace)
    monkeypatch.setattr(s2sext.cli, "cmd_kernels", namespace["bug"])
    with pytest.raises(ValueError, match="invalid literal"):
        main(["kernels"])
    monkeypatch.setattr(s2sext.cli, "cmd_kernels", namespace["check"])
    rc, _, err = run(capsys, "kernels")
    assert_one_error_line(rc, err, "a check of the arguments failed")
    # the library's own checks stay one line
    rc, _, err = run(capsys, "train", *TINY, "--valid-split", "400", "--out", tmp_path / "m.s2s")
    assert_one_error_line(rc, err, "400")


def test_word_model_max_source_length_is_counted_in_tokens(capsys, tmp_path):
    """--tokenizer word once set max_source_length from the characters of the longest source."""
    pairs = [(" ".join(["longword"] * 70), "x"), ("a b", "y")] * 10
    data = write_tsv_pairs(tmp_path / "d.tsv", pairs)
    out_path = tmp_path / "m.s2s"
    rc, _, err = run(capsys, "train", "--data", data, "--tokenizer", "word", "--valid-split", "2", "--hidden", "8",
                     "--embed", "4", "--epochs", "1", "--no-progress", "--out", out_path)
    assert rc == 0, err
    assert Seq2Seq.load(out_path).config.max_source_length == 140  # 2 x 70 words (not 2 x 629 characters)


def test_help_carries_no_timings():
    """Machine-specific timings in help text went stale ("about 2-4 minutes on 2 cores")."""
    text = " ".join(build_all_help())
    assert not re.search(r"\b(minutes?|seconds?)\b|\bon \d+ cores?\b", text)


def build_all_help():
    """The --help text of s2sext and of every command."""
    import argparse

    parser = s2sext.cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [parser.format_help()] + [p.format_help() for p in sub.choices.values()]


def test_plot_writes_through_the_one_atomic_writer(capsys, monkeypatch, tmp_path, model_path):
    """plot once had its own temporary file (NAME.tmp-PID.png, left behind when killed)."""
    pytest.importorskip("matplotlib")
    from s2sext import serialize

    calls = []
    real = serialize.atomic_write
    monkeypatch.setattr(serialize, "atomic_write", lambda path, write: (calls.append(path), real(path, write))[1])
    out_path = tmp_path / "a.png"
    rc, _, err = run(capsys, "plot", "--model", model_path, "abc", "--out", out_path)
    assert rc == 0, err
    assert calls == [str(out_path)] or calls == [out_path]
    assert out_path.read_bytes().startswith(PNG_SIGNATURE) and os.listdir(tmp_path) == ["a.png"]


def test_translate_streams_an_endless_pipe_in_batches(model_path):
    """translate once read all of stdin before translating: an endless pipe of short lines
    (``yes abc |``) grew without bound and printed nothing. Now each batch is printed as it is
    done; the reader takes a few lines and closes the pipe."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", S2SEXT_NUM_THREADS="1")
    endless = "import sys\nwhile True: sys.stdout.buffer.write(b'abc\\n' * 1024)\n"
    producer = subprocess.Popen([sys.executable, "-c", endless], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    translate = subprocess.Popen([sys.executable, "-m", "s2sext", "translate", "--model", str(model_path),
                                  "--batch-size", "4", "--max-length", "3"], stdin=producer.stdout,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    producer.stdout.close()
    watchdog = threading.Timer(60, translate.kill)  # reading all of stdin first would never print
    watchdog.start()
    try:
        first = [translate.stdout.readline() for _ in range(8)]
        translate.stdout.close()  # the reader goes away, as head does
        assert translate.wait(timeout=120) == 141
        assert translate.stderr.read() == b""
    finally:
        watchdog.cancel()
        translate.kill()
        translate.wait()
        translate.stderr.close()
        producer.kill()
        producer.wait()
    assert len(set(first)) == 1 and first[0].endswith(b"\n")
