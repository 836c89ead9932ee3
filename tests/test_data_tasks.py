"""Tests for s2sext.data's built-in tasks: dates, addition and reverse.

The date checks parse every generated source with a parser written here (its own month and weekday
names and two-digit-year rule), so they do not trust the generator's formatting code.
"""
from __future__ import annotations

import datetime
import re
from collections import Counter

import numpy as np
import pytest

from s2sext import data


# ----------------------------------------------------------------------------------------------------
# An independent reader for the date formats

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _alternatives(names):
    return "|".join(names)


FIELD_PATTERNS = {
    "yyyy": r"(?P<yyyy>\d{4})",
    "yy": r"(?P<yy>\d{2})",
    "mm": r"(?P<mm>0[1-9]|1[0-2])",
    "m": r"(?P<m>[1-9]|1[0-2])",
    "dd": r"(?P<dd>0[1-9]|[12]\d|3[01])",
    "d": r"(?P<d>[1-9]|[12]\d|3[01])",
    "dth": r"(?P<dth>[1-9]|[12]\d|3[01])(?P<suffix>st|nd|rd|th)",
    "Month": f"(?P<Month>{_alternatives(MONTHS)})",
    "month": f"(?P<month>{_alternatives(m.lower() for m in MONTHS)})",
    "MONTH": f"(?P<MONTH>{_alternatives(m.upper() for m in MONTHS)})",
    "Mon": f"(?P<Mon>{_alternatives(m[:3] for m in MONTHS)})",
    "Weekday": f"(?P<Weekday>{_alternatives(WEEKDAYS)})",
    "weekday": f"(?P<weekday>{_alternatives(w.lower() for w in WEEKDAYS)})",
    "WEEKDAY": f"(?P<WEEKDAY>{_alternatives(w.upper() for w in WEEKDAYS)})",
    "Wkd": f"(?P<Wkd>{_alternatives(w[:3] for w in WEEKDAYS)})",
}


def _template_regex(template):
    parts = re.split(r"\{(\w+)\}", template)
    pattern = "".join(re.escape(part) if i % 2 == 0 else FIELD_PATTERNS[part] for i, part in enumerate(parts))
    return re.compile(pattern)


def _two_digit_year(yy):
    return 1900 + yy if yy >= 50 else 2000 + yy


def _read_date(fields):
    """The date a regex match names, checking that a weekday and an ordinal suffix agree with it."""
    if "yyyy" in fields:
        year = int(fields["yyyy"])
    else:
        year = _two_digit_year(int(fields["yy"]))
    for key in ("mm", "m"):
        if key in fields:
            month = int(fields[key])
    for key in ("Month", "month", "MONTH"):
        if key in fields:
            month = [m.lower() for m in MONTHS].index(fields[key].lower()) + 1
    if "Mon" in fields:
        month = [m[:3] for m in MONTHS].index(fields["Mon"]) + 1
    day_text = fields.get("dd") or fields.get("d") or fields.get("dth")
    day = datetime.date(year, month, int(day_text))
    if "dth" in fields:
        number = int(fields["dth"])
        expected_suffix = "th" if 11 <= number <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
        assert fields["suffix"] == expected_suffix, fields
    for key in ("Weekday", "weekday", "WEEKDAY", "Wkd"):
        if key in fields:
            names = [w[:3].lower() if key == "Wkd" else w.lower() for w in WEEKDAYS]
            named = names.index(fields[key].lower())
            assert named == day.weekday(), f"weekday {fields[key]!r} is wrong for {day}"
    return day


DATE_REGEXES = {template: _template_regex(template) for template in data.DATE_FORMATS}


def _templates_and_dates(source):
    """{template: date} for every default format that reads ``source``."""
    found = {}
    for template, regex in DATE_REGEXES.items():
        match = regex.fullmatch(source)
        if match:
            found[template] = _read_date({k: v for k, v in match.groupdict().items() if v is not None})
    return found


@pytest.fixture(scope="module")
def dates_5000():
    return data.make_dates(5000, seed=11)


# ----------------------------------------------------------------------------------------------------
# Dates


def test_dates_every_source_has_one_reading_and_it_is_the_target(dates_5000):
    for source, target in dates_5000:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", target), target
        expected = datetime.date.fromisoformat(target)
        assert data.FIRST_DATE <= expected <= data.LAST_DATE
        readings = _templates_and_dates(source)
        assert readings, f"{source!r} matches no known format"
        assert set(readings.values()) == {expected}, (source, target, readings)


