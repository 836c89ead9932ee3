"""The ``s2sext`` command's input: a line longer than the limit is refused naming it (or cut with
--truncate) before anything is encoded, in bounded memory; stdin is checked for UTF-8 as files are.

Commands run in-process through ``main(argv)`` (output read with capsys) unless a test says
otherwise; the shared helpers are in cli_support.py and the shared tiny model in conftest.py.
"""
import io
import os
import subprocess
import sys

import pytest

import s2sext
import s2sext.cli
import s2sext.cli_train
from s2sext import Seq2Seq
from s2sext.data import make_task

from cli_support import TINY, assert_one_error_line, run, write_tsv_pairs


# ---------------------------------------------------------------------------------------------
# Input limits: a line longer than the limit is refused naming it (or cut with --truncate)
# before anything is encoded


def _forbid_encoding(monkeypatch):
    """Make any encoding or translating an AssertionError (main() does not catch it)."""
    def refuse(*args, **kwargs):
        raise AssertionError("the input was encoded before its length was checked")

    monkeypatch.setattr(Seq2Seq, "encode_texts", refuse)
    monkeypatch.setattr(Seq2Seq, "translate", refuse)
    monkeypatch.setattr(s2sext.cli, "encode_model_pairs", refuse)
    monkeypatch.setattr(s2sext.cli_train, "encode_model_pairs", refuse)


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


def test_translate_truncate_cuts_long_lines(capsys, tmp_path, model_path, model):
    long = "".join(chr(ord("a") + i % 26) for i in range(300))
    inputs = tmp_path / "in.txt"
    inputs.write_text(f"abc\n{long}\n\n{long[:128]}\n", encoding="utf-8")
    rc, out, err = run(capsys, "translate", "--model", model_path, "--truncate", "--max-length", "8", inputs)
    assert rc == 0, err
    want = model.translate(["abc", long[:128]], max_length=8)
    assert out == f"{want[0]}\n{want[1]}\n\n{want[1]}\n"
    assert err == f"s2sext: {inputs}: cut 1 source longer than 128 tokens to their first 128 (--truncate)\n"


def test_truncate_message_is_singular_for_one_token(capsys, tmp_path, model_path):
    inputs = tmp_path / "in.txt"
    inputs.write_text("abc\nabd\n", encoding="utf-8")
    rc, out, err = run(capsys, "translate", "--model", model_path, "--max-source-length", "1", "--truncate",
                       "--max-length", "2", inputs)
    assert rc == 0, err
    assert err == f"s2sext: {inputs}: cut 2 sources longer than 1 token to their first token (--truncate)\n"


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
    assert out.startswith("exact match: ") and out.splitlines()[0].endswith("/2)")
    assert "cut 1 source longer than 128 tokens" in err
    # a target is never cut: exact match against a cut reference would mean nothing
    data.write_text("abc\tcba\nxyz\t" + "x" * 1025 + "\n", encoding="utf-8")
    for options in ([], ["--truncate"]):
        rc, out, err = run(capsys, "eval", "--model", model_path, "--data", data, *options)
        assert_one_error_line(rc, err, f"{data}:2: the target has 1,025 char tokens; the longest accepted is "
                                       "1,024 (--max-target-length raises the limit)")
    rc, out, err = run(capsys, "eval", "--model", model_path, "--data", data, "--max-target-length", "1025",
                       "--max-length", "3")
    assert rc == 0 and out.splitlines()[0].endswith("/2)"), err


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


def test_translate_with_stdin_closed_is_one_error_line(tmp_path, model_path):
    """``s2sext translate --model m.s2s <&-`` (sys.stdin is None) once ended in a traceback."""
    result = subprocess.run([sys.executable, "-m", "s2sext", "translate", "--model", str(model_path)],
                            stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
                            preexec_fn=lambda: os.close(0))
    assert result.stdout == b""
    assert_one_error_line(result.returncode, result.stderr.decode(), "stdin is closed")
