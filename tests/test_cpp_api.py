"""The C++ API (src/cpp/api/s2sext.h) and its example program: built on their own with CMake (no
Python), they load a model the tests train and translate exactly as Python does.

Needs cmake, a C++ compiler and the build's BLAS package (scipy-openblas32); skipped without them
unless S2SEXT_REQUIRE_CPP=1 (set by CI, which installs them). The build uses the sentencepiece
library where CMake finds it (libsentencepiece-dev): then a sentencepiece model translates as in
Python, and without it the program must say which library it lacks.
"""

import importlib.util
import os
import shutil
import subprocess

import numpy as np
import pytest

from s2sext import Seq2Seq
from s2sext.data import build_vocabs, encode_pairs, make_task
from s2sext.train import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def example_program(tmp_path_factory):
    missing = [what for what, ok in (("cmake", shutil.which("cmake")), ("a C++ compiler", shutil.which("c++")),
                                      ("scipy-openblas32", importlib.util.find_spec("scipy_openblas32")))
               if not ok]
    if missing:
        if os.environ.get("S2SEXT_REQUIRE_CPP") == "1":
            pytest.fail(f"missing {', '.join(missing)}, and S2SEXT_REQUIRE_CPP=1")
        pytest.skip(f"the standalone C++ build needs {', '.join(missing)}")
    build = tmp_path_factory.mktemp("cpp-build")
    configured = subprocess.run(["cmake", "-S", ROOT, "-B", str(build), "-DS2SEXT_EXAMPLES=ON"], check=True,
                                capture_output=True, text=True)
    (build / "configure.log").write_text(configured.stdout)  # says whether sentencepiece was found
    subprocess.run(["cmake", "--build", str(build), "-j2"], check=True, capture_output=True)
    return build / "s2sext_translate"


def trained_model(tmp_path, tokenizer="char"):
    pairs = make_task("dates", 3000, seed=4)
    if tokenizer == "word":
        pairs = [(s.replace("/", " / "), " ".join(t.split("-"))) for s, t in pairs]
    src_vocab, tgt_vocab = build_vocabs(pairs, tokenizer, tokenizer)
    model = Seq2Seq(src_vocab, tgt_vocab, embed_size=16, hidden_size=48, attention="concat", attention_style="bahdanau",
                    num_layers=2, bidirectional=True, seed=0, src_tokenizer=tokenizer, tgt_tokenizer=tokenizer,
                    reverse_source=True)
    data = encode_pairs(pairs, src_vocab, tgt_vocab, tokenizer, tokenizer, reverse_source=True)
    train(model, data, epochs=1, batch_size=64, lr=0.01, progress=False, log=lambda m: None)
    path = tmp_path / f"{tokenizer}.s2s"
    model.save(path)
    return model, path, [s for s, _ in make_task("dates", 12, seed=99)]


def run(program, *args, stdin=None):
    return subprocess.run([str(program), *map(str, args)], input=stdin, capture_output=True, text=True,
                          encoding="utf-8")


@pytest.mark.parametrize("tokenizer", ["char", "word"])
def test_cpp_translations_equal_python(example_program, tmp_path, tokenizer):
    model, path, texts = trained_model(tmp_path, tokenizer)
    texts = texts + ["ünïcode 1/2/03 ✓"]  # unknown characters become <unk> on both sides
    result = run(example_program, path, *texts)
    assert result.returncode == 0, result.stderr
    outputs = result.stdout.split("\n")[:-1]
    assert outputs == model.translate(texts, max_length=50)
    assert len(set(outputs)) >= 3, outputs  # not a degenerate model that says the same for every input
    result = run(example_program, path, "--beam", "4", *texts[:5])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:-1] == model.translate(texts[:5], beam=4, max_length=50)
    piped = run(example_program, path, stdin="\n".join(texts[:3]) + "\n")
    assert piped.stdout.split("\n")[:-1] == model.translate(texts[:3], max_length=50)


def test_cpp_generate_options_equal_python(example_program, tmp_path):
    """Translator::translate(text, GenerateOptions): sampling, n-gram blocking and the coverage
    penalty give what Decoder.translate gives (one text at a time: each is input 0 of its call,
    so its random numbers come from the seed alone)."""
    model, path, texts = trained_model(tmp_path)
    dec = model.compile()
    cases = [(["--sampling-topk", "0", "--sampling-temperature", "1.7", "--seed", "5"],
              dict(sampling_topk=0, sampling_temperature=1.7, seed=5)),
             (["--sampling-topk", "6", "--sampling-topp", "0.8", "--seed", "11"],
              dict(sampling_topk=6, sampling_topp=0.8, seed=11)),
             (["--no-repeat-ngram-size", "1"], dict(no_repeat_ngram_size=1)),
             (["--beam", "3", "--no-repeat-ngram-size", "2", "--coverage-penalty", "0.3"],
              dict(beam=3, no_repeat_ngram_size=2, coverage_penalty=0.3))]
    for argv, options in cases:
        result = run(example_program, path, *argv, *texts[:6])
        assert result.returncode == 0, result.stderr
        assert result.stdout.split("\n")[:-1] == [dec.translate([t], max_length=50, **options)[0] for t in texts[:6]]
    result = run(example_program, path, "--beam", "2", "--sampling-topk", "0", texts[0])
    assert result.returncode == 1 and "sampling" in result.stderr and "needs beam_size 1" in result.stderr


