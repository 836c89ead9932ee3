"""Text and ids: the tokenizers, the vocabulary, and strings <-> padded id arrays.

Text flows one way::

    str                                          the caller's text
      -> tokens (list of str)                    CharTokenizer / WordTokenizer / SentencePieceTokenizer
      -> ids (list of int)                       Vocab.encode
      -> padded int64 arrays [B, S]              encode_texts (padding.pad_batch)

and a decoder's output row back: ids -> tokens (``Vocab.decode``, stopping at ``<eos>``) -> str
(``decode_ids``). Every vocabulary starts with the four specials of :mod:`s2sext.spec`
(``<pad>``=0, ``<sos>``=1, ``<eos>``=2, ``<unk>``=3).

A sentencepiece side's vocabulary is its model's pieces (:meth:`SentencePieceTokenizer.vocab`), the
model's bytes are stored in the model file, and the optional ``sentencepiece`` package does the
work (``pip install 's2sext[sentencepiece]'``; imported only when such a tokenizer is made).

A tokenizer made with ``lowercase=True`` lowercases the text before it splits it, by s2sext's one
rule (``_core.lowercase``, src/cpp/spec/lowercase.cpp: each code point's own lowercase form, as the
C++ Translator applies it too), so that whatever tokenizes with it (length limits, vocabularies,
encoding, the unknown-token tally, validation references) reads the same lowercased text; a
model's configuration says so per side (``src_lowercase``, ``tgt_lowercase``).
"""

from __future__ import annotations

import io
import os
import re
from collections import Counter
from collections.abc import Sequence
from typing import Iterable

import numpy as np

from . import _core
from .checks import check_bool, check_int, is_int, short_repr
from .padding import _id_array, pad_batch
from .spec import (EOS, EOS_ID, MAX_SENTENCEPIECE_BYTES, PAD, PAD_ID, SOS, SOS_ID, SPECIALS, UNK, UNK_ID)

__all__ = ["Vocab", "CharTokenizer", "WordTokenizer", "SentencePieceTokenizer", "SentencePieceUnavailableError",
           "TOKENIZERS", "get_tokenizer", "encode_texts", "decode_ids"]


def _check_token_list(tokens, name: str) -> list:
    """``tokens`` as a list of str. A bare str is refused: it is text, not tokens."""
    if isinstance(tokens, str):
        raise TypeError(
            f"{name} must be a sequence of str tokens, got the str {short_repr(tokens)}; "
            "tokenize it first (CharTokenizer, WordTokenizer or SentencePieceTokenizer)"
        )
    try:
        tokens = list(tokens)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of str tokens, got {type(tokens).__name__}") from None
    for position, token in enumerate(tokens):
        if not isinstance(token, str):
            raise TypeError(f"{name}[{position}] must be a str token, got {type(token).__name__} {short_repr(token)}")
    return tokens


# ----------------------------------------------------------------------------------------------------
# Vocabulary


