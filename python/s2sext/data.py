"""Data for the seq2seq models: TSV files and lines of text, pairs split and encoded, padded batches.

Numpy and the standard library only. Text flows one way::

    pairs (source, target) of str                read_tsv / make_task (s2sext.tasks)
      -> tokens (list of str)                    CharTokenizer / WordTokenizer (s2sext.text)
      -> ids (list of int)                       Vocab.encode, encode_pairs
      -> padded int64 arrays [B, S] / [B, T]     pad_batch (s2sext.padding), batches

Shape letters: ``B`` batch, ``S`` source length, ``T`` target length (``len(target)``, without
``<sos>``/``<eos>``: the model adds those). Lengths are int64 ``[B]`` arrays; positions at or past a
row's length hold ``pad_id``.

The names of :mod:`s2sext.text`, :mod:`s2sext.tasks`, :mod:`s2sext.padding` and the specials of
:mod:`s2sext.spec` are importable from here too, where they lived before.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from typing import Iterator

import numpy as np

from . import serialize
from .checks import check_int, is_int, short_repr
from .padding import _id_array, _pad_arrays, pad_batch
from .spec import EOS, EOS_ID, PAD, PAD_ID, SOS, SOS_ID, SPECIALS, UNK, UNK_ID
from .tasks import (DATE_FORMATS, FIRST_DATE, LAST_DATE, TASKS, format_date, make_addition, make_dates, make_reverse,
                    make_task)
from .text import CharTokenizer, SentencePieceTokenizer, TOKENIZERS, Vocab, WordTokenizer, get_tokenizer

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
    "token_batch_indices",
    "batches_of_indices",
    "token_batches",
    "drop_long_pairs",
]

_check_int = check_int  # the name decoding.py and older callers import from here


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
    return BYTES_PER_TOKEN * sum(check_int(n, "max_tokens", minimum=1) for n in max_tokens)


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
        max_line_bytes = check_int(max_line_bytes, "max_line_bytes", minimum=1)
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
    list, and only when ``text`` has more than ``limit`` characters where the tokenizer gives no
    more tokens than characters (char, word; a sentencepiece model may give more)."""
    tokenizer = get_tokenizer(tokenizer)
    limit = check_int(limit, "limit", minimum=1)
    if tokenizer.at_most_one_token_per_character and len(text) <= limit:
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
            limits[side] = check_int(limit, f"max_{side}_tokens", minimum=1)
            if tokenizer is None:
                raise ValueError(f"max_{side}_tokens needs a tokenizer to count tokens with")
    if max_line_bytes is None and len(limits) == 2:
        max_line_bytes = line_byte_limit(limits["source"], limits["target"])
    elif max_line_bytes is not None:
        max_line_bytes = check_int(max_line_bytes, "max_line_bytes", minimum=1)
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

    serialize.atomic_write(path, lambda file: file.write(data))


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
    seed = check_int(seed, "seed", minimum=0)
    if is_int(valid):
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
    *,
    src_max_size: int | None = None,
    tgt_max_size: int | None = None,
) -> tuple[Vocab, Vocab]:
    """(source vocabulary, target vocabulary) of ``pairs``, each ``Vocab.build`` of the tokenized side.

    Tokenizers are instances or names (``"char"``, ``"word"``); ``min_freq`` applies to both sides,
    ``max_size`` too unless ``src_max_size`` / ``tgt_max_size`` set that side's (sizes count the
    four specials). A :class:`~s2sext.text.SentencePieceTokenizer` side's vocabulary is its model's
    (``tokenizer.vocab()``, whatever the pairs hold): ``min_freq`` does not apply to it, and a
    size for it is refused (its size is chosen when the model is trained).
    """
    pairs = _check_pairs(pairs)
    vocabs = []
    for side, tokenizer, side_max_size, texts in (
            ("src", src_tokenizer, src_max_size, (source for source, _ in pairs)),
            ("tgt", tgt_tokenizer, tgt_max_size, (target for _, target in pairs))):
        tokenizer = get_tokenizer(tokenizer)
        size = max_size if side_max_size is None else side_max_size
        if isinstance(tokenizer, SentencePieceTokenizer):
            if size is not None:
                raise ValueError(f"{side}_max_size (or max_size) = {size!r} cannot apply to the sentencepiece "
                                 f"{side}_tokenizer: its vocabulary is its model's pieces (set vocab_size when "
                                 "training the model)")
            vocabs.append(tokenizer.vocab())
        else:
            vocabs.append(Vocab.build((tokenizer.tokenize(text) for text in texts), min_freq, size))
    return vocabs[0], vocabs[1]


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
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    src_arrays, tgt_arrays = _id_arrays(src_seqs, tgt_seqs)
    if shuffle:
        order = np.random.default_rng(seed).permutation(len(src_arrays)).tolist()
    else:
        order = list(range(len(src_arrays)))
    return _batch_generator(src_arrays, tgt_arrays, order, batch_size)


def _batch_generator(src_arrays, tgt_arrays, order, batch_size):
    return _padded_batches(src_arrays, tgt_arrays, (order[start : start + batch_size]
                                                    for start in range(0, len(order), batch_size)))


