"""Training for :class:`s2sext.Seq2Seq`: teacher forcing and scheduled sampling, masked
cross-entropy, Adam/SGD, global gradient-norm clipping, validation, best checkpoint, resume.

Everything is numpy + the C++ kernels; runs are reproducible for a given seed and thread count.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import numpy as np

from . import _core
from .checks import check_real, short_repr
from .data import batches
from .padding import pad_batch
from .seq2seq_file import read_seq2seq
from .spec import EOS_ID, PAD_ID, SOS_ID, unfreeze_parameters

# ---------------------------------------------------------------------------------------------
# Teacher-forcing schedules (Bengio et al., 2015, "Scheduled Sampling")


@dataclass(frozen=True)
class TeacherForcingSchedule:
    """The probability ``eps_i`` of feeding the ground truth at training update ``i`` (from 0).

    ===============  ==========================================  =================
    kind             eps_i                                       parameters
    ===============  ==========================================  =================
    constant         ``k``                                       ``k`` (default 1)
    linear           ``max(floor, k - c * i)``                   ``k=1, c, floor=0``
    exponential      ``max(floor, k ** i)``                      ``k < 1, floor=0``
    inverse_sigmoid  ``max(floor, k / (k + exp(i / k)))``        ``k >= 1, floor=0``
    ===============  ==========================================  =================

    Parsed from strings such as ``"1.0"``, ``"constant:0.9"``, ``"linear:c=1e-4,floor=0.5"``,
    ``"exponential:k=0.999"`` or ``"inverse_sigmoid:k=500,floor=0.2"``.
    """

    kind: str = "constant"
    k: float = 1.0
    c: float = 0.0
    floor: float = 0.0

    KINDS = ("constant", "linear", "exponential", "inverse_sigmoid")

    def __post_init__(self):
        if self.kind not in self.KINDS:
            raise ValueError(f"teacher-forcing schedule must be one of {', '.join(self.KINDS)}; "
                             f"got {short_repr(self.kind)}")
        # checked first, as NaN passes the range checks below written as "x < bound": c=nan once
        # gave eps_i = NaN, which __call__ turned into the floor (silently no teacher forcing)
        for name in ("k", "c", "floor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise TypeError(f"schedule parameter {name} must be a number; got {short_repr(value)}")
            if not math.isfinite(value):
                raise ValueError(f"schedule parameter {name} must be a finite number; got {name}={value}")
        if not 0.0 <= self.floor <= 1.0:
            raise ValueError(f"schedule floor must lie in [0, 1]; got {self.floor}")
        if self.kind == "constant" and not 0.0 <= self.k <= 1.0:
            raise ValueError(f"constant schedule k must lie in [0, 1]; got {self.k}")
        if self.kind == "linear" and (not 0.0 <= self.k <= 1.0 or self.c < 0):
            raise ValueError(f"linear schedule needs 0 <= k <= 1 and c >= 0; got k={self.k}, c={self.c}")
        if self.kind == "exponential" and not 0.0 < self.k < 1.0:
            raise ValueError(f"exponential schedule needs 0 < k < 1; got k={self.k}")
        if self.kind == "inverse_sigmoid" and self.k < 1.0:
            raise ValueError(f"inverse_sigmoid schedule needs k >= 1; got k={self.k}")

    def __call__(self, step: int) -> float:
        if self.kind == "constant":
            eps = self.k
        elif self.kind == "linear":
            eps = self.k - self.c * step
        elif self.kind == "exponential":
            eps = self.k ** step
        else:
            x = step / self.k
            eps = self.k / (self.k + math.exp(x)) if x < 700 else 0.0
        return float(min(1.0, max(self.floor, eps)))

    @classmethod
    def parse(cls, text: str) -> "TeacherForcingSchedule":
        if isinstance(text, TeacherForcingSchedule):
            return text
        if not isinstance(text, str):
            raise TypeError(f"teacher-forcing schedule must be a string; got {type(text).__name__}")
        text = text.strip()
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is not None:
            if not math.isfinite(value):
                raise ValueError(f"teacher-forcing probability must be a number in [0, 1]; got {short_repr(text)}")
            return cls("constant", value)
        kind, _, rest = text.partition(":")
        kind = kind.strip().replace("-", "_")
        if kind not in cls.KINDS:
            raise ValueError(f"teacher-forcing schedule must be one of {', '.join(cls.KINDS)}; got {short_repr(text)}")
        given = {}
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, value = item.partition("=")
            if not eq and kind == "constant":
                key, value = "k", key
            key = key.strip()
            if key not in ("k", "c", "floor"):
                raise ValueError(f"unknown schedule parameter {short_repr(key)} in {short_repr(text)} "
                                 "(use k, c, floor)")
            if key in given:  # a repeated key is a typo, not an override
                raise ValueError(f"schedule parameter {key} is given twice in {short_repr(text)}")
            try:
                given[key] = float(value)
            except ValueError:
                raise ValueError(f"schedule parameter {key} must be a number in {short_repr(text)}") from None
        if kind == "linear" and "c" not in given:
            raise ValueError(f"linear schedule needs c (the decrease per update); got {short_repr(text)}")
        defaults = {"constant": {}, "linear": {}, "exponential": {"k": 0.999}, "inverse_sigmoid": {"k": 1000.0}}
        return cls(kind, **{**defaults[kind], **given})

    def describe(self) -> str:
        if self.kind == "constant":
            return f"constant:{self.k:g}"
        return f"{self.kind}:k={self.k:g},c={self.c:g},floor={self.floor:g}"


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


class Adam:
    """Adam (Kingma & Ba) as PyTorch computes it, updating the parameter arrays in place; one fused
    C++ pass per array (``scale`` applies global-norm clipping on the way)."""

    name = "adam"

    def __init__(self, params: dict, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        if not lr > 0:
            raise ValueError(f"lr must be > 0; got {lr}")
        self.params, self.lr, self.beta1, self.beta2, self.eps = params, float(lr), beta1, beta2, eps
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


class SGD:
    """Plain SGD with optional momentum."""

    name = "sgd"

    def __init__(self, params: dict, lr=0.1, momentum=0.0):
        if not lr > 0:
            raise ValueError(f"lr must be > 0; got {lr}")
        self.params, self.lr, self.momentum = params, float(lr), float(momentum)
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


def evaluate(model, src_seqs, tgt_seqs, batch_size=256, beam=1, with_loss=True, max_length=None):
    """Exact-match accuracy of greedy (or beam) decoding, and the teacher-forced loss.

    An output is correct when it is the target followed by ``<eos>``. Decoding runs at most
    ``max_length`` steps (default: the batch's longest target + 5).

    Returns a dict: ``correct``, ``total``, ``accuracy`` and ``loss`` (mean per target token).
    """
    correct = total = 0
    loss_sum = token_count = 0.0
    for start in range(0, len(src_seqs), batch_size):
        src_b = src_seqs[start:start + batch_size]
        tgt_b = tgt_seqs[start:start + batch_size]
        src_ids, src_len = pad_batch(src_b)
        max_len = max_length or max(len(t) for t in tgt_b) + 5
        if beam == 1:
            out = model.greedy(src_ids, src_len, max_length=max_len)
            predictions = [list(row) for row in out]
        else:
            results = model.beam_search(src_ids, src_len, beam_size=beam, max_length=max_len)
            predictions = [r[0]["tokens"] for r in results]
        for pred, tgt in zip(predictions, tgt_b):
            pred = [int(x) for x in pred]
            want = list(tgt) + [EOS_ID]
            correct += pred[: len(want)] == want
        total += len(src_b)
        if with_loss:
            tgt_ids, tgt_len = pad_batch(tgt_b, allow_empty=True)
            tgt_in, tgt_out, lengths = target_arrays(tgt_ids, tgt_len)
            loss, _, stats = model.loss_and_grads(src_ids, src_len, tgt_in, tgt_out, lengths, train=False,
                                                  need_grads=False)
            loss_sum += loss * stats["tokens"]
            token_count += stats["tokens"]
    return {
        "correct": correct,
        "total": total,
        "accuracy": correct / total if total else 0.0,
        "loss": loss_sum / token_count if token_count else float("nan"),
    }


# ---------------------------------------------------------------------------------------------
# The training loop


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


def train(model, train_data, valid_data=None, *, epochs=3, batch_size=128, optimizer="adam", lr=1e-3,
          clip=5.0, teacher_forcing="1.0", seed=0, out=None, checkpoint=None, resume=None,
          progress=True, stream=None, valid_batch_size=512, log=None):
    """Train ``model`` in place.

    Parameters
    ----------
    train_data, valid_data : (src_seqs, tgt_seqs)
        Lists of token-id lists (targets without ``<sos>``/``<eos>``), e.g. from
        :func:`s2sext.data.encode_pairs`.
    teacher_forcing : str or TeacherForcingSchedule
        ``eps_i`` per update (see :class:`TeacherForcingSchedule`); ``1.0`` is plain teacher
        forcing and uses the all-steps-at-once path where the architecture allows it.
    out : path or None
        Where the best model (by validation accuracy, then loss; or the last epoch without
        validation data) is written.
    checkpoint : path or None
        Written after every epoch with the optimiser state, for ``resume``.
    resume : path or None
        A checkpoint to continue from: weights, optimiser state and epoch count are restored, and
        the remaining epochs see the same batches they would have seen in one uninterrupted run.

    Returns
    -------
    list of dicts, one per epoch: ``epoch``, ``train_loss``, ``train_token_accuracy``,
    ``seconds``, ``feed_prob`` and, with validation data, ``valid_loss``, ``valid_accuracy``.
    """
    stream = stream if stream is not None else sys.stderr
    log = log if log is not None else (lambda msg: print(msg, file=stream, flush=True))
    schedule = TeacherForcingSchedule.parse(teacher_forcing)
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {short_repr(value)}")
    if clip is not None:
        check_real(clip, "clip", 0, expected="a number >= 0 (0 or None: no clipping)")
    if valid_data is not None and len(valid_data[0]) == 0:
        raise ValueError("valid_data is empty; pass None to train without validation")
    src_seqs, tgt_seqs = train_data
    if len(src_seqs) != len(tgt_seqs) or not src_seqs:
        raise ValueError(f"train_data must hold equally many (>0) sources and targets; got {len(src_seqs)} and {len(tgt_seqs)}")
    opt = make_optimizer(optimizer, model.params, lr)
    first_epoch = 0
    best = None
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
        if extra.get("optimizer") != opt.name:
            raise ValueError(f"{resume}: checkpoint optimiser is {extra.get('optimizer')!r}, not {opt.name!r}")
        model.unfreeze()
        for name, value in params.items():
            model.params[name][...] = value
        opt.load_state(extra_tensors, extra["updates"])
        first_epoch = int(extra["epoch"])
        best = extra.get("best")
        history = list(extra.get("history", []))
        log(f"resumed from {resume} after epoch {first_epoch} ({opt.steps} updates)")
    updates = opt.steps
    for epoch in range(first_epoch, epochs):
        rng = np.random.default_rng([seed, epoch])
        start = time.perf_counter()
        n_batches = (len(src_seqs) + batch_size - 1) // batch_size
        bar = _Progress(n_batches, f"epoch {epoch + 1}/{epochs}", progress, stream)
        loss_sum = tokens = correct = 0.0
        feed_probs = []
        for src_ids, src_len, tgt_ids, tgt_len in batches(src_seqs, tgt_seqs, batch_size, shuffle=True,
                                                          seed=seed * 1000003 + epoch):
            tgt_in, tgt_out, lengths = target_arrays(tgt_ids, tgt_len)
            feed_prob = schedule(updates)
            feed_probs.append(feed_prob)
            loss, grads, stats = model.loss_and_grads(src_ids, src_len, tgt_in, tgt_out, lengths,
                                                      feed_prob=feed_prob, rng=rng, train=True)
            if not math.isfinite(loss):
                raise FloatingPointError(f"the training loss became {loss} at update {updates}")
            opt.step(grads, scale=clip_scale(grad_norm(grads), clip))
            updates += 1
            loss_sum += loss * stats["tokens"]
            tokens += stats["tokens"]
            correct += stats["correct"]
            elapsed = time.perf_counter() - start
            bar.update(1, loss=f"{loss:.4f}", tok_s=f"{tokens / max(elapsed, 1e-9):.0f}")
        bar.close()
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / tokens,
            "train_token_accuracy": correct / tokens,
            "seconds": time.perf_counter() - start,
            "feed_prob": float(np.mean(feed_probs)),
        }
        is_best = valid_data is None
        if valid_data is not None:
            result = evaluate(model, valid_data[0], valid_data[1], batch_size=valid_batch_size)
            record["valid_loss"] = result["loss"]
            record["valid_accuracy"] = result["accuracy"]
            key = (result["accuracy"], -result["loss"])
            is_best = best is None or key > tuple(best)
            if is_best:
                best = list(key)
        history.append(record)
        msg = (f"epoch {epoch + 1}: train loss {record['train_loss']:.4f}, "
               f"{record['seconds']:.2f} s, teacher forcing {record['feed_prob']:.3f}")
        if valid_data is not None:
            msg += f"; valid loss {record['valid_loss']:.4f}, exact match {100 * record['valid_accuracy']:.2f}%"
        log(msg)
        if out is not None and is_best:
            model.save(out)
        if checkpoint is not None:
            extra = {"optimizer": opt.name, "updates": opt.steps, "epoch": epoch + 1, "best": best,
                     "history": history, "seed": seed}
            model.save(checkpoint, extra_tensors=opt.state_tensors(), extra=extra)
    return history