class Vocab:
    """An immutable token <-> id table whose first four entries are ``<pad> <sos> <eos> <unk>``.

    Parameters
    ----------
    tokens : sequence of str
        Every token, in id order: ``tokens[i]`` has id ``i``. Must start with ``SPECIALS`` in order and
        hold no empty string and no duplicate.

    Raises
    ------
    TypeError
        ``tokens`` is not a sequence of str.
    ValueError
        The specials are missing or out of order, or a token is empty or repeated.
    """

    __slots__ = ("_tokens", "_ids")

    def __init__(self, tokens: Sequence[str]):
        tokens = tuple(_check_token_list(tokens, "tokens"))
        if tokens[: len(SPECIALS)] != SPECIALS:
            raise ValueError(
                f"tokens must start with the specials {list(SPECIALS)}, got {list(tokens[: len(SPECIALS)])}"
            )
        ids: dict[str, int] = {}
        for position, token in enumerate(tokens):
            if token == "":
                raise ValueError(f"tokens[{position}] is the empty string; tokens must be non-empty")
            if token in ids:
                raise ValueError(
                    f"tokens[{position}] = {short_repr(token)} repeats tokens[{ids[token]}]; tokens must be unique"
                )
            ids[token] = position
        self._tokens = tokens
        self._ids = ids

    @classmethod
    def build(
        cls, token_sequences: Iterable[Sequence[str]], min_freq: int = 1, max_size: int | None = None
    ) -> Vocab:
        """A vocabulary of the tokens in ``token_sequences``, most frequent first.

        Order: the four specials, then tokens by descending count, ties broken by the token string,
        so the result does not depend on the order of the data. Tokens equal to a special are not
        counted (they already have their id).

        Parameters
        ----------
        token_sequences : iterable of sequences of str
            Already tokenized text, e.g. ``[["a", "b"], ["b"]]``.
        min_freq : int, default 1
            Tokens seen fewer times are left out (they encode to ``UNK_ID``).
        max_size : int or None
            The most entries in the vocabulary, the four specials included (``>= 4``); the least
            frequent tokens are left out. ``None``: no limit.
        """
        min_freq = check_int(min_freq, "min_freq", minimum=1)
        if max_size is not None:
            max_size = check_int(max_size, "max_size", minimum=len(SPECIALS))
        if isinstance(token_sequences, (str, bytes)):
            raise TypeError(
                "token_sequences must be an iterable of token lists, got a str; tokenize the text first"
            )
        counts: Counter[str] = Counter()
        for index, sequence in enumerate(token_sequences):
            counts.update(_check_token_list(sequence, f"token_sequences[{index}]"))
        for special in SPECIALS:
            counts.pop(special, None)
        counts.pop("", None)
        ranked = sorted((token for token, count in counts.items() if count >= min_freq),
                        key=lambda token: (-counts[token], token))
        if max_size is not None:
            ranked = ranked[: max_size - len(SPECIALS)]
        return cls(SPECIALS + tuple(ranked))

    @classmethod
    def of_size(cls, size: int) -> Vocab:
        """A vocabulary of ``size`` entries: the specials, then ``"t4" .. f"t{size - 1}"`` (``size >= 4``).

        For models built from a vocabulary size rather than from text.
        """
        size = check_int(size, "size", minimum=len(SPECIALS))
        return cls(SPECIALS + tuple(f"t{i}" for i in range(len(SPECIALS), size)))

    @classmethod
    def coerce(cls, vocab) -> Vocab:
        """A Vocab from a Vocab (returned as is), an int size (``of_size``) or a sequence of tokens.

        A token sequence that starts with the four specials is used as is. Otherwise the specials are
        prepended and any copies of them inside the sequence are dropped, so ``["a", "b"]`` gives
        ``<pad> <sos> <eos> <unk> a b``.
        """
        if isinstance(vocab, Vocab):
            return vocab
        if is_int(vocab):
            return cls.of_size(vocab)
        if isinstance(vocab, (list, tuple)):
            tokens = tuple(_check_token_list(vocab, "vocab"))
            if tokens[: len(SPECIALS)] == SPECIALS:
                return cls(tokens)
            return cls(SPECIALS + tuple(token for token in tokens if token not in SPECIALS))
        raise TypeError(
            f"vocab must be a Vocab, an int size or a list/tuple of str tokens, got {type(vocab).__name__}"
        )

    @property
    def tokens(self) -> tuple[str, ...]:
        """Every token in id order."""
        return self._tokens

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token) -> bool:
        return token in self._ids

    def __eq__(self, other) -> bool:
        if not isinstance(other, Vocab):
            return NotImplemented
        return self._tokens == other._tokens

    def __hash__(self) -> int:
        return hash(self._tokens)

    def __repr__(self) -> str:
        shown = ", ".join(repr(token) for token in self._tokens[:8])
        more = ", ..." if len(self._tokens) > 8 else ""
        return f"Vocab(size={len(self)}, tokens=[{shown}{more}])"

    def index(self, token: str) -> int:
        """The id of ``token``; ``UNK_ID`` for a token not in the vocabulary."""
        if not isinstance(token, str):
            raise TypeError(f"token must be a str, got {type(token).__name__} {short_repr(token)}")
        return self._ids.get(token, UNK_ID)

    def encode(self, tokens: Sequence[str], add_eos: bool = False) -> list[int]:
        """Ids of ``tokens`` (unknown ones -> ``UNK_ID``), with ``EOS_ID`` appended if ``add_eos``.

        ``tokens`` is a sequence of str tokens, not a str: tokenize text first.
        """
        ids = [self._ids.get(token, UNK_ID) for token in _check_token_list(tokens, "tokens")]
        if add_eos:
            ids.append(EOS_ID)
        return ids

    def decode(self, ids, strip: bool = True) -> list[str]:
        """Tokens of ``ids`` (a sequence of int or a 1-D integer array).

        With ``strip`` (the default) decoding stops at the first ``<eos>`` and ``<pad>``/``<sos>`` are
        dropped, which turns a decoder's output row into its tokens. ``strip=False`` maps every id.

        Raises
        ------
        TypeError
            An id is not an integer.
        ValueError
            An id is outside ``[0, len(self))``, or ``ids`` is not 1-D.
        """
        id_array = _id_array(ids, "ids", allow_empty=True)
        if id_array.size and (id_array.min() < 0 or id_array.max() >= len(self._tokens)):
            position = int(np.flatnonzero((id_array < 0) | (id_array >= len(self._tokens)))[0])
            raise ValueError(
                f"ids[{position}] = {int(id_array[position])} is outside the vocabulary "
                f"[0, {len(self._tokens)})"
            )
        tokens = []
        for token_id in id_array.tolist():
            if strip:
                if token_id == EOS_ID:
                    break
                if token_id in (PAD_ID, SOS_ID):
                    continue
            tokens.append(self._tokens[token_id])
        return tokens