def _padded_batches(src_arrays, tgt_arrays, index_lists):
    for chosen in index_lists:
        src_ids, src_lengths = _pad_arrays([src_arrays[i] for i in chosen], PAD_ID)
        tgt_ids, tgt_lengths = _pad_arrays([tgt_arrays[i] for i in chosen], PAD_ID)
        yield src_ids, src_lengths, tgt_ids, tgt_lengths


def _id_arrays(src_seqs, tgt_seqs):
    if len(src_seqs) != len(tgt_seqs):
        raise ValueError(
            f"src_seqs and tgt_seqs must have the same length, got {len(src_seqs)} and {len(tgt_seqs)}"
        )
    if len(src_seqs) == 0:
        raise ValueError("src_seqs is empty; there is nothing to batch")
    src_arrays = [_id_array(sequence, f"src_seqs[{i}]", False) for i, sequence in enumerate(src_seqs)]
    tgt_arrays = [_id_array(sequence, f"tgt_seqs[{i}]", False) for i, sequence in enumerate(tgt_seqs)]
    return src_arrays, tgt_arrays


# How many batches' worth of pairs (at the mean pair size) are sorted by length together: enough
# that a pool's batches are of nearly even length, few enough that a batch's pairs still change
# from epoch to epoch (OpenNMT-py's pool_factor plays this part).
POOL_BATCHES = 64


def token_batch_indices(src_seqs, tgt_seqs, max_tokens: int, seed: int = 0) -> list[list[int]]:
    """The batches of one epoch as lists of pair indices, each batch costing at most
    ``max_tokens`` padded tokens: ``rows * max(S, T)`` where ``S`` and ``T`` are the batch's longest
    source and target (``T`` without ``<sos>``/``<eos>``).

    Built as fairseq and OpenNMT-py build theirs: the pairs in a random order
    (``numpy.random.default_rng(seed)``), cut into pools of about ``POOL_BATCHES`` batches, each
    pool sorted by ``max(len(source), len(target))`` (stable) and cut greedily into batches, and
    finally the batches of every pool shuffled together with the same generator. So batches hold
    pairs of similar length (little padding, even cost), the order is new for each seed, and the
    same seed gives the same batches (resume relies on it). Every pair appears in exactly one
    batch; a pair whose own ``max(S, T)`` exceeds ``max_tokens`` forms a batch of its own.
    """
    max_tokens = check_int(max_tokens, "max_tokens", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    src_arrays, tgt_arrays = _id_arrays(src_seqs, tgt_seqs)
    sizes = np.fromiter((max(s.size, t.size) for s, t in zip(src_arrays, tgt_arrays)), np.int64, len(src_arrays))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(sizes))
    pool = max(1, POOL_BATCHES * max_tokens // max(1, int(sizes.mean())))
    plan = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(sizes[chunk], kind="stable")]
        current, longest = [], 0
        for i in chunk.tolist():
            size = int(sizes[i])
            if current and (len(current) + 1) * max(longest, size) > max_tokens:
                plan.append(current)
                current, longest = [], 0
            current.append(i)
            longest = max(longest, size)
        plan.append(current)
    return [plan[k] for k in rng.permutation(len(plan)).tolist()]


def batches_of_indices(src_seqs, tgt_seqs, index_lists) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """The padded batches (as :func:`batches` yields them) of ``index_lists``, e.g. those of
    :func:`token_batch_indices`; each list's pairs in its order."""
    src_arrays, tgt_arrays = _id_arrays(src_seqs, tgt_seqs)
    for k, chosen in enumerate(index_lists):
        if not chosen or not all(is_int(i) and 0 <= i < len(src_arrays) for i in chosen):
            raise ValueError(f"index_lists[{k}] must be a non-empty list of pair indices in [0, {len(src_arrays)})")
    return _padded_batches(src_arrays, tgt_arrays, index_lists)


def token_batches(src_seqs, tgt_seqs, max_tokens: int, seed: int = 0):
    """One pass over the pairs in the batches of :func:`token_batch_indices`, padded as
    :func:`batches` pads them."""
    return batches_of_indices(src_seqs, tgt_seqs, token_batch_indices(src_seqs, tgt_seqs, max_tokens, seed))


def drop_long_pairs(src_seqs, tgt_seqs, max_source_length=None, max_target_length=None):
    """``(src_seqs, tgt_seqs, dropped)``: the pairs whose source has at most ``max_source_length``
    tokens and whose target at most ``max_target_length`` (None: no limit on that side), in their
    order, and how many were dropped."""
    if len(src_seqs) != len(tgt_seqs):
        raise ValueError(
            f"src_seqs and tgt_seqs must have the same length, got {len(src_seqs)} and {len(tgt_seqs)}"
        )
    src_max = math.inf if max_source_length is None else check_int(max_source_length, "max_source_length", minimum=1)
    tgt_max = math.inf if max_target_length is None else check_int(max_target_length, "max_target_length", minimum=1)
    kept = [i for i, (s, t) in enumerate(zip(src_seqs, tgt_seqs)) if len(s) <= src_max and len(t) <= tgt_max]
    return [src_seqs[i] for i in kept], [tgt_seqs[i] for i in kept], len(src_seqs) - len(kept)
