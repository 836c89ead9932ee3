"""The schedules of training (numpy and the standard library only): :class:`TeacherForcingSchedule`,
the probability of feeding the ground truth at each update (scheduled sampling), and
:class:`LearningRateSchedule`, the learning rate of each update. :mod:`s2sext.train` applies both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .checks import check_int, check_real, short_repr

__all__ = ["TeacherForcingSchedule", "LearningRateSchedule"]

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
# Learning-rate schedules


class LearningRateSchedule:
    """The learning rate of every update: a per-epoch decay, an optional linear warmup over the
    first updates, and the state that resume carries over (:meth:`state` / :meth:`load_state`).

    With ``lr`` the base rate, ``e`` the number of epochs finished and ``u`` the update (from 0)::

        rate(u) = decayed * min(1, (u + 1) / warmup_steps)     (the factor is 1 without warmup)

    =============  ======================================================================
    kind           decayed
    =============  ======================================================================
    constant       ``lr``
    step           ``max(min_lr, lr * decay ** floor(e / step_epochs))`` (PyTorch's StepLR)
    exponential    ``max(min_lr, lr * decay ** e)`` (ExponentialLR, stepped once an epoch)
    plateau        PyTorch's ReduceLROnPlateau (``factor=decay``, ``patience``, ``min_lr``,
                   no cooldown), fed at the end of every epoch whether the validation metric
                   improved (training's ``is_best``): an epoch that improved sets the count of
                   bad epochs to 0, any other adds 1; when the count exceeds ``patience`` the
                   rate becomes ``max(rate * decay, min_lr)`` (kept only if that lowers it by
                   more than 1e-8) and the count goes back to 0. So ``patience=1`` lowers the
                   rate after the second epoch in a row without improvement.
    =============  ======================================================================

    Warmup multiplies whatever the decay gives, so it combines with every kind; the first update
    already has ``lr / warmup_steps`` (not 0) and update ``warmup_steps - 1`` the full rate.
    """

    KINDS = ("constant", "step", "exponential", "plateau")

    def __init__(self, kind="constant", lr=1e-3, *, decay=0.5, step_epochs=1, warmup_steps=0, min_lr=0.0, patience=1):
        if kind not in self.KINDS:
            raise ValueError(f"lr_schedule must be one of {', '.join(self.KINDS)}; got {short_repr(kind)}")
        check_real(lr, "lr", 0, math.inf, open_maximum=True, expected="a finite number > 0")
        if lr == 0:
            raise ValueError("lr must be a finite number > 0, got 0")
        check_real(decay, "lr_decay", 0, 1, open_maximum=True, expected="a number in (0, 1)")
        if decay == 0:
            raise ValueError("lr_decay must be a number in (0, 1), got 0")
        check_real(min_lr, "min_lr", 0, lr, expected=f"a number in [0, lr={lr:g}]")
        self.kind, self.lr, self.decay, self.min_lr = kind, float(lr), float(decay), float(min_lr)
        self.step_epochs = check_int(step_epochs, "lr_step_epochs", minimum=1)
        self.warmup_steps = check_int(warmup_steps, "warmup_steps", minimum=0)
        self.patience = check_int(patience, "lr_patience", minimum=0)
        self.epochs_done = 0
        self.plateau_rate = self.lr
        self.bad_epochs = 0

    def settings(self) -> dict:
        """What the model file records and resume compares."""
        return {"kind": self.kind, "lr": self.lr, "decay": self.decay, "step_epochs": self.step_epochs,
                "warmup_steps": self.warmup_steps, "min_lr": self.min_lr, "patience": self.patience}

    def decayed(self) -> float:
        """The rate after ``epochs_done`` epochs, before warmup."""
        if self.kind == "constant":
            return self.lr
        if self.kind == "plateau":
            return self.plateau_rate
        power = self.epochs_done // self.step_epochs if self.kind == "step" else self.epochs_done
        return max(self.min_lr, self.lr * self.decay**power)

    def rate(self, update: int) -> float:
        """The rate of update ``update`` (counted from 0 over the whole run)."""
        warm = min(1.0, (update + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        return self.decayed() * warm

    def end_epoch(self, improved: bool | None) -> None:
        """Called after each epoch; ``improved``: whether its validation metric improved (None
        without validation, which ``plateau`` needs)."""
        self.epochs_done += 1
        if self.kind != "plateau":
            return
        if improved is None:
            raise ValueError("the plateau learning-rate schedule needs validation data")
        self.bad_epochs = 0 if improved else self.bad_epochs + 1
        if self.bad_epochs > self.patience:
            lowered = max(self.plateau_rate * self.decay, self.min_lr)
            if self.plateau_rate - lowered > 1e-8:  # ReduceLROnPlateau's eps
                self.plateau_rate = lowered
            self.bad_epochs = 0

    def state(self) -> dict:
        return {"epochs_done": self.epochs_done, "plateau_rate": self.plateau_rate, "bad_epochs": self.bad_epochs}

    def load_state(self, state: dict) -> None:
        self.epochs_done = check_int(state["epochs_done"], "epochs_done", minimum=0)
        self.plateau_rate = float(check_real(state["plateau_rate"], "plateau_rate", 0, self.lr))
        self.bad_epochs = check_int(state["bad_epochs"], "bad_epochs", minimum=0)