# ----------------------------------------------------------------------------------------------------
# Tokenizers


class _Tokenizer:
    """What every tokenizer has: its ``lowercase`` option. Char and word tokenizers hold nothing
    else: two of the same class and option are equal.

    Parameters
    ----------
    lowercase : bool, default False
        Lowercase the text before splitting it (``tokenize``, ``count`` and ``truncate`` read the
        lowercased text; ``detokenize`` joins tokens as they are).
    """

    name = ""

    def __init__(self, lowercase: bool = False):
        self._lowercase = check_bool(lowercase, "lowercase")

    @property
    def lowercase(self) -> bool:
        """Whether the text is lowercased before it is split."""
        return self._lowercase

    @property
    def at_most_one_token_per_character(self) -> bool:
        """Whether no text gives more tokens than it has characters (a shortcut for counting
        limits). Not when lowercasing: 'İ' lowercases to two code points."""
        return not self._lowercase

    def with_lowercase(self, lowercase: bool) -> "_Tokenizer":
        """This tokenizer with the ``lowercase`` option set as given (itself if it already is)."""
        if check_bool(lowercase, "lowercase") == self._lowercase:
            return self
        return self._copy(lowercase)

    def _copy(self, lowercase: bool) -> "_Tokenizer":
        return type(self)(lowercase)

    def normalize(self, text: str) -> str:
        """``text`` as this tokenizer reads it: lowercased when it lowercases (TypeError if not a str)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return _core.lowercase(text) if self._lowercase else text

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self._lowercase == other._lowercase

    def __hash__(self) -> int:
        return hash((type(self), self._lowercase))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({'lowercase=True' if self._lowercase else ''})"


class CharTokenizer(_Tokenizer):
    """One token per character: ``"ab c"`` -> ``["a", "b", " ", "c"]``; detokenize joins with ``""``."""

    name = "char"

    def tokenize(self, text: str) -> list[str]:
        """Every character of ``text`` (a str; lowercased first with ``lowercase``), in order."""
        return list(self.normalize(text))

    def count(self, text: str) -> int:
        """``len(tokenize(text))``, without building the list."""
        return len(self.normalize(text))

    def truncate(self, text: str, n: int) -> str:
        """``text`` (lowercased with ``lowercase``) holding only its first ``n`` tokens."""
        return self.normalize(text)[:n]

    def detokenize(self, tokens: Sequence[str]) -> str:
        """``tokens`` joined with no separator."""
        return "".join(_check_token_list(tokens, "tokens"))


class WordTokenizer(_Tokenizer):
    """Tokens split on runs of whitespace (``str.split()``); detokenize joins with one space."""

    name = "word"

    def tokenize(self, text: str) -> list[str]:
        """The whitespace-separated words of ``text`` (a str; lowercased first with ``lowercase``);
        no empty tokens."""
        return self.normalize(text).split()

    def count(self, text: str) -> int:
        """``len(tokenize(text))``, without building the list (a 10 MB line would make millions of
        strings); ``\\S+`` finds the same words as ``str.split()`` (both use Unicode whitespace).
        Lowercasing maps no character to or from whitespace, so the words are counted as written."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return sum(1 for _ in _WORD.finditer(text))

    def truncate(self, text: str, n: int) -> str:
        """The first ``n`` words of ``text`` (lowercased with ``lowercase``) joined by single spaces
        (they tokenize as before)."""
        return " ".join(self.normalize(text).split(None, n)[:n])

    def detokenize(self, tokens: Sequence[str]) -> str:
        """``tokens`` joined with single spaces."""
        return " ".join(_check_token_list(tokens, "tokens"))


