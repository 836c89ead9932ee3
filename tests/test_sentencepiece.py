"""The sentencepiece tokenizer (s2sext.text.SentencePieceTokenizer): trained in memory and
deterministically, its vocabulary the model's pieces with s2sext's specials at their ids, stored once
in the model file (docs/model-format.md, rule 5), `s2sext train --tgt-tokenizer sentencepiece` end to
end, and a clear error naming the extra when the sentencepiece package is missing.

The other loader's verdicts on such files are in tests/model_file/test_model_file_corpus.py, the
C++ Translator's translations in tests/test_cpp_api.py.
"""

import re
import sys

import numpy as np
import pytest

spm = pytest.importorskip("sentencepiece", reason="the sentencepiece package (pip install 's2sext[sentencepiece]')")

from s2sext import ModelFileError, Seq2Seq  # noqa: E402
from s2sext.cli import main  # noqa: E402
from s2sext.data import build_vocabs, encode_pairs  # noqa: E402
from s2sext.serialize import read_model_file  # noqa: E402
from s2sext.spec import SPECIALS, UNK_ID  # noqa: E402
from s2sext.text import SentencePieceTokenizer, SentencePieceUnavailableError, get_tokenizer  # noqa: E402
from s2sext.train import train  # noqa: E402

WORDS = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "fast", "slowly", "über", "naïve", "house",
         "mouse", "caterpillar", "doghouse", "mattress", "sunset"]


def sentences(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(WORDS[i] for i in rng.integers(len(WORDS), size=rng.integers(2, 9))) for _ in range(n)]


@pytest.fixture(scope="module")
def texts():
    return sentences()


@pytest.fixture(scope="module")
def tokenizer(texts):
    return SentencePieceTokenizer.train(texts, vocab_size=60)


def test_training_is_deterministic(texts, tokenizer):
    assert SentencePieceTokenizer.train(texts, vocab_size=60).model == tokenizer.model
    bpe = SentencePieceTokenizer.train(texts, vocab_size=60, model_type="bpe")
    assert SentencePieceTokenizer.train(texts, vocab_size=60, model_type="bpe").model == bpe.model
    assert bpe.model != tokenizer.model
    assert SentencePieceTokenizer.train(texts[:150], vocab_size=60).model != tokenizer.model


def test_the_vocabulary_is_the_pieces_with_the_specials_at_their_ids(texts, tokenizer):
    vocab = tokenizer.vocab()
    processor = spm.SentencePieceProcessor(model_proto=tokenizer.model)  # sentencepiece itself
    assert vocab.tokens[:4] == SPECIALS
    assert len(vocab) == processor.get_piece_size() <= 60
    assert vocab.tokens == tuple(processor.id_to_piece(i) for i in range(processor.get_piece_size()))
    for text in texts[:20]:  # a trained model's ids are the vocabulary's
        assert vocab.encode(tokenizer.tokenize(text)) == processor.encode(text)
        assert processor.encode(text, add_bos=False, add_eos=False) == processor.encode(text)  # no <sos>/<eos>


def test_a_foreign_models_control_and_unknown_pieces_leave_its_vocabulary(texts):
    """A model trained elsewhere (sentencepiece's defaults: <unk>=0, <s>=1, </s>=2) keeps s2sext's
    specials at 0-3 and its own pieces after them; its <s> and </s> are no tokens."""
    from io import BytesIO

    out = BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=out, vocab_size=40,
                                   hard_vocab_limit=False, minloglevel=2, num_threads=1)
    processor = spm.SentencePieceProcessor(model_proto=out.getvalue())
    vocab = SentencePieceTokenizer(out.getvalue()).vocab()
    assert processor.id_to_piece(1) == "<s>" and "<s>" not in vocab and "</s>" not in vocab
    assert vocab.tokens == SPECIALS + tuple(processor.id_to_piece(i) for i in range(3, processor.get_piece_size()))


