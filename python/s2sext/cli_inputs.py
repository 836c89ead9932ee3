"""The ``s2sext`` command's inputs and outputs: sources and targets fitted to their token limits
(cut with ``--truncate`` or refused), TSV files and lines of text read within them, and outputs
checked before any work (see :mod:`s2sext.cli`)."""

from __future__ import annotations

import io
import os
import sys
import tempfile
from collections import Counter
from typing import NamedTuple


# The default longest source (train) and target (train, eval) in tokens: fairseq's default
# max-source/target-positions. A longer line is refused naming it, unless the option is raised.
DEFAULT_MAX_TOKENS = 1024
# The most any length option accepts (sources, targets, --max-length): a bound far above any
# sentence, so that a mistyped length is refused at once rather than by the allocator later.
MAX_TOKENS = 100_000


class CliError(Exception):
    """A user-facing error: printed as one line."""


class Limits(NamedTuple):
    """The most tokens a source and a target may have, where the source's limit comes from (said
    when a source has more), and whether a longer source is cut (``--truncate``) instead of refused."""

    source: int
    source_hint: str
    target: int | None
    truncate: bool

    target_hint = "--max-target-length raises the limit"


def model_limits(args, model):
    """translate and eval: the model's max_source_length, or --max-source-length where the model
    allows it (location attention has one weight row per source position, so none beyond)."""
    limit, hint = model.config.max_source_length, "the model's max_source_length"
    if args.max_source_length is not None:
        if model.config.attention == "location" and args.max_source_length > limit:
            raise CliError(f"--max-source-length {args.max_source_length}: the model's location attention "
                           f"accepts at most {limit} source tokens (its max_source_length)")
        limit, hint = args.max_source_length, "--max-source-length"
    return Limits(limit, f"{hint}; --truncate cuts longer sources", getattr(args, "max_target_length", None),
                   args.truncate)


def fit(texts, tokenizer, limit, where, truncate=False, hint="", side="source"):
    """``texts`` with each one longer than ``limit`` tokens cut to its first ``limit`` (``truncate``,
    said on stderr) or refused, naming ``where(i)``; nothing is tokenized unless it is too long."""
    texts, cut = cut_or_refuse(texts, tokenizer, limit, where, truncate, hint, side)
    say_cut(where, cut, limit)
    return texts


def cut_or_refuse(texts, tokenizer, limit, where, truncate, hint, side="source", first=0):
    """(``texts`` within ``limit``, how many were cut) for ``fit``; ``texts[i]`` is item
    ``first + i`` of the whole input for ``where``."""
    from .data import get_tokenizer, token_limit_problem

    tokenizer = get_tokenizer(tokenizer)
    texts, cut = list(texts), 0
    for i, text in enumerate(texts):
        problem = token_limit_problem(text, tokenizer, limit, side)
        if problem is None:
            continue
        if not truncate:
            raise CliError(f"{where(first + i)}: {problem} ({hint})")
        texts[i] = tokenizer.truncate(text, limit)
        cut += 1
    return texts, cut


def say_cut(where, cut, limit):
    """The note on stderr that ``cut`` sources were cut to ``limit`` tokens (none if 0)."""
    if cut:
        tokens = "token" if limit == 1 else "tokens"
        print(f"s2sext: {where(None)}: cut {cut} source{'s' if cut > 1 else ''} longer than {limit:,} {tokens} "
              f"to their first {'token' if limit == 1 else f'{limit:,}'} (--truncate)", file=sys.stderr)


class UnknownTokens:
    """A tally of the tokens of some texts that a vocabulary lacks (they are read as ``<unk>``), for
    one warning line on stderr: how many texts hold one, how many tokens and which, most frequent
    first. Texts are tokenized as the model tokenizes them."""

    EXAMPLES = 5  # the most frequent unknown tokens quoted in the warning

    def __init__(self, vocab, tokenizer, side="source"):
        from .data import get_tokenizer

        self.vocab, self.tokenizer, self.side = vocab, get_tokenizer(tokenizer), side
        self.texts = self.with_unknown = self.tokens = self.unknown = 0
        self.counts = Counter()

    def add(self, texts):
        for text in texts:
            tokens = self.tokenizer.tokenize(text)
            unknown = [token for token in tokens if token not in self.vocab]
            self.texts += 1
            self.tokens += len(tokens)
            if unknown:
                self.with_unknown += 1
                self.unknown += len(unknown)
                self.counts.update(unknown)
        return self

    def warn(self, where, vocabulary="the model's"):
        """Print the warning (nothing when every token is known)."""
        if not self.unknown:
            return
        examples = ", ".join(f"{token!r} x{n}" for token, n in self.counts.most_common(self.EXAMPLES))
        more = f" and {len(self.counts) - self.EXAMPLES} more" if len(self.counts) > self.EXAMPLES else ""
        texts = f"{self.texts:,} {self.side}{'' if self.texts == 1 else 's'}"
        verb = "holds" if self.with_unknown == 1 else "hold"
        print(f"s2sext: warning: {where}: {self.with_unknown:,} of {texts} {verb} tokens not in {vocabulary} "
              f"{self.side} vocabulary, read as <unk> ({self.unknown:,} of {self.tokens:,} tokens, "
              f"{len(self.counts):,} distinct): {examples}{more}", file=sys.stderr)