def test_dates_use_every_format_and_sources_fit_29_characters(dates_5000):
    counts = Counter()
    for source, _ in dates_5000:
        counts.update(_templates_and_dates(source).keys())
        assert len(source) <= 29, source
    # 5000 draws over 20 formats: about 250 each; 150 is more than 6 standard deviations below.
    assert len(data.DATE_FORMATS) >= 15
    assert {t: counts[t] for t in data.DATE_FORMATS if counts[t] < 150} == {}


def test_dates_longest_possible_source_is_29_characters():
    # The longest renderings (Wednesday, September, a two-digit day) occur in every year.
    days = [datetime.date(year, 1, 1) + datetime.timedelta(i) for year in (1950, 2049) for i in range(365)]
    longest = max(len(data.format_date(day, template)) for template in data.DATE_FORMATS for day in days)
    assert longest == 29
    assert data.format_date(datetime.date(1950, 9, 13), "{Weekday}, {Month} {d}, {yyyy}") == (
        "Wednesday, September 13, 1950"
    )


def test_dates_cover_the_range_in_both_centuries(dates_5000):
    years = [int(target[:4]) for _, target in dates_5000]
    assert min(years) <= 1952 and max(years) >= 2047
    assert 0.4 < np.mean([year < 2000 for year in years]) < 0.6


def test_dates_two_digit_year_rule():
    pairs = data.make_dates(2000, seed=5, formats=("{m}/{d}/{yy}",))
    for source, target in pairs:
        month, day, yy = (int(part) for part in source.split("/"))
        year = int(target[:4])
        assert year == (1900 + yy if yy >= 50 else 2000 + yy), (source, target)
        assert target == f"{year:04d}-{month:02d}-{day:02d}"
    assert {int(t[:4]) >= 2000 for _, t in pairs} == {True, False}


def test_dates_weekday_formats_name_the_true_weekday():
    pairs = data.make_dates(500, seed=2, formats=("{Weekday}, {Month} {d}, {yyyy}", "{Wkd} {d} {Mon} {yyyy}"))
    for source, target in pairs:
        weekday = WEEKDAYS[datetime.date.fromisoformat(target).weekday()]
        assert source.startswith(weekday) or source.startswith(weekday[:3] + " "), (source, target)


def test_format_date_renders_each_default_format():
    day = datetime.date(1984, 9, 25)  # a Tuesday
    expected = {
        "{month} {d}, {yyyy}": "september 25, 1984",
        "{Month} {d}, {yyyy}": "September 25, 1984",
        "{MONTH} {d}, {yyyy}": "SEPTEMBER 25, 1984",
        "{Mon} {d}, {yyyy}": "Sep 25, 1984",
        "{Mon} {d} {yyyy}": "Sep 25 1984",
        "{Month} {dth}, {yyyy}": "September 25th, 1984",
        "{d} {Month} {yyyy}": "25 September 1984",
        "{d} {Mon} {yyyy}": "25 Sep 1984",
        "{dd} {Mon} {yy}": "25 Sep 84",
        "{dth} of {Month} {yyyy}": "25th of September 1984",
        "{Weekday}, {Month} {d}, {yyyy}": "Tuesday, September 25, 1984",
        "{weekday}, {month} {d}, {yyyy}": "tuesday, september 25, 1984",
        "{WEEKDAY}, {MONTH} {d}, {yyyy}": "TUESDAY, SEPTEMBER 25, 1984",
        "{Wkd}, {Mon} {d}, {yyyy}": "Tue, Sep 25, 1984",
        "{Wkd} {d} {Mon} {yyyy}": "Tue 25 Sep 1984",
        "{m}/{d}/{yy}": "9/25/84",
        "{mm}/{dd}/{yyyy}": "09/25/1984",
        "{dd}.{mm}.{yy}": "25.09.84",
        "{dd}.{mm}.{yyyy}": "25.09.1984",
        "{yyyy}-{mm}-{dd}": "1984-09-25",
    }
    assert set(expected) == set(data.DATE_FORMATS)
    for template, text in expected.items():
        assert data.format_date(day, template) == text
    early = datetime.date(2003, 2, 1)
    assert data.format_date(early, "{m}/{d}/{yy}") == "2/1/03"
    assert data.format_date(early, "{dd}.{mm}.{yy}") == "01.02.03"