def test_tokenize_detokenize_count_truncate(texts, tokenizer):
    for text in texts:
        pieces = tokenizer.tokenize(text)
        assert tokenizer.detokenize(pieces) == text
        assert tokenizer.count(text) == len(pieces)
        assert "".join(pieces).replace("▁", " ").strip() == text
    text = "the caterpillar sat on the mattress slowly"
    n = tokenizer.count(text)
    for limit in range(1, n + 2):
        cut = tokenizer.truncate(text, limit)
        assert tokenizer.count(cut) <= limit and text.startswith(cut)
    assert tokenizer.truncate(text, n) == text
    # text the model never saw: its pieces are not in the vocabulary and encode to <unk>
    ids = tokenizer.vocab().encode(tokenizer.tokenize("the ZQX"))
    assert UNK_ID in ids and ids[0] != UNK_ID
    assert not tokenizer.at_most_one_token_per_character and tokenizer.count("Q") == 2  # "▁", "Q"


def test_bad_arguments(texts, tokenizer):
    with pytest.raises(ValueError, match="the sentencepiece tokenizer needs its model"):
        get_tokenizer("sentencepiece")
    assert get_tokenizer("sentencepiece", model=tokenizer.model) == tokenizer
    with pytest.raises(ValueError, match="the char tokenizer has no model"):
        get_tokenizer("char", model=tokenizer.model)
    with pytest.raises(TypeError, match="model must be the bytes of a sentencepiece model, got str"):
        SentencePieceTokenizer("x")
    with pytest.raises(ValueError, match="model must hold 1 to 67108864 bytes"):
        SentencePieceTokenizer(b"")
    with pytest.raises(ValueError, match="model is not a sentencepiece model"):
        SentencePieceTokenizer(b"not a model")
    with pytest.raises(ValueError, match="model_type must be one of"):
        SentencePieceTokenizer.train(texts, model_type="word")
    with pytest.raises(ValueError, match="vocab_size"):
        SentencePieceTokenizer.train(texts, vocab_size=4)
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str"):
        SentencePieceTokenizer.train(["a b", 3])
    with pytest.raises(ValueError, match="src_max_size.*cannot apply to the sentencepiece"):
        build_vocabs([(t, t) for t in texts], tokenizer, "char", src_max_size=10)
    with pytest.raises(ValueError, match="tgt_vocab must be the vocabulary of the sentencepiece tgt_tokenizer"):
        Seq2Seq(list("abc"), list("abc"), tgt_tokenizer=tokenizer)


# ---------------------------------------------------------------------------------------------
# The model file


def small_model(src_tokenizer, tgt_tokenizer, texts):
    pairs = [(t, " ".join(reversed(t.split()))) for t in texts]
    src_vocab, tgt_vocab = build_vocabs(pairs, src_tokenizer, tgt_tokenizer)
    return Seq2Seq(src_vocab, tgt_vocab, embed_size=4, hidden_size=8, seed=1, src_tokenizer=src_tokenizer,
                   tgt_tokenizer=tgt_tokenizer), pairs


def tokenizer_tensors(path):
    _, tensors = read_model_file(path)
    return {name: value for name, value in tensors.items() if name.startswith("tokenizer.")}