def test_cpp_int8_translator_equals_python_int8_decoder(example_program, tmp_path):
    """Translator::load(path, "int8") gives what Decoder.load(path, dtype="int8") gives, greedy and
    beam; a bad dtype is refused with the message of the Python side."""
    from s2sext import Decoder

    model, path, texts = trained_model(tmp_path)
    dec = Decoder.load(path, dtype="int8")
    assert dec.dtype == "int8"
    for argv, options in (([], {}), (["--beam", "3"], dict(beam=3))):
        result = run(example_program, path, "--dtype", "int8", *argv, *texts)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split("\n")[:-1] == dec.translate(texts, max_length=50, **options)
    result = run(example_program, path, "--dtype", "int4", texts[0])
    assert result.returncode == 1
    assert 'dtype must be "float32", "bfloat16" or "int8", got "int4"' in result.stderr


def test_cpp_translates_a_version_2_model(example_program, tmp_path):
    # every option a version-2 header adds (OpenNMT-py's brnn + mlp): the C++ Translator reads the
    # file and decodes as Python does
    model = Seq2Seq(list("abcdefgh"), list("stuvwxyz"), embed_size=6, hidden_size=8, num_layers=2, seed=3,
                    attention="concat", attention_query_bias=True, combine_activation="none", bidirectional=True,
                    bridge="concat", input_feeding=True)
    model.params["out.weight"] *= np.float32(3.0)  # peaked, varied outputs
    model.params["attention.b_q"] *= np.float32(8.0)
    path = tmp_path / "v2.s2s"
    model.save(path)
    texts = ["abc", "hgfedcba", "aaab", "cafe", "h"]
    result = run(example_program, path, *texts)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:-1] == model.translate(texts, max_length=50)
    result = run(example_program, path, "--beam", "3", *texts)
    assert result.stdout.split("\n")[:-1] == model.translate(texts, beam=3, max_length=50)


def test_cpp_translates_an_int8_model_file_as_python_does(example_program, tmp_path):
    # s2sext quantize's file (docs/model-format.md, "int8 parameters"): the C++ Translator reads the
    # int8 matrices as the values they stand for, as Seq2Seq.load does, and decodes alike
    model, _, texts = trained_model(tmp_path)
    path = tmp_path / "int8.s2s"
    model.save(path, dtype="int8")
    quantized = Seq2Seq.load(path)
    for options in ((), ("--beam", "4")):
        result = run(example_program, path, *options, *texts)
        assert result.returncode == 0, result.stderr
        beam = int(options[1]) if options else 1
        assert result.stdout.split("\n")[:-1] == quantized.translate(texts, beam=beam, max_length=50)
    assert len(set(quantized.translate(texts, max_length=50))) >= 3  # outputs that tell the inputs apart


def test_cpp_refuses_bad_files(example_program, tmp_path):
    _, path, _ = trained_model(tmp_path)
    data = path.read_bytes()
    cases = {
        "truncated": data[: len(data) - 40],
        "corrupted": data[:200] + bytes([data[200] ^ 1]) + data[201:],
        "not an s2sext model file": b"hello\tworld\n" * 10,
    }
    for message, content in cases.items():
        bad = tmp_path / "bad.s2s"
        bad.write_bytes(content)
        result = run(example_program, bad, "x")
        assert result.returncode == 1
        assert message in result.stderr and str(bad) in result.stderr, result.stderr
    assert "cannot be opened" in run(example_program, tmp_path / "missing.s2s", "x").stderr


