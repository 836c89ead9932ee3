"""Optional lowercasing per side (config ``src_lowercase`` / ``tgt_lowercase``): the tokenizers'
``lowercase`` option, which applies s2sext's one rule (``_core.lowercase``, tests/test_lowercase.py)
before splitting; the configuration's version-3 keys and the model file; Seq2Seq, the compiled
Decoder and the CLI (the C++ Translator is in tests/test_cpp_api.py)."""

import hashlib
import pickle

import numpy as np
import pytest

from s2sext import Decoder, Seq2Seq, _core
from s2sext.cli import main
from s2sext.config import VERSION_DEFAULTS, Config
from s2sext.data import build_vocabs, token_limit_problem
from s2sext.serialize import read_model_file
from s2sext.text import CharTokenizer, WordTokenizer, get_tokenizer

MIXED = ["Hello WORLD", "İstanbul ΟΔΟΣ", "ǅ ÀÉÎ ＡＢＣ 𐐀", "already lower ß", "", "  Tab\tand\u2003em-space  "]


# ---------------------------------------------------------------------------------------------
# Tokenizers


@pytest.mark.parametrize("cls", [CharTokenizer, WordTokenizer])
def test_char_and_word_tokenizers_read_the_lowercased_text(cls):
    lower, plain = cls(lowercase=True), cls()
    for text in MIXED:
        lowered = _core.lowercase(text)
        assert lower.tokenize(text) == plain.tokenize(lowered)
        assert lower.count(text) == len(lower.tokenize(text))
        assert lower.detokenize(["AB", "C"]) == plain.detokenize(["AB", "C"])  # tokens joined as they are
        for n in (1, 2, 5):
            cut = lower.truncate(text, n)
            assert cut == plain.truncate(lowered, n) and lower.count(cut) <= n
    assert lower.tokenize("İ") == (["i", "\u0307"] if cls is CharTokenizer else ["i\u0307"])
    assert plain.tokenize("HELLO") != lower.tokenize("HELLO") == plain.tokenize("hello")


def test_lowercasing_moves_no_character_to_or_from_whitespace():
    # WordTokenizer.count counts the words as written (no lowercased copy of a long line): right
    # because lowercasing, code point by code point, maps every space to itself and no other
    # character to a space
    every = "".join(chr(cp) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF)
    spaces = "".join(c for c in every if c.isspace())
    assert _core.lowercase(spaces) == spaces
    assert sum(c.isspace() for c in _core.lowercase(every)) == len(spaces)


def test_a_lowercasing_tokenizer_is_not_at_most_one_token_per_character():
    assert CharTokenizer().at_most_one_token_per_character and WordTokenizer().at_most_one_token_per_character
    assert not CharTokenizer(lowercase=True).at_most_one_token_per_character
    # the length limits count, instead of trusting the character count: 'İİİ' is 6 tokens lowercased
    assert token_limit_problem("İİİ", CharTokenizer(), 4) is None
    assert "has 6 char tokens" in token_limit_problem("İİİ", CharTokenizer(lowercase=True), 4)


def test_tokenizer_equality_hash_repr_and_pickle():
    for cls in (CharTokenizer, WordTokenizer):
        assert cls(lowercase=True) == cls(lowercase=True) != cls()
        assert hash(cls(lowercase=True)) == hash(cls(lowercase=True))
        assert len({cls(), cls(lowercase=True)}) == 2
        assert repr(cls(lowercase=True)) == f"{cls.__name__}(lowercase=True)" and repr(cls()) == f"{cls.__name__}()"
        assert pickle.loads(pickle.dumps(cls(lowercase=True))) == cls(lowercase=True)
        assert cls(lowercase=True).lowercase and not cls().lowercase


def test_get_tokenizer_lowercase():
    assert get_tokenizer("char", lowercase=True) == CharTokenizer(lowercase=True)
    assert get_tokenizer("word") == WordTokenizer()
    assert get_tokenizer(WordTokenizer(), lowercase=True) == WordTokenizer(lowercase=True)
    lowering = CharTokenizer(lowercase=True)
    assert get_tokenizer(lowering) is lowering  # an instance keeps its own option
    assert CharTokenizer().with_lowercase(True) == lowering and lowering.with_lowercase(False) == CharTokenizer()
    for make in (lambda: get_tokenizer("char", lowercase=1), lambda: CharTokenizer(lowercase="yes"),
                 lambda: WordTokenizer().with_lowercase(None)):
        with pytest.raises(TypeError, match="lowercase must be a bool, got"):
            make()


