"""``s2sext train``: the data, tokenizers (sentencepiece models trained or read) and vocabularies
of a new model or a resumed checkpoint, within the limits of :mod:`s2sext.cli`'s docstring, then
:func:`s2sext.train.train` (under torchrun, one process per rank: rank 0 prints and writes)."""

from __future__ import annotations

import os
import sys

from .cli_inputs import (DEFAULT_MAX_TOKENS, MAX_TOKENS, CliError, Limits, UnknownTokens, check_output,
                         encode_model_pairs, fit, read_pairs, require_metrics, set_threads, warn_unknown_pairs)


def _load_pairs(args, limits, tokenizers):
    """(train pairs, valid pairs) from --data/--task and --valid/--valid-split, within ``limits``,
    counted with ``tokenizers`` = (source's, target's)."""
    from .data import make_task, split_pairs

    if args.data and args.task:
        raise CliError("give either --data FILE.tsv or --task NAME, not both")
    if args.data:
        pairs = read_pairs(args.data, tokenizers, limits)
        source = args.data
    elif args.task:
        pairs = make_task(args.task, args.task_size, seed=args.seed)
        where = lambda i: f"task {args.task}" + ("" if i is None else f", pair {i + 1}")  # noqa: E731
        sources = fit([s for s, _ in pairs], tokenizers[0], limits.source, where, limits.truncate,
                       limits.source_hint)
        targets = fit([t for _, t in pairs], tokenizers[1], limits.target, where, hint=limits.target_hint,
                       side="target")
        pairs = list(zip(sources, targets))
        source = f"task {args.task} ({args.task_size} generated pairs, seed {args.seed})"
    else:
        raise CliError("give the training data: --data FILE.tsv or --task dates|addition|reverse")
    if args.valid:
        valid = read_pairs(args.valid, tokenizers, limits)
        train = pairs
    else:
        train, valid = split_pairs(pairs, args.valid_split, seed=args.seed)
        if args.task:  # held out means unseen: drop validation sources that also occur in training
            seen = {s for s, _ in train}
            valid = [p for p in valid if p[0] not in seen]
            if not valid:
                raise CliError("every validation source also occurs in the training pairs; "
                               "generate more pairs (--task-size) or give --valid")
    return train, valid, source


# The sentencepiece options of `s2sext train` (its "data" group), with the values a caller that does
# not offer them (the demo) gets.
_SPM_OPTIONS = {"src_spm_model": None, "tgt_spm_model": None, "src_spm_vocab_size": None, "tgt_spm_vocab_size": None,
                "spm_model_type": "unigram", "shared_spm": False}
DEFAULT_SPM_VOCAB_SIZE = 8000


def _side_names(args):
    """(source's, target's) tokenizer names: --src-tokenizer / --tgt-tokenizer, else --tokenizer."""
    return args.src_tokenizer or args.tokenizer, args.tgt_tokenizer or args.tokenizer


def _side_lowercase(args):
    """(source's, target's) lowercasing: --lowercase for both, --src-lowercase / --tgt-lowercase for
    one (False for a caller that does not offer them, the demo)."""
    both = getattr(args, "lowercase", False)
    return both or getattr(args, "src_lowercase", False), both or getattr(args, "tgt_lowercase", False)


