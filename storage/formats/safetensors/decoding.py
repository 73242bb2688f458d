"""JSON as the reference loader reads it (serde_json), from Python's decoder.

Python's ``json`` and serde_json agree on the grammar (the same four whitespace
characters, no comments, no trailing commas, strict strings) but not on everything a
header can hold; these are the differences, made up for here:

- ``NaN``/``Infinity``, and numbers out of the range of a double (``1e400``, an integer
  of 309 digits), are refused (Python reads them as infinities);
- ``-0`` is a float (Python reads the integer 0), so it is no count and no offset;
- an unpaired surrogate escape (``"\\ud800"``) is refused wherever it is, in an
  ignored field too (Python keeps it in the string);
- nesting deeper than :data:`MAX_NESTING` levels is refused (Python goes to about a
  thousand); checked by :func:`depth` where a header may hold nesting at all;
- a key repeated in an object: the last value wins, as in Python, but the earlier ones
  must be readable as well (serde_json parses them before it drops them), so they are
  kept (:class:`Repeated`).

The decoder also counts objects as they are parsed, so that a header of millions of
empty tensors is refused at the first object past the limit, not after building them
all.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any, NoReturn

from storage.formats.safetensors.refusal import SafetensorsError, fail

MAX_NESTING = 127
"""Deepest nesting of objects and arrays the reference reads (serde_json's 128 levels,
less one)."""

# A \u escape of a surrogate: only then can a string hold an unpaired one.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
# "-0" somewhere: only then does the decoder pay for a Python call per integer.
_NEGATIVE_ZERO = re.compile(rb"-0")
_F64_MAX = sys.float_info.max


class Repeated(dict[str, Any]):
    """An object that named a key more than once: it holds the last value of each, as
    the reference does, and keeps the earlier ones, which the reference parses all the
    same (so they must be readable too)."""

    __slots__ = ("repeated", "shadowed")
    repeated: frozenset[str]
    shadowed: list[tuple[str, Any]]


class _Objects:
    """The decoder's ``object_pairs_hook``: counts objects as they are parsed (refusing
    the one past the limit) and notes the keys an object repeats."""

    def __init__(self, limit: int) -> None:
        self.limit = self.left = limit

    def __call__(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        self.left -= 1
        if self.left < 0:
            fail(
                "HEADER_TOO_LARGE",
                f"the header holds more than {self.limit:,} JSON objects (one per tensor)",
            )
        result = dict(pairs)
        if len(result) == len(pairs):
            return result
        repeated = Repeated(result)
        last = {key: index for index, (key, _) in enumerate(pairs)}
        repeated.shadowed = [pair for index, pair in enumerate(pairs) if last[pair[0]] != index]
        repeated.repeated = frozenset(key for key, _ in repeated.shadowed)
        return repeated


def _integer(text: str) -> int | float:
    """Only used when the header holds "-0", which serde_json reads as a float (so it
    is no count and no offset)."""
    return -0.0 if text == "-0" else int(text)


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        fail("BAD_HEADER", "the header holds a number out of range")
    return value


def _no_constant(name: str) -> NoReturn:
    fail("BAD_HEADER", f"the header holds {name}, which is not JSON")


def _check_strings(document: Any) -> None:
    """Refuse an unpaired surrogate anywhere: in any key or string, ignored ones too."""
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            items: Any = (value,)
        elif isinstance(value, dict):
            items = value.keys()
            stack.extend(value.values())
            if isinstance(value, Repeated):
                stack.extend(item for _, item in value.shadowed)
        elif isinstance(value, list):
            stack.extend(value)
            continue
        else:
            continue
        for text in items:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                fail("BAD_HEADER", "the header holds an unpaired surrogate escape")


def depth(value: Any) -> int:
    """Nesting levels of objects and arrays in ``value`` (0 for a scalar)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = list(item.values())
            if isinstance(item, Repeated):
                children.extend(value for _, value in item.shadowed)
        elif isinstance(item, list):
            children = item
        else:
            if type(item) is int and abs(item) > _F64_MAX:
                fail("BAD_HEADER", "the header holds a number out of range")
            continue
        deepest = max(deepest, level)
        if deepest > MAX_NESTING:
            break
        stack.extend((child, level + 1) for child in children)
    return deepest


def decode(text: bytes | bytearray | memoryview, *, max_objects: int) -> dict[str, Any]:
    """The header's JSON object (``text`` is the header without its prefix), refused
    as soon as it holds more than ``max_objects`` objects."""
    raw = text  # never copied: the header may be tens of megabytes
    try:
        string = str(raw, "utf-8")
    except UnicodeDecodeError:
        fail("BAD_HEADER", "the header is not UTF-8")
    hooks: dict[str, Any] = {
        "object_pairs_hook": _Objects(max_objects),
        "parse_constant": _no_constant,
        "parse_float": _float,
    }
    if _NEGATIVE_ZERO.search(raw):
        hooks["parse_int"] = _integer
    try:
        document = json.loads(string, **hooks)
    except SafetensorsError:
        raise
    except (ValueError, RecursionError):
        fail("BAD_HEADER", "the header is not JSON")
    del string
    if not isinstance(document, dict):
        fail("BAD_HEADER", "the header is not a JSON object")
    if _SURROGATE_ESCAPE.search(raw):
        _check_strings(document)
    return document
