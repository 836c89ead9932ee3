"""The ``s2sext`` command (also ``python -m s2sext``): train, translate, eval, plot, demo, kernels,
import-opennmt, quantize.

Bad arguments and bad data end in one ``s2sext: error: ...`` line on stderr (exit status 2),
never a traceback; so does running out of memory. A traceback means a bug in s2sext: a ValueError
or TypeError is one error line only when s2sext's own checks raised it. When the reader of stdout
goes away (``| head -1``) the command stops quietly with status 141, the status of a process that
SIGPIPE ended.

Every numeric option is range-checked when the command line is parsed. Sources and targets are
checked against their limits (in tokens) before anything is encoded, so one huge input line is
refused (or, with ``--truncate``, cut) instead of costing memory in proportion to its length:

* sources: the model's ``max_source_length`` for ``translate``, ``eval`` and ``plot`` (in the
  first two ``--max-source-length`` may change it, unless the model has location attention, whose
  weight has one row per source position); for ``train``, ``--max-source-length`` or else
  ``DEFAULT_MAX_TOKENS``;
* targets (``train``, ``eval``): ``--max-target-length``, default ``DEFAULT_MAX_TOKENS``.

``train --skip-long`` drops the training and validation pairs beyond these two limits instead
(their count is printed; the vocabularies come from the pairs kept); its lines are read within
``MAX_TOKENS`` per side.

Text input, from files or stdin, must be UTF-8 (``s2sext.data.read_lines``), and no line may have
more than ``data.BYTES_PER_TOKEN`` (64) bytes per token of its limits (a TSV line: the source's
plus the target's), with or without ``--truncate``: such a line is refused after reading that
many bytes, so an endless line (``/dev/zero``) costs memory bounded by the limits. ``translate``
reads, translates and prints ``--batch-size`` lines at a time, so an endless pipe is translated
as it comes (a bad line ends the command after the batches before it were printed). Outputs are
checked before any work starts: a directory, FIFO or device (``--out /dev/null``) is refused, as
is a missing or unwritable directory.
"""

from __future__ import annotations

import argparse
import dis
import itertools
import math
import os
import sys
import time

import numpy as np

from .checks import short_repr
from .cli_inputs import (DEFAULT_MAX_TOKENS, MAX_TOKENS, CliError, UnknownTokens, check_output, cut_or_refuse,
                         encode_model_pairs, fit, input_lines, model_limits, read_pairs, require_metrics, say_cut,
                         set_threads, warn_unknown_pairs)
from .cli_train import DEFAULT_SPM_VOCAB_SIZE, cmd_train, model_from_args
from .engine import DTYPES
from .metrics import METRIC_NAMES
from .spec import ATTENTION_KINDS, ATTENTION_STYLES, TOKENIZER_NAMES
from .tasks import TASKS

# set_num_threads' own bound (the C++ core refuses more).
MAX_THREADS = 1024
# The most pairs a task generates or a split holds out.
MAX_PAIRS = 10_000_000

