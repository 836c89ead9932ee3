"""``s2sext quantize IN OUT`` and ``Seq2Seq.save(path, dtype="int8")``: the int8 model file
(docs/model-format.md, "int8 parameters") that every loader reads. The C++ API's translation of a
quantized file is compared with Python's in tests/test_cpp_api.py (it needs the standalone build).
"""
import os
import struct

import numpy as np
import pytest

from s2sext import Decoder, Seq2Seq, _core
from s2sext.cli import main
from s2sext.data import build_vocabs, encode_pairs, make_task
from s2sext.serialize import read_model_file
from s2sext.train import train

from cli_support import assert_one_error_line, run, write_tsv_pairs

TEXTS = [s for s, _ in make_task("dates", 40, seed=31)]


@pytest.fixture(scope="module")
def dates_path(tmp_path_factory):
    """A small dates model trained for one epoch (its outputs differ from input to input), saved with
    its training record as `s2sext train` saves one (shared, read-only)."""
    pairs = make_task("dates", 2000, seed=4)
    src_vocab, tgt_vocab = build_vocabs(pairs, "char", "char")
    model = Seq2Seq(src_vocab, tgt_vocab, embed_size=16, hidden_size=48, attention="general", bidirectional=True,
                    seed=0)
    train(model, encode_pairs(pairs, src_vocab, tgt_vocab, "char", "char"), epochs=1, batch_size=32, lr=0.01,
          progress=False, log=lambda m: None)
    path = tmp_path_factory.mktemp("dates") / "dates.s2s"
    model.save(path, extra={"training": {"epochs": 1}})
    return path


@pytest.fixture(scope="module")
def quantized(dates_path, tmp_path_factory):
    """The dates model quantized by the command (shared, read-only)."""
    out = tmp_path_factory.mktemp("int8") / "dates-int8.s2s"
    assert main(["quantize", str(dates_path), str(out)]) == 0
    return out


def test_quantize_prints_both_sizes_and_writes_a_version_2_file(capsys, tmp_path, dates_path):
    model_path = dates_path
    out = tmp_path / "q.s2s"
    rc, stdout, err = run(capsys, "quantize", model_path, out)
    assert rc == 0 and err == "", err
    before, after = os.path.getsize(model_path), os.path.getsize(out)
    assert stdout == f"quantized {model_path} ({before:,} bytes) -> {out} ({after:,} bytes, {before / after:.2f}x smaller)\n"
    assert struct.unpack_from("<I", out.read_bytes(), 8)[0] == 2
    assert struct.unpack_from("<I", model_path.read_bytes(), 8)[0] == 1


def test_the_file_holds_the_rules_bytes_and_loads_as_their_values(dates_path, quantized):
    header, stored = read_model_file(quantized)
    _, floats = read_model_file(dates_path)
    model = Seq2Seq.load(dates_path)
    loaded = Seq2Seq.load(quantized)
    assert header["extra"] == {"training": {"epochs": 1}}
    for name, value in model.params.items():
        if value.ndim == 2:
            q, scale = _core.quantize_int8(value)  # the rule on the original weights ...
            assert np.array_equal(stored[name], q) and np.array_equal(stored[name + ".scale"], scale)
            again_q, again_scale = _core.quantize_int8(loaded.params[name])  # ... and on the loaded values
            assert np.array_equal(again_q, q)
            assert np.array_equal(again_scale.view(np.uint32), scale.view(np.uint32))
            assert np.array_equal(loaded.params[name], _core.dequantize_int8(q, scale))
        else:
            assert stored[name].dtype == np.float32 and np.array_equal(loaded.params[name], value)
    # the model alone: a file's tensors are its parameters and their scales (no tokenizer tensor: char sides)
    assert set(stored) == set(model.params) | {n + ".scale" for n, v in model.params.items() if v.ndim == 2}
    assert set(floats) == set(model.params)


def test_every_loader_translates_the_file_alike(capsys, tmp_path, quantized):
    model = Seq2Seq.load(quantized)
    expected = model.translate(TEXTS, max_length=12)
    assert len(set(expected)) >= 10, expected  # a model whose outputs tell the inputs apart
    assert Decoder.load(quantized).translate(TEXTS, max_length=12) == expected
    assert Decoder.load(quantized).translate(TEXTS, beam=3, max_length=12) == model.translate(
        TEXTS, beam=3, max_length=12)
    _core.check_model_file(str(quantized))  # the C++ API loads it
    inputs = tmp_path / "in.txt"
    inputs.write_text("".join(t + "\n" for t in TEXTS), encoding="utf-8")
    rc, out, err = run(capsys, "translate", "--model", quantized, inputs, "--max-length", "12")
    assert rc == 0 and err == "", err
    assert out.splitlines() == expected
    data = write_tsv_pairs(tmp_path / "test.tsv", list(zip(TEXTS, expected)))
    rc, out, err = run(capsys, "eval", "--model", quantized, "--data", data, "--max-length", "12")
    assert rc == 0 and err == "", err
    assert f"exact match: 100.00% ({len(TEXTS)}/{len(TEXTS)})" in out, out  # the targets are its own outputs


