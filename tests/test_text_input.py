"""Reading text input (s2sext.data): read_lines for files and streams alike, token counts and
truncation without building token lists, read_tsv's length limits, and the byte cap on a line.

The CLI's use of these (stdin, --truncate, the limits' error lines) is tested in tests/cli/ (test_cli_input_limits.py).
"""
import io

import pytest

from s2sext.data import (BYTES_PER_TOKEN, CharTokenizer, DataError, WordTokenizer, iter_lines, line_byte_limit,
                         read_lines, read_tsv, token_limit_problem)

# Unicode whitespace that str.split() splits on, beyond ASCII: NEL, no-break space, ideographic
# space, and the ASCII separators \x1c-\x1f.
ODD_SPACES = "\x85\xa0\u3000\x1c\x1d\x1e\x1f\u2028"


# ---------------------------------------------------------------------------------------------
# read_lines


@pytest.mark.parametrize("data, lines", [
    (b"", []),
    (b"\n", [""]),
    (b"abc", ["abc"]),
    (b"abc\n", ["abc"]),
    (b"a\r\n\nb\n", ["a", "", "b"]),
    (b"\xef\xbb\xbfcaf\xc3\xa9\n", ["caf\xe9"]),  # the byte-order mark is dropped, as read_tsv drops it
    (b"a\rb\n", ["a\rb"]),  # only "\n" ends a line, as in read_tsv
])
def test_read_lines_from_a_file_and_a_stream_agree(tmp_path, data, lines):
    path = tmp_path / "in.txt"
    path.write_bytes(data)
    assert read_lines(path) == lines
    assert read_lines(str(path)) == lines
    assert read_lines(io.BytesIO(data)) == lines


def test_read_lines_refuses_invalid_utf8_naming_the_line(tmp_path):
    data = b"abc\n\ncaf\xe9\n"
    path = tmp_path / "latin1.txt"
    path.write_bytes(data)
    with pytest.raises(DataError) as from_file:
        read_lines(path)
    with pytest.raises(DataError) as from_stream:
        read_lines(io.BytesIO(data))
    assert str(from_file.value) == f"{path}:3: invalid UTF-8 at byte 3 of the line: unexpected end of data"
    assert str(from_stream.value) == "<stdin>:3: invalid UTF-8 at byte 3 of the line: unexpected end of data"
    assert (from_stream.value.path, from_stream.value.lineno) == ("<stdin>", 3)
    with pytest.raises(DataError, match=r"^input:1: invalid UTF-8"):
        read_lines(io.BytesIO(b"\xff"), name="input")


def test_read_lines_refuses_a_text_stream():
    with pytest.raises(TypeError, match="binary stream; its readline\\(\\) gave str"):
        read_lines(io.StringIO("abc\n"))


# ---------------------------------------------------------------------------------------------
# Token counts and truncation


@pytest.mark.parametrize("text", ["", " ", "a", "ab  c", f"one{ODD_SPACES}two three ", "\u3000x\x1cy\t\n z"])
def test_count_equals_the_number_of_tokens(text):
    for tokenizer in (CharTokenizer(), WordTokenizer()):
        assert tokenizer.count(text) == len(tokenizer.tokenize(text)), (tokenizer, text)


@pytest.mark.parametrize("text", ["abcdef", "  one two\tthree  four ", f"x{ODD_SPACES}y z", "a"])
@pytest.mark.parametrize("n", [1, 2, 3, 10])
def test_truncate_keeps_the_first_n_tokens(text, n):
    for tokenizer in (CharTokenizer(), WordTokenizer()):
        assert tokenizer.tokenize(tokenizer.truncate(text, n)) == tokenizer.tokenize(text)[:n], (tokenizer, text)


def test_token_limit_problem():
    assert token_limit_problem("abc", "char", 3) is None
    assert token_limit_problem("abcd", "char", 3) == "the source has 4 char tokens; the longest accepted is 3"
    assert token_limit_problem("a b c d", "word", 4) is None  # 7 characters, 4 words
    assert token_limit_problem("a b c d e", "word", 4, side="target") == \
        "the target has 5 word tokens; the longest accepted is 4"
    assert token_limit_problem("x" * 2_000_000, "char", 1024) == \
        "the source has 2,000,000 char tokens; the longest accepted is 1,024"
    with pytest.raises(ValueError, match="limit must be >= 1, got 0"):
        token_limit_problem("abc", "char", 0)
    with pytest.raises(TypeError, match="limit must be an int"):
        token_limit_problem("abc", "char", 2.5)