def test_cpp_translates_a_sentencepiece_model(example_program, tmp_path):
    pytest.importorskip("sentencepiece", reason="the sentencepiece package trains the model (s2sext[sentencepiece])")
    from s2sext.serialize import read_model_file, write_model_file
    from s2sext.text import SentencePieceTokenizer

    pairs = make_task("dates", 2000, seed=4)
    src_tokenizer = SentencePieceTokenizer.train([s for s, _ in pairs], vocab_size=120)
    tgt_tokenizer = SentencePieceTokenizer.train([t for _, t in pairs], vocab_size=40, model_type="bpe")
    src_vocab, tgt_vocab = build_vocabs(pairs, src_tokenizer, tgt_tokenizer)
    model = Seq2Seq(src_vocab, tgt_vocab, embed_size=16, hidden_size=48, attention="general", seed=0,
                    src_tokenizer=src_tokenizer, tgt_tokenizer=tgt_tokenizer, reverse_source=True)
    train(model, encode_pairs(pairs, src_vocab, tgt_vocab, src_tokenizer, tgt_tokenizer, reverse_source=True),
          epochs=1, batch_size=64, lr=0.01, progress=False, log=lambda m: None)
    path = tmp_path / "spm.s2s"
    model.save(path)
    texts = [s for s, _ in make_task("dates", 12, seed=99)] + ["ünïcode 1/2/03 ✓"]
    result = run(example_program, path, *texts)
    if "tokenizes sentencepiece models" not in (example_program.parent / "configure.log").read_text():
        # built without the library: the model loads, and its text is refused naming what is missing
        assert result.returncode == 1 and "model file" not in result.stderr, result.stderr
        assert "no sentencepiece support" in result.stderr and "libsentencepiece-dev" in result.stderr, result.stderr
        return
    assert result.returncode == 0, result.stderr
    outputs = result.stdout.split("\n")[:-1]
    assert outputs == model.translate(texts, max_length=50)
    assert len(set(outputs)) >= 3 and not any("▁" in o for o in outputs), outputs
    result = run(example_program, path, "--beam", "3", *texts[:5])
    assert result.stdout.split("\n")[:-1] == model.translate(texts[:5], beam=3, max_length=50)
    # a model only the library refuses (a second unknown piece, which no vocabulary holds): refused at
    # load, as Python does (tests/model_file/test_model_file_corpus.py)
    header, tensors = read_model_file(path)
    piece = b"\x0a\x06<unk2>\x18\x02"  # SentencePiece{piece: "<unk2>", type: UNKNOWN}
    tensors["tokenizer.src.sentencepiece"] = np.concatenate(
        [tensors["tokenizer.src.sentencepiece"], np.frombuffer(b"\x0a" + bytes([len(piece)]) + piece, np.uint8)])
    write_model_file(path, header, tensors)
    result = run(example_program, path, "x")
    assert result.returncode == 1 and "not a sentencepiece model" in result.stderr, result.stderr


@pytest.mark.parametrize("tokenizer", ["char", "word", "sentencepiece"])
def test_cpp_lowercases_sources_as_python_does(example_program, tmp_path, tokenizer):
    # a model whose source side lowercases (config src_lowercase): the C++ Translator lowercases
    # the text by the same rule (spec/lowercase.h) before tokenizing it
    words = ["hello", "world", "istanbul", "i\u0307stanbul", "οδοσ", "ǆ"]
    if tokenizer == "sentencepiece":
        pytest.importorskip("sentencepiece", reason="the sentencepiece package trains the model")
        from s2sext.text import SentencePieceTokenizer

        src_tokenizer = SentencePieceTokenizer.train([" ".join(words[i:] + words[:i]) for i in range(6)] * 5,
                                                     vocab_size=30, lowercase=True)
        src_vocab = src_tokenizer.vocab()
    else:
        src_tokenizer = tokenizer
        src_vocab = sorted({c for w in words for c in w}) if tokenizer == "char" else words
    model = Seq2Seq(src_vocab, list("abcdefgh"), embed_size=6, hidden_size=12, seed=5, attention="general",
                    src_tokenizer=src_tokenizer, tgt_tokenizer="char", src_lowercase=True)
    rng = np.random.default_rng(0)
    for name in model.params:  # peaked, varied outputs
        model.params[name] = (rng.standard_normal(model.params[name].shape) * 1.5).astype(np.float32)
    path = tmp_path / "lower.s2s"
    model.save(path)
    texts = ["HELLO World", "hello world", "İSTANBUL", "ΟΔΟΣ ǅ", "World HELLO ǅ", "wOrLd"]
    result = run(example_program, path, *texts)
    if tokenizer == "sentencepiece" and "tokenizes sentencepiece models" not in (
            example_program.parent / "configure.log").read_text():
        assert result.returncode == 1 and "no sentencepiece support" in result.stderr, result.stderr
        return
    assert result.returncode == 0, result.stderr
    outputs = result.stdout.split("\n")[:-1]
    assert outputs == model.translate(texts, max_length=50)
    assert outputs[0] == outputs[1] and len(set(outputs)) >= 3, outputs
    # with teeth: the same weights read the capitals differently when the side does not lowercase
    plain = Seq2Seq(src_vocab, list("abcdefgh"), embed_size=6, hidden_size=12, attention="general",
                    src_tokenizer=model.src_tokenizer.with_lowercase(False), _params=model.params)
    assert plain.translate(texts[:2], max_length=50)[0] != outputs[0]
    result = run(example_program, path, "--beam", "3", *texts)
    assert result.stdout.split("\n")[:-1] == model.translate(texts, beam=3, max_length=50)
