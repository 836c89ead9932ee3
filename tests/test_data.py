"""Tests for s2sext.data: vocabularies, tokenizers, padding, TSV files, splits, batches.

The built-in tasks are tested in test_data_tasks.py.
"""
from __future__ import annotations

import os
import pickle
from collections import Counter

import numpy as np
import pytest

from s2sext import data
from s2sext.data import (
    EOS_ID,
    PAD_ID,
    SOS_ID,
    SPECIALS,
    UNK_ID,
    CharTokenizer,
    DataError,
    Vocab,
    WordTokenizer,
)


# ----------------------------------------------------------------------------------------------------
# Vocab and tokenizers


def test_special_ids():
    assert SPECIALS == ("<pad>", "<sos>", "<eos>", "<unk>")
    assert (data.PAD, data.SOS, data.EOS, data.UNK) == SPECIALS
    assert (PAD_ID, SOS_ID, EOS_ID, UNK_ID) == (0, 1, 2, 3)


def test_vocab_build_orders_by_frequency_then_token():
    sequences = [["b", "a", "c"], ["c", "b", "d"], ["c", "<unk>"], ["e"]]
    vocab = Vocab.build(sequences)
    assert vocab.tokens == SPECIALS + ("c", "b", "a", "d", "e")
    assert Vocab.build(reversed(sequences)) == vocab
    assert Vocab.build(sequences, min_freq=2).tokens == SPECIALS + ("c", "b")
    assert Vocab.build(sequences, max_size=6).tokens == SPECIALS + ("c", "b")
    assert Vocab.build([]).tokens == SPECIALS
    with pytest.raises(ValueError, match="max_size must be >= 4, got 3"):
        Vocab.build(sequences, max_size=3)
    with pytest.raises(ValueError, match="min_freq must be >= 1, got 0"):
        Vocab.build(sequences, min_freq=0)
    with pytest.raises(TypeError, match=r"token_sequences\[1\] must be a sequence of str tokens"):
        Vocab.build([["a"], "text"])


def test_vocab_encode_decode_round_trip():
    vocab = Vocab.build([list("hello world")])
    tokens = list("low rod")
    ids = vocab.encode(tokens)
    assert len(vocab) == 4 + len(set("hello world"))
    assert vocab.decode(ids) == tokens
    assert vocab.encode(tokens, add_eos=True) == ids + [EOS_ID]
    assert vocab.encode(["z", "h"]) == [UNK_ID, vocab.index("h")]
    assert vocab.index("z") == UNK_ID and vocab.index("<eos>") == EOS_ID
    assert vocab.tokens[vocab.index("w")] == "w"
    # strip: stop at the first <eos>, drop <pad> and <sos>
    h, e = vocab.index("h"), vocab.index("e")
    assert vocab.decode([SOS_ID, h, PAD_ID, e, EOS_ID, h, PAD_ID]) == ["h", "e"]
    assert vocab.decode(np.array([SOS_ID, h, EOS_ID, e])) == ["h"]
    assert vocab.decode([SOS_ID, h, EOS_ID, PAD_ID], strip=False) == ["<sos>", "h", "<eos>", "<pad>"]
    assert vocab.decode([]) == []
    with pytest.raises(ValueError, match=r"ids\[1\] = 99 is outside the vocabulary \[0, 12\)"):
        vocab.decode([h, 99])
    with pytest.raises(ValueError, match=r"ids\[0\] = -1"):
        vocab.decode([-1])
    with pytest.raises(TypeError, match="ids must hold int ids, got dtype float64"):
        vocab.decode([1.0, 2.0])
    with pytest.raises(TypeError, match="tokens must be a sequence of str tokens, got the str 'hello'"):
        vocab.encode("hello")
    with pytest.raises(TypeError, match=r"tokens\[1\] must be a str token, got int"):
        vocab.encode(["h", 3])
    with pytest.raises(TypeError, match="token must be a str"):
        vocab.index(3)


