"""Data for the seq2seq models: vocabularies, tokenizers, TSV files, built-in tasks and padded batches.

Numpy and the standard library only. Text flows one way::

    pairs (source, target) of str                read_tsv / make_task
      -> tokens (list of str)                    CharTokenizer / WordTokenizer
      -> ids (list of int)                       Vocab.encode, encode_pairs
      -> padded int64 arrays [B, S] / [B, T]     pad_batch, batches

Shape letters: ``B`` batch, ``S`` source length, ``T`` target length (``len(target)``, without
``<sos>``/``<eos>``: the model adds those). Lengths are int64 ``[B]`` arrays; positions at or past a
row's length hold ``pad_id``.

Every vocabulary starts with the same four specials, ``<pad>``=0, ``<sos>``=1, ``<eos>``=2,
``<unk>``=3, so the ids of the specials never depend on the data.

The built-in tasks (``make_dates``, ``make_addition``, ``make_reverse``) are generated in code and are
deterministic given ``seed``. They sample with replacement, so a list of pairs may contain duplicates;
nothing here removes them.
"""

from __future__ import annotations

import datetime
import math
import numbers
import os
import re
from collections import Counter
from collections.abc import Sequence
from typing import Callable, Iterable, Iterator

import numpy as np

__all__ = [
    "PAD",
    "SOS",
    "EOS",
    "UNK",
    "SPECIALS",
    "PAD_ID",
    "SOS_ID",
    "EOS_ID",
    "UNK_ID",
    "Vocab",
    "CharTokenizer",
    "WordTokenizer",
    "TOKENIZERS",
    "get_tokenizer",
    "pad_batch",
    "DataError",
    "iter_lines",
    "read_lines",
    "BYTES_PER_TOKEN",
    "line_byte_limit",
    "short_repr",
    "read_tsv",
    "token_limit_problem",
    "write_tsv",
    "DATE_FORMATS",
    "FIRST_DATE",
    "LAST_DATE",
    "format_date",
    "make_dates",
    "make_addition",
    "make_reverse",
    "TASKS",
    "make_task",
    "split_pairs",
    "build_vocabs",
    "encode_pairs",
    "batches",
]

PAD, SOS, EOS, UNK = "<pad>", "<sos>", "<eos>", "<unk>"
SPECIALS = (PAD, SOS, EOS, UNK)
PAD_ID, SOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3


# ----------------------------------------------------------------------------------------------------
# Argument checks shared by the public functions


def short_repr(value, limit: int = 40) -> str:
    """``repr(value)``, but of a str only its first ``limit`` characters and its length when it is
    longer (of anything else the repr's first ``limit`` characters): error messages quote input
    this way, so a 10 MB line does not become a 10 MB message."""
    if isinstance(value, str):
        return repr(value) if len(value) <= limit else f"{value[:limit]!r}... ({len(value):,} characters)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _check_int(value, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as a Python int, or TypeError/ValueError naming ``name``. bool is not an int here."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {short_repr(value)}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def _check_token_list(tokens, name: str) -> list:
    """``tokens`` as a list of str. A bare str is refused: it is text, not tokens."""
    if isinstance(tokens, str):
        raise TypeError(
            f"{name} must be a sequence of str tokens, got the str {short_repr(tokens)}; "
            "tokenize it first (CharTokenizer or WordTokenizer)"
        )
    try:
        tokens = list(tokens)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of str tokens, got {type(tokens).__name__}") from None
    for position, token in enumerate(tokens):
        if not isinstance(token, str):
            raise TypeError(f"{name}[{position}] must be a str token, got {type(token).__name__} {short_repr(token)}")
    return tokens


def _check_pairs(pairs, name: str = "pairs") -> list:
    """``pairs`` as a list of (source, target) tuples of str, or TypeError naming the bad entry."""
    if isinstance(pairs, (str, bytes)):
        raise TypeError(
            f"{name} must be a sequence of (source, target) pairs of str, got {type(pairs).__name__}"
        )
    try:
        pairs = list(pairs)
    except TypeError:
        raise TypeError(
            f"{name} must be a sequence of (source, target) pairs of str, got {type(pairs).__name__}"
        ) from None
    checked = []
    for index, pair in enumerate(pairs):
        if (
            isinstance(pair, (str, bytes))
            or not isinstance(pair, Sequence)
            or len(pair) != 2
            or not isinstance(pair[0], str)
            or not isinstance(pair[1], str)
        ):
            raise TypeError(f"{name}[{index}] must be a (source, target) pair of str, got {short_repr(pair)}")
        checked.append((pair[0], pair[1]))
    return checked


