"""The one rule for checking a Python argument, shared by every module of the package.

A wrong type raises ``TypeError``, a value out of range ``ValueError``; the message names the
argument, says what was expected and quotes what was given (shortened by :func:`short_repr`).
A bool is not an int and not a number here, although Python counts it as one: ``n=True`` is
far more likely a mistake than a 1. Numpy integers and floats count as ints and numbers.

``s2sext.torch.LSTM`` alone keeps ``torch.nn.LSTM``'s own checks, which it must copy exactly.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["short_repr", "is_int", "check_int", "check_real", "check_bool"]


def short_repr(value, limit: int = 40) -> str:
    """``repr(value)``, but of a str only its first ``limit`` characters and its length when it is
    longer (of anything else the repr's first ``limit`` characters): error messages quote input
    this way, so a 10 MB line does not become a 10 MB message."""
    if isinstance(value, str):
        return repr(value) if len(value) <= limit else f"{value[:limit]!r}... ({len(value):,} characters)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def is_int(value) -> bool:
    """Whether ``value`` is an integer (a numpy one too) and not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(value, name: str, minimum: int | None = None, maximum: int | None = None, *,
              expected: str | None = None) -> int:
    """``value`` as a Python int, else TypeError (not an integer, or a bool) or ValueError (below
    ``minimum`` or above ``maximum``) naming ``name``. ``expected`` words the range for the
    ValueError (``"an integer in [1, 2**63)"``); by default it says the bound that was crossed."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {short_repr(value)}")
    value = int(value)
    low = minimum is not None and value < minimum
    if low or (maximum is not None and value > maximum):
        if expected is None:
            expected = f">= {minimum}" if low else f"<= {maximum}"
        raise ValueError(f"{name} must be {expected}, got {short_repr(value)}")
    return value


def check_real(value, name: str, minimum: float = -math.inf, maximum: float = math.inf, *,
               open_maximum: bool = False, expected: str | None = None):
    """``value`` as given, else TypeError (not a real number, or a bool) or ValueError (NaN, or
    outside ``[minimum, maximum]``, or ``[minimum, maximum)`` with ``open_maximum``) naming
    ``name``. Infinite bounds admit infinities. The range is compared on ``value`` as given, not
    on ``float(value)``, which overflows for a huge int (``float()`` of the result may too, unless
    ``maximum`` is finite)."""
    if expected is None:
        expected = f"a number in [{minimum:g}, {maximum:g}{')' if open_maximum else ']'}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {short_repr(value)}")
    above = value < maximum if open_maximum else value <= maximum
    if not (minimum <= value and above):  # NaN fails both
        raise ValueError(f"{name} must be {expected}, got {short_repr(value)}")
    return value


def check_bool(value, name: str) -> bool:
    """``value`` as a bool (a numpy bool too), else TypeError naming ``name``; an int is no bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {short_repr(value)}")
    return bool(value)
