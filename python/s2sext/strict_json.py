"""JSON as the model file defines it (docs/model-format.md), the rules the C++ reader applies too:
UTF-8; no NaN/Infinity; integers within int64 and other numbers finite; no repeated keys; no lone
surrogate escapes; arrays and objects nested at most ``MAX_JSON_DEPTH`` deep. Also used for the
header of a safetensors file (:mod:`s2sext.opennmt`).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "quoted", "object_without_repeated_keys", "strict_loads"]

# Arrays and objects nested inside each other, the header's top-level object counted as 1 (so the
# caller's header, "meta", is at depth 2). Both readers refuse deeper JSON.
MAX_JSON_DEPTH = 64

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

_SURROGATE = re.compile("[\ud800-\udfff]")


def quoted(value: Any) -> str:
    """``repr(value)`` shortened to 40 characters and its length: a reader's messages quote what the
    file holds this way, so they stay short whatever it holds."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:40]}... ({len(text):,} characters)"


def object_without_repeated_keys(pairs: list) -> dict:
    """A ``json.loads`` ``object_pairs_hook`` that refuses a key given twice (ValueError), where
    ``json`` would keep the last one silently."""
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"key {quoted(key)} repeated")
        obj[key] = value
    return obj


def strict_loads(raw: bytes) -> Any:
    """Strict JSON as docs/model-format.md defines it (the C++ reader's rules): UTF-8; no
    NaN/Infinity; integers within int64 and other numbers finite; no repeated keys (readers in
    other languages differ on which duplicate wins); no lone surrogate escapes; arrays and objects
    nested at most MAX_JSON_DEPTH deep."""

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    def integer(text: str) -> int:
        # the length test first: int() of thousands of digits is slow, then refused
        value = int(text) if len(text) <= 20 else None
        if value is None or not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"integer {text[:30]}{'...' if len(text) > 30 else ''} is outside int64")
        return value

    def finite(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"number {text[:30]} overflows a double")
        return value

    try:
        text = raw.decode("utf-8")
        doc = json.loads(
            text, parse_constant=no_constants, parse_int=integer, parse_float=finite, object_pairs_hook=object_without_repeated_keys
        )
    except RecursionError:
        raise ValueError("nested too deeply") from None
    _check_parsed(doc, check_strings="\\u" in text)
    return doc


def _check_parsed(doc: Any, check_strings: bool) -> None:
    """The rules json.loads does not apply: the nesting depth, and (when the text has \\u escapes,
    the only way to write one) no lone surrogate in a string."""

    def bad_string(x: Any) -> bool:
        return check_strings and isinstance(x, str) and not x.isascii() and _SURROGATE.search(x) is not None

    stack = [(doc, 1)] if isinstance(doc, (list, dict)) else []
    if bad_string(doc):
        raise ValueError("a string holds a lone surrogate escape")
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"nested more than {MAX_JSON_DEPTH} levels deep")
        items = value.values() if isinstance(value, dict) else value
        for item in items:
            if isinstance(item, (list, dict)):
                stack.append((item, depth + 1))
            elif bad_string(item):
                raise ValueError("a string holds a lone surrogate escape")
        if isinstance(value, dict) and any(bad_string(key) for key in value):
            raise ValueError("a key holds a lone surrogate escape")