def _check_seed(seed) -> int:
    return _check_int(seed, "seed", minimum=0)


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
        min_freq = _check_int(min_freq, "min_freq", minimum=1)
        if max_size is not None:
            max_size = _check_int(max_size, "max_size", minimum=len(SPECIALS))
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
        size = _check_int(size, "size", minimum=len(SPECIALS))
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
        if isinstance(vocab, numbers.Integral) and not isinstance(vocab, bool):
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
    """Tokenizers hold no state: two of the same class are equal."""

    name = ""

    def __eq__(self, other) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CharTokenizer(_Tokenizer):
    """One token per character: ``"ab c"`` -> ``["a", "b", " ", "c"]``; detokenize joins with ``""``."""

    name = "char"

    def tokenize(self, text: str) -> list[str]:
        """Every character of ``text`` (a str), in order."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return list(text)

    def count(self, text: str) -> int:
        """``len(tokenize(text))``, without building the list."""
        return len(text)

    def truncate(self, text: str, n: int) -> str:
        """``text`` holding only its first ``n`` tokens."""
        return text[:n]

    def detokenize(self, tokens: Sequence[str]) -> str:
        """``tokens`` joined with no separator."""
        return "".join(_check_token_list(tokens, "tokens"))


class WordTokenizer(_Tokenizer):
    """Tokens split on runs of whitespace (``str.split()``); detokenize joins with one space."""

    name = "word"

    def tokenize(self, text: str) -> list[str]:
        """The whitespace-separated words of ``text`` (a str); no empty tokens."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return text.split()

    def count(self, text: str) -> int:
        """``len(tokenize(text))``, without building the list (a 10 MB line would make millions of
        strings); ``\\S+`` finds the same words as ``str.split()`` (both use Unicode whitespace)."""
        return sum(1 for _ in _WORD.finditer(text))

    def truncate(self, text: str, n: int) -> str:
        """The first ``n`` words of ``text`` joined by single spaces (they tokenize as before)."""
        return " ".join(text.split(None, n)[:n])

    def detokenize(self, tokens: Sequence[str]) -> str:
        """``tokens`` joined with single spaces."""
        return " ".join(_check_token_list(tokens, "tokens"))


_WORD = re.compile(r"\S+")

TOKENIZERS = {"char": CharTokenizer, "word": WordTokenizer}


def get_tokenizer(name) -> CharTokenizer | WordTokenizer:
    """The tokenizer called ``name`` (``"char"`` or ``"word"``); a tokenizer instance is returned as is."""
    if isinstance(name, (CharTokenizer, WordTokenizer)):
        return name
    if not isinstance(name, str):
        raise TypeError(
            f"tokenizer must be one of {sorted(TOKENIZERS)} or a tokenizer, got {type(name).__name__}"
        )
    if name not in TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {sorted(TOKENIZERS)}, got {short_repr(name)}")
    return TOKENIZERS[name]()


# ----------------------------------------------------------------------------------------------------
# Padding


def _id_array(sequence, name: str, allow_empty: bool) -> np.ndarray:
    """``sequence`` (ints or a 1-D integer array) as a 1-D int64 array, or TypeError/ValueError naming it."""
    if isinstance(sequence, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of int ids, got {type(sequence).__name__}")
    try:
        array = np.asarray(sequence)
    except (ValueError, OverflowError) as error:
        raise ValueError(f"{name} must be a sequence of int ids: {error}") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (a sequence of int ids), got shape {array.shape}")
    if array.size == 0:
        if not allow_empty:
            raise ValueError(
                f"{name} is empty; sequences must hold at least one id (or pass allow_empty=True)"
            )
        return np.zeros(0, dtype=np.int64)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold int ids, got dtype {array.dtype}")
    if array.dtype.kind == "u" and array.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} holds ids too large for int64, max {array.max()}")
    return array.astype(np.int64, copy=False)


