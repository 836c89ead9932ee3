"""The built-in tasks, generated in code: dates (human-readable -> ISO), addition, reversal.

Each maker returns ``n`` pairs ``(source, target)`` of str and is deterministic given ``seed``. They
sample with replacement, so a list of pairs may contain duplicates; nothing here removes them.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Callable

import numpy as np

from .checks import check_int, short_repr

__all__ = ["DATE_FORMATS", "FIRST_DATE", "LAST_DATE", "format_date", "make_dates", "make_addition",
           "make_reverse", "TASKS", "make_task"]

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
    n = check_int(n, "n", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
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
    n = check_int(n, "n", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    max_digits = check_int(max_digits, "max_digits", minimum=1, maximum=18)
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
    n = check_int(n, "n", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    min_length = check_int(min_length, "min_length", minimum=1)
    max_length = check_int(max_length, "max_length", minimum=min_length)
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