def test_save_load_keeps_the_tokenizers_and_stores_each_model_once(tmp_path, texts, tokenizer):
    other = SentencePieceTokenizer.train(texts, vocab_size=50, model_type="bpe")
    for src, tgt, stored in [("char", tokenizer, {"tokenizer.tgt.sentencepiece": tokenizer}),
                             (other, "word", {"tokenizer.src.sentencepiece": other}),
                             (other, tokenizer, {"tokenizer.src.sentencepiece": other,
                                                 "tokenizer.tgt.sentencepiece": tokenizer}),
                             (tokenizer, tokenizer, {"tokenizer.sentencepiece": tokenizer})]:
        model, _ = small_model(src, tgt, texts)
        path = tmp_path / "m.s2s"
        model.save(path)
        loaded = Seq2Seq.load(path)
        assert (loaded.src_tokenizer, loaded.tgt_tokenizer) == (model.src_tokenizer, model.tgt_tokenizer)
        assert loaded.config == model.config and loaded.src_vocab == model.src_vocab
        assert loaded.tgt_vocab == model.tgt_vocab
        found = tokenizer_tensors(path)
        assert {name: value.tobytes() for name, value in found.items()} == {
            name: t.model for name, t in stored.items()}
        assert all(value.dtype == np.uint8 and value.ndim == 1 for value in found.values())
        raw = path.read_bytes()
        for t in stored.values():
            assert raw.count(t.model) == 1  # once, not also in the header
        texts_in = texts[:4] + ["the ZQX dog"]
        assert loaded.translate(texts_in, max_length=8) == model.translate(texts_in, max_length=8)
        assert loaded.compile().translate(texts_in, max_length=8) == model.translate(texts_in, max_length=8)


def test_a_trained_model_translates_into_detokenized_text(tmp_path, texts, tokenizer):
    pairs = [(t, " ".join(reversed(t.split()))) for t in texts]
    src_vocab, tgt_vocab = build_vocabs(pairs, "word", tokenizer)
    model = Seq2Seq(src_vocab, tgt_vocab, embed_size=16, hidden_size=32, seed=1, src_tokenizer="word",
                    tgt_tokenizer=tokenizer)
    data = encode_pairs(pairs, model.src_vocab, model.tgt_vocab, "word", tokenizer)
    train(model, data, epochs=10, batch_size=16, lr=0.01, progress=False, log=lambda m: None)
    out = model.translate([s for s, _ in pairs[:20]], max_length=30)
    assert all("▁" not in text for text in out)
    ids = model.greedy(*model.encode_texts([s for s, _ in pairs[:20]]), max_length=30)
    assert out == [tokenizer.detokenize(model.tgt_vocab.decode(row)) for row in ids]
    assert len(set(out)) > 1, out  # not the same for every input


def test_missing_sentencepiece_package_is_a_clear_error(monkeypatch, tmp_path, texts, tokenizer):
    model, _ = small_model("char", tokenizer, texts)
    path = tmp_path / "spm.s2s"
    model.save(path)
    char_model, _ = small_model("char", "char", texts)
    char_model.save(tmp_path / "char.s2s")
    monkeypatch.setitem(sys.modules, "sentencepiece", None)  # import sentencepiece -> ImportError
    hint = "pip install 's2sext[sentencepiece]'"
    with pytest.raises(SentencePieceUnavailableError, match=re.escape(f"sentencepiece package: {hint}")):
        SentencePieceTokenizer(tokenizer.model)
    with pytest.raises(SentencePieceUnavailableError, match="sentencepiece package"):
        Seq2Seq.load(path)
    assert isinstance(SentencePieceUnavailableError(), ImportError)
    Seq2Seq.load(tmp_path / "char.s2s").translate(["the cat"])  # only a sentencepiece model needs it