def _spm_options(args) -> dict:
    """The sentencepiece options of ``args``, checked against the sides' tokenizers."""
    options = {key: getattr(args, key, default) for key, default in _SPM_OPTIONS.items()}
    names = dict(zip(("src", "tgt"), _side_names(args)))
    for side, flag in (("src", "--src-tokenizer"), ("tgt", "--tgt-tokenizer")):
        given = [option for option, key in ((f"--{side}-spm-model", f"{side}_spm_model"),
                                            (f"--{side}-spm-vocab-size", f"{side}_spm_vocab_size")) if options[key]]
        if names[side] != "sentencepiece" and given:
            raise CliError(f"{given[0]} needs a sentencepiece {'source' if side == 'src' else 'target'} side "
                           f"({flag} sentencepiece or --tokenizer sentencepiece); it is {names[side]}")
        if names[side] == "sentencepiece" and getattr(args, f"{side}_vocab_size", None) is not None:
            raise CliError(f"--{side}-vocab-size applies to char and word sides; a sentencepiece side's vocabulary "
                           f"is its model's pieces: give --{side}-spm-vocab-size")
        if options[f"{side}_spm_model"] and options[f"{side}_spm_vocab_size"]:
            raise CliError(f"--{side}-spm-model gives a trained model; --{side}-spm-vocab-size is for one to train")
    if options["shared_spm"]:
        if set(names.values()) != {"sentencepiece"}:
            raise CliError("--shared-spm needs sentencepiece on both sides (--tokenizer sentencepiece); the sides are "
                           f"{names['src']} and {names['tgt']}")
        if options["src_spm_model"] or options["tgt_spm_model"]:
            raise CliError("--shared-spm trains one model for both sides; to share a trained one, give its file as "
                           "both --src-spm-model and --tgt-spm-model")
        sizes = {options["src_spm_vocab_size"], options["tgt_spm_vocab_size"]} - {None}
        if len(sizes) > 1:
            raise CliError(f"--shared-spm trains one model: --src-spm-vocab-size and --tgt-spm-vocab-size differ "
                           f"({options['src_spm_vocab_size']} and {options['tgt_spm_vocab_size']})")
    return options


def _spm_from_file(path, option, lowercase=False):
    from .text import SentencePieceTokenizer

    try:
        return SentencePieceTokenizer.from_file(path, lowercase)
    except ValueError as exc:
        raise CliError(f"{option}: {exc}") from None


def _side_tokenizers(args):
    """(source's, target's) tokenizer as the data's length limits count with it: --src-tokenizer /
    --tgt-tokenizer, else --tokenizer; a sentencepiece side's model from --src-spm-model /
    --tgt-spm-model, and one still to train (on the data being read) counts characters; each
    lowercasing as --lowercase / --src-lowercase / --tgt-lowercase say."""
    from .text import get_tokenizer

    options = _spm_options(args)
    tokenizers = []
    for side, name, lowercase in zip(("src", "tgt"), _side_names(args), _side_lowercase(args)):
        if name == "sentencepiece":
            path = options[f"{side}_spm_model"]
            tokenizers.append(_spm_from_file(path, f"--{side}-spm-model", lowercase) if path
                              else get_tokenizer("char", lowercase=lowercase))
        else:
            tokenizers.append(get_tokenizer(name, lowercase=lowercase))
    return tuple(tokenizers)


def _train_tokenizers(args, train_pairs):
    """(source's, target's) tokenizer of the model: a name, a given sentencepiece model, or one
    trained on the training pairs (their sources, targets, or both with --shared-spm); each
    lowercasing as --lowercase / --src-lowercase / --tgt-lowercase say (a model to train is
    trained on the lowercased text)."""
    from .text import SentencePieceTokenizer, get_tokenizer

    options = _spm_options(args)
    model_type = options["spm_model_type"]
    src_lowercase, tgt_lowercase = _side_lowercase(args)

    def trained(texts, size, what, lowercase):
        size = size or DEFAULT_SPM_VOCAB_SIZE
        try:
            return SentencePieceTokenizer.train(texts, vocab_size=size, model_type=model_type, lowercase=lowercase)
        except ValueError as exc:
            raise CliError(f"training the {what} sentencepiece model ({model_type}, vocabulary {size}): {exc}") from None

    if options["shared_spm"]:
        size = options["src_spm_vocab_size"] or options["tgt_spm_vocab_size"]
        # one model trained on both sides' text, each lowercased where its side lowercases
        src_text, tgt_text = (get_tokenizer("char", lowercase=flag) for flag in (src_lowercase, tgt_lowercase))
        texts = [src_text.normalize(s) for s, _ in train_pairs] + [tgt_text.normalize(t) for _, t in train_pairs]
        shared = trained(texts, size, "shared", False)
        return shared.with_lowercase(src_lowercase), shared.with_lowercase(tgt_lowercase)
    tokenizers = []
    for side, name, texts, lowercase in (("src", _side_names(args)[0], [s for s, _ in train_pairs], src_lowercase),
                                         ("tgt", _side_names(args)[1], [t for _, t in train_pairs], tgt_lowercase)):
        if name != "sentencepiece":
            tokenizers.append(get_tokenizer(name, lowercase=lowercase))
        elif options[f"{side}_spm_model"]:
            tokenizers.append(_spm_from_file(options[f"{side}_spm_model"], f"--{side}-spm-model", lowercase))
        else:
            tokenizers.append(trained(texts, options[f"{side}_spm_vocab_size"], "source" if side == "src" else "target",
                                      lowercase))
    return tuple(tokenizers)


