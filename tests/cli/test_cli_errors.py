"""The ``s2sext`` command's error contract: bad arguments, bad data, bad model files and running out
of memory end in one ``s2sext: error: ...`` line on stderr with exit status 2, never a traceback;
every numeric option is range-checked when parsed; a bug keeps its traceback.

Commands run in-process through ``main(argv)`` (output read with capsys) unless a test says
otherwise; the shared helpers are in cli_support.py and the shared tiny model in conftest.py.
"""
import os

import numpy as np
import pytest

import s2sext
import s2sext.cli
from s2sext import Seq2Seq
from s2sext.cli import main
from s2sext.data import make_task

from cli_support import TINY, assert_one_error_line, run, run_argparse_error, write_tsv_pairs


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


def _reading_a_model(command, model, tmp_path):
    """The argv of `command` (translate, eval, plot or train --resume) reading the model file `model`;
    a TSV file of pairs in tmp_path as data, outputs p.png and m.s2s there."""
    data = write_tsv_pairs(tmp_path / "d.tsv", make_task("reverse", 20, seed=6))
    return {
        "translate": ["translate", "--model", model, data],
        "eval": ["eval", "--model", model, "--data", data],
        "plot": ["plot", "--model", model, "abc", "--out", tmp_path / "p.png"],
        "train --resume": ["train", *TINY, "--resume", model, "--out", tmp_path / "m.s2s"],
    }[command]


@pytest.mark.parametrize("command", ["translate", "eval", "plot", "train --resume"])
def test_missing_model_file_is_one_error_line(capsys, tmp_path, command):
    missing = tmp_path / "no-such-model.s2s"
    rc, out, err = run(capsys, *_reading_a_model(command, missing, tmp_path))
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
    rc, out, err = run(capsys, *_reading_a_model(command, bad, tmp_path))
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