def test_sentencepiece_tokenizer_lowercase():
    pytest.importorskip("sentencepiece")
    from s2sext.text import SentencePieceTokenizer

    texts = ["The Cat SLEEPS", "a Dog Runs", "THE DOG sleeps", "A cat runs"] * 20
    lower = SentencePieceTokenizer.train(texts, vocab_size=40, lowercase=True)
    assert lower.lowercase
    assert not any(c.isupper() for piece in lower.vocab().tokens for c in piece)  # trained on lowercased text
    plain = SentencePieceTokenizer(lower.model)
    assert lower != plain and lower == SentencePieceTokenizer(lower.model, lowercase=True)
    assert hash(lower) == hash(SentencePieceTokenizer(lower.model, lowercase=True))
    assert "lowercase=True" in repr(lower) and "lowercase" not in repr(plain)
    assert pickle.loads(pickle.dumps(lower)) == lower
    assert get_tokenizer(plain, lowercase=True) == lower and get_tokenizer("sentencepiece", lower.model, True) == lower
    for text in ["THE CAT", "İstanbul Dog", "the cat"]:
        assert lower.tokenize(text) == plain.tokenize(_core.lowercase(text))
        assert lower.count(text) == len(lower.tokenize(text))
        cut = lower.truncate(text, 2)
        assert cut == _core.lowercase(cut) and lower.count(cut) <= 2
    assert lower.tokenize("THE DOG") == lower.tokenize("the dog") != plain.tokenize("THE DOG")


# ---------------------------------------------------------------------------------------------
# Configuration and model file


def test_the_flags_are_version_3_keys():
    assert VERSION_DEFAULTS[3] == {"src_lowercase": False, "tgt_lowercase": False}
    assert VERSION_DEFAULTS[2] == {"bridge": "linear", "combine_activation": "tanh", "attention_query_bias": False}
    for key in ("src_lowercase", "tgt_lowercase"):
        with pytest.raises(TypeError, match=f"{key} must be a bool, got 1"):
            Config(src_vocab_size=5, tgt_vocab_size=5, **{key: 1}).validate()
        with pytest.raises(TypeError, match=f"{key} must be a bool, got 'true'"):
            Seq2Seq(list("ab"), list("cd"), hidden_size=4, **{key: "true"})


def _fixed_params(model):
    for i, (name, value) in enumerate(sorted(model.params.items())):
        model.params[name][...] = (np.arange(value.size, dtype=np.float32).reshape(value.shape) + i) / 64


# The SHA-256 of these models' files as s2sext wrote them before the lowercase keys existed
# (main c15a3ef): a model that does not lowercase is still written as version 1, byte for byte.
VERSION_1_FILES = [
    (dict(), "1c8ce08c0b70d435248d2eaa191120a716613dcd111ff52ba494bc1ebcd4f9e0"),
    (dict(src_tokenizer="word", tgt_tokenizer="word", bidirectional=True, attention="general"),
     "64d8c422033a324b286d3d35877ed3e2f67c291e03f9b57ae60304db224a76b3"),
]


# The same for models that need a version-2 key (OpenNMT-py brnn + mlp options, as tests/test_opennmt.py
# imports them): still written as version 2, byte for byte as main c15a3ef wrote them, whose 17 keys
# today's readers accept (the lowercase keys were once added to version 2, which refused these files).
VERSION_2_FILES = [
    (dict(attention="concat", bidirectional=True, bridge="concat", attention_query_bias=True,
          combine_activation="none", input_feeding=True, num_layers=2),
     "c7eed3045a4912a70a1ae782c37148335ed2b04df44660b0ad3e6164797cb061"),
    (dict(src_tokenizer="word", tgt_tokenizer="word", attention="general", combine_activation="none"),
     "bfefeab4eb2f419a657adfb0f5e5d57bd2eb89d9acc74d14eeb4034e02ff982d"),
]


