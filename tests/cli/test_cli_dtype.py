"""``s2sext translate --dtype`` and ``s2sext eval --dtype``: the compiled decoder's weight type."""

from s2sext import Decoder
from s2sext.data import make_task

from cli_support import run, run_argparse_error, write_tsv_pairs


def test_translate_with_int8_weights_equals_the_int8_decoder(capsys, tmp_path, model_path):
    sources = [s for s, _ in make_task("reverse", 6, seed=12)]
    inputs = tmp_path / "in.txt"
    inputs.write_text("\n".join(sources) + "\n", encoding="utf-8")
    for dtype in ("int8", "bfloat16", "float32"):
        rc, out, err = run(capsys, "translate", "--model", model_path, "--dtype", dtype, inputs)
        assert rc == 0, err
        assert out.split("\n")[:-1] == Decoder.load(model_path, dtype=dtype).translate(sources)


def test_eval_with_int8_weights(capsys, tmp_path, model_path):
    data = tmp_path / "pairs.tsv"
    pairs = make_task("reverse", 20, seed=13)
    write_tsv_pairs(data, pairs)
    rc, out, err = run(capsys, "eval", "--model", model_path, "--data", data, "--dtype", "int8",
                       "--metric", "exact_match", "--output", tmp_path / "out.txt")
    assert rc == 0, err
    assert out.startswith("exact match: ")
    # eval decodes a batch for at most its longest target + 5 tokens (characters here)
    longest = max(len(t) for _, t in pairs)
    want = Decoder.load(model_path, dtype="int8").translate([s for s, _ in pairs], max_length=longest + 5)
    assert (tmp_path / "out.txt").read_text(encoding="utf-8").split("\n")[:-1] == want


def test_bad_dtype_is_one_error_line(capsys, model_path):
    err = run_argparse_error(capsys, "translate", "--model", model_path, "--dtype", "int4", "-")
    assert "--dtype" in err and "int4" in err
    err = run_argparse_error(capsys, "eval", "--model", model_path, "--data", "x.tsv", "--dtype", "float16")
    assert "--dtype" in err and "float16" in err


def test_eval_with_int8_weights_and_a_beam(capsys, tmp_path, model_path):
    data = tmp_path / "pairs.tsv"
    pairs = make_task("reverse", 12, seed=14)
    write_tsv_pairs(data, pairs)
    rc, out, err = run(capsys, "eval", "--model", model_path, "--data", data, "--dtype", "int8", "--beam", "3",
                       "--metric", "exact_match", "--output", tmp_path / "out.txt")
    assert rc == 0, err
    longest = max(len(t) for _, t in pairs)
    want = Decoder.load(model_path, dtype="int8").translate([s for s, _ in pairs], beam=3, max_length=longest + 5)
    assert (tmp_path / "out.txt").read_text(encoding="utf-8").split("\n")[:-1] == want
