"""Training for :class:`s2sext.Seq2Seq`: teacher forcing and scheduled sampling, masked (optionally
label-smoothed) cross-entropy, Adam/SGD with a learning-rate schedule (:mod:`s2sext.schedules`),
global gradient-norm clipping, batches of pairs or of tokens, validation, best model, early
stopping, a time budget, resume.

Everything is numpy + the C++ kernels; runs are reproducible for a given seed and thread count.
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np

from . import _core
from .checks import check_int, check_real, short_repr
from .data import batches, batches_of_indices, drop_long_pairs, token_batch_indices
from .padding import pad_batch
from .metrics import describe, require, score_corpus, selection_value
from .schedules import LearningRateSchedule, TeacherForcingSchedule
from .seq2seq_file import file_header, read_seq2seq, tokenizer_tensors
from .serialize import write_model_file
from .spec import EOS_ID, PAD_ID, SOS_ID, unfreeze_parameters

__all__ = ["TeacherForcingSchedule", "LearningRateSchedule", "Adam", "SGD", "grad_norm", "clip_scale", "clip_grad_norm",
           "make_optimizer", "target_arrays", "evaluate", "SingleProcess", "train"]

# ---------------------------------------------------------------------------------------------
# Optimisers and clipping


def grad_norm(grads: dict) -> float:
    """The global L2 norm of every gradient (float64 sums, the same at any thread count)."""
    return math.sqrt(_core.grad_sum_squares(list(grads.values())))


def clip_scale(norm: float, max_norm: float | None) -> float:
    """The factor ``min(1, max_norm / norm)`` of global-norm clipping (PyTorch's, with its 1e-6)."""
    if max_norm is None or max_norm <= 0 or not norm > max_norm:
        return 1.0
    return max_norm / (norm + 1e-6)


def clip_grad_norm(grads: dict, max_norm: float | None) -> float:
    """Scale every gradient by :func:`clip_scale` in place; returns the norm before clipping."""
    total = grad_norm(grads)
    scale = clip_scale(total, max_norm)
    if scale != 1.0:
        for g in grads.values():
            g *= np.float32(scale) if g.dtype == np.float32 else scale
    return total


class _SettableRate:
    """``lr``, the rate the next :meth:`step` uses: a learning-rate schedule sets it before each
    update (a finite number >= 0; 0 is where a decay with ``min_lr=0`` may end)."""

    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value) -> None:
        check_real(value, "lr", 0, math.inf, open_maximum=True, expected="a finite number >= 0")
        self._lr = float(value)