def test_vocab_constructor_checks():
    assert Vocab(list(SPECIALS) + ["a"]).tokens == SPECIALS + ("a",)
    with pytest.raises(ValueError, match=r"must start with the specials .*got \['<sos>', '<pad>'"):
        Vocab(["<sos>", "<pad>", "<eos>", "<unk>", "a"])
    with pytest.raises(ValueError, match="must start with the specials"):
        Vocab(["a", "b"])
    with pytest.raises(ValueError, match=r"tokens\[6\] = 'a' repeats tokens\[4\]"):
        Vocab(list(SPECIALS) + ["a", "b", "a"])
    with pytest.raises(ValueError, match=r"tokens\[5\] is the empty string"):
        Vocab(list(SPECIALS) + ["a", ""])
    with pytest.raises(TypeError, match=r"tokens\[4\] must be a str token, got int"):
        Vocab(list(SPECIALS) + [5])


def test_vocab_equality_of_size_and_coerce():
    vocab = Vocab(list(SPECIALS) + ["x", "y"])
    assert vocab == Vocab(tuple(SPECIALS) + ("x", "y"))
    assert vocab != Vocab(list(SPECIALS) + ["y", "x"])
    assert hash(vocab) == hash(Vocab(list(SPECIALS) + ["x", "y"]))
    assert vocab != SPECIALS + ("x", "y")
    assert "x" in vocab and "q" not in vocab

    sized = Vocab.of_size(7)
    assert sized.tokens == SPECIALS + ("t4", "t5", "t6")
    assert len(Vocab.of_size(4)) == 4
    with pytest.raises(ValueError, match="size must be >= 4, got 3"):
        Vocab.of_size(3)

    assert Vocab.coerce(vocab) is vocab
    assert Vocab.coerce(7) == sized
    assert Vocab.coerce(np.int64(7)) == sized
    assert Vocab.coerce(list(SPECIALS) + ["x", "y"]) == vocab
    assert Vocab.coerce(["x", "y"]) == vocab
    assert Vocab.coerce(("x", "<eos>", "y", "<pad>")) == vocab
    with pytest.raises(ValueError, match="repeats"):
        Vocab.coerce(["x", "x"])
    with pytest.raises(TypeError, match="vocab must be a Vocab, an int size or a list/tuple"):
        Vocab.coerce("xy")
    with pytest.raises(TypeError, match="vocab must be"):
        Vocab.coerce(True)


def test_tokenizers():
    char, word = data.get_tokenizer("char"), data.get_tokenizer("word")
    assert isinstance(char, CharTokenizer) and char.name == "char"
    assert isinstance(word, WordTokenizer) and word.name == "word"
    assert char.tokenize("ab c") == ["a", "b", " ", "c"]
    assert char.detokenize(char.tokenize("Sep 27, 1994")) == "Sep 27, 1994"
    assert word.tokenize("  the cat\tsat\n") == ["the", "cat", "sat"]
    assert word.detokenize(["the", "cat"]) == "the cat"
    assert char.tokenize("") == [] and word.tokenize("   ") == []
    assert data.get_tokenizer(word) is word
    assert CharTokenizer() == char != word
    with pytest.raises(ValueError, match=r"tokenizer must be one of \['char', 'sentencepiece', 'word'\], got 'bpe'"):
        data.get_tokenizer("bpe")
    with pytest.raises(TypeError, match="text must be a str, got list"):
        char.tokenize(["a"])


# ----------------------------------------------------------------------------------------------------
# pad_batch