def _saved_without_lowercasing(tmp_path, options):
    """(path, bytes) of the model of ``options`` saved, each time the same bytes whether or not the
    lowercase flags are given as False."""
    contents = []
    for explicit in ({}, dict(src_lowercase=False, tgt_lowercase=False)):
        model = Seq2Seq(list("abcHé"), list("xyzW"), embed_size=3, hidden_size=4, seed=0, **options, **explicit)
        _fixed_params(model)
        model.save(tmp_path / "m.s2s")
        contents.append((tmp_path / "m.s2s").read_bytes())
    assert contents[0] == contents[1]
    return tmp_path / "m.s2s", contents[0]


@pytest.mark.parametrize("options, digest", VERSION_1_FILES)
def test_a_model_without_lowercasing_is_the_version_1_file_of_before(tmp_path, options, digest):
    path, content = _saved_without_lowercasing(tmp_path, options)
    assert hashlib.sha256(content).hexdigest() == digest
    header, _ = read_model_file(path)
    assert header["version"] == 1 and "src_lowercase" not in header["config"]


@pytest.mark.parametrize("options, digest", VERSION_2_FILES)
def test_a_version_2_model_without_lowercasing_is_the_version_2_file_of_before(tmp_path, options, digest):
    path, content = _saved_without_lowercasing(tmp_path, options)
    assert hashlib.sha256(content).hexdigest() == digest
    header, _ = read_model_file(path)
    assert header["version"] == 2 and len(header["config"]) == 17
    assert not {"src_lowercase", "tgt_lowercase"} & set(header["config"])
    # both readers load the file of before
    loaded = Seq2Seq.load(path)
    assert loaded.config == Config(**{**header["config"], "src_lowercase": False, "tgt_lowercase": False})
    assert not loaded.src_tokenizer.lowercase and not loaded.tgt_tokenizer.lowercase
    assert not any(t.lowercase for t in Decoder.load(path).tokenizers)
    _core.check_model_file(str(path))


@pytest.mark.parametrize("sides", [(True, False), (False, True), (True, True)])
def test_a_lowercasing_model_saves_version_3_and_loads_back_equal(tmp_path, sides):
    src_lowercase, tgt_lowercase = sides
    model = Seq2Seq(list("abc"), list("xyz"), embed_size=3, hidden_size=4, seed=0, src_tokenizer="word",
                    src_lowercase=src_lowercase, tgt_lowercase=tgt_lowercase)
    assert (model.src_tokenizer, model.tgt_tokenizer) == (WordTokenizer(lowercase=src_lowercase),
                                                          CharTokenizer(lowercase=tgt_lowercase))
    model.save(tmp_path / "m.s2s")
    header, _ = read_model_file(tmp_path / "m.s2s")
    # version 3 has all 19 keys, the version-2 ones with their defaults here
    assert header["version"] == 3 and len(header["config"]) == 19
    assert (header["config"]["src_lowercase"], header["config"]["tgt_lowercase"]) == sides
    assert {k: header["config"][k] for k in VERSION_DEFAULTS[2]} == VERSION_DEFAULTS[2]
    _core.check_model_file(str(tmp_path / "m.s2s"))
    loaded = Seq2Seq.load(tmp_path / "m.s2s")
    assert loaded.config == model.config
    assert (loaded.src_tokenizer, loaded.tgt_tokenizer) == (model.src_tokenizer, model.tgt_tokenizer)
    decoder = Decoder.load(tmp_path / "m.s2s")
    assert decoder.tokenizers == (model.src_tokenizer, model.tgt_tokenizer)
    # a Decoder built from a configuration alone lowercases as the configuration says
    bare = Decoder(model.config.as_dict(), model.params, model.src_vocab, model.tgt_vocab)
    assert bare.tokenizers == decoder.tokenizers


def test_a_lowercasing_tokenizer_given_to_the_model_sets_the_flag():
    model = Seq2Seq(list("abc"), list("xyz"), hidden_size=4, src_tokenizer=CharTokenizer(lowercase=True))
    assert model.config.src_lowercase and not model.config.tgt_lowercase and model.config.file_version == 3


# ---------------------------------------------------------------------------------------------
# Translation


