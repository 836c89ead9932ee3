"""s2sext's one lowercasing rule (src/cpp/spec/lowercase.cpp, ``_core.lowercase``): every code
point's own lowercase form, as ``str.lower`` gives it for that code point alone. Checked on every
code point against Python, and the committed table against what tests/make_lowercase_table.py
writes, when the running Python has the table's Unicode version."""

import unicodedata

import pytest

from s2sext import _core

import make_lowercase_table

SAME_UNICODE = unicodedata.unidata_version == _core.lowercase_unicode_version()
needs_same_unicode = pytest.mark.skipif(
    not SAME_UNICODE, reason=f"the table is Unicode {_core.lowercase_unicode_version()}, this Python "
                             f"{unicodedata.unidata_version}: other code points may have changed case")
ALL_CODE_POINTS = "".join(chr(cp) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF)


@needs_same_unicode
def test_every_code_point_lowercases_as_python_lowercases_it_alone():
    # one call over every code point; compared code point by code point where they differ
    want = "".join(c.lower() for c in ALL_CODE_POINTS)
    got = _core.lowercase(ALL_CODE_POINTS)
    if got != want:
        wrong = [f"U+{ord(c):04X}" for c in ALL_CODE_POINTS if _core.lowercase(c) != c.lower()]
        pytest.fail(f"{len(wrong)} code points lowercase differently: {wrong[:10]}")


@needs_same_unicode
def test_committed_table_is_what_the_generator_writes():
    with open(make_lowercase_table.TABLE, encoding="ascii") as f:
        assert f.read() == make_lowercase_table.table_text()


@pytest.mark.parametrize("text,want", [
    ("", ""),
    ("Hello WORLD 123", "hello world 123"),
    ("ÀÉÎÕÜ ÆØÅ", "àéîõü æøå"),
    ("İstanbul", "i\u0307stanbul"),  # two code points, as str.lower gives
    ("ΟΔΟΣ", "οδοσ"),  # no final-sigma rule: each code point on its own ("ΟΔΟΣ".lower() is "οδος")
    ("ǅ ǈ ǋ", "ǆ ǉ ǌ"),  # titlecase digraphs
    ("ＡＢＣ 𐐀 𞤀", "ａｂｃ 𐐨 𞤢"),  # fullwidth, Deseret, Adlam (4-byte UTF-8)
    ("already lower ß", "already lower ß"),
])
def test_examples(text, want):
    assert _core.lowercase(text) == want


def test_not_a_string_is_a_type_error():
    with pytest.raises(TypeError):
        _core.lowercase(b"ABC")


def test_a_lone_surrogate_is_refused_not_garbled():
    with pytest.raises(UnicodeEncodeError):
        _core.lowercase("A\ud800")