def _pad_arrays(arrays: Sequence[np.ndarray], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Checked 1-D int64 arrays -> (``ids`` [B, max_len], ``pad_id`` past each length; ``lengths`` [B])."""
    lengths = np.fromiter((array.size for array in arrays), dtype=np.int64, count=len(arrays))
    ids = np.full((len(arrays), int(lengths.max())), pad_id, dtype=np.int64)
    for row, array in enumerate(arrays):
        ids[row, : array.size] = array
    return ids, lengths


def pad_batch(sequences, pad_id: int = PAD_ID, allow_empty: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Pad ``B`` id sequences of different lengths into one array.

    Parameters
    ----------
    sequences : sequence of B sequences of int (or 1-D integer arrays)
    pad_id : int, default PAD_ID
        The value at positions at or past a row's length.
    allow_empty : bool, default False
        Whether a sequence may have no ids (its row is all ``pad_id``).

    Returns
    -------
    ids : (B, max_len) int64 ndarray, C-contiguous
    lengths : (B,) int64 ndarray

    Raises
    ------
    ValueError
        ``sequences`` is empty, or ``sequences[i]`` is empty (without ``allow_empty``) or not 1-D.
    TypeError
        An id is not an integer (floats and bools are refused).
    """
    pad_id = _check_int(pad_id, "pad_id", minimum=np.iinfo(np.int64).min, maximum=np.iinfo(np.int64).max)
    if isinstance(sequences, (str, bytes)) or not hasattr(sequences, "__len__"):
        raise TypeError(f"sequences must be a sequence of id sequences, got {type(sequences).__name__}")
    if len(sequences) == 0:
        raise ValueError("sequences is empty; a batch needs at least one sequence")
    arrays = [_id_array(sequence, f"sequences[{i}]", allow_empty) for i, sequence in enumerate(sequences)]
    return _pad_arrays(arrays, pad_id)


# ----------------------------------------------------------------------------------------------------
# TSV files


class DataError(ValueError):
    """A data file that cannot be read: ``str(error)`` is ``"{path}:{lineno}: {problem}"``.

    ``lineno`` is 1-based, or None when the problem concerns the whole file (then the message is
    ``"{path}: {problem}"``).
    """

    def __init__(self, path, lineno: int | None, problem: str):
        self.path = os.fspath(path)
        self.lineno = lineno
        self.problem = problem
        where = self.path if lineno is None else f"{self.path}:{lineno}"
        super().__init__(f"{where}: {problem}")

    def __reduce__(self):
        return (type(self), (self.path, self.lineno, self.problem))


# A line's byte cap for token limits: a line of more bytes is refused before it is decoded or
# tokenized, so reading costs memory and work bounded by the limits, not by the input (an endless
# line from /dev/zero is refused after BYTES_PER_TOKEN x the limit bytes). 64 bytes a token leaves
# room for any UTF-8 character (at most 4 bytes) and for long words with their spacing.
BYTES_PER_TOKEN = 64


def line_byte_limit(*max_tokens: int) -> int:
    """The most bytes a line may have whose fields have at most ``max_tokens`` tokens each:
    ``BYTES_PER_TOKEN`` x their sum (a TSV line holds a source and a target)."""
    return BYTES_PER_TOKEN * sum(_check_int(n, "max_tokens", minimum=1) for n in max_tokens)


def _utf8_lines(file, path, max_line_bytes: int | None = None) -> Iterator[tuple[int, str]]:
    """``(lineno, text)`` of every line read from the binary file ``file`` (1-based): lines end at
    ``"\\n"``, one ``"\\r"`` before it is dropped, as is a UTF-8 byte-order mark at the start;
    invalid UTF-8 raises :class:`DataError` naming ``path`` and the line, and so does a line of
    more than ``max_line_bytes`` bytes (without its ending), which is never read whole."""
    # a line's ending and a byte-order mark are read with it, beyond the cap
    size = -1 if max_line_bytes is None else max_line_bytes + 5
    lineno = 0
    while True:
        raw_line = file.readline(size)
        if not isinstance(raw_line, bytes):
            raise TypeError(f"source must be a path or a binary stream; its readline() gave {type(raw_line).__name__}")
        if not raw_line:
            return
        lineno += 1
        if lineno == 1 and raw_line.startswith(b"\xef\xbb\xbf"):
            raw_line = raw_line[3:]
        if raw_line.endswith(b"\n"):
            raw_line = raw_line[:-1]
        if raw_line.endswith(b"\r"):
            raw_line = raw_line[:-1]
        if max_line_bytes is not None and len(raw_line) > max_line_bytes:
            raise DataError(path, lineno, f"the line has more than {max_line_bytes:,} bytes, the most its token "
                                          f"limit allows ({BYTES_PER_TOKEN} bytes a token)")
        try:
            yield lineno, raw_line.decode("utf-8")
        except UnicodeDecodeError as error:
            raise DataError(
                path, lineno, f"invalid UTF-8 at byte {error.start} of the line: {error.reason}"
            ) from None


def iter_lines(source, name=None, *, max_line_bytes: int | None = None) -> Iterator[str]:
    """The lines of UTF-8 text, read one at a time from a path or a binary stream (e.g.
    ``sys.stdin.buffer``), so an endless input can be consumed as it comes.

    Lines are split as :func:`read_tsv` splits them (at ``"\\n"``; a ``"\\r"`` before it and a
    leading byte-order mark dropped); empty lines are kept, and a final newline ends the last line
    rather than starting an empty one.

    Parameters
    ----------
    source : str, os.PathLike or binary stream (with ``readline``)
    name : str, optional
        What error messages call the input (default: the path, or ``"<stdin>"`` for a stream).
    max_line_bytes : int, optional
        The most bytes a line may have (without its ending; see :func:`line_byte_limit`); a longer
        one is refused after reading at most that many bytes of it. None: no limit.

    Raises
    ------
    DataError (a ValueError)
        Invalid UTF-8 or a line over ``max_line_bytes``, as ``"{name}:{lineno}: ..."``.
    TypeError
        ``source`` is a text stream.
    OSError
        The file cannot be opened.
    """
    # checked and opened here, at the call, not when the first line is taken
    if max_line_bytes is not None:
        max_line_bytes = _check_int(max_line_bytes, "max_line_bytes", minimum=1)
    if hasattr(source, "readline"):
        return _lines_of(source, "<stdin>" if name is None else name, max_line_bytes, close=False)
    file = open(os.fspath(source), "rb")
    return _lines_of(file, os.fspath(source) if name is None else name, max_line_bytes, close=True)


def _lines_of(file, name, max_line_bytes, close: bool) -> Iterator[str]:
    try:
        for _, line in _utf8_lines(file, name, max_line_bytes):
            yield line
    finally:
        if close:
            file.close()


def read_lines(source, name=None, *, max_line_bytes: int | None = None) -> list[str]:
    """``list(iter_lines(source, name, max_line_bytes=max_line_bytes))``: every line at once."""
    return list(iter_lines(source, name, max_line_bytes=max_line_bytes))


def token_limit_problem(text: str, tokenizer, limit: int, side: str = "source") -> str | None:
    """None when ``text`` has at most ``limit`` tokens, else the problem in words (the token count
    and the limit), for a :class:`DataError` or an error line. Counts without building the token
    list, and only when ``text`` has more than ``limit`` characters (no tokenizer gives more tokens
    than characters)."""
    tokenizer = get_tokenizer(tokenizer)
    limit = _check_int(limit, "limit", minimum=1)
    if len(text) <= limit:
        return None
    count = tokenizer.count(text)
    if count <= limit:
        return None
    return f"the {side} has {count:,} {tokenizer.name} tokens; the longest accepted is {limit:,}"


def read_tsv(path, tokenizer=None, *, max_source_tokens=None, max_target_tokens=None, max_line_bytes=None,
             tgt_tokenizer=None) -> list[tuple[str, str]]:
    """The ``(source, target)`` pairs of a UTF-8 file holding one ``source<TAB>target`` per line.

    A line ends at ``"\\n"``; one ``"\\r"`` before it (``"\\r\\n"`` endings) is dropped, as is a UTF-8
    byte-order mark at the start of the file. Empty lines are skipped. Pairs are returned in file
    order, duplicates included.

    Parameters
    ----------
    path : str or os.PathLike
    tokenizer : None, a name or a tokenizer
        If given, each side must also give at least one token with it (a word tokenizer finds
        none in a side of spaces only); the targets' tokenizer too unless ``tgt_tokenizer`` is given.
    max_source_tokens, max_target_tokens : int, optional
        The most tokens (with ``tokenizer``, which they need) a source or target may have.
    max_line_bytes : int, optional
        The most bytes a line may have (see :func:`line_byte_limit`); a longer one is refused
        before it is read whole. Default: ``line_byte_limit(max_source_tokens, max_target_tokens)``
        when both are given, else no limit.
    tgt_tokenizer : None, a name or a tokenizer
        The targets' tokenizer, when it differs from the sources' (it needs ``tokenizer``).

    Returns
    -------
    list of (str, str)

    Raises
    ------
    DataError (a ValueError)
        A non-empty line without exactly one TAB, with an empty source or target (or one without
        tokens, or more than the maximum), with invalid UTF-8 or over ``max_line_bytes`` (message
        ``"{path}:{lineno}: ..."``, 1-based), or a file with no pairs.
    OSError
        The file cannot be opened.
    """
    path = os.fspath(path)
    tokenizers = {}
    if tokenizer is not None:
        tokenizers["source"] = get_tokenizer(tokenizer)
        tokenizers["target"] = tokenizers["source"] if tgt_tokenizer is None else get_tokenizer(tgt_tokenizer)
    elif tgt_tokenizer is not None:
        raise ValueError("tgt_tokenizer needs tokenizer (the sources' tokenizer)")
    limits = {}
    for side, limit in (("source", max_source_tokens), ("target", max_target_tokens)):
        if limit is not None:
            limits[side] = _check_int(limit, f"max_{side}_tokens", minimum=1)
            if tokenizer is None:
                raise ValueError(f"max_{side}_tokens needs a tokenizer to count tokens with")
    if max_line_bytes is None and len(limits) == 2:
        max_line_bytes = line_byte_limit(limits["source"], limits["target"])
    elif max_line_bytes is not None:
        max_line_bytes = _check_int(max_line_bytes, "max_line_bytes", minimum=1)
    with open(path, "rb") as file:
        lines = _utf8_lines(file, path, max_line_bytes)
        pairs = _pairs_of_lines(lines, path, tokenizers, limits)
    if not pairs:
        raise DataError(path, None, "no pairs (the file is empty or has only empty lines)")
    return pairs


def _pairs_of_lines(lines, path, tokenizers, limits) -> list[tuple[str, str]]:
    """read_tsv's pairs of ``(lineno, line)``, each line checked as it comes."""
    pairs = []
    for lineno, line in lines:
        if not line:
            continue
        tabs = line.count("\t")
        if tabs != 1:
            raise DataError(path, lineno, f"expected exactly one TAB between source and target, found {tabs}")
        source, target = line.split("\t")
        if not source:
            raise DataError(path, lineno, "empty source (the line starts with the TAB)")
        if not target:
            raise DataError(path, lineno, "empty target (the line ends with the TAB)")
        for side, text in (("source", source), ("target", target)):
            if side not in tokenizers:
                continue
            if side in limits:
                problem = token_limit_problem(text, tokenizers[side], limits[side], side)
                if problem:
                    raise DataError(path, lineno, problem)
            if not tokenizers[side].count(text):
                raise DataError(path, lineno,
                                f"the {side} {short_repr(text)} has no {tokenizers[side].name} tokens")
        pairs.append((source, target))
    return pairs


def write_tsv(path, pairs: Sequence[tuple[str, str]]) -> None:
    """Write ``pairs`` as ``source<TAB>target\\n`` lines in UTF-8, atomically.

    Written as model files are (``s2sext.serialize.atomic_write``): the text goes to a temporary
    file in the same directory, which then replaces ``path``, so readers see the old file or the
    complete new one, never a partial one; on failure ``path`` is unchanged and no temporary file
    is left. A symlink is written through to its target.

    Parameters
    ----------
    path : str or os.PathLike
    pairs : non-empty sequence of (str, str)
        What ``read_tsv`` can read back: no side empty, none holding a TAB, ``"\\n"`` or ``"\\r"``.

    Raises
    ------
    TypeError, ValueError
        A pair that ``read_tsv`` could not read back (checked before anything is written), or
        ``path`` is not a regular file (a directory, FIFO or device).
    OSError
        The file cannot be written.
    """
    from .serialize import atomic_write

    path = os.fspath(path)
    pairs = _check_pairs(pairs)
    if not pairs:
        raise ValueError("pairs is empty; read_tsv refuses a file with no pairs")
    for index, (source, target) in enumerate(pairs):
        for side, text in (("source", source), ("target", target)):
            if not text:
                raise ValueError(f"pairs[{index}] has an empty {side}")
            for character in ("\t", "\n", "\r"):
                if character in text:
                    raise ValueError(f"pairs[{index}] {side} {short_repr(text)} contains {character!r}")
    data = "".join(f"{source}\t{target}\n" for source, target in pairs).encode("utf-8")

    atomic_write(path, lambda file: file.write(data))


# ----------------------------------------------------------------------------------------------------
# Built-in tasks

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")  # date.weekday()

FIRST_DATE = datetime.date(1950, 1, 1)
LAST_DATE = datetime.date(2049, 12, 31)

# Templates for format_date. Fields: {yyyy} 1994, {yy} 94, {mm} 09, {m} 9, {dd} 07, {d} 7, {dth} 7th,
# {Month} September, {month} september, {MONTH} SEPTEMBER, {Mon} Sep, {Weekday} Tuesday,
# {weekday} tuesday, {WEEKDAY} TUESDAY, {Wkd} Tue.
# Every source has one reading: numeric dates with "/" are month first, with "." day first, with "-"
# year first, and a two-digit year within FIRST_DATE..LAST_DATE names one century (50-99 -> 19xx,
# 00-49 -> 20xx). The longest source is 29 characters ("Wednesday, September 13, 1950").
DATE_FORMATS = (
    "{month} {d}, {yyyy}",
    "{Month} {d}, {yyyy}",
    "{MONTH} {d}, {yyyy}",
    "{Mon} {d}, {yyyy}",
    "{Mon} {d} {yyyy}",
    "{Month} {dth}, {yyyy}",
    "{d} {Month} {yyyy}",
    "{d} {Mon} {yyyy}",
    "{dd} {Mon} {yy}",
    "{dth} of {Month} {yyyy}",
    "{Weekday}, {Month} {d}, {yyyy}",
    "{weekday}, {month} {d}, {yyyy}",
    "{WEEKDAY}, {MONTH} {d}, {yyyy}",
    "{Wkd}, {Mon} {d}, {yyyy}",
    "{Wkd} {d} {Mon} {yyyy}",
    "{m}/{d}/{yy}",
    "{mm}/{dd}/{yyyy}",
    "{dd}.{mm}.{yy}",
    "{dd}.{mm}.{yyyy}",
    "{yyyy}-{mm}-{dd}",
)


def _ordinal(number: int) -> str:
    """``1`` -> ``"1st"``, ``2`` -> ``"2nd"``, ``11`` -> ``"11th"``, ``23`` -> ``"23rd"``."""
    if 11 <= number % 100 <= 13:
        return f"{number}th"
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def _date_fields(day: datetime.date) -> dict[str, str]:
    month = _MONTHS[day.month - 1]
    weekday = _WEEKDAYS[day.weekday()]
    return {
        "yyyy": f"{day.year:04d}",
        "yy": f"{day.year % 100:02d}",
        "mm": f"{day.month:02d}",
        "m": str(day.month),
        "dd": f"{day.day:02d}",
        "d": str(day.day),
        "dth": _ordinal(day.day),
        "Month": month,
        "month": month.lower(),
        "MONTH": month.upper(),
        "Mon": month[:3],
        "Weekday": weekday,
        "weekday": weekday.lower(),
        "WEEKDAY": weekday.upper(),
        "Wkd": weekday[:3],
    }


def format_date(day: datetime.date, template: str) -> str:
    """``day`` written with ``template``, a ``str.format`` template over the fields of ``DATE_FORMATS``.

    English names are built in (no locale): ``format_date(date(1984, 9, 25), "{Wkd}, {Mon} {d}, {yyyy}")``
    is ``"Tue, Sep 25, 1984"``.
    """
    if not isinstance(day, datetime.date):
        raise TypeError(f"day must be a datetime.date, got {type(day).__name__}")
    if not isinstance(template, str):
        raise TypeError(f"template must be a str, got {type(template).__name__}")
    fields = _date_fields(day)
    try:
        return template.format_map(fields)
    except (KeyError, IndexError, AttributeError, ValueError) as error:
        raise ValueError(
            f"template {short_repr(template)} is not a date template: {short_repr(error)}; "
            f"the fields are {sorted(fields)}"
        ) from None


def make_dates(n: int, seed: int = 0, formats: Sequence[str] = DATE_FORMATS) -> list[tuple[str, str]]:
    """``n`` pairs (human-readable date, ISO ``YYYY-MM-DD``), e.g. ``("Sep 27, 1994", "1994-09-27")``.

    Dates are uniform over ``FIRST_DATE .. LAST_DATE`` (1950-01-01 .. 2049-12-31), each written with a
    template drawn uniformly from ``formats``. With the default formats every source has exactly one
    correct target and is at most 29 characters. Deterministic given ``seed``; may hold duplicates.
    """
    n = _check_int(n, "n", minimum=1)
    seed = _check_seed(seed)
    if isinstance(formats, str) or not isinstance(formats, Sequence) or len(formats) == 0:
        raise TypeError(f"formats must be a non-empty sequence of str templates, got {short_repr(formats)}")
    formats = tuple(formats)
    for template in formats:
        format_date(FIRST_DATE, template)
    rng = np.random.default_rng(seed)
    ordinals = rng.integers(FIRST_DATE.toordinal(), LAST_DATE.toordinal() + 1, size=n)
    format_indices = rng.integers(len(formats), size=n)
    pairs = []
    for ordinal, format_index in zip(ordinals.tolist(), format_indices.tolist()):
        day = datetime.date.fromordinal(ordinal)
        pairs.append((format_date(day, formats[format_index]), day.isoformat()))
    return pairs


def make_addition(n: int, seed: int = 0, max_digits: int = 3) -> list[tuple[str, str]]:
    """``n`` pairs ``("a+b", str(a + b))``, e.g. ``("16+75", "91")``.

    ``a`` and ``b`` are uniform in ``[0, 10**max_digits)``, written without leading zeros
    (``1 <= max_digits <= 18``). Deterministic given ``seed``; may hold duplicates.
    """
    n = _check_int(n, "n", minimum=1)
    seed = _check_seed(seed)
    max_digits = _check_int(max_digits, "max_digits", minimum=1, maximum=18)
    operands = np.random.default_rng(seed).integers(0, 10**max_digits, size=(n, 2))
    return [(f"{a}+{b}", str(a + b)) for a, b in operands.tolist()]


def make_reverse(
    n: int,
    seed: int = 0,
    min_length: int = 1,
    max_length: int = 12,
    alphabet: str = "abcdefghijklmnopqrstuvwxyz",
) -> list[tuple[str, str]]:
    """``n`` pairs (random string, the string reversed), e.g. ``("abc", "cba")``.

    Lengths are uniform in ``[min_length, max_length]`` (``min_length >= 1``), characters uniform over
    ``alphabet`` (a non-empty str without TAB or newline). Deterministic given ``seed``; may hold
    duplicates.
    """
    n = _check_int(n, "n", minimum=1)
    seed = _check_seed(seed)
    min_length = _check_int(min_length, "min_length", minimum=1)
    max_length = _check_int(max_length, "max_length", minimum=min_length)
    if not isinstance(alphabet, str):
        raise TypeError(f"alphabet must be a str, got {type(alphabet).__name__}")
    if not alphabet or any(character in alphabet for character in "\t\n\r"):
        raise ValueError(f"alphabet must be a non-empty str without TAB or newline, got {short_repr(alphabet)}")
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_length, max_length + 1, size=n)
    letters = rng.integers(len(alphabet), size=int(lengths.sum()))
    characters = np.array(list(alphabet))[letters]
    ends = np.cumsum(lengths)
    pairs = []
    for start, end in zip((ends - lengths).tolist(), ends.tolist()):
        source = "".join(characters[start:end].tolist())
        pairs.append((source, source[::-1]))
    return pairs