def test_pad_batch_shapes_and_values():
    ids, lengths = data.pad_batch([[5, 6, 7], [8], np.array([9, 10], dtype=np.int32)])
    assert ids.dtype == np.int64 and lengths.dtype == np.int64
    assert ids.flags.c_contiguous
    np.testing.assert_array_equal(ids, [[5, 6, 7], [8, 0, 0], [9, 10, 0]])
    np.testing.assert_array_equal(lengths, [3, 1, 2])

    ids, lengths = data.pad_batch([[4]], pad_id=-1)
    assert ids.shape == (1, 1) and lengths.tolist() == [1]
    ids, _ = data.pad_batch([[4, 4], [3]], pad_id=-1)
    assert ids.tolist() == [[4, 4], [3, -1]]

    ids, lengths = data.pad_batch([[], [1, 2]], allow_empty=True)
    assert ids.tolist() == [[0, 0], [1, 2]] and lengths.tolist() == [0, 2]
    ids, lengths = data.pad_batch([[]], allow_empty=True)
    assert ids.shape == (1, 0) and lengths.tolist() == [0]


def test_pad_batch_errors():
    with pytest.raises(ValueError, match="sequences is empty"):
        data.pad_batch([])
    with pytest.raises(ValueError, match=r"sequences\[1\] is empty"):
        data.pad_batch([[1], []])
    with pytest.raises(TypeError, match=r"sequences\[0\] must hold int ids, got dtype float64"):
        data.pad_batch([[1.5]])
    with pytest.raises(TypeError, match=r"sequences\[0\] must hold int ids, got dtype bool"):
        data.pad_batch([[True]])
    with pytest.raises(ValueError, match=r"sequences\[0\] must be 1-D"):
        data.pad_batch([[[1, 2]]])
    with pytest.raises(TypeError, match="pad_id must be an int"):
        data.pad_batch([[1]], pad_id=0.0)
    with pytest.raises(TypeError, match="sequences must be a sequence of id sequences"):
        data.pad_batch(x for x in [[1]])


# ----------------------------------------------------------------------------------------------------
# TSV files