def read_pairs(path, tokenizers, limits):
    """The pairs of a TSV file within ``limits``, sources and targets tokenized with
    ``tokenizers`` = (source's, target's); a line beyond them is refused naming it, as is a line
    of more bytes than the limits allow (``data.line_byte_limit``), even with --truncate."""
    from .data import DataError, line_byte_limit, read_tsv

    try:
        pairs = read_tsv(path, tokenizers[0], tgt_tokenizer=tokenizers[1],
                         max_source_tokens=None if limits.truncate else limits.source,
                         max_target_tokens=limits.target, max_line_bytes=line_byte_limit(limits.source, limits.target))
    except DataError as exc:
        for side, hint in (("source", limits.source_hint), ("target", limits.target_hint)):
            if exc.problem.startswith(f"the {side} has "):
                raise CliError(f"{exc} ({hint})") from None
        raise
    if limits.truncate:
        sources = fit([s for s, _ in pairs], tokenizers[0], limits.source, lambda i: path, truncate=True)
        pairs = [(source, target) for source, (_, target) in zip(sources, pairs)]
    return pairs


def input_lines(path, max_tokens):
    """The lines of a UTF-8 file, or of stdin for None or "-", checked alike and read as they are
    needed; a line of more bytes than ``max_tokens`` tokens may take (``data.line_byte_limit``) is
    refused before it is read whole, so an endless line (``/dev/zero``) costs no more memory than
    the limit."""
    from .data import iter_lines, line_byte_limit

    cap = line_byte_limit(max_tokens)
    if path not in (None, "-"):
        return iter_lines(path, max_line_bytes=cap)
    if sys.stdin is None:  # started with stdin closed (``<&-``)
        raise CliError("stdin is closed; give an input file or pipe the lines in")
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:  # a text stream put in place of stdin: back to bytes, escaped ones as they came
        stream = io.BytesIO(sys.stdin.read().encode("utf-8", "surrogateescape"))
    return iter_lines(stream, "<stdin>", max_line_bytes=cap)


def check_output(option, path):
    """Refuse, before any work, an output that could not be written: what ``atomic_write`` would
    refuse (``serialize.output_target``: a directory, FIFO or device, a missing directory), or a
    directory that is not writable. Probes with an unnamed temporary file (``O_TMPFILE`` where the
    OS has it), so nothing is left behind."""
    from .serialize import output_target

    if path is None:
        return
    path = os.fspath(path)
    try:
        folder = os.path.dirname(output_target(path))
    except ValueError as exc:
        raise CliError(f"{option} {exc}") from None
    except OSError as exc:
        raise CliError(f"{option} {path}: {exc.strerror}") from None
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise CliError(f"{option} {path}: cannot write in {folder} ({exc.strerror or exc})") from None


def set_threads(args):
    """The kernel threads a command's --threads asks for (none given: the core's default)."""
    if getattr(args, "threads", None):
        from ._core import set_num_threads

        set_num_threads(args.threads)


def require_metrics(names):
    """``names`` checked to be computable here, before any work (a CliError naming the extra if not)."""
    from .metrics import MetricUnavailableError, require

    try:
        return require(names)
    except MetricUnavailableError as exc:
        raise CliError(f"--metric {' '.join(names)}: {exc}") from None


def encode_model_pairs(model, pairs):
    from .data import encode_pairs

    return encode_pairs(pairs, model.src_vocab, model.tgt_vocab, model.src_tokenizer, model.tgt_tokenizer,
                        reverse_source=model.config.reverse_source)


def warn_unknown_pairs(model, pairs, where, vocabulary="the model's"):
    """The unknown-token warnings of a TSV file's sources and targets (see UnknownTokens)."""
    UnknownTokens(model.src_vocab, model.src_tokenizer).add(s for s, _ in pairs).warn(where, vocabulary)
    UnknownTokens(model.tgt_vocab, model.tgt_tokenizer, "target").add(t for _, t in pairs).warn(where, vocabulary)