_WORD = re.compile(r"\S+")


class SentencePieceUnavailableError(ImportError):
    """A sentencepiece tokenizer is needed and the ``sentencepiece`` package is not installed."""


def _sentencepiece():
    """The ``sentencepiece`` module, imported only when a sentencepiece tokenizer is made."""
    try:
        import sentencepiece
    except ImportError:
        raise SentencePieceUnavailableError(
            "the sentencepiece tokenizer needs the sentencepiece package: pip install 's2sext[sentencepiece]'"
        ) from None
    return sentencepiece


SENTENCEPIECE_MODEL_TYPES = ("unigram", "bpe")


class SentencePieceTokenizer(_Tokenizer):
    """Subword pieces of a sentencepiece model (``"the cat"`` -> ``["▁the", "▁c", "at"]``);
    detokenize joins them back into text (sentencepiece's own decoding).

    Parameters
    ----------
    model : bytes
        A serialized sentencepiece model (the content of a ``.model`` file, 1 to
        ``MAX_SENTENCEPIECE_BYTES`` bytes). :meth:`train` and :meth:`from_file` make one.
    lowercase : bool, default False
        Lowercase the text before splitting it into pieces (the model is then best trained on
        lowercased text: ``train(texts, lowercase=True)`` does so).

    The s2sext vocabulary of such a side is :meth:`vocab`: the four specials at their s2sext ids,
    then the model's pieces in id order, leaving out its control, unknown and unused pieces (its
    own ``<s>``/``</s>``/``<unk>``, which the specials stand for) and any piece spelled like a
    special; docs/model-format.md states the same rule for the file. A piece the vocabulary lacks
    (text the model has never seen) encodes to ``<unk>``. Two tokenizers are equal when their
    model bytes and ``lowercase`` are.

    Raises
    ------
    SentencePieceUnavailableError
        (an ImportError) the ``sentencepiece`` package is not installed.
    TypeError, ValueError
        ``model`` is not bytes, is empty or too large, or is not a sentencepiece model.
    """

    name = "sentencepiece"
    at_most_one_token_per_character = False  # "Q" -> ["▁", "Q"]

    def __init__(self, model, lowercase: bool = False):
        super().__init__(lowercase)
        if not isinstance(model, (bytes, bytearray, memoryview)):
            raise TypeError(f"model must be the bytes of a sentencepiece model, got {type(model).__name__}")
        model = bytes(model)
        if not 1 <= len(model) <= MAX_SENTENCEPIECE_BYTES:
            raise ValueError(f"model must hold 1 to {MAX_SENTENCEPIECE_BYTES} bytes (MAX_SENTENCEPIECE_BYTES), "
                             f"got {len(model)}")
        processor = _sentencepiece().SentencePieceProcessor()
        try:
            processor.LoadFromSerializedProto(model)
        except (RuntimeError, OSError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"model is not a sentencepiece model ({reason})") from None
        try:
            pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())
                      if not (processor.is_control(i) or processor.is_unknown(i) or processor.is_unused(i))]
        except UnicodeDecodeError as exc:
            raise ValueError(f"model is not a sentencepiece model (a piece is not UTF-8: {exc.reason})") from None
        self._vocab = Vocab(SPECIALS + tuple(piece for piece in pieces if piece not in SPECIALS))
        self._model = model
        self._processor = processor

    @classmethod
    def train(cls, texts, vocab_size: int = 8000, model_type: str = "unigram",
              lowercase: bool = False) -> "SentencePieceTokenizer":
        """A model trained in memory on ``texts`` (an iterable of str, one sentence each); with
        ``lowercase``, on the lowercased texts, and the tokenizer lowercases what it splits.

        ``vocab_size`` counts every piece, the four specials included (``>= 5``); it is a ceiling
        (sentencepiece's ``hard_vocab_limit=False``: a small corpus gets fewer pieces rather than an
        error), but must leave room for the texts' characters (ValueError otherwise). The model's
        ids 0-3 are s2sext's specials (``<pad> <sos> <eos> <unk>``), so its ids and the
        vocabulary's agree; it adds no ``<sos>``/``<eos>`` of its own. Training runs on one thread
        and the result depends only on the texts and these options: the same call gives the same
        bytes (every sentence is used, none sampled; tests/test_sentencepiece.py checks it).
        """
        vocab_size = check_int(vocab_size, "vocab_size", minimum=len(SPECIALS) + 1)
        if model_type not in SENTENCEPIECE_MODEL_TYPES:
            raise ValueError(f"model_type must be one of {list(SENTENCEPIECE_MODEL_TYPES)}, "
                             f"got {short_repr(model_type)}")
        if isinstance(texts, str):
            raise TypeError("texts must be an iterable of str sentences, got a single str")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] must be a str, got {type(text).__name__}")
        if not texts:
            raise ValueError("texts is empty; a sentencepiece model is trained on at least one sentence")
        if check_bool(lowercase, "lowercase"):
            texts = [_core.lowercase(text) for text in texts]
        spm = _sentencepiece()
        out = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(texts), model_writer=out, vocab_size=vocab_size, model_type=model_type,
                pad_id=PAD_ID, bos_id=SOS_ID, eos_id=EOS_ID, unk_id=UNK_ID, pad_piece=PAD, bos_piece=SOS,
                eos_piece=EOS, unk_piece=UNK, hard_vocab_limit=False, num_threads=1, minloglevel=2)
        except RuntimeError as exc:
            raise ValueError(f"sentencepiece could not train a model on these texts: {exc}") from None
        return cls(out.getvalue(), lowercase)

    @classmethod
    def from_file(cls, path, lowercase: bool = False) -> "SentencePieceTokenizer":
        """The model in the ``.model`` file ``path`` (ValueError if it is larger than
        ``MAX_SENTENCEPIECE_BYTES`` or not a sentencepiece model), lowercasing with ``lowercase``."""
        check_bool(lowercase, "lowercase")
        with open(path, "rb") as f:
            model = f.read(MAX_SENTENCEPIECE_BYTES + 1)
        try:
            return cls(model, lowercase)
        except ValueError as exc:
            raise ValueError(f"{os.fsdecode(path)}: {exc}") from None

    @property
    def model(self) -> bytes:
        """The serialized sentencepiece model (what a model file stores)."""
        return self._model

    def _copy(self, lowercase: bool) -> "SentencePieceTokenizer":
        return SentencePieceTokenizer(self._model, lowercase)

    def vocab(self) -> Vocab:
        """The s2sext vocabulary of this model: the specials, then its pieces (see the class)."""
        return self._vocab

    def tokenize(self, text: str) -> list[str]:
        """The pieces of ``text`` (a str; lowercased first with ``lowercase``)."""
        return self._processor.encode(self.normalize(text), out_type=str)

    def count(self, text: str) -> int:
        """``len(tokenize(text))``."""
        return len(self._processor.encode(self.normalize(text)))

    def truncate(self, text: str, n: int) -> str:
        """The text of ``text``'s first ``n`` pieces (lowercased with ``lowercase``), cut further
        where that text would tokenize into more than ``n`` pieces (a prefix's pieces need not be
        the whole's)."""
        pieces = self.tokenize(text)
        for keep in range(min(n, len(pieces)), -1, -1):
            cut = self._processor.decode_pieces(pieces[:keep])
            # the cut is lowercased text already: counted as it is, not lowercased again
            if len(self._processor.encode(cut)) <= n:
                return cut
        return ""

    def detokenize(self, tokens: Sequence[str]) -> str:
        """The text of ``tokens`` (sentencepiece's decoding: ``▁`` becomes a space)."""
        return self._processor.decode_pieces(_check_token_list(tokens, "tokens"))

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self._model == other._model and self._lowercase == other._lowercase

    def __hash__(self) -> int:
        return hash((type(self), self._model, self._lowercase))

    def __repr__(self) -> str:
        return (f"SentencePieceTokenizer({self._processor.get_piece_size()} pieces, {len(self._model)} bytes"
                f"{', lowercase=True' if self._lowercase else ''})")

    def __getstate__(self) -> dict:
        return {"model": self._model, "lowercase": self._lowercase}  # the processor is rebuilt from the bytes

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["model"], state.get("lowercase", False))