DEMO_EXAMPLES = [
    "september 27, 1994",
    "August 19, 2003",
    "2/10/93",
    "10/31/90",
    "TUESDAY, SEPTEMBER 25, 1984",
    "JUN 17, 2013",
    "april 3, 1996",
    "Sat 8 Jul 2023",
    "23rd of March 2001",
    "25.12.99",
]


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument ends in one line (``s2sext: error: ...``, status 2) and a hint to
    ``--help`` instead of the whole usage block."""

    def error(self, message):
        sys.stderr.write(f"s2sext: error: {self.prog}: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


# ---------------------------------------------------------------------------------------------
# Argument types


def _int_in(high, low=1):
    """An argparse type: an integer in [low, high]."""
    expected = f"a positive integer up to {high:,}" if low == 1 else f"an integer from {low:,} to {high:,}"

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {short_repr(text)}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {short_repr(text)}")
        return value

    return parse


def _float_in(low=0.0, high=math.inf, *, open_low=False, open_high=False):
    """An argparse type: a finite number from ``low`` to ``high``, each end included unless open."""
    expected = f"a finite number {'>' if open_low else '>='} {low:g}"
    if high != math.inf:
        expected += f" and {'<' if open_high else '<='} {high:g}"

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {short_repr(text)}") from None
        above = value > low if open_low else value >= low
        below = value < high if open_high else value <= high
        if not (math.isfinite(value) and above and below):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {short_repr(text)}")
        return value

    return parse


_size = _int_in(65_536)  # embedding and hidden sizes
_vocab_size = _int_in(10_000_000, low=5)  # the four specials and at least one token
_layers = _int_in(64)
_length = _int_in(MAX_TOKENS)
_pairs = _int_in(MAX_PAIRS)
_batch_size = _int_in(1_000_000)
_epochs = _int_in(1_000_000)
_beam = _int_in(1_000)  # also --n-best, which may not exceed it
_threads = _int_in(MAX_THREADS)
_seed = _int_in(2**63 - 1, low=0)  # kept in checkpoints as a JSON integer that int64 holds
_non_negative_float = _float_in()
_learning_rate = _float_in(open_low=True)
_dropout = _float_in(high=1.0, open_high=True)  # the model's own range: dropout 1 would zero every input
_decay = _float_in(high=1.0, open_low=True, open_high=True)  # 1 would be no decay, PyTorch's plateau refuses it
_batch_tokens = _int_in(100_000_000)


def _fraction_or_count(text):
    try:
        value = float(text)
        if not np.isfinite(value):
            raise ValueError(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1) or a count, got {short_repr(text)}") from None
    if value >= 1:
        if value != int(value) or value > MAX_PAIRS:
            raise argparse.ArgumentTypeError(
                f"expected a fraction in (0, 1) or a count (a whole number up to {MAX_PAIRS:,}), "
                f"got {short_repr(text)}")
        return int(value)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1) or a count, got {short_repr(text)}")
    return value


def _schedule(text):
    from .train import TeacherForcingSchedule

    try:
        return TeacherForcingSchedule.parse(text)
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# ---------------------------------------------------------------------------------------------
# Commands


def cmd_translate(args):
    from .model import Seq2Seq

    if args.n_best > args.beam:
        raise CliError(f"--n-best ({args.n_best}) must not exceed --beam ({args.beam})")
    if args.beam > 1 and (args.sampling_topk != 1 or args.sampling_topp != 1.0 or args.sampling_temperature != 1.0):
        raise CliError(f"sampling (--sampling-topk/--sampling-topp/--sampling-temperature) needs --beam 1, "
                       f"got --beam {args.beam}")
    set_threads(args)
    model = Seq2Seq.load(args.model)
    translator = model if args.dtype == "float32" else model.compile(args.dtype)
    limits = model_limits(args, model)
    lines = input_lines(args.input, limits.source)
    where = args.input if args.input not in (None, "-") else "<stdin>"
    name = lambda i: where if i is None else f"{where}:{i + 1}"  # noqa: E731
    # --batch-size lines at a time: an endless pipe is translated as it comes, in bounded memory
    start, cut, sampled = 0, 0, 0
    unknown = UnknownTokens(model.src_vocab, model.src_tokenizer)
    while True:
        chunk = list(itertools.islice(lines, args.batch_size))
        if not chunk:
            break
        chunk, cut_here = cut_or_refuse(chunk, model.src_tokenizer, limits.source, name, limits.truncate,
                                         limits.source_hint, first=start)
        cut += cut_here
        keep = [i for i, text in enumerate(chunk) if text.strip()]
        unknown.add(chunk[i] for i in keep)
        results = [""] * len(chunk)
        if keep:
            try:
                out = translator.translate(
                    [chunk[i] for i in keep], beam=args.beam, n_best=args.n_best, max_length=args.max_length,
                    length_penalty=args.length_penalty, coverage_penalty=args.coverage_penalty,
                    no_repeat_ngram_size=args.no_repeat_ngram_size, target_prefix=args.target_prefix,
                    sampling_temperature=args.sampling_temperature, sampling_topk=args.sampling_topk,
                    sampling_topp=args.sampling_topp, seed=args.seed + sampled)
            except ValueError as exc:
                raise CliError(f"{where}: lines {start + 1}-{start + len(chunk)}: {exc}") from None
            for i, r in zip(keep, out):
                results[i] = r
            # the n-th non-blank line draws from seed + n, whatever --batch-size cuts
            sampled += len(keep)
        for r in results:
            if args.n_best > 1 and isinstance(r, list):
                print(" ||| ".join(f"{text} ({score:.4f})" for text, score in r))
            else:
                print(r)
        sys.stdout.flush()  # each batch's lines as soon as they are ready, for a reader at the pipe's end
        start += len(chunk)
    say_cut(name, cut, limits.source)
    unknown.warn(where)
    return 0


def cmd_eval(args):
    from .metrics import ERROR_RATE_NAMES, METRIC_NAMES, METRICS, MetricUnavailableError, require
    from .model import Seq2Seq
    from .serialize import atomic_write
    from .train import evaluate

    set_threads(args)
    check_output("--output", args.output)
    missing = None
    if args.metric:
        names = require_metrics(list(dict.fromkeys(args.metric)))
    else:  # all that can be computed here; BLEU and chrF only with sacrebleu
        names = METRIC_NAMES
        try:
            require(names)
        except MetricUnavailableError as exc:
            names, missing = tuple(n for n in names if not METRICS[n].needs_sacrebleu), exc
    model = Seq2Seq.load(args.model)
    pairs = read_pairs(args.data, (model.src_tokenizer, model.tgt_tokenizer),
                        model_limits(args, model))
    warn_unknown_pairs(model, pairs, args.data)
    if model.config.tgt_lowercase:
        print("s2sext: note: the model lowercases its targets; the references are lowercased before scoring",
              file=sys.stderr)
    # scored against the targets as written (lowercased if the model lowercases its targets): a
    # hypothesis' <unk> matches no reference token
    result = evaluate(model, *encode_model_pairs(model, pairs), batch_size=args.batch_size, beam=args.beam,
                      with_loss=False, max_length=args.max_length, metrics=names, references=[t for _, t in pairs],
                      decoder=model.compile(args.dtype))
    tokenizer = model.config.tgt_tokenizer
    details = {
        "exact_match": ("", f" ({result['correct']}/{result['total']})"),
        "token_error_rate": (f" ({ERROR_RATE_NAMES[tokenizer]})",
                             f" ({result['edits']} edits / {result['reference_tokens']} reference {tokenizer} tokens)"),
    }
    for name in names:
        metric, value = METRICS[name], result["metrics"][name]
        label, detail = details.get(name) or ("", f" ({result['signatures'][name]})")
        print(f"{metric.label}{label}: {value:.2f}{metric.unit}{detail}")
    if missing is not None:
        print(f"s2sext: note: {missing}", file=sys.stderr)
    if args.output:
        text = "".join(model.decode_ids(h) + "\n" for h in result["hypotheses"]).encode("utf-8")
        atomic_write(args.output, lambda f: f.write(text))
    return 0


def cmd_plot(args):
    from .model import Seq2Seq
    from .plot import plot_attention

    check_output("--out", args.out)
    model = Seq2Seq.load(args.model)
    fit([args.text], model.src_tokenizer, model.config.max_source_length, lambda i: "TEXT",
         hint="the model's max_source_length")
    UnknownTokens(model.src_vocab, model.src_tokenizer).add([args.text]).warn("TEXT")
    translation = plot_attention(model, args.text, args.out)
    print(f"{args.text} -> {translation}; heatmap written to {args.out}")
    return 0


def cmd_demo(args):
    """Train the dates task with dot attention, print translations and held-out accuracy, plot."""
    from ._core import cpu_info, get_num_threads
    from .data import make_dates, split_pairs
    from .train import evaluate, train

    set_threads(args)
    os.makedirs(args.out_dir, exist_ok=True)
    started = time.perf_counter()
    pairs = make_dates(args.size, seed=args.seed)
    train_pairs, valid_pairs = split_pairs(pairs, args.valid, seed=args.seed)
    seen = {s for s, _ in train_pairs}
    valid_pairs = [p for p in valid_pairs if p[0] not in seen]
    info = cpu_info()
    print(f"s2sext demo: human-readable dates -> ISO dates, on {get_num_threads()} threads "
          f"(SIMD {info['kernel_path']}, BLAS core {info['blas']['core'] or '?'})")
    print(f"data: {len(train_pairs)} training pairs, {len(valid_pairs)} held-out pairs "
          f"(none of their sources seen in training), e.g. {train_pairs[0][0]!r} -> {train_pairs[0][1]!r}")
    ns = argparse.Namespace(tokenizer="char", src_tokenizer=None, tgt_tokenizer=None, src_vocab_size=None,
                            tgt_vocab_size=None, min_frequency=1, attention="dot", style="luong", input_feeding=False,
                            embed=16, hidden=256, layers=1, bidirectional=False, dropout=0.0, seed=args.seed,
                            max_source_length=None, reverse_source=True)
    model = model_from_args(ns, train_pairs)
    print(f"model: {model.num_parameters:,} parameters; char tokens, reversed source, embed 16, "
          f"hidden 256, Luong dot attention; Adam lr 0.001, batch 128, clip 5", flush=True)
    model_path = os.path.join(args.out_dir, "dates.s2s")
    train(model, encode_model_pairs(model, train_pairs), encode_model_pairs(model, valid_pairs), epochs=args.epochs,
          batch_size=128, optimizer="adam", lr=1e-3, clip=5.0, seed=args.seed, out=model_path,
          progress=not args.no_progress, stream=sys.stderr, log=lambda m: print(m, flush=True))
    from .model import Seq2Seq

    model = Seq2Seq.load(model_path)
    print("\nexample translations (greedy):")
    for text, out in zip(DEMO_EXAMPLES, model.translate(DEMO_EXAMPLES)):
        print(f"  {text:<30} -> {out}")
    result = evaluate(model, *encode_model_pairs(model, valid_pairs), with_loss=False)
    print(f"\nheld-out exact match: {100 * result['accuracy']:.2f}% ({result['correct']}/{result['total']})")
    heatmap = os.path.join(args.out_dir, "attention.png")
    try:
        from .plot import plot_attention

        plot_attention(model, DEMO_EXAMPLES[4], heatmap)
        print(f"attention heatmap of {DEMO_EXAMPLES[4]!r}: {heatmap}")
    except Exception as exc:  # plotting is optional; say why it was skipped
        print(f"attention heatmap skipped: {exc}")
    print(f"model: {model_path}; total time {time.perf_counter() - started:.0f} s")
    return 0


def cmd_kernels(args):
    from .demo import main

    return main()


def cmd_import_opennmt(args):
    import warnings

    check_output("OUT", args.out)
    try:
        from . import opennmt  # imports torch: only this command needs it
        if not opennmt.safe_load_supported():
            raise ImportError(f"torch >= 2.6 (this is {opennmt.torch.__version__})")
    except ImportError as exc:
        raise CliError(f"import-opennmt needs PyTorch: {exc}") from None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        model = opennmt.convert_file(args.checkpoint, args.out, weights=args.weights)
    for w in caught:
        print(f"s2sext: note: {w.message}", file=sys.stderr)
    cfg = model.config
    attention = {None: "none", "concat": "mlp (concat with query bias, no tanh)"}.get(cfg.attention, cfg.attention)
    print(f"imported {args.checkpoint}: {'brnn' if cfg.bidirectional else 'rnn'} encoder, {cfg.num_layers} "
          f"layer(s), hidden {cfg.hidden_size}, attention {attention}, input feeding "
          f"{'on' if cfg.input_feeding else 'off'}, vocabularies {len(model.src_vocab)}/{len(model.tgt_vocab)} "
          f"-> {args.out}")
    return 0


def cmd_quantize(args):
    from .model import Seq2Seq
    from .seq2seq_file import int8_parameters
    from .serialize import read_model_file

    check_output("OUT", args.out)
    header, tensors = read_model_file(args.model)
    try:
        model = Seq2Seq.from_header(header, tensors)
    except (KeyError, TypeError, ValueError) as exc:
        raise CliError(f"{args.model}: not a valid s2sext model: {exc}") from None
    if int8_parameters(model.config, tensors):
        raise CliError(f"{args.model} is already an int8 model file: nothing to quantize")
    # a model to ship: a checkpoint's optimiser state and resume keys are left out, the training record kept
    extra = header.get("extra")
    training = {"training": extra["training"]} if isinstance(extra, dict) and "training" in extra else None
    del header, tensors
    before = os.path.getsize(args.model)  # (OUT may be MODEL)
    model.save(args.out, extra=training, dtype="int8")
    after = os.path.getsize(args.out)
    print(f"quantized {args.model} ({before:,} bytes) -> {args.out} ({after:,} bytes, {before / after:.2f}x smaller)")
    return 0


# ---------------------------------------------------------------------------------------------
# Parser


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default after its help, unless there is none to show (None, a flag)."""

    def _get_help_string(self, action):
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def build_parser():
    parser = _Parser(
        prog="s2sext", description="Sequence-to-sequence models with attention on s2sext's C++ kernels.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name, **kwargs):
        return sub.add_parser(name, formatter_class=_HelpFormatter, **kwargs)

    truncate_help = "cut a source longer than the limit to its first tokens instead of refusing it"
    p = command("train", help="train a model on a TSV file or a built-in task",
                description="Train a Seq2Seq model; writes the best model (by the validation --metric).")
    data = p.add_argument_group("data")
    data.add_argument("--data", metavar="FILE.tsv", help="training pairs, 'source<TAB>target' per line (UTF-8); required unless --task is given")
    data.add_argument("--task", choices=list(TASKS), help="a built-in generated task, instead of --data")
    data.add_argument("--task-size", type=_pairs, default=50000, help="pairs to generate for --task")
    data.add_argument("--valid", metavar="FILE.tsv", help="validation pairs (default: split off the data)")
    data.add_argument("--valid-split", type=_fraction_or_count, default=0.1,
                      help="fraction or count held out when --valid is not given")
    data.add_argument("--tokenizer", choices=list(TOKENIZER_NAMES), default="char",
                      help="how lines become tokens, on both sides unless one of the next two says otherwise "
                           "(sentencepiece: subwords of a model trained on the training pairs, or given with "
                           "--src-spm-model/--tgt-spm-model; needs pip install 's2sext[sentencepiece]'; while the "
                           "data is read, a side whose model is still to be trained counts its length limits in "
                           "characters)")
    data.add_argument("--src-tokenizer", choices=list(TOKENIZER_NAMES), default=None,
                      help="how sources become tokens (default: --tokenizer's)")
    data.add_argument("--tgt-tokenizer", choices=list(TOKENIZER_NAMES), default=None,
                      help="how targets become tokens (default: --tokenizer's)")
    data.add_argument("--src-vocab-size", type=_vocab_size, default=None, metavar="N",
                      help="keep the N-4 most frequent source tokens besides the four specials (default: all)")
    data.add_argument("--tgt-vocab-size", type=_vocab_size, default=None, metavar="N",
                      help="keep the N-4 most frequent target tokens besides the four specials (default: all)")
    data.add_argument("--min-frequency", type=_int_in(10**9), default=1, metavar="N",
                      help="keep only tokens seen at least N times in the training data, on both sides (char and "
                           "word sides)")
    for side, what in (("src", "source"), ("tgt", "target")):
        data.add_argument(f"--{side}-spm-model", metavar="FILE.model",
                          help=f"the {what} side's trained sentencepiece model (with a sentencepiece {what} side; "
                               "default: train one on the training pairs)")
        data.add_argument(f"--{side}-spm-vocab-size", type=_vocab_size, default=None, metavar="N",
                          help=f"the most pieces of the {what} side's sentencepiece model to train, the four "
                               f"specials counted (default: {DEFAULT_SPM_VOCAB_SIZE:,}; a small corpus may give fewer)")
    data.add_argument("--spm-model-type", choices=["unigram", "bpe"], default="unigram",
                      help="the kind of sentencepiece model to train")
    data.add_argument("--shared-spm", action="store_true",
                      help="train one sentencepiece model on sources and targets together, for both sides")
    data.add_argument("--lowercase", action="store_true",
                      help="lowercase sources and targets before tokenizing them (the vocabularies, length limits "
                           "and training all see lowercased text); the model remembers it, so translate, eval and "
                           "plot lowercase their inputs the same way, and eval scores against lowercased references")
    data.add_argument("--src-lowercase", action="store_true",
                      help="lowercase the sources only (translate, eval and plot then lowercase their inputs)")
    data.add_argument("--tgt-lowercase", action="store_true",
                      help="lowercase the targets only (the model writes lowercase text; eval then scores against "
                           "lowercased references)")
    data.add_argument("--reverse-source", action="store_true", help="feed each source backwards")
    data.add_argument("--max-target-length", type=_length, default=DEFAULT_MAX_TOKENS, metavar="N",
                      help="refuse a target of more tokens")
    data.add_argument("--truncate", action="store_true", help=truncate_help)
    m = p.add_argument_group("model")
    m.add_argument("--attention", choices=["none", *ATTENTION_KINDS], default="dot", help="attention score")
    m.add_argument("--style", choices=list(ATTENTION_STYLES), default="luong", help="where attention sits")
    m.add_argument("--input-feeding", action="store_true", help="Luong input feeding")
    m.add_argument("--embed", type=_size, default=16, help="embedding size")
    m.add_argument("--hidden", type=_size, default=256, help="LSTM hidden size")
    m.add_argument("--layers", type=_layers, default=1, help="LSTM layers")
    m.add_argument("--bidirectional", action="store_true", help="a bidirectional encoder")
    m.add_argument("--dropout", type=_dropout, default=0.0, help="between LSTM layers, in [0, 1)")
    m.add_argument("--max-source-length", type=_length, default=None, metavar="N",
                   help=f"the longest source in tokens, refused beyond (default: {DEFAULT_MAX_TOKENS}), and the "
                        "model's max_source_length (default: max(128, 2 x the longest source))")
    t = p.add_argument_group("training")
    t.add_argument("--batch-size", type=_batch_size, default=128, help="pairs per update")
    t.add_argument("--batch-tokens", type=_batch_tokens, default=None, metavar="N",
                   help="instead of --batch-size: batches of at most N padded tokens (rows x the longest side), "
                        "of pairs of similar length; a longer pair is a batch of its own")
    t.add_argument("--epochs", type=_epochs, default=3, help="passes over the training pairs")
    t.add_argument("--lr", type=_learning_rate, default=1e-3, help="learning rate")
    t.add_argument("--lr-schedule", choices=["constant", "step", "exponential", "plateau"], default="constant",
                   help="step: x decay every --lr-step-epochs; exponential: x decay every epoch; plateau: x decay "
                        "after more than --lr-patience epochs without improvement (PyTorch's ReduceLROnPlateau)")
    t.add_argument("--lr-decay", type=_decay, default=0.5, help="the factor of each decrease, in (0, 1)")
    t.add_argument("--lr-step-epochs", type=_epochs, default=1, metavar="N", help="epochs between step decreases")
    t.add_argument("--lr-patience", type=_int_in(1_000_000, low=0), default=1, metavar="N",
                   help="plateau: epochs without improvement tolerated before a decrease")
    t.add_argument("--min-lr", type=_non_negative_float, default=0.0, help="no decay goes below this rate")
    t.add_argument("--warmup-steps", type=_int_in(10**9, low=0), default=0, metavar="N",
                   help="raise the rate linearly over the first N updates (with any schedule)")
    t.add_argument("--label-smoothing", type=_float_in(high=1.0), default=0.0,
                   help="PyTorch's label smoothing eps in [0, 1] (the training loss shown is the smoothed one)")
    t.add_argument("--embed-dropout", type=_dropout, default=0.0, help="dropout on the embedded inputs, in [0, 1)")
    t.add_argument("--patience", type=_epochs, default=None, metavar="N",
                   help="stop when the validation metric (that picks the best model) has not improved for N epochs "
                        "(default: never)")
    t.add_argument("--time-budget", type=_float_in(open_low=True), default=None, metavar="SECONDS",
                   help="stop before an epoch that would end past SECONDS of wall time, keeping the best model "
                        "(default: no limit)")
    t.add_argument("--skip-long", action="store_true",
                   help="drop training and validation pairs beyond --max-source-length/--max-target-length "
                        "(counted on stderr) instead of refusing them")
    t.add_argument("--optimizer", choices=["adam", "sgd"], default="adam", help="the update rule")
    t.add_argument("--clip", type=_non_negative_float, default=5.0, help="global gradient-norm clip (0: off)")
    t.add_argument("--teacher-forcing", type=_schedule, default="1.0", metavar="SCHEDULE",
                   help="probability of feeding the ground truth: '1.0', 'constant:0.8', 'linear:c=1e-4,floor=0.5', "
                        "'exponential:k=0.999', 'inverse_sigmoid:k=500'")
    t.add_argument("--seed", type=_seed, default=0, help="seeds the data, weights and batches")
    t.add_argument("--metric", choices=list(METRIC_NAMES), default="exact_match",
                   help="the validation score that picks the best epoch, ties broken by loss (bleu, chrf: sacrebleu)")
    t.add_argument("--out", default="model.s2s", metavar="MODEL", help="where the best model goes")
    t.add_argument("--checkpoint", metavar="FILE", help="write a resumable checkpoint after every epoch (default: none)")
    t.add_argument("--resume", metavar="FILE", help="continue from a checkpoint (default: start afresh)")
    t.add_argument("--threads", type=_threads,
                   help="kernel threads (default: all CPUs; under torchrun each process an equal share)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    model_length_help = "the longest source in tokens, refused beyond (default: the model's max_source_length)"
    dtype_help = "weights of the compiled decoder: bfloat16 halves, int8 quarters the bytes read (default: float32)"
    p = command("translate", help="translate lines from a file or stdin",
                description="Translate one line at a time; prints one output line per input line.")
    p.add_argument("--model", required=True, metavar="MODEL", help="a model file")
    p.add_argument("input", nargs="?", default="-", help="a UTF-8 text file, or - for stdin")
    p.add_argument("--beam", type=_beam, default=1, help="beam size (1: greedy)")
    p.add_argument("--n-best", type=_beam, default=1, help="print the K best, ' ||| '-separated")
    p.add_argument("--max-length", type=_length, default=50, help="longest output in tokens")
    p.add_argument("--length-penalty", type=_float_in(high=10), default=0.0, help="GNMT alpha (0: none)")
    p.add_argument("--coverage-penalty", type=_non_negative_float, default=0.0,
                   help="GNMT coverage penalty beta, ranks finished hypotheses (0: none)")
    p.add_argument("--no-repeat-ngram-size", type=_int_in(MAX_TOKENS, low=0), default=0, metavar="N",
                   help="no N-gram twice in an output (0: no blocking)")
    p.add_argument("--sampling-topk", type=_int_in(MAX_TOKENS, low=0), default=1, metavar="K",
                   help="sample among the K most likely tokens (1: greedy, 0: all); needs --beam 1")
    p.add_argument("--sampling-topp", type=_float_in(high=1.0, open_low=True), default=1.0, metavar="P",
                   help="sample within the smallest set of probability >= P (1: no limit)")
    p.add_argument("--sampling-temperature", type=_float_in(open_low=True), default=1.0, metavar="T",
                   help="divide the logits by T before sampling")
    p.add_argument("--seed", type=_seed, default=0,
                   help="the sampling's seed: the n-th non-blank line draws from seed + n (same seed, same output)")
    p.add_argument("--target-prefix", metavar="TEXT", default=None,
                   help="every output starts with TEXT, then continues (default: none)")
    p.add_argument("--batch-size", type=_batch_size, default=64, help="lines decoded together")
    p.add_argument("--max-source-length", type=_length, metavar="N", help=model_length_help)
    p.add_argument("--truncate", action="store_true", help=truncate_help)
    p.add_argument("--threads", type=_threads, help="kernel threads (default: all CPUs)")
    p.add_argument("--dtype", choices=list(DTYPES), default="float32", help=dtype_help)
    p.set_defaults(func=cmd_translate)

    p = command("eval", help="score a model on a TSV file: exact match, token error rate, BLEU, chrF",
                description="Translate every source of a TSV file and score the outputs against the targets "
                            "(BLEU and chrF need sacrebleu: pip install 's2sext[metrics]'). Sources and targets are "
                            "lowercased where the model lowercases that side (train --lowercase), as in training.")
    p.add_argument("--model", required=True, metavar="MODEL", help="a model file")
    p.add_argument("--data", required=True, metavar="FILE.tsv", help="'source<TAB>target' per line (UTF-8)")
    p.add_argument("--beam", type=_beam, default=1, help="beam size (1: greedy)")
    p.add_argument("--max-length", type=_length, default=None,
                   help="longest output (default: the longest target of each batch + 5)")
    p.add_argument("--batch-size", type=_batch_size, default=256, help="pairs decoded together")
    p.add_argument("--max-source-length", type=_length, metavar="N", help=model_length_help)
    p.add_argument("--max-target-length", type=_length, default=DEFAULT_MAX_TOKENS, metavar="N",
                   help="refuse a target of more tokens")
    p.add_argument("--truncate", action="store_true", help=truncate_help)
    p.add_argument("--metric", choices=list(METRIC_NAMES), action="append",
                   help="a score to print, repeatable (default: all; BLEU and chrF when sacrebleu is installed)")
    p.add_argument("--output", metavar="FILE", help="write the outputs there, one line per pair, in input order (default: none)")
    p.add_argument("--threads", type=_threads, help="kernel threads (default: all CPUs)")
    p.add_argument("--dtype", choices=list(DTYPES), default="float32", help=dtype_help)
    p.set_defaults(func=cmd_eval)

    p = command("plot", help="attention heatmap of one translation",
                description="Write the attention heatmap of translating TEXT (needs matplotlib).")
    p.add_argument("--model", required=True, metavar="MODEL", help="a model file")
    p.add_argument("text", help="the source to translate")
    p.add_argument("--out", required=True, metavar="FILE.png", help="where the heatmap goes")
    p.set_defaults(func=cmd_plot)

    p = command("demo", help="train the dates task and show what attention learned",
                description="Train dot attention on generated dates, "
                            "print translations and held-out accuracy, write the heatmap.")
    p.add_argument("--out-dir", default="s2sext-demo", help="where the model and heatmap go")
    p.add_argument("--size", type=_pairs, default=50000, help="generated pairs")
    p.add_argument("--valid", type=_fraction_or_count, default=5000, help="held-out pairs")
    p.add_argument("--epochs", type=_epochs, default=3, help="passes over the training pairs")
    p.add_argument("--seed", type=_seed, default=0, help="seeds the data, weights and batches")
    p.add_argument("--threads", type=_threads, help="kernel threads (default: all CPUs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demo)

    p = command("kernels", help="a short tour of the kernels with a gradient check",
                description="Run the LSTM and attention kernels forward and backward on a small "
                            "problem and check a gradient against a finite difference.")
    p.set_defaults(func=cmd_kernels)

    p = command("import-opennmt", help="convert an OpenNMT-py RNN checkpoint into a model file",
                description="Convert an OpenNMT-py LSTM checkpoint (.pt) into an s2sext model file "
                            "(needs PyTorch; see docs/opennmt.md for what is supported).")
    p.add_argument("checkpoint", metavar="CKPT.pt", help="the OpenNMT-py checkpoint")
    p.add_argument("out", metavar="OUT", help="the s2sext model file to write")
    p.add_argument("--weights", metavar="FILE.safetensors",
                   help="the weights of a checkpoint saved with -save_format safetensors "
                        "(default: those inside CKPT.pt)")
    p.set_defaults(func=cmd_import_opennmt)

    p = command("quantize", help="write a model file with int8 matrices (about 4x smaller)",
                description="Write IN's weight matrices in int8 with a float32 scale per row (docs/model-format.md); "
                            "every loader reads the file. Biases stay float32; a checkpoint's optimiser state is "
                            "left out.")
    p.add_argument("model", metavar="IN", help="the float32 model file to quantize")
    p.add_argument("out", metavar="OUT", help="the int8 model file to write (written atomically)")
    p.set_defaults(func=cmd_quantize)
    return parser


# The folder of s2sext's Python modules, where the raise statements of its argument and data checks are.
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _raised_by_s2sext(exc):
    """Whether ``exc`` (a ValueError, TypeError or ArithmeticError) was raised by a ``raise``
    statement in s2sext's Python code: the library's argument and data checks, whose messages are
    meant for the user. The same types raised by Python, numpy or the compiled core under s2sext's
    code (indexing None, a bad unpacking, an argument the Python layer should have checked) are
    bugs and keep their traceback."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    if os.path.dirname(os.path.abspath(code.co_filename)) != _PACKAGE_DIR:
        return False
    # the instruction that raised: a raise statement's, not an operation's or a call's
    return any(op.offset == tb.tb_lasti and op.opname == "RAISE_VARARGS" for op in dis.get_instructions(code))


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    from .data import DataError
    from .plot import PlotUnavailableError
    from .serialize import ModelFileError
    from .text import SentencePieceUnavailableError

    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe is reported here, not at exit
        return status
    except (CliError, DataError, ModelFileError, PlotUnavailableError, SentencePieceUnavailableError) as exc:
        print(f"s2sext: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, ArithmeticError) as exc:  # ArithmeticError: training that diverged
        if not _raised_by_s2sext(exc):
            raise  # a bug: its traceback is what a report needs
        print(f"s2sext: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (``| head -1``): stop quietly, as cat or grep do, with the status a
        # shell shows for a process ended by SIGPIPE (128 + 13). Output still buffered would raise
        # again when the interpreter flushes it at exit, so stdout is pointed at devnull first.
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):  # no file descriptor behind sys.stdout (a test's)
            pass
        finally:
            os.close(devnull)
        return 141
    except MemoryError as exc:  # numpy's and the C++ core's (std::bad_alloc) alike
        detail = f" ({exc})" if str(exc) else ""
        print(f"s2sext: error: out of memory{detail}; smaller inputs, batches, beams or models need less",
              file=sys.stderr)
        return 2
    except OSError as exc:
        name = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"s2sext: error: {name}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("s2sext: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