def model_from_args(args, train_pairs):
    from .data import build_vocabs, get_tokenizer
    from .model import Seq2Seq

    src_tokenizer, tgt_tokenizer = _train_tokenizers(args, train_pairs)
    src_vocab, tgt_vocab = build_vocabs(train_pairs, src_tokenizer, tgt_tokenizer, args.min_frequency,
                                        src_max_size=args.src_vocab_size, tgt_max_size=args.tgt_vocab_size)
    for side, vocab in (("source", src_vocab), ("target", tgt_vocab)):
        if len(vocab) < 5:  # the four specials and at least one token
            raise CliError(f"--min-frequency {args.min_frequency} leaves no {side} token besides the four "
                           "specials; lower it")
    attention = None if args.attention == "none" else args.attention
    longest = max(get_tokenizer(src_tokenizer).count(s) for s, _ in train_pairs)  # in tokens, as the limit
    return Seq2Seq(
        src_vocab, tgt_vocab, embed_size=args.embed, hidden_size=args.hidden, num_layers=args.layers,
        bidirectional=args.bidirectional, dropout=args.dropout, attention=attention,
        attention_style=args.style, input_feeding=args.input_feeding, seed=args.seed,
        max_source_length=max(args.max_source_length, 1) if args.max_source_length else max(128, 2 * longest),
        src_tokenizer=src_tokenizer, tgt_tokenizer=tgt_tokenizer, reverse_source=args.reverse_source,
    )


def _vocabulary_coverage(model, train_pairs):
    """One line: each side's vocabulary size and the share of the training tokens it covers (below
    100% when --src/tgt-vocab-size or --min-frequency left tokens out)."""
    parts = []
    for side, vocab, tokenizer, texts in (("source", model.src_vocab, model.src_tokenizer, (s for s, _ in train_pairs)),
                                          ("target", model.tgt_vocab, model.tgt_tokenizer, (t for _, t in train_pairs))):
        tally = UnknownTokens(vocab, tokenizer, side).add(texts)
        covered = 1 - tally.unknown / tally.tokens if tally.tokens else 1.0
        parts.append(f"{side} {len(vocab):,} tokens covering {100 * covered:.2f}% of the training {side}s' "
                     f"{tally.tokens:,} tokens")
    return "vocabulary: " + "; ".join(parts)


def cmd_train(args):
    """``s2sext train``; under ``torchrun`` with more than one process, data-parallel: each process
    trains on its share of every global batch (--batch-size is the global batch), gradients are
    all-reduced over gloo, and rank 0 alone prints and writes the files. One process (``torchrun``
    with one, or none) never imports torch."""
    from .distributed import TorchReducer, default_threads, environment_world, init_from_environment

    try:
        world = environment_world()
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if world is None or world[1] == 1:
        return _train(args)
    import contextlib

    import torch.distributed as dist

    rank, _, local_world_size = world
    if not args.threads:  # the processes on this machine share its CPUs
        args.threads = default_threads(local_world_size)
    created = init_from_environment("gloo")
    try:
        if rank == 0:
            return _train(args, TorchReducer())
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):  # one process speaks
            return _train(args, TorchReducer())
    finally:
        if created:
            dist.destroy_process_group()