def test_a_model_of_realistic_shapes_is_about_4x_smaller(tmp_path):
    # an nmt-like shape: every matrix has K >= 64 columns, so its int8 form (K bytes and a 4-byte
    # scale per row) is 4K / (K + 4) >= 3.76x smaller; the vectors stay float32
    model = Seq2Seq(list("abcdefghijklmnopqrstuvwxyz "), list("abcdefghijklmnopqrstuvwxyz0123456789 "), embed_size=64,
                    hidden_size=256, attention="general", seed=0)
    path, out = tmp_path / "f32.s2s", tmp_path / "int8.s2s"
    model.save(path)
    model.save(out, dtype="int8")
    data_f32 = sum(v.nbytes for v in model.params.values())
    data_int8 = sum(v.size + 4 * v.shape[0] if v.ndim == 2 else v.nbytes for v in model.params.values())
    ideal = data_f32 / data_int8
    ratio = os.path.getsize(path) / os.path.getsize(out)
    # the header (one more entry per matrix) and the 64-byte alignment of each tensor cost the rest
    assert 0.97 * ideal <= ratio <= ideal, (ratio, ideal)
    assert ratio > 3.8, ratio


def test_an_int8_model_saved_again_is_the_same_file(tmp_path, dates_path):
    model = Seq2Seq.load(dates_path)
    first, second = tmp_path / "a.s2s", tmp_path / "b.s2s"
    model.save(first, dtype="int8")
    Seq2Seq.load(first).save(second, dtype="int8")
    assert first.read_bytes() == second.read_bytes()
    Seq2Seq.load(first).save(second)  # float32: the dequantized values, a version-1 file
    assert struct.unpack_from("<I", second.read_bytes(), 8)[0] == 1
    loaded = Seq2Seq.load(second)
    assert all(np.array_equal(loaded.params[n], v) for n, v in Seq2Seq.load(first).params.items())


def test_float32_saving_is_unchanged(tmp_path, model):
    plain, explicit = tmp_path / "a.s2s", tmp_path / "b.s2s"
    model.save(plain)
    model.save(explicit, dtype="float32")
    assert plain.read_bytes() == explicit.read_bytes()


def test_save_refuses_another_dtype(tmp_path, model):
    with pytest.raises(ValueError, match=r"dtype must be one of 'float32', 'int8'; got 'bfloat16'"):
        model.save(tmp_path / "m.s2s", dtype="bfloat16")
    assert not (tmp_path / "m.s2s").exists()


def test_quantize_refuses_an_int8_input(capsys, tmp_path, quantized):
    out = tmp_path / "again.s2s"
    rc, _, err = run(capsys, "quantize", quantized, out)
    assert_one_error_line(rc, err, str(quantized), "already an int8 model file")
    assert not out.exists()


def test_quantize_checks_its_output_first(capsys, tmp_path, model_path):
    rc, _, err = run(capsys, "quantize", model_path, tmp_path)
    assert_one_error_line(rc, err, "OUT", "is a directory")
    rc, _, err = run(capsys, "quantize", model_path, tmp_path / "missing" / "q.s2s")
    assert_one_error_line(rc, err, "OUT", "does not exist")


def test_quantize_refuses_bad_inputs(capsys, tmp_path, model_path):
    out = tmp_path / "q.s2s"
    rc, _, err = run(capsys, "quantize", tmp_path / "absent.s2s", out)
    assert_one_error_line(rc, err, "absent.s2s")
    broken = tmp_path / "broken.s2s"
    broken.write_bytes(model_path.read_bytes()[:-1])
    rc, _, err = run(capsys, "quantize", broken, out)
    assert_one_error_line(rc, err, "broken.s2s", "truncated")
    assert not out.exists()


def test_quantize_leaves_a_checkpoints_training_state_out(capsys, tmp_path, model):
    checkpoint = tmp_path / "ckpt.s2s"
    state = {"optim.m.out.bias": np.ones(len(model.tgt_vocab), np.float32)}
    model.save(checkpoint, extra_tensors=state, extra={"epoch": 3, "training": {"epochs": 3}})
    out = tmp_path / "q.s2s"
    rc, _, err = run(capsys, "quantize", checkpoint, out)
    assert rc == 0 and err == "", err
    header, tensors = read_model_file(out)
    assert header["extra"] == {"training": {"epochs": 3}}
    assert "optim.m.out.bias" not in tensors


def test_quantizing_in_place(capsys, tmp_path, model_path):
    path = tmp_path / "m.s2s"
    path.write_bytes(model_path.read_bytes())
    before = path.stat().st_size
    rc, out, err = run(capsys, "quantize", path, path)
    assert rc == 0 and err == "", err
    assert f"({before:,} bytes) -> " in out and struct.unpack_from("<I", path.read_bytes(), 8)[0] == 2