def _lowercasing_model(lowercase=True):
    # a vocabulary of lowercase letters only: without lowercasing, 'HELLO' is all <unk>
    model = Seq2Seq(list("ehlowrd"), list("abcdefgh"), embed_size=6, hidden_size=12, seed=5, attention="general",
                    src_lowercase=lowercase)
    rng = np.random.default_rng(0)
    for name in model.params:
        model.params[name] = (rng.standard_normal(model.params[name].shape) * 1.5).astype(np.float32)
    return model


def test_translate_lowercases_the_source(tmp_path):
    model, plain = _lowercasing_model(), _lowercasing_model(False)
    texts = ["HELLO", "hello", "World", "wORLD", "hELLo wOrLd"]
    lowered = [_core.lowercase(t) for t in texts]
    # the test has teeth: these weights translate 'HELLO' and 'hello' differently when not lowercasing
    assert plain.translate(["HELLO"]) != plain.translate(["hello"])
    np.testing.assert_array_equal(model.encode_texts(texts)[0], plain.encode_texts(lowered)[0])
    want = plain.translate(lowered, max_length=12)
    assert len(set(want)) >= 3, want
    assert model.translate(texts, max_length=12) == want
    assert model.translate(texts, beam=3, max_length=12) == plain.translate(lowered, beam=3, max_length=12)
    model.save(tmp_path / "m.s2s")
    for decoder in (model.compile(), Decoder.load(tmp_path / "m.s2s"), Seq2Seq.load(tmp_path / "m.s2s")):
        assert decoder.translate(texts, max_length=12) == want


def test_a_lowercasing_target_side_scores_against_lowercased_references():
    from s2sext.data import encode_pairs
    from s2sext.train import evaluate

    pairs = [("ab", "XY"), ("ba", "yx"), ("aa", "Xx")]
    model = Seq2Seq(list("ab"), list("xy"), embed_size=3, hidden_size=4, seed=0, tgt_lowercase=True)
    src, tgt = encode_pairs(pairs, model.src_vocab, model.tgt_vocab, model.src_tokenizer, model.tgt_tokenizer)
    mixed = evaluate(model, src, tgt, with_loss=False, max_length=3, metrics=("token_error_rate",),
                     references=[t for _, t in pairs])
    lowered = evaluate(model, src, tgt, with_loss=False, max_length=3, metrics=("token_error_rate",),
                       references=[_core.lowercase(t) for _, t in pairs])
    assert mixed["metrics"] == lowered["metrics"] and mixed["reference_tokens"] == 6


# ---------------------------------------------------------------------------------------------
# The command line


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


PAIRS = [("Hello World", "BONJOUR le Monde"), ("good DAY", "Bonne JOURNÉE"), ("HELLO day", "bonjour Journée"),
         ("Good World", "bon MONDE")] * 4


def _train(capsys, tmp_path, *options):
    data = tmp_path / "d.tsv"
    data.write_text("".join(f"{s}\t{t}\n" for s, t in PAIRS), encoding="utf-8")
    out = tmp_path / "m.s2s"
    rc, stdout, err = _run(capsys, "train", "--data", data, "--valid", data, "--tokenizer", "word", "--hidden", "8",
                           "--embed", "4", "--epochs", "1", "--no-progress", "--out", out, *options)
    assert rc == 0, err
    return out, data


def test_cli_train_lowercase_both_sides(capsys, tmp_path):
    out, data = _train(capsys, tmp_path, "--lowercase")
    model = Seq2Seq.load(out)
    assert model.config.src_lowercase and model.config.tgt_lowercase
    header, _ = read_model_file(out)
    assert header["version"] == 3
    assert header["config"]["src_lowercase"] is True and header["config"]["tgt_lowercase"] is True
    assert set(model.src_vocab.tokens[4:]) == {"hello", "world", "good", "day"}
    assert set(model.tgt_vocab.tokens[4:]) == {"bonjour", "le", "monde", "bonne", "journée", "bon"}
    # translate needs no option: the model lowercases its input
    inputs = tmp_path / "in.txt"
    inputs.write_text("HELLO WORLD\nhello world\n", encoding="utf-8")
    rc, stdout, err = _run(capsys, "translate", "--model", out, "--max-length", "5", inputs)
    assert rc == 0, err
    first, second = stdout.split("\n")[:2]
    assert first == second == model.translate(["hello world"], max_length=5)[0]
    assert "unknown" not in err  # no <unk>: the capitals were lowercased before the vocabulary lookup
    rc, stdout, err = _run(capsys, "eval", "--model", out, "--data", data, "--metric", "exact_match")
    assert rc == 0, err
    assert "references are lowercased" in err