def _train(args, reducer=None):
    from .metrics import describe
    from .train import selection_key, train

    set_threads(args)
    require_metrics([args.metric])
    check_output("--out", args.out)
    check_output("--checkpoint", args.checkpoint)
    if args.checkpoint and os.path.realpath(args.checkpoint) == os.path.realpath(args.out):
        raise CliError(f"--out and --checkpoint are the same file ({args.out}); the checkpoint would "
                       "overwrite the best model")
    if args.resume:
        from .model import Seq2Seq

        model, extra, _ = Seq2Seq.load(args.resume, return_extra=True)
        if "epoch" not in extra:
            raise CliError(f"{args.resume} is a model, not a training checkpoint (write one with --checkpoint)")
        if extra.get("seed") != args.seed:
            raise CliError(f"{args.resume} was trained with --seed {extra.get('seed')}; resume with the same seed "
                           f"(got --seed {args.seed}) so the data and batches continue as they were")
        if extra["epoch"] >= args.epochs:
            raise CliError(f"{args.resume} has already trained {extra['epoch']} epochs; ask for more with --epochs")
        tokenizers = (model.src_tokenizer, model.tgt_tokenizer)
        print(f"resuming {args.resume}: the model's settings come from the checkpoint", flush=True)
        limit, origin = model.config.max_source_length, "the checkpoint's max_source_length"
    else:
        tokenizers = _side_tokenizers(args)
        if args.max_source_length:
            limit, origin = args.max_source_length, "--max-source-length"
        else:
            limit, origin = DEFAULT_MAX_TOKENS, "--max-source-length raises the limit"
    limits = Limits(limit, f"{origin}; --truncate cuts longer sources", args.max_target_length, args.truncate)
    if args.skip_long and args.truncate:
        raise CliError("give --truncate (cut long sources) or --skip-long (drop long pairs), not both")
    if args.skip_long:  # read every line the length options accept; train() drops those beyond the limits
        limits = Limits(MAX_TOKENS, limits.source_hint, MAX_TOKENS, False)
    train_pairs, valid_pairs, source = _load_pairs(args, limits, tokenizers)
    if not args.resume:
        kept = train_pairs
        if args.skip_long:  # the vocabularies and lengths of the pairs that train() keeps (it counts the drops)
            from .data import get_tokenizer

            src_tok, tgt_tok = (get_tokenizer(t) for t in tokenizers)
            kept = [(s, t) for s, t in train_pairs
                    if src_tok.count(s) <= limit and tgt_tok.count(t) <= args.max_target_length]
            if not kept:
                raise CliError(f"every training pair is longer than {limit} source or {args.max_target_length} target "
                               "tokens (--skip-long); raise --max-source-length or --max-target-length")
        model = model_from_args(args, kept)
    out_mtime = os.path.getmtime(args.out) if args.out and os.path.exists(args.out) else None
    print(f"data: {source}: {len(train_pairs)} training pairs, {len(valid_pairs)} validation pairs", flush=True)
    cfg = model.config
    print(f"model: {model.num_parameters:,} parameters; attention {cfg.attention or 'none'} "
          f"({cfg.attention_style}), embed {cfg.embed_size}, hidden {cfg.hidden_size}, layers {cfg.num_layers}"
          f"{', bidirectional' if cfg.bidirectional else ''}; vocab {cfg.src_vocab_size}/{cfg.tgt_vocab_size}",
          flush=True)
    print(_vocabulary_coverage(model, train_pairs), flush=True)
    warn_unknown_pairs(model, valid_pairs, args.valid or "the validation split", "the")
    history = train(
        model, encode_model_pairs(model, train_pairs), encode_model_pairs(model, valid_pairs), epochs=args.epochs,
        batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr, clip=args.clip,
        teacher_forcing=args.teacher_forcing, seed=args.seed, out=args.out, checkpoint=args.checkpoint,
        resume=args.resume, progress=not args.no_progress, stream=sys.stderr, metric=args.metric, lr_schedule=args.lr_schedule,
        lr_decay=args.lr_decay, lr_step_epochs=args.lr_step_epochs, warmup_steps=args.warmup_steps, min_lr=args.min_lr,
        lr_patience=args.lr_patience, label_smoothing=args.label_smoothing, embed_dropout=args.embed_dropout,
        patience=args.patience, time_budget=args.time_budget, batch_tokens=args.batch_tokens,
        max_source_length=limit if args.skip_long else None,
        max_target_length=args.max_target_length if args.skip_long else None, reducer=reducer,
    )
    best = max(history, key=lambda r: selection_key(r, args.metric))
    written = os.path.exists(args.out) and os.path.getmtime(args.out) != out_mtime
    where = f"model written to {args.out}" if written else (
        f"that epoch was before --resume, so {args.out} was not rewritten (the checkpoint's run wrote it)")
    print(f"best epoch {best['epoch']}: {describe(args.metric, best[f'valid_{args.metric}'])} "
          f"on {len(valid_pairs)} validation pairs; {where}")
    return 0