# ---------------------------------------------------------------------------------------------
# The command line


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_error_line(rc, err, *fragments):
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("s2sext: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


TINY = ["--task", "reverse", "--task-size", "300", "--hidden", "16", "--embed", "8", "--batch-size", "32",
        "--no-progress", "--epochs", "1"]


@pytest.mark.slow
def test_cli_trains_and_translates_a_sentencepiece_target(tmp_path, capsys):
    out = tmp_path / "spm.s2s"
    rc, _, err = run(capsys, "train", *TINY, "--tgt-tokenizer", "sentencepiece", "--tgt-spm-vocab-size", "40",
                     "--out", out)
    assert rc == 0, err
    assert "not updated" not in err and "left as it is" not in err
    model, extra, _ = Seq2Seq.load(out, return_extra=True)
    assert extra["training"]["stop_reason"] == "epochs"  # the final record was written, with the spm model kept
    assert model.config.src_tokenizer == "char" and model.config.tgt_tokenizer == "sentencepiece"
    assert len(model.tgt_vocab) <= 40 and list(tokenizer_tensors(out)) == ["tokenizer.tgt.sentencepiece"]
    sources = ["abcde", "hello", "xyz"]
    (tmp_path / "in.txt").write_text("\n".join(sources) + "\n", encoding="utf-8")
    rc, printed, err = run(capsys, "translate", "--model", out, tmp_path / "in.txt")
    assert rc == 0, err
    assert printed.splitlines() == model.translate(sources)
    assert "▁" not in printed
    # the same trained model again: the same spm model (training is deterministic)
    again = tmp_path / "again.s2s"
    assert run(capsys, "train", *TINY, "--tgt-tokenizer", "sentencepiece", "--tgt-spm-vocab-size", "40",
               "--out", again)[0] == 0
    assert tokenizer_tensors(again)["tokenizer.tgt.sentencepiece"].tobytes() == model.tgt_tokenizer.model


@pytest.mark.slow
def test_cli_shared_and_given_models(tmp_path, capsys):
    out = tmp_path / "shared.s2s"
    rc, _, err = run(capsys, "train", *TINY, "--tokenizer", "sentencepiece", "--shared-spm", "--spm-model-type",
                     "bpe", "--src-spm-vocab-size", "40", "--out", out)
    assert rc == 0, err
    shared = Seq2Seq.load(out)
    assert shared.src_tokenizer == shared.tgt_tokenizer and list(tokenizer_tensors(out)) == ["tokenizer.sentencepiece"]
    spm_file = tmp_path / "given.model"
    spm_file.write_bytes(shared.src_tokenizer.model)
    given = tmp_path / "given.s2s"
    rc, _, err = run(capsys, "train", *TINY, "--src-tokenizer", "sentencepiece", "--src-spm-model", spm_file,
                     "--out", given)
    assert rc == 0, err
    assert Seq2Seq.load(given).src_tokenizer == shared.src_tokenizer


@pytest.mark.parametrize("argv, fragments", [
    (["--src-spm-vocab-size", "30"], ["--src-spm-vocab-size needs a sentencepiece source side", "it is char"]),
    (["--tgt-tokenizer", "sentencepiece", "--tgt-vocab-size", "30"], ["--tgt-spm-vocab-size"]),
    (["--tgt-tokenizer", "sentencepiece", "--shared-spm"], ["--shared-spm needs sentencepiece on both sides"]),
    (["--tokenizer", "sentencepiece", "--src-spm-model", "missing.model"], ["missing.model"]),
])
def test_cli_refuses_bad_sentencepiece_options_in_one_line(tmp_path, capsys, monkeypatch, argv, fragments):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run(capsys, "train", *TINY, *argv, "--out", tmp_path / "m.s2s")
    one_error_line(rc, err, *fragments)


def test_cli_without_the_package_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sentencepiece", None)
    rc, _, err = run(capsys, "train", *TINY, "--tgt-tokenizer", "sentencepiece", "--out", tmp_path / "m.s2s")
    one_error_line(rc, err, "pip install 's2sext[sentencepiece]'")


def test_a_corrupted_model_blob_is_refused(tmp_path, texts, tokenizer):
    model, _ = small_model("char", tokenizer, texts)
    path = tmp_path / "m.s2s"
    model.save(path)
    header, tensors = read_model_file(path)
    from s2sext.serialize import write_model_file

    tensors["tokenizer.tgt.sentencepiece"] = tensors["tokenizer.tgt.sentencepiece"][:1000]
    write_model_file(path, header, tensors)
    with pytest.raises(ModelFileError, match="tokenizer.tgt.sentencepiece"):
        Seq2Seq.load(path)
