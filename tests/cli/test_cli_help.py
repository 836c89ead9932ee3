"""``s2sext --help`` and each command's help: the commands, their options, choices and defaults.

Commands run in-process through ``main(argv)`` (output read with capsys) unless a test says
otherwise; the shared helpers are in cli_support.py and the shared tiny model in conftest.py.
"""
import re
import runpy
import subprocess
import sys

import pytest

import s2sext
import s2sext.cli
from s2sext.cli import main

from cli_support import assert_one_error_line, run


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


def _every_option():
    """(command, argparse action) for every option and positional of every command, but --help."""
    import argparse

    parser = s2sext.cli.build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [(name, action) for name, sub in commands.choices.items() for action in sub._actions
            if not isinstance(action, argparse._HelpAction)]


@pytest.mark.parametrize("command,action", _every_option(),
                         ids=lambda v: v if isinstance(v, str) else (v.option_strings or [v.dest])[0])
def test_every_option_has_a_one_line_help_with_its_default(command, action):
    """Issue 12's rule for the help: a one-line description, and the default said -- shown by the
    formatter for a value, in words where the default is None (what happens without the option);
    a flag's default is off."""
    import argparse

    assert action.help and "\n" not in action.help, f"{command} {action.option_strings}: no one-line help"
    flag = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
    if action.default is None and not flag and not action.required and action.option_strings:
        assert re.search(r"default|required|instead of", action.help), \
            f"{command} {action.option_strings}: the help does not say what happens without it"