@pytest.mark.parametrize(
    "day, ordinal", [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"), (12, "12th"),
                     (13, "13th"), (21, "21st"), (22, "22nd"), (23, "23rd"), (30, "30th"), (31, "31st")]
)
def test_format_date_ordinals(day, ordinal):
    assert data.format_date(datetime.date(2001, 1, day), "{dth}") == ordinal


def test_format_date_and_make_dates_errors():
    with pytest.raises(ValueError, match=r"template '\{year\}'.*fields"):
        data.format_date(datetime.date(2000, 1, 1), "{year}")
    with pytest.raises(TypeError, match="day must be a datetime.date"):
        data.format_date("2000-01-01", "{yyyy}")
    with pytest.raises(ValueError, match="template"):
        data.make_dates(3, formats=("{d}", "{bogus}"))
    with pytest.raises(TypeError, match="formats"):
        data.make_dates(3, formats="{d}")
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        data.make_dates(0)
    with pytest.raises(TypeError, match="n must be an int, got float"):
        data.make_dates(2.0)
    with pytest.raises(ValueError, match="seed must be >= 0, got -1"):
        data.make_dates(2, seed=-1)


def test_dates_are_deterministic_by_seed():
    assert data.make_dates(200, seed=3) == data.make_dates(200, seed=3)
    assert data.make_dates(200, seed=3) != data.make_dates(200, seed=4)


# ----------------------------------------------------------------------------------------------------
# Addition and reverse


def test_addition_sums_are_right():
    pairs = data.make_addition(3000, seed=1)
    firsts = []
    for source, target in pairs:
        match = re.fullmatch(r"(0|[1-9]\d{0,2})\+(0|[1-9]\d{0,2})", source)
        assert match, source
        a, b = int(match.group(1)), int(match.group(2))
        assert target == str(a + b)
        firsts.append(a)
    assert min(firsts) < 20 and max(firsts) > 980
    one_digit = {f"{a}+{b}" for a in range(10) for b in range(10)}
    assert {source for source, _ in data.make_addition(2000, seed=1, max_digits=1)} == one_digit
    assert data.make_addition(100, seed=9) == data.make_addition(100, seed=9)
    assert data.make_addition(100, seed=9) != data.make_addition(100, seed=8)
    with pytest.raises(ValueError, match="max_digits must be >= 1, got 0"):
        data.make_addition(5, max_digits=0)
    with pytest.raises(ValueError, match="max_digits must be <= 18, got 19"):
        data.make_addition(5, max_digits=19)


def test_reverse_pairs():
    pairs = data.make_reverse(2000, seed=4, min_length=2, max_length=6, alphabet="xyz")
    lengths = Counter(len(source) for source, _ in pairs)
    assert set(lengths) == {2, 3, 4, 5, 6}
    for source, target in pairs:
        assert target == source[::-1]
        assert set(source) <= set("xyz")
    assert set("".join(s for s, _ in pairs)) == set("xyz")
    default = data.make_reverse(500)
    assert all(1 <= len(s) <= 12 and s.isalpha() and s.islower() for s, _ in default)
    assert data.make_reverse(100, seed=7) == data.make_reverse(100, seed=7) != data.make_reverse(100, seed=6)
    with pytest.raises(ValueError, match="max_length must be >= 5, got 4"):
        data.make_reverse(3, min_length=5, max_length=4)
    with pytest.raises(ValueError, match="min_length must be >= 1, got 0"):
        data.make_reverse(3, min_length=0)
    with pytest.raises(ValueError, match="alphabet"):
        data.make_reverse(3, alphabet="a\tb")
    with pytest.raises(ValueError, match="alphabet"):
        data.make_reverse(3, alphabet="")


def test_make_task_and_duplicates_are_kept():
    assert set(data.TASKS) == {"dates", "addition", "reverse"}
    assert data.make_task("addition", 50, seed=2) == data.make_addition(50, seed=2)
    assert data.make_task("dates", 20) == data.make_dates(20, seed=0)
    assert data.make_task("reverse", 20, seed=1, max_length=3) == data.make_reverse(20, seed=1, max_length=3)
    choices = r"\['addition', 'dates', 'reverse'\]"
    with pytest.raises(ValueError, match=rf"task must be one of {choices}, got 'sort'"):
        data.make_task("sort", 10)
    # 1000 draws from 100 possible pairs: duplicates are certain and must survive.
    pairs = data.make_addition(1000, seed=0, max_digits=1)
    assert len(pairs) == 1000 and len(set(pairs)) <= 100