class Adam(_SettableRate):
    """Adam (Kingma & Ba) as PyTorch computes it, updating the parameter arrays in place; one fused
    C++ pass per array (``scale`` applies global-norm clipping on the way)."""

    name = "adam"

    def __init__(self, params: dict, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        if not lr > 0:
            raise ValueError(f"lr must be > 0; got {lr}")
        self.params, self.beta1, self.beta2, self.eps = params, beta1, beta2, eps
        self.lr = lr
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.steps = 0

    def step(self, grads: dict, scale: float = 1.0) -> None:
        self.steps += 1
        unfreeze_parameters(self.params)  # (a compiled decoder of the old weights is dropped)
        names = list(self.params)
        _core.adam_update(
            [self.params[k] for k in names], [grads[k] for k in names], [self.m[k] for k in names],
            [self.v[k] for k in names], float(scale), self.beta1, self.beta2, self.eps,
            self.lr / (1 - self.beta1**self.steps), 1.0 / math.sqrt(1 - self.beta2**self.steps),
        )

    def state_tensors(self) -> dict:
        tensors = {f"optim.m.{k}": v for k, v in self.m.items()}
        tensors.update({f"optim.v.{k}": v for k, v in self.v.items()})
        return tensors

    def load_state(self, tensors: dict, steps: int) -> None:
        for k in self.params:
            self.m[k][...] = tensors[f"optim.m.{k}"]
            self.v[k][...] = tensors[f"optim.v.{k}"]
        self.steps = int(steps)


class SGD(_SettableRate):
    """Plain SGD with optional momentum."""

    name = "sgd"

    def __init__(self, params: dict, lr=0.1, momentum=0.0):
        if not lr > 0:
            raise ValueError(f"lr must be > 0; got {lr}")
        self.params, self.momentum = params, float(momentum)
        self.lr = lr
        self.velocity = {k: np.zeros_like(v) for k, v in params.items()} if momentum else None
        self.steps = 0

    def step(self, grads: dict, scale: float = 1.0) -> None:
        self.steps += 1
        unfreeze_parameters(self.params)  # (a compiled decoder of the old weights is dropped)
        for name, p in self.params.items():
            g = grads[name] * p.dtype.type(scale) if scale != 1.0 else grads[name]
            if self.velocity is not None:
                vel = self.velocity[name]
                vel *= self.momentum
                vel += g
                g = vel
            p -= p.dtype.type(self.lr) * g

    def state_tensors(self) -> dict:
        return {f"optim.velocity.{k}": v for k, v in (self.velocity or {}).items()}

    def load_state(self, tensors: dict, steps: int) -> None:
        if self.velocity is not None:
            for k in self.params:
                self.velocity[k][...] = tensors[f"optim.velocity.{k}"]
        self.steps = int(steps)


def make_optimizer(name: str, params: dict, lr: float):
    if name == "adam":
        return Adam(params, lr=lr)
    if name == "sgd":
        return SGD(params, lr=lr)
    raise ValueError(f"optimizer must be 'adam' or 'sgd'; got {short_repr(name)}")


# ---------------------------------------------------------------------------------------------
# Batches, evaluation


def target_arrays(tgt_ids: np.ndarray, tgt_lengths: np.ndarray):
    """Padded targets int [B, n] with lengths -> decoder inputs ``<sos> y`` [B, n+1], targets
    ``y <eos>`` [B, n+1] and their lengths ``n + 1``."""
    B, n = tgt_ids.shape
    tgt_in = np.full((B, n + 1), PAD_ID, np.int64)
    tgt_in[:, 0] = SOS_ID
    tgt_in[:, 1:] = tgt_ids
    tgt_out = np.full((B, n + 1), PAD_ID, np.int64)
    tgt_out[:, :n] = tgt_ids
    tgt_out[np.arange(B), tgt_lengths] = EOS_ID
    return tgt_in, tgt_out, tgt_lengths + 1


def _until_eos(row) -> list:
    """A decoded row's token ids before its first ``<eos>`` (all of them when it never ended)."""
    row = [int(x) for x in row]
    return row[:row.index(EOS_ID)] if EOS_ID in row else row


def evaluate(model, src_seqs, tgt_seqs, batch_size=256, beam=1, with_loss=True, max_length=None,
             metrics=("exact_match", "token_error_rate"), references=None, decoder=None):
    """Decode every source greedily (or with a beam) and score the outputs; the teacher-forced loss.

    Decoding runs the compiled decoder for at most ``max_length`` steps (default: the batch's
    longest target + 5). A hypothesis is the output's tokens before ``<eos>``, or all of them when
    decoding stopped at ``max_length``; it matches when its tokens equal the reference's.

    Parameters
    ----------
    metrics : sequence of str
        The scores to compute, names of :data:`s2sext.metrics.METRICS` (BLEU and chrF need sacrebleu,
        checked before decoding starts).
    references : list of str, optional
        The targets as text. Without them the references are ``tgt_seqs`` read through the model's
        target vocabulary, where a token outside it reads ``<unk>`` and a hypothesis' ``<unk>``
        matches it; with them a hypothesis' ``<unk>`` matches no reference token. They are read
        as the model's target tokenizer reads text: lowercased when the model lowercases its
        targets (``tgt_lowercase``), on both the token and the text metrics.
    decoder : s2sext.Decoder, optional
        The compiled decoder to decode with (``model.compile(dtype)``); default: the model's
        float32 one.

    Returns
    -------
    dict: ``correct``, ``total``, ``accuracy`` (the fraction correct), ``loss`` (mean per target
    token), ``hypotheses`` (each a list of token ids without ``<eos>``, in input order), ``metrics``
    (name -> score in the metric's unit), ``edits`` and ``reference_tokens`` (the token error
    rate's counts) and ``signatures`` (sacrebleu's, of BLEU and chrF).
    """
    metrics = require(metrics)
    if references is not None and len(references) != len(tgt_seqs):
        raise ValueError(f"references must hold one text per target ({len(tgt_seqs)}); got {len(references)}")
    hypotheses = []
    loss_sum = token_count = 0.0
    for start in range(0, len(src_seqs), batch_size):
        src_b = src_seqs[start:start + batch_size]
        tgt_b = tgt_seqs[start:start + batch_size]
        src_ids, src_len = pad_batch(src_b)
        max_len = max_length or max(len(t) for t in tgt_b) + 5
        if beam == 1:
            rows = (decoder if decoder is not None else model).greedy(src_ids, src_len, max_length=max_len)
        elif decoder is not None:
            rows = [hyps[0][0].tolist() for hyps in decoder.hypotheses(src_ids, src_len, beam_size=beam,
                                                                       max_length=max_len)]
        else:
            rows = [r[0]["tokens"] for r in model.beam_search(src_ids, src_len, beam_size=beam, max_length=max_len)]
        hypotheses.extend(_until_eos(row) for row in rows)
        if with_loss:
            tgt_ids, tgt_len = pad_batch(tgt_b, allow_empty=True)
            tgt_in, tgt_out, lengths = target_arrays(tgt_ids, tgt_len)
            loss, _, stats = model.loss_and_grads(src_ids, src_len, tgt_in, tgt_out, lengths, train=False,
                                                  need_grads=False)
            loss_sum += loss * stats["tokens"]
            token_count += stats["tokens"]
    tokenizer = model.tgt_tokenizer
    hypothesis_tokens = [model.tgt_vocab.decode(h) for h in hypotheses]
    if references is None:
        reference_tokens = [model.tgt_vocab.decode(t) for t in tgt_seqs]
        references = [tokenizer.detokenize(t) for t in reference_tokens]
    else:
        reference_tokens = [tokenizer.tokenize(text) for text in references]
        references = [tokenizer.normalize(text) for text in references]  # the text metrics' too
    scores = score_corpus(hypothesis_tokens, reference_tokens, [tokenizer.detokenize(t) for t in hypothesis_tokens],
                          list(references), names=metrics)
    return {
        "correct": scores.matches,
        "total": scores.sentences,
        "accuracy": scores.matches / scores.sentences,
        "loss": loss_sum / token_count if token_count else float("nan"),
        "hypotheses": hypotheses,
        "metrics": scores.values,
        "edits": scores.edits,
        "reference_tokens": scores.reference_tokens,
        "signatures": scores.signatures,
    }


def selection_key(record: dict, metric: str) -> tuple:
    """How an epoch's history record ranks for picking the best epoch: by the validation
    ``metric`` (better first), ties broken by the lower validation loss."""
    return selection_value(metric, record[f"valid_{metric}"]), -record["valid_loss"]


# ---------------------------------------------------------------------------------------------
# The training loop


class SingleProcess:
    """The gradient reducer of a run in one process: every batch is this process's, and there is
    nothing to reduce or share. :class:`s2sext.distributed.TorchReducer` is the one of a
    data-parallel run; :func:`train` takes any object with these members."""

    rank = 0
    world_size = 1

    def shard(self, rows: int) -> slice:
        """The rows of a global batch of ``rows`` that this process computes."""
        return slice(0, rows)

    def agree(self, value, name: str) -> None:
        """Check that every process has an equal ``value``."""

    def broadcast_parameters(self, params: dict) -> None:
        """Make every process's parameters rank 0's."""

    def reduce(self, grads: dict, loss: float, tokens: int, correct: int):
        """This shard's mean-over-tokens gradients -> the global batch's, in place; -> the global
        batch's mean loss, tokens and correct tokens."""
        return loss, tokens, correct

    def share(self, value):
        """Rank 0's ``value``."""
        return value


class RecordingReducer:
    """A gradient reducer that passes every call on to ``inner`` (:class:`SingleProcess`, a
    :class:`s2sext.distributed.TorchReducer`) and keeps every update's global mean loss in
    ``losses``: two runs (one process against several, say) are compared step by step by it."""

    MEMBERS = ("rank", "world_size", "shard", "agree", "broadcast_parameters", "reduce", "share")

    def __init__(self, inner):
        missing = [m for m in self.MEMBERS if not hasattr(inner, m)]
        if missing:
            raise TypeError(f"RecordingReducer: inner must be a gradient reducer (as SingleProcess); "
                            f"{type(inner).__name__} has no {', '.join(missing)}")
        self.inner, self.losses = inner, []
        self.rank, self.world_size = inner.rank, inner.world_size

    def shard(self, rows: int) -> slice:
        return self.inner.shard(rows)

    def agree(self, value, name: str) -> None:
        self.inner.agree(value, name)

    def broadcast_parameters(self, params: dict) -> None:
        self.inner.broadcast_parameters(params)

    def reduce(self, grads: dict, loss: float, tokens: int, correct: int):
        result = self.inner.reduce(grads, loss, tokens, correct)
        self.losses.append(float(result[0]))
        return result

    def share(self, value):
        return self.inner.share(value)


def _default_reducer():
    """A :class:`s2sext.distributed.TorchReducer` when torch.distributed has a process group of
    more than one process (torch is then imported already: a plain run never imports it), else
    :class:`SingleProcess`."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        from .distributed import TorchReducer

        return TorchReducer()
    return SingleProcess()


def _shard_rows(arrays, rows: slice):
    """A shard of a padded batch ``(src_ids, src_len, tgt_ids, tgt_len)``, its padding cut to its
    own longest source and target."""
    src_ids, src_len, tgt_ids, tgt_len = (a[rows] for a in arrays)
    return src_ids[:, :int(src_len.max())], src_len, tgt_ids[:, :int(tgt_len.max())], tgt_len


class _Progress:
    """tqdm when installed and wanted, else a line per epoch."""

    def __init__(self, total, desc, enabled, stream):
        self.bar = None
        self.stream = stream
        if enabled:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, desc=desc, unit="batch", file=stream, leave=True,
                                dynamic_ncols=True, mininterval=0.5)
            except ImportError:  # pragma: no cover - tqdm is a dependency
                self.bar = None

    def update(self, n, **postfix):
        if self.bar is not None:
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _check_options(epochs, batch_size, batch_tokens, clip, label_smoothing, embed_dropout, patience, time_budget):
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {short_repr(value)}")
    if batch_tokens is not None:
        check_int(batch_tokens, "batch_tokens", minimum=1)
    if clip is not None:
        check_real(clip, "clip", 0, expected="a number >= 0 (0 or None: no clipping)")
    check_real(label_smoothing, "label_smoothing", 0, 1)
    check_real(embed_dropout, "embed_dropout", 0, 1, open_maximum=True)
    if patience is not None:
        check_int(patience, "patience", minimum=1)
    if time_budget is not None:
        check_real(time_budget, "time_budget", 0, math.inf, open_maximum=True,
                   expected="a finite number of seconds > 0")
        if time_budget == 0:
            raise ValueError("time_budget must be a finite number of seconds > 0, got 0")


def _filter_lengths(train_data, valid_data, max_source_length, max_target_length, log):
    """Drop the pairs beyond the length limits from both sets, saying how many; -> the two sets and
    the filtering record."""
    if max_source_length is None and max_target_length is None:
        return train_data, valid_data, None
    src, tgt, dropped = drop_long_pairs(train_data[0], train_data[1], max_source_length, max_target_length)
    record = {"max_source_length": max_source_length, "max_target_length": max_target_length,
              "train_pairs_dropped": dropped, "train_pairs_kept": len(src)}
    where = f"longer than {max_source_length or 'any'} source / {max_target_length or 'any'} target tokens"
    said = f"dropped {dropped:,} of {len(train_data[0]):,} training pairs"
    if not src:
        raise ValueError(f"every training pair is {where}; raise the limits")
    if valid_data is not None:
        v_src, v_tgt, v_dropped = drop_long_pairs(valid_data[0], valid_data[1], max_source_length, max_target_length)
        record.update(valid_pairs_dropped=v_dropped, valid_pairs_kept=len(v_src))
        said += f" and {v_dropped:,} of {len(valid_data[0]):,} validation pairs"
        if not v_src:
            raise ValueError(f"every validation pair is {where}; raise the limits")
        valid_data = (v_src, v_tgt)
    log(f"{said} {where}")
    return (src, tgt), valid_data, record


def _rewrite_best(out, model, record, log):
    """Write the final training record into the best model's file ``out``, which holds the weights
    of the best epoch (written then, possibly by the run before a resume). Only a file that this
    run's record describes is rewritten: the same configuration, vocabularies, seed and best epoch."""
    try:
        config, src_vocab, tgt_vocab, params, tokenizers, extra, _ = read_seq2seq(out, return_extra=True)
    except (OSError, ValueError) as exc:
        log(f"note: {out} was not updated with the final training record ({exc})")
        return
    written = extra.get("training", {}) if isinstance(extra, dict) else {}
    same = (config == model.config and src_vocab == model.src_vocab and tgt_vocab == model.tgt_vocab
            and isinstance(written, dict) and written.get("seed") == record["seed"]
            and written.get("best_epoch") == record["best_epoch"])
    if not same:
        log(f"note: {out} does not hold this run's best epoch {record['best_epoch']}; left as it is")
        return
    tensors = {**params, **tokenizer_tensors(*tokenizers)}  # the file's own sentencepiece models, kept
    write_model_file(out, file_header(config, src_vocab, tgt_vocab, {**extra, "training": record}), tensors)


def train(model, train_data, valid_data=None, *, epochs=3, batch_size=128, optimizer="adam", lr=1e-3,
          clip=5.0, teacher_forcing="1.0", seed=0, out=None, checkpoint=None, resume=None,
          progress=True, stream=None, valid_batch_size=512, log=None, lr_schedule="constant", lr_decay=0.5,
          lr_step_epochs=1, warmup_steps=0, min_lr=0.0, lr_patience=1, label_smoothing=0.0, embed_dropout=0.0,
          patience=None, time_budget=None, batch_tokens=None, max_source_length=None, max_target_length=None,
          clock=time.monotonic, metric="exact_match", reducer=None):
    """Train ``model`` in place.

    Parameters
    ----------
    train_data, valid_data : (src_seqs, tgt_seqs)
        Lists of token-id lists (targets without ``<sos>``/``<eos>``), e.g. from
        :func:`s2sext.data.encode_pairs`.
    teacher_forcing : str or TeacherForcingSchedule
        ``eps_i`` per update (see :class:`TeacherForcingSchedule`); ``1.0`` is plain teacher
        forcing and uses the all-steps-at-once path where the architecture allows it.
    lr, lr_schedule, lr_decay, lr_step_epochs, warmup_steps, min_lr, lr_patience
        The learning rate of every update: :class:`LearningRateSchedule` (``constant``, ``step``,
        ``exponential``, ``plateau``; ``plateau`` needs ``valid_data``).
    label_smoothing : float in [0, 1]
        PyTorch's label smoothing (:func:`s2sext.layers.masked_cross_entropy`). The training loss
        reported is the smoothed loss that is optimised (``train_loss_kind`` says so); the
        validation loss stays the plain negative log-likelihood.
    embed_dropout : float in [0, 1)
        Inverted dropout on the embedded source and target inputs, while training only.
    patience : int or None
        Stop when the validation metric has not improved (``is_best``) for this many epochs in a
        row (needs ``valid_data``).
    time_budget : float or None
        Seconds of wall time (``clock``) this call may take: before each epoch after the first, if
        the time spent so far plus the longest epoch so far (training, validation and saving)
        would exceed it, training stops. The best model is in ``out`` as always.
    batch_tokens : int or None
        Batches of at most this many padded tokens (:func:`s2sext.data.token_batch_indices`,
        length-bucketed, deterministic per seed and epoch) instead of ``batch_size`` pairs; a pair
        longer than it forms a batch of its own.
    max_source_length, max_target_length : int or None
        Drop training and validation pairs with more source or target tokens (counts logged and
        recorded) instead of training on them.
    out : path or None
        Where the best model (by validation ``metric``, then loss; or the last epoch without
        validation data) is written. Its header's ``extra["training"]`` records every setting
        above, the seed, the epochs run, the best epoch and why training stopped
        (``stop_reason``: ``"epochs"``, ``"patience"`` or ``"time_budget"``; ``None`` while
        running); :meth:`s2sext.Seq2Seq.load` with ``return_extra=True`` gives it back.
    checkpoint : path or None
        Written after every epoch with the optimiser and schedule state, for ``resume``.
    resume : path or None
        A checkpoint to continue from: weights, optimiser state, learning-rate schedule state,
        patience count and epoch count are restored, and the remaining epochs see the same batches
        and rates they would have seen in one uninterrupted run. The learning-rate settings must be
        the checkpoint's.
    metric : str
        The score of :data:`s2sext.metrics.METRICS` that picks the best epoch (``bleu`` and ``chrf``
        need sacrebleu, and are computed only when they pick).
    clock : callable
        Seconds as a float, for ``time_budget`` (tests pass a fake clock).
    reducer : gradient reducer or None
        Data-parallel training: :class:`s2sext.distributed.TorchReducer` (the default when
        torch.distributed has an initialised process group of more than one process, else
        :class:`SingleProcess`). ``batch_size``/``batch_tokens`` stay the global batch; every
        process must pass the same data and settings. Each process computes its rows of each batch
        and the reducer averages the gradients by target tokens, so clipping, updates, losses and
        the learning rates are the one-process run's (to float rounding) when the run draws no
        random numbers (``embed_dropout`` 0 and teacher forcing 1.0); with dropout or sampled
        decoder inputs each process draws from its own generator, so those runs are equally
        random but not the same draws. Rank 0 alone validates, logs and writes ``out`` and
        ``checkpoint``; the others follow its validation scores and stop decisions.

    Returns
    -------
    list of dicts, one per epoch: ``epoch``, ``train_loss``, ``train_loss_kind``,
    ``train_token_accuracy``, ``lr`` (the rate of the epoch's last update), ``seconds``,
    ``feed_prob`` and, with validation data, ``valid_loss``, ``valid_accuracy`` (a fraction) and
    ``valid_<name>`` for exact_match, token_error_rate and ``metric`` (in its unit).
    """
    started = clock()
    reducer = reducer if reducer is not None else _default_reducer()
    writer = reducer.rank == 0  # the process that validates, logs and writes files
    stream = stream if stream is not None else sys.stderr
    log = log if log is not None else (lambda msg: print(msg, file=stream, flush=True))
    if not writer:
        log, progress = (lambda msg: None), False
    schedule = TeacherForcingSchedule.parse(teacher_forcing)
    _check_options(epochs, batch_size, batch_tokens, clip, label_smoothing, embed_dropout, patience, time_budget)
    rates = LearningRateSchedule(lr_schedule, lr, decay=lr_decay, step_epochs=lr_step_epochs,
                                 warmup_steps=warmup_steps, min_lr=min_lr, patience=lr_patience)
    # exact match and token error rate always (cheap); BLEU or chrF only when they pick, so that
    # training needs no sacrebleu
    valid_metrics = tuple(dict.fromkeys(require(("exact_match", "token_error_rate", metric))))
    if valid_data is not None and len(valid_data[0]) == 0:
        raise ValueError("valid_data is empty; pass None to train without validation")
    for name, needs in (("patience", patience is not None), ("lr_schedule='plateau'", rates.kind == "plateau")):
        if needs and valid_data is None:
            raise ValueError(f"{name} needs valid_data: it watches the validation metric")
    src_seqs, tgt_seqs = train_data
    if len(src_seqs) != len(tgt_seqs) or not src_seqs:
        raise ValueError(f"train_data must hold equally many (>0) sources and targets; got {len(src_seqs)} and {len(tgt_seqs)}")
    (src_seqs, tgt_seqs), valid_data, filtering = _filter_lengths(train_data, valid_data, max_source_length,
                                                                  max_target_length, log)
    opt = make_optimizer(optimizer, model.params, lr)
    loss_kind = f"label-smoothed cross-entropy (eps {label_smoothing:g})" if label_smoothing else "cross-entropy"
    first_epoch = 0
    best = None
    best_epoch = None
    since_best = 0  # validation epochs since the last that improved
    history = []
    if resume is not None:
        config, src_vocab, tgt_vocab, params, _, extra, extra_tensors = read_seq2seq(resume, return_extra=True)
        if config != model.config:
            raise ValueError(f"{resume}: the checkpoint's model configuration differs from this model's")
        for name, vocab in (("src_vocab", src_vocab), ("tgt_vocab", tgt_vocab)):
            if vocab != getattr(model, name):
                raise ValueError(f"{resume}: the checkpoint's {name} differs from this model's")
        if extra.get("seed") != seed:
            raise ValueError(f"{resume}: the checkpoint was trained with seed {extra.get('seed')!r}, not {seed!r}; "
                             "resume with the same seed so the batches continue as they were")
        # a checkpoint of an older s2sext kept its best accuracy as a fraction and no scores per epoch
        picked_by = extra.get("metric", "the validation accuracy of an older s2sext")
        if picked_by != metric:
            raise ValueError(f"{resume}: the checkpoint picked its best epoch by {picked_by}, not {metric}; "
                             "resume with the same metric")
        if extra.get("optimizer") != opt.name:
            raise ValueError(f"{resume}: checkpoint optimiser is {extra.get('optimizer')!r}, not {opt.name!r}")
        saved = extra.get("lr_schedule")
        if saved is None and rates.settings() != LearningRateSchedule("constant", lr).settings():
            raise ValueError(f"{resume}: the checkpoint has no learning-rate schedule (it was written before they "
                             "existed); resume it with the constant schedule, no warmup")
        if saved is not None and saved.get("settings") != rates.settings():
            raise ValueError(f"{resume}: the checkpoint's learning-rate settings {saved.get('settings')} differ from "
                             f"these {rates.settings()}; resume with the same ones so the rates continue as they were")
        model.unfreeze()
        for name, value in params.items():
            model.params[name][...] = value
        opt.load_state(extra_tensors, extra["updates"])
        first_epoch = int(extra["epoch"])
        rates.load_state(saved["state"] if saved is not None else
                         {"epochs_done": first_epoch, "plateau_rate": rates.lr, "bad_epochs": 0})
        best = extra.get("best")
        best_epoch = extra.get("best_epoch")
        since_best = int(extra.get("epochs_since_best", 0))
        history = list(extra.get("history", []))
        log(f"resumed from {resume} after epoch {first_epoch} ({opt.steps} updates)")
    reducer.agree((len(src_seqs), sum(map(len, src_seqs)), sum(map(len, tgt_seqs)), first_epoch, opt.steps,
                   sorted((k, v.shape) for k, v in model.params.items())), "the training data, resume point and parameters")
    if reducer.world_size > 1:
        model.unfreeze()
        reducer.broadcast_parameters(model.params)

    def training_record(epochs_run, stop_reason):
        return {
            "optimizer": opt.name, "lr_schedule": rates.settings(), "label_smoothing": float(label_smoothing),
            "train_loss_kind": loss_kind, "embed_dropout": float(embed_dropout),
            "clip": None if clip is None else float(clip), "teacher_forcing": schedule.describe(),
            "batch_size": None if batch_tokens is not None else int(batch_size),
            "batch_tokens": None if batch_tokens is None else int(batch_tokens), "length_filter": filtering,
            "patience": patience, "time_budget": None if time_budget is None else float(time_budget),
            "seed": seed, "epochs": int(epochs), "epochs_run": epochs_run, "metric": metric,
            "best_epoch": best_epoch, "stop_reason": stop_reason,
        }

    updates = opt.steps
    stop_reason = "epochs"
    longest_epoch = 0.0  # seconds, training + validation + saving, in this call
    for epoch in range(first_epoch, epochs):
        epoch_started = clock()
        # rank 0's clock decides, so every process runs the same epochs
        if reducer.share(time_budget is not None and longest_epoch
                         and epoch_started - started + longest_epoch > time_budget):
            stop_reason = "time_budget"
            log(f"stopping before epoch {epoch + 1}: {epoch_started - started:.1f} s spent, and another epoch "
                f"(up to {longest_epoch:.1f} s so far) would overrun the time budget of {time_budget:g} s")
            break
        # each process its own draws (rank 0 the one-process run's)
        rng = np.random.default_rng([seed, epoch] + ([reducer.rank] if reducer.rank else []))
        start = time.perf_counter()
        batch_seed = seed * 1000003 + epoch
        if batch_tokens is not None:
            plan = token_batch_indices(src_seqs, tgt_seqs, batch_tokens, seed=batch_seed)
            n_batches, epoch_batches = len(plan), batches_of_indices(src_seqs, tgt_seqs, plan)
        else:
            n_batches = (len(src_seqs) + batch_size - 1) // batch_size
            epoch_batches = batches(src_seqs, tgt_seqs, batch_size, shuffle=True, seed=batch_seed)
        bar = _Progress(n_batches, f"epoch {epoch + 1}/{epochs}", progress, stream)
        loss_sum = tokens = correct = 0.0
        feed_probs = []
        for batch in epoch_batches:
            feed_prob = schedule(updates)
            feed_probs.append(feed_prob)
            opt.lr = rates.rate(updates)
            rows = reducer.shard(len(batch[1]))
            if rows.stop > rows.start:
                src_ids, src_len, tgt_ids, tgt_len = _shard_rows(batch, rows) if reducer.world_size > 1 else batch
                tgt_in, tgt_out, lengths = target_arrays(tgt_ids, tgt_len)
                loss, grads, stats = model.loss_and_grads(src_ids, src_len, tgt_in, tgt_out, lengths,
                                                          feed_prob=feed_prob, rng=rng, train=True,
                                                          label_smoothing=label_smoothing, embed_dropout=embed_dropout)
                step_tokens, step_correct = stats["tokens"], stats["correct"]
            else:  # a batch of fewer rows than processes: this one adds nothing to the sums
                loss, step_tokens, step_correct = 0.0, 0, 0
                grads = {k: np.zeros_like(v) for k, v in model.params.items()}
            # the reduced loss is the same in every process, so all of them stop here together
            loss, step_tokens, step_correct = reducer.reduce(grads, loss, step_tokens, step_correct)
            if not math.isfinite(loss):
                raise FloatingPointError(f"the training loss became {loss} at update {updates}")
            opt.step(grads, scale=clip_scale(grad_norm(grads), clip))
            updates += 1
            loss_sum += loss * step_tokens
            tokens += step_tokens
            correct += step_correct
            elapsed = time.perf_counter() - start
            bar.update(1, loss=f"{loss:.4f}", tok_s=f"{tokens / max(elapsed, 1e-9):.0f}")
        bar.close()
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / tokens,
            "train_loss_kind": loss_kind,
            "train_token_accuracy": correct / tokens,
            "lr": opt.lr,
            "seconds": time.perf_counter() - start,
            "feed_prob": float(np.mean(feed_probs)),
        }
        is_best = valid_data is None
        if valid_data is not None:
            scores = None
            if writer:  # the parameters are the same in every process: rank 0 validates for all
                result = evaluate(model, valid_data[0], valid_data[1], batch_size=valid_batch_size,
                                  metrics=valid_metrics)
                scores = {"valid_loss": result["loss"], "valid_accuracy": result["accuracy"],
                          **{f"valid_{name}": value for name, value in result["metrics"].items()}}
            record.update(reducer.share(scores))
            key = selection_key(record, metric)
            is_best = best is None or key > tuple(best)
            if is_best:
                best = list(key)
        history.append(record)
        msg = (f"epoch {epoch + 1}: train loss {record['train_loss']:.4f}, lr {record['lr']:.3g}, "
               f"{record['seconds']:.2f} s, teacher forcing {record['feed_prob']:.3f}")
        if valid_data is not None:
            msg += f"; valid loss {record['valid_loss']:.4f}, " + ", ".join(
                describe(name, record[f"valid_{name}"]) for name in valid_metrics)
        log(msg)
        rates.end_epoch(is_best if valid_data is not None else None)
        since_best = 0 if is_best else since_best + 1
        if is_best:
            best_epoch = epoch + 1
        stop = patience is not None and since_best >= patience
        if out is not None and is_best and writer:
            model.save(out, extra={"training": training_record(epoch + 1, None)})
        if checkpoint is not None and writer:
            extra = {"optimizer": opt.name, "updates": opt.steps, "epoch": epoch + 1, "best": best,
                     "best_epoch": best_epoch, "epochs_since_best": since_best, "history": history, "seed": seed,
                     "metric": metric,
                     "lr_schedule": {"settings": rates.settings(), "state": rates.state()},
                     "training": training_record(epoch + 1, "patience" if stop else None)}
            model.save(checkpoint, extra_tensors=opt.state_tensors(), extra=extra)
        longest_epoch = max(longest_epoch, clock() - epoch_started)
        if stop:
            stop_reason = "patience"
            log(f"stopping after epoch {epoch + 1}: the validation metric has not improved for {since_best} "
                f"epochs (patience {patience}); the best was epoch {best_epoch}")
            break
    if out is not None and best_epoch is not None and writer:
        _rewrite_best(out, model, training_record(len(history), stop_reason), log)
    reducer.share(None)  # every process returns once rank 0's files are written
    return history