# ---------------------------------------------------------------------------------------------
# read_tsv's limits


def test_read_tsv_limits_name_the_line(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("ab\tba\n\nabcdef\tfedcba\nthe cat\tle chat noir\n", encoding="utf-8")
    assert len(read_tsv(path, "char", max_source_tokens=7, max_target_tokens=12)) == 3
    with pytest.raises(DataError) as caught:
        read_tsv(path, "char", max_source_tokens=5)
    assert str(caught.value) == f"{path}:3: the source has 6 char tokens; the longest accepted is 5"
    with pytest.raises(DataError) as caught:
        read_tsv(path, "word", max_target_tokens=2)
    assert str(caught.value) == f"{path}:4: the target has 3 word tokens; the longest accepted is 2"
    with pytest.raises(ValueError, match="max_source_tokens needs a tokenizer"):
        read_tsv(path, max_source_tokens=5)
    with pytest.raises(ValueError, match="max_target_tokens must be >= 1, got 0"):
        read_tsv(path, "char", max_target_tokens=0)


class _Endless(io.RawIOBase):
    """A stream of NUL bytes that never ends (as /dev/zero), counting what was read from it."""

    def __init__(self):
        self.read_bytes = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        buffer[:] = bytes(len(buffer))
        self.read_bytes += len(buffer)
        return len(buffer)


def test_read_lines_refuses_an_endless_line_after_reading_its_cap():
    """read_lines once read its whole input at once: /dev/zero or an endless pipe took all memory."""
    raw = _Endless()
    with pytest.raises(DataError, match=r"^<stdin>:1: the line has more than 1,000 bytes"):
        read_lines(io.BufferedReader(raw, buffer_size=4096), max_line_bytes=1000)
    assert raw.read_bytes <= 2 * 4096  # the cap and a buffer's worth, not the input


@pytest.mark.parametrize("line, ok", [(b"x" * 64, True), (b"x" * 64 + b"\r", True), (b"\xef\xbb\xbf" + b"x" * 64, True),
                                      (b"x" * 65, False)])
def test_the_line_cap_counts_the_line_without_its_ending(tmp_path, line, ok):
    path = tmp_path / "in.txt"
    path.write_bytes(b"a\n" + line + b"\n" if not line.startswith(b"\xef") else line + b"\n")
    for source in (path, io.BytesIO(path.read_bytes())):  # files and streams alike
        if ok:
            assert read_lines(source, max_line_bytes=line_byte_limit(1))[-1] == "x" * 64
        else:
            with pytest.raises(DataError, match=":2: the line has more than 64 bytes"):
                read_lines(source, max_line_bytes=line_byte_limit(1))
    assert BYTES_PER_TOKEN == 64 and line_byte_limit(3, 5) == 64 * 8


def test_read_tsv_caps_lines_by_its_token_limits(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_bytes(b"a\tb\n" + b" " * 200 + b"a\tb\n")  # 2 tokens, 204 bytes: over 64 x (1 + 2)
    with pytest.raises(DataError, match=":2: the line has more than 192 bytes"):
        read_tsv(path, "word", max_source_tokens=1, max_target_tokens=2)
    assert len(read_tsv(path, "word", max_source_tokens=1, max_target_tokens=2, max_line_bytes=300)) == 2


def test_iter_lines_checks_its_arguments_when_called(tmp_path):
    with pytest.raises(FileNotFoundError):
        iter_lines(tmp_path / "absent.txt")
    with pytest.raises(ValueError, match="max_line_bytes must be >= 1"):
        iter_lines(io.BytesIO(b""), max_line_bytes=0)
    path = tmp_path / "in.txt"
    path.write_bytes(b"a\nb\n")
    lines = iter_lines(path)
    assert next(lines) == "a" and list(lines) == ["b"]