TASKS: dict[str, Callable[..., list[tuple[str, str]]]] = {
    "dates": make_dates,
    "addition": make_addition,
    "reverse": make_reverse,
}


def make_task(name: str, n: int, seed: int = 0, **options) -> list[tuple[str, str]]:
    """``n`` pairs of the built-in task ``name`` (a key of ``TASKS``); ``options`` go to its maker."""
    if not isinstance(name, str) or name not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {short_repr(name)}")
    return TASKS[name](n, seed=seed, **options)


# ----------------------------------------------------------------------------------------------------
# Splitting, encoding, batching


def split_pairs(pairs: Sequence[tuple[str, str]], valid=0.1, seed: int = 0) -> tuple[list, list]:
    """Shuffle ``pairs`` with ``seed`` and split them into (train, valid).

    Parameters
    ----------
    pairs : sequence of (str, str)
    valid : float in (0, 1) or int
        The fraction of pairs for validation (rounded half up to a count) or the count itself.
    seed : int

    Returns
    -------
    train, valid : lists of pairs, both non-empty, together holding every pair once.

    Raises
    ------
    ValueError
        ``valid`` is out of range, or one part would be empty.
    """
    pairs = _check_pairs(pairs)
    seed = _check_seed(seed)
    if isinstance(valid, numbers.Integral) and not isinstance(valid, bool):
        valid_count = int(valid)
    elif isinstance(valid, numbers.Real) and not isinstance(valid, bool):
        if not 0.0 < valid < 1.0:
            raise ValueError(f"valid must be a fraction in (0, 1) or an int count, got {valid!r}")
        valid_count = int(math.floor(valid * len(pairs) + 0.5))
    else:
        raise TypeError(f"valid must be a float fraction or an int count, got {type(valid).__name__}")
    if not 1 <= valid_count <= len(pairs) - 1:
        raise ValueError(
            f"valid={valid!r} gives {valid_count} of {len(pairs)} pairs for validation; "
            f"both parts must be non-empty (1 to {len(pairs) - 1})"
        )
    order = np.random.default_rng(seed).permutation(len(pairs)).tolist()
    valid_part = [pairs[i] for i in order[:valid_count]]
    train_part = [pairs[i] for i in order[valid_count:]]
    return train_part, valid_part


