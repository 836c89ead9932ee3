"""``s2sext translate``, ``eval``, ``plot``, ``kernels`` and ``demo``: what each prints and writes.

Commands run in-process through ``main(argv)`` (output read with capsys) unless a test says
otherwise; the shared helpers are in cli_support.py and the shared tiny model in conftest.py.
"""
import io
import os
import re
import subprocess
import sys
import threading

import pytest

from s2sext import Seq2Seq
from s2sext.data import make_task

from cli_support import PNG_SIGNATURE, TINY, assert_one_error_line, run, run_argparse_error, write_tsv_pairs


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
        m = re.match(r"exact match: (\d+\.\d\d)% \((\d+)/(\d+)\)\n", out)
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
    assert out.splitlines()[0] == f"exact match: {100 * correct / 25:.2f}% ({correct}/25)"


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
    assert out.splitlines()[0].endswith("/5)")
    # a target of spaces has char tokens but no words: refused naming the target's tokenizer
    (tmp_path / "spaces.tsv").write_text("1 2\t   \n", encoding="utf-8")
    rc, out, err = run(capsys, "eval", "--model", model_path, "--data", tmp_path / "spaces.tsv")
    assert_one_error_line(rc, err, "the target '   ' has no word tokens")


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


def test_translate_generate_options_reach_the_search(capsys, tmp_path, model_path, model):
    """--sampling-*, --seed, --no-repeat-ngram-size, --coverage-penalty and --target-prefix give what
    Decoder.translate gives with the same options; the same seed, the same lines."""
    sources = [s for s, _ in make_task("reverse", 4, seed=13)]
    inputs = tmp_path / "in.txt"
    inputs.write_text("\n".join(sources) + "\n", encoding="utf-8")
    dec = model.search_decoder()
    cases = [
        (["--sampling-topk", "0", "--sampling-temperature", "1.5", "--seed", "4"],
         dict(sampling_topk=0, sampling_temperature=1.5, seed=4)),
        (["--sampling-topk", "4", "--sampling-topp", "0.8", "--seed", "9"], dict(sampling_topk=4, sampling_topp=0.8, seed=9)),
        (["--beam", "3", "--no-repeat-ngram-size", "1", "--coverage-penalty", "0.4"],
         dict(beam=3, no_repeat_ngram_size=1, coverage_penalty=0.4)),
        (["--target-prefix", sources[0][:3]], dict(target_prefix=sources[0][:3])),
    ]
    for argv, options in cases:
        rc, out, err = run(capsys, "translate", "--model", model_path, inputs, *argv)
        assert rc == 0, err
        assert out.split("\n")[:-1] == dec.translate(sources, **options), argv
        assert run(capsys, "translate", "--model", model_path, inputs, *argv)[1] == out
    # the draws do not depend on --batch-size
    sampling = ["--sampling-topk", "0", "--sampling-temperature", "2", "--seed", "3"]
    assert run(capsys, "translate", "--model", model_path, inputs, *sampling)[1] == \
        run(capsys, "translate", "--model", model_path, inputs, *sampling, "--batch-size", "1")[1]
    rc, out, _ = run(capsys, "translate", "--model", model_path, inputs, "--target-prefix", "qqz")
    assert all(line.startswith("qqz") for line in out.split("\n")[:-1])  # characters: the task's tokens


@pytest.mark.parametrize("argv,fragments", [
    (["--sampling-topp", "0"], ["--sampling-topp", "> 0"]),
    (["--sampling-topp", "1.5"], ["--sampling-topp", "<= 1"]),
    (["--sampling-temperature", "0"], ["--sampling-temperature", "> 0"]),
    (["--sampling-topk", "-1"], ["--sampling-topk"]),
    (["--no-repeat-ngram-size", "-1"], ["--no-repeat-ngram-size"]),
    (["--coverage-penalty", "-1"], ["--coverage-penalty"]),
    (["--seed", "-3"], ["--seed"]),
])
def test_translate_generate_options_refuse_bad_values(capsys, model_path, argv, fragments):
    err = run_argparse_error(capsys, "translate", "--model", model_path, *argv)
    for fragment in fragments:
        assert fragment in err


def test_translate_sampling_needs_beam_one(capsys, model_path):
    rc, _, err = run(capsys, "translate", "--model", model_path, "--beam", "2", "--sampling-topk", "0")
    assert_one_error_line(rc, err, "needs --beam 1", "--beam 2")