# spec.TOKENIZER_NAMES, which tests hold equal to these keys, names them where text is not imported
TOKENIZERS = {tokenizer.name: tokenizer for tokenizer in (CharTokenizer, WordTokenizer, SentencePieceTokenizer)}


def get_tokenizer(name, model: bytes | None = None,
                  lowercase: bool = False) -> CharTokenizer | WordTokenizer | SentencePieceTokenizer:
    """The tokenizer called ``name`` (``"char"``, ``"word"``, or ``"sentencepiece"`` with its
    ``model`` bytes), lowercasing with ``lowercase``. A tokenizer instance is returned as is, or
    with ``lowercase`` as a lowercasing copy of itself (a lowercasing one stays one)."""
    check_bool(lowercase, "lowercase")
    if isinstance(name, _Tokenizer):
        return name.with_lowercase(True) if lowercase else name
    if not isinstance(name, str):
        raise TypeError(
            f"tokenizer must be one of {sorted(TOKENIZERS)} or a tokenizer, got {type(name).__name__}"
        )
    if name not in TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {sorted(TOKENIZERS)}, got {short_repr(name)}")
    if name == SentencePieceTokenizer.name:
        if model is None:
            raise ValueError("the sentencepiece tokenizer needs its model: pass model=bytes of a .model file "
                             "or a SentencePieceTokenizer")
        return SentencePieceTokenizer(model, lowercase)
    if model is not None:
        raise ValueError(f"the {name} tokenizer has no model; got model bytes")
    return TOKENIZERS[name](lowercase)


# ----------------------------------------------------------------------------------------------------
# Strings <-> ids


def encode_texts(texts, src_vocab, src_tokenizer, reverse_source):
    """Strings -> (src_ids int [B, S], lengths int [B]): tokenized, reversed if asked, looked up."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not a single string")
    tokenizer = get_tokenizer(src_tokenizer)
    seqs = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be a str; got {type(text).__name__}")
        tokens = tokenizer.tokenize(text)
        if not tokens:
            raise ValueError(f"texts[{i}] is empty after tokenisation")
        if reverse_source:
            tokens = tokens[::-1]
        seqs.append(src_vocab.encode(tokens))
    if not seqs:
        raise ValueError("texts is empty")
    return pad_batch(seqs)


def decode_ids(ids, tgt_vocab, tgt_tokenizer) -> str:
    """Target ids -> text (stops at ``<eos>``, drops ``<pad>``/``<sos>``)."""
    return get_tokenizer(tgt_tokenizer).detokenize(tgt_vocab.decode([int(i) for i in ids]))