def build_vocabs(
    pairs: Sequence[tuple[str, str]],
    src_tokenizer,
    tgt_tokenizer,
    min_freq: int = 1,
    max_size: int | None = None,
) -> tuple[Vocab, Vocab]:
    """(source vocabulary, target vocabulary) of ``pairs``, each ``Vocab.build`` of the tokenized side.

    Tokenizers are instances or names (``"char"``, ``"word"``); ``min_freq`` and ``max_size`` apply
    to both sides.
    """
    pairs = _check_pairs(pairs)
    src_tokenizer = get_tokenizer(src_tokenizer)
    tgt_tokenizer = get_tokenizer(tgt_tokenizer)
    src_vocab = Vocab.build((src_tokenizer.tokenize(source) for source, _ in pairs), min_freq, max_size)
    tgt_vocab = Vocab.build((tgt_tokenizer.tokenize(target) for _, target in pairs), min_freq, max_size)
    return src_vocab, tgt_vocab


def encode_pairs(
    pairs: Sequence[tuple[str, str]],
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    src_tokenizer,
    tgt_tokenizer,
    reverse_source: bool = False,
) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids of every pair: (source id lists, target id lists).

    Targets carry no ``<sos>``/``<eos>`` (the model adds them). With ``reverse_source`` each source's
    token order is reversed (Sutskever et al., 2014). Unknown tokens encode to ``UNK_ID``.

    Raises
    ------
    ValueError
        A source or target that tokenizes to no tokens (e.g. only spaces with the word tokenizer),
        naming ``pairs[i]``.
    """
    pairs = _check_pairs(pairs)
    for name, vocab in (("src_vocab", src_vocab), ("tgt_vocab", tgt_vocab)):
        if not isinstance(vocab, Vocab):
            raise TypeError(f"{name} must be a Vocab, got {type(vocab).__name__}")
    src_tokenizer = get_tokenizer(src_tokenizer)
    tgt_tokenizer = get_tokenizer(tgt_tokenizer)
    src_seqs, tgt_seqs = [], []
    for index, (source, target) in enumerate(pairs):
        src_tokens = src_tokenizer.tokenize(source)
        tgt_tokens = tgt_tokenizer.tokenize(target)
        if not src_tokens:
            raise ValueError(f"pairs[{index}] source {short_repr(source)} has no tokens")
        if not tgt_tokens:
            raise ValueError(f"pairs[{index}] target {short_repr(target)} has no tokens")
        if reverse_source:
            src_tokens.reverse()
        src_seqs.append(src_vocab.encode(src_tokens))
        tgt_seqs.append(tgt_vocab.encode(tgt_tokens))
    return src_seqs, tgt_seqs


def batches(
    src_seqs: Sequence[Sequence[int]],
    tgt_seqs: Sequence[Sequence[int]],
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """One pass over the pairs in padded batches: yields ``(src_ids, src_lengths, tgt_ids, tgt_lengths)``.

    ``src_ids`` is int64 ``[B, S]`` and ``tgt_ids`` int64 ``[B, T]`` (``pad_batch`` with ``PAD_ID``;
    ``S``, ``T`` the longest in the batch), lengths int64 ``[B]``. Every pair appears exactly once;
    ``B = batch_size`` except possibly for the last batch. With ``shuffle`` the order is
    ``numpy.random.default_rng(seed).permutation``; pass a different seed per epoch for a new order.
    Without it, the pairs come in order.

    Arguments are checked when ``batches`` is called, not when the first batch is taken.
    """
    if len(src_seqs) != len(tgt_seqs):
        raise ValueError(
            f"src_seqs and tgt_seqs must have the same length, got {len(src_seqs)} and {len(tgt_seqs)}"
        )
    if len(src_seqs) == 0:
        raise ValueError("src_seqs is empty; there is nothing to batch")
    batch_size = _check_int(batch_size, "batch_size", minimum=1)
    seed = _check_seed(seed)
    src_arrays = [_id_array(sequence, f"src_seqs[{i}]", False) for i, sequence in enumerate(src_seqs)]
    tgt_arrays = [_id_array(sequence, f"tgt_seqs[{i}]", False) for i, sequence in enumerate(tgt_seqs)]
    if shuffle:
        order = np.random.default_rng(seed).permutation(len(src_arrays)).tolist()
    else:
        order = list(range(len(src_arrays)))
    return _batch_generator(src_arrays, tgt_arrays, order, batch_size)


def _batch_generator(src_arrays, tgt_arrays, order, batch_size):
    for start in range(0, len(order), batch_size):
        chosen = order[start : start + batch_size]
        src_ids, src_lengths = _pad_arrays([src_arrays[i] for i in chosen], PAD_ID)
        tgt_ids, tgt_lengths = _pad_arrays([tgt_arrays[i] for i in chosen], PAD_ID)
        yield src_ids, src_lengths, tgt_ids, tgt_lengths