def test_cli_train_one_side_lowercase(capsys, tmp_path):
    out, data = _train(capsys, tmp_path, "--src-lowercase")
    model = Seq2Seq.load(out)
    assert model.config.src_lowercase and not model.config.tgt_lowercase
    assert set(model.src_vocab.tokens[4:]) == {"hello", "world", "good", "day"}
    assert "BONJOUR" in model.tgt_vocab and "JOURNÉE" in model.tgt_vocab
    rc, stdout, err = _run(capsys, "eval", "--model", out, "--data", data, "--metric", "exact_match")
    assert rc == 0 and "lowercased" not in err, err
    out, _ = _train(capsys, tmp_path, "--tgt-lowercase")
    model = Seq2Seq.load(out)
    assert not model.config.src_lowercase and model.config.tgt_lowercase
    assert "Hello" in model.src_vocab and set(model.tgt_vocab.tokens[4:]) == {"bonjour", "le", "monde", "bonne",
                                                                              "journée", "bon"}


def test_cli_train_lowercase_counts_the_limits_in_lowercased_tokens(capsys, tmp_path):
    data = tmp_path / "d.tsv"
    data.write_text("İİİ\tx\nab\ty\n", encoding="utf-8")
    common = ["train", "--data", data, "--valid", data, "--hidden", "4", "--embed", "2", "--epochs", "1",
              "--no-progress", "--max-source-length", "4", "--out", tmp_path / "m.s2s"]
    rc, _, err = _run(capsys, *common)
    assert rc == 0, err  # three characters
    rc, _, err = _run(capsys, *common, "--lowercase")
    assert rc == 2 and "has 6 char tokens" in err, err  # six code points once lowercased


def test_cli_help_describes_the_options(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--lowercase", "--src-lowercase", "--tgt-lowercase"):
        assert option in text
    assert "translate, eval and plot lowercase their inputs" in text


def test_build_vocabs_with_lowercasing_tokenizers():
    src_vocab, tgt_vocab = build_vocabs(PAIRS, WordTokenizer(lowercase=True), "word")
    assert set(src_vocab.tokens[4:]) == {"hello", "world", "good", "day"} and "BONJOUR" in tgt_vocab


@pytest.mark.parametrize("options", [["--lowercase", "--src-spm-vocab-size", "30", "--tgt-spm-vocab-size", "30"],
                                     ["--src-lowercase", "--shared-spm", "--src-spm-vocab-size", "40"]])
def test_cli_train_lowercase_sentencepiece(capsys, tmp_path, options):
    pytest.importorskip("sentencepiece")
    data = tmp_path / "d.tsv"
    data.write_text("".join(f"{s}\t{t}\n" for s, t in PAIRS), encoding="utf-8")
    out = tmp_path / "m.s2s"
    rc, _, err = _run(capsys, "train", "--data", data, "--valid", data, "--tokenizer", "sentencepiece", "--hidden",
                      "8", "--embed", "4", "--epochs", "1", "--no-progress", "--out", out, *options)
    assert rc == 0, err
    model = Seq2Seq.load(out)
    shared = "--shared-spm" in options
    assert (model.config.src_lowercase, model.config.tgt_lowercase) == (True, not shared)
    assert model.src_tokenizer.lowercase and model.tgt_tokenizer.lowercase == (not shared)
    if shared:  # one model, trained on the lowercased sources and the targets as written
        assert model.src_tokenizer.model == model.tgt_tokenizer.model
        pieces = "".join(model.src_vocab.tokens[4:])
        assert {"B", "J", "M"} <= set(pieces)  # capitals of the targets
        assert not {"H", "W", "G", "A", "Y", "L"} & set(pieces)  # capitals only the sources have
    else:  # each side's model trained on its lowercased text
        for vocab in (model.src_vocab, model.tgt_vocab):
            assert not any(c.isupper() for token in vocab.tokens[4:] for c in token), vocab.tokens
    assert model.translate(["HELLO WORLD"], max_length=5) == model.translate(["hello world"], max_length=5)