def test_read_tsv_reads_pairs(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_bytes("\ufeffa b\tx\r\n\nsept 3\t1994-09-03\n\r\nä\tß\ndup\tdup\ndup\tdup".encode("utf-8"))
    assert data.read_tsv(path) == [
        ("a b", "x"), ("sept 3", "1994-09-03"), ("ä", "ß"), ("dup", "dup"), ("dup", "dup")
    ]
    assert data.read_tsv(str(path)) == data.read_tsv(path)


@pytest.mark.parametrize(
    "text, lineno, problem",
    [
        (b"a\tb\n\nno tab here\n", 3, "expected exactly one TAB between source and target, found 0"),
        (b"a\tb\nc\td\te\n", 2, "found 2"),
        (b"a\tb\r\n\tb\r\n", 2, "empty source"),
        (b"a\tb\nc\t\n", 2, "empty target"),
        (b"a\tb\n\n\nc\td\n\xff\xfe\tx\n", 5, "invalid UTF-8 at byte 0"),
        (b"a\tb\nok\t\xc3\n", 2, "invalid UTF-8 at byte 3"),
        (b" \n", 1, "found 0"),
    ],
)
def test_read_tsv_errors_name_the_line(tmp_path, text, lineno, problem):
    path = tmp_path / "bad.tsv"
    path.write_bytes(text)
    with pytest.raises(DataError) as caught:
        data.read_tsv(path)
    assert str(caught.value).startswith(f"{path}:{lineno}: ")
    assert problem in str(caught.value)
    assert caught.value.lineno == lineno and caught.value.path == str(path)
    assert isinstance(caught.value, ValueError)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is DataError and str(copy) == str(caught.value)


@pytest.mark.parametrize("text", [b"", b"\n\n\r\n"])
def test_read_tsv_refuses_a_file_without_pairs(tmp_path, text):
    path = tmp_path / "empty.tsv"
    path.write_bytes(text)
    with pytest.raises(DataError, match="no pairs") as caught:
        data.read_tsv(path)
    assert str(caught.value).startswith(f"{path}: ") and caught.value.lineno is None


def test_write_tsv_round_trip_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "out.tsv"
    pairs = data.make_dates(300, seed=1) + [("ü x", "y z")]
    data.write_tsv(path, pairs)
    assert os.listdir(tmp_path) == ["out.tsv"]
    assert data.read_tsv(path) == pairs
    assert path.read_bytes().startswith(f"{pairs[0][0]}\t{pairs[0][1]}\n".encode())

    data.write_tsv(str(path), [("a", "b")])  # replaces the existing file
    assert path.read_text(encoding="utf-8") == "a\tb\n"
    assert os.listdir(tmp_path) == ["out.tsv"]


def test_write_tsv_failure_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "out.tsv"
    data.write_tsv(path, [("old", "file")])

    def failing_replace(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        data.write_tsv(path, [("new", "file")])
    monkeypatch.undo()
    assert path.read_text(encoding="utf-8") == "old\tfile\n"
    assert os.listdir(tmp_path) == ["out.tsv"]


@pytest.mark.parametrize(
    "pairs, error, message",
    [
        ([("a\tb", "c")], ValueError, r"pairs\[0\] source 'a\\tb' contains '\\t'"),
        ([("a", "b"), ("c", "d\ne")], ValueError, r"pairs\[1\] target 'd\\ne' contains '\\n'"),
        ([("a", "b\r")], ValueError, r"pairs\[0\] target .* contains '\\r'"),
        ([("", "b")], ValueError, r"pairs\[0\] has an empty source"),
        ([], ValueError, "pairs is empty"),
        ([("a", "b", "c")], TypeError, r"pairs\[0\] must be a \(source, target\) pair of str"),
        ([("a", 1)], TypeError, r"pairs\[0\] must be a \(source, target\) pair of str"),
    ],
)
def test_write_tsv_refuses_what_read_tsv_cannot_read(tmp_path, pairs, error, message):
    path = tmp_path / "out.tsv"
    with pytest.raises(error, match=message):
        data.write_tsv(path, pairs)
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------------------------
# Splitting, encoding, batching


def test_split_pairs_sizes_and_determinism():
    pairs = data.make_addition(1000, seed=3)
    train, valid = data.split_pairs(pairs, valid=0.1, seed=5)
    assert (len(train), len(valid)) == (900, 100)
    assert Counter(train + valid) == Counter(pairs)
    assert data.split_pairs(pairs, valid=0.1, seed=5) == (train, valid)
    assert data.split_pairs(pairs, valid=0.1, seed=6) != (train, valid)
    assert valid != pairs[:100]  # shuffled

    train, valid = data.split_pairs(pairs, valid=37)
    assert (len(train), len(valid)) == (963, 37)
    assert [len(part) for part in data.split_pairs(pairs[:10], valid=0.25)] == [7, 3]  # 2.5 rounds up
    assert [len(part) for part in data.split_pairs(pairs[:2], valid=1)] == [1, 1]

    with pytest.raises(ValueError, match=r"valid=0.01 gives 0 of 10 pairs .*both parts must be non-empty"):
        data.split_pairs(pairs[:10], valid=0.01)
    with pytest.raises(ValueError, match="valid=10 gives 10 of 10"):
        data.split_pairs(pairs[:10], valid=10)
    with pytest.raises(ValueError, match=r"valid must be a fraction in \(0, 1\) or an int count, got 1.0"):
        data.split_pairs(pairs, valid=1.0)
    with pytest.raises(TypeError, match="valid must be a float fraction or an int count, got str"):
        data.split_pairs(pairs, valid="0.1")


def test_build_vocabs_and_encode_pairs():
    pairs = [("the cat", "le chat"), ("the dog", "le chien")]
    src_vocab, tgt_vocab = data.build_vocabs(pairs, "word", "char")
    assert src_vocab.tokens == SPECIALS + ("the", "cat", "dog")
    assert tgt_vocab.tokens[4:6] == ("e", " ")  # "e" x3; " ", "c", "h", "l" x2, sorted by token

    src_seqs, tgt_seqs = data.encode_pairs(pairs, src_vocab, tgt_vocab, WordTokenizer(), "char")
    assert src_seqs == [[4, 5], [4, 6]]
    assert [tgt_vocab.decode(ids) for ids in tgt_seqs] == [list("le chat"), list("le chien")]
    assert all(SOS_ID not in ids and EOS_ID not in ids for ids in tgt_seqs)

    reversed_src, same_tgt = data.encode_pairs(
        pairs, src_vocab, tgt_vocab, "word", "char", reverse_source=True
    )
    assert reversed_src == [[5, 4], [6, 4]] and same_tgt == tgt_seqs

    unknown, _ = data.encode_pairs([("the bird", "x")], src_vocab, tgt_vocab, "word", "char")
    assert unknown == [[4, UNK_ID]]
    with pytest.raises(ValueError, match=r"pairs\[1\] source '   ' has no tokens"):
        data.encode_pairs([("the", "l"), ("   ", "l")], src_vocab, tgt_vocab, "word", "char")
    with pytest.raises(TypeError, match="src_vocab must be a Vocab, got int"):
        data.encode_pairs(pairs, 10, tgt_vocab, "word", "char")
    with pytest.raises(TypeError, match=r"pairs\[0\] must be a \(source, target\) pair"):
        data.encode_pairs(["ab"], src_vocab, tgt_vocab, "word", "char")


def test_batches_cover_every_pair_once():
    pairs = data.make_reverse(103, seed=2)
    src_vocab, tgt_vocab = data.build_vocabs(pairs, "char", "char")
    src_seqs, tgt_seqs = data.encode_pairs(pairs, src_vocab, tgt_vocab, "char", "char")

    seen = []
    sizes = []
    for src_ids, src_lengths, tgt_ids, tgt_lengths in data.batches(src_seqs, tgt_seqs, 10, seed=1):
        assert src_ids.dtype == tgt_ids.dtype == src_lengths.dtype == tgt_lengths.dtype == np.int64
        assert src_ids.shape == (len(src_lengths), src_lengths.max())
        assert tgt_ids.shape == (len(tgt_lengths), tgt_lengths.max())
        for row in range(len(src_lengths)):
            assert (src_ids[row, src_lengths[row]:] == PAD_ID).all()
            source = "".join(src_vocab.decode(src_ids[row, : src_lengths[row]]))
            target = "".join(tgt_vocab.decode(tgt_ids[row, : tgt_lengths[row]]))
            seen.append((source, target))
        sizes.append(len(src_lengths))
    assert sizes == [10] * 10 + [3]
    assert Counter(seen) == Counter(pairs)
    assert seen != pairs  # shuffled

    first = [b[0].tolist() for b in data.batches(src_seqs, tgt_seqs, 10, seed=1)]
    assert first == [b[0].tolist() for b in data.batches(src_seqs, tgt_seqs, 10, seed=1)]
    assert first != [b[0].tolist() for b in data.batches(src_seqs, tgt_seqs, 10, seed=2)]

    in_order = list(data.batches(src_seqs, tgt_seqs, 50, shuffle=False))
    assert [len(b[1]) for b in in_order] == [50, 50, 3]
    assert in_order[0][0][1, : in_order[0][1][1]].tolist() == src_seqs[1]


def test_batches_check_arguments_when_called():
    with pytest.raises(ValueError, match="same length, got 2 and 1"):
        data.batches([[1], [2]], [[1]], 4)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        data.batches([[1]], [[1]], 0)
    with pytest.raises(ValueError, match=r"tgt_seqs\[1\] is empty"):
        data.batches([[1], [2]], [[1], []], 4)
    with pytest.raises(ValueError, match="src_seqs is empty"):
        data.batches([], [], 4)


def test_write_tsv_killed_leaves_no_temporary_file(tmp_path, monkeypatch):
    """write_tsv once had its own temporary-file pattern (.NAME.<hex>.tmp, left behind when the
    writer was killed); it now writes through serialize.atomic_write, whose temporary is unnamed
    while written (O_TMPFILE) and named after the writer's process, removed by the next write."""
    from s2sext import serialize

    calls = []
    real = serialize.atomic_write

    def spy(path, write):
        calls.append(os.fspath(path))
        return real(path, write)

    monkeypatch.setattr(serialize, "atomic_write", spy)
    path = tmp_path / "out.tsv"
    data.write_tsv(path, [("a", "b")])
    assert calls == [str(path)]
    stale = tmp_path / ".out.tsv.999999999.0123abcd.tmp"  # a killed writer's, its process gone
    stale.write_text("partial")
    data.write_tsv(path, [("c", "d")])
    assert os.listdir(tmp_path) == ["out.tsv"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_write_tsv_to_a_fifo_is_refused(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="is a FIFO, not a regular file"):
        data.write_tsv(fifo, [("a", "b")])
    assert os.listdir(tmp_path) == ["pipe"]


def test_error_messages_quote_at_most_40_characters_of_the_input(tmp_path):
    """read_tsv once put a whole side into its message: a 10 MB line of spaces wrote 10 MB."""
    path = tmp_path / "spaces.tsv"
    path.write_text("a\t" + " " * 1_000_000 + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        data.read_tsv(path, "word")
    assert len(str(info.value)) < 200
    assert f"the target {' ' * 40!r}... (1,000,000 characters) has no word tokens" in str(info.value)
    long = "x" * 1_000_000
    for call in (lambda: data.encode_pairs([(" " * 1_000_000, "a")], Vocab.of_size(5), Vocab.of_size(5), "word",
                                           "word"),
                 lambda: data.write_tsv(tmp_path / "w.tsv", [(long + "\t", "a")]),
                 lambda: data.get_tokenizer(long),
                 lambda: data.make_task(long, 1),
                 lambda: Vocab(list(SPECIALS) + [long, long])):
        with pytest.raises((TypeError, ValueError)) as info:
            call()
        assert len(str(info.value)) < 300, str(info.value)[:300]
    assert data.short_repr("abc") == "'abc'"


def test_read_tsv_counts_each_side_with_its_tokenizer(tmp_path):
    """read_tsv once applied one tokenizer to both sides, so eval counted target tokens with the
    source tokenizer."""
    path = tmp_path / "d.tsv"
    path.write_text("abcdef\tone two\n", encoding="utf-8")
    assert data.read_tsv(path, "char", tgt_tokenizer="word", max_source_tokens=6, max_target_tokens=2) == [
        ("abcdef", "one two")]
    with pytest.raises(DataError, match="the target has 7 char tokens"):
        data.read_tsv(path, "char", max_source_tokens=6, max_target_tokens=2)
    with pytest.raises(DataError, match="the source has 6 char tokens; the longest accepted is 5"):
        data.read_tsv(path, "char", tgt_tokenizer="word", max_source_tokens=5, max_target_tokens=2)
    with pytest.raises(ValueError, match="tgt_tokenizer needs tokenizer"):
        data.read_tsv(path, tgt_tokenizer="word")


def test_build_vocabs_limits_each_side():
    pairs = [("aab", "xxyz"), ("aac", "xxy")]
    src, tgt = data.build_vocabs(pairs, "char", "char", src_max_size=5, tgt_max_size=6)
    assert list(src.tokens[4:]) == ["a"] and list(tgt.tokens[4:]) == ["x", "y"]
    src, tgt = data.build_vocabs(pairs, "char", "char", max_size=5)  # one size for both sides, as before
    assert list(src.tokens[4:]) == ["a"] and list(tgt.tokens[4:]) == ["x"]
    with pytest.raises(ValueError, match="max_size must be"):
        data.build_vocabs(pairs, "char", "char", tgt_max_size=3)
