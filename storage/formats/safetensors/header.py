"""The safetensors header: the format exactly as the reference loader reads it, and the
limits lorashelf adds.

The format
==========

A safetensors file is three consecutive parts::

    [ 8 bytes: N, unsigned little-endian ][ N bytes: JSON header ][ data section ]

The header is a UTF-8 JSON object whose keys are tensor names, except the optional
``__metadata__`` key, which maps strings to strings (training tools such as kohya's
sd-scripts keep their settings, and the tag counts and folder names of the training
data, there). Each tensor entry is ``{"dtype": str, "shape": [int, ...],
"data_offsets": [begin, end]}``, with the offsets counted from the start of the data.

The reference
=============

A file is accepted exactly when the reference implementation (the ``safetensors``
package, 0.8: Rust, serde_json) loads it, within the limits below;
``tests/storage/test_safetensors_reference.py`` feeds both the same corpus. What that
means, rule by rule (every refusal raises :class:`SafetensorsError` with a stable code):

``NOT_SAFETENSORS``
    The bytes are some other format: a pickle (``0x80`` then a protocol byte, as in a
    PyTorch ``.ckpt``), a zip (``PK``, as in a PyTorch ``.pt``), gzip or GGUF, or the
    first 8 bytes are not a plausible length at all (2**40 or more). Only reported when
    the prefix is otherwise unusable: a real header length may well start with 0x80.
``HEADER_TOO_LARGE``
    N is above :data:`MAX_HEADER_SIZE` (checked as soon as the first 8 bytes arrive),
    or the header holds more than :data:`MAX_TENSORS` JSON objects (checked while it is
    parsed, object by object), or ``8 + N`` is above the declared file size (settled
    when the whole declared file has arrived).
``BAD_HEADER``
    The header is not UTF-8 (a byte order mark included), not one JSON object (JSON
    whitespace around it is fine; ``NaN``, a number out of the range of a double, an
    unpaired surrogate escape anywhere, or nesting deeper than :data:`MAX_NESTING` are
    not), names ``__metadata__`` twice, or a tensor entry is not an object holding
    ``dtype`` (a string), ``shape`` (a list) and ``data_offsets`` (a list of two), each
    once. Other keys in a tensor entry are ignored, as the reference ignores them. A
    tensor named twice is the last one (the reference keeps the last), as is a metadata
    key named twice.
``UNKNOWN_DTYPE``
    The dtype is not one of :data:`DTYPE_BITS` (sub-byte types included, as in the
    reference).
``BAD_TENSOR``
    A dimension is not an integer from 0 to 2**64 - 1 (``-0`` and ``1.0`` are floats to
    the reference), the product of the dimensions, taken in order, or its size in bits
    passes 2**64 - 1 (even if a later dimension is 0), the bits are not whole bytes, or
    the size differs from ``end - begin`` (an empty shape is a scalar: one element).
``BAD_OFFSETS``
    An offset is not an integer from 0 to 2**64 - 1, or the spans, sorted by
    ``(begin, end)``, do not start at 0 and follow each other with no gap and no
    overlap (``begin > end`` included). Zero-length tensors are fine wherever the tiling
    allows.
``BAD_METADATA``
    ``__metadata__`` is neither ``null`` nor an object of strings to strings, or it has
    more than :data:`MAX_METADATA_ENTRIES` entries (a lorashelf limit).
``TRUNCATED``
    The stream ended before the declared size, or, the whole declared file arrived,
    the tensors end past its data section (``declared_size - 8 - N``).
``TRAILING_DATA``
    More bytes arrived than declared, or, the whole declared file arrived, the tensors
    end before its end (bytes no tensor covers).

The comparisons with the declared size wait for the end of the body: an upload whose
body is shorter (or longer) than declared is refused as ``SIZE_MISMATCH`` by the upload
(:mod:`storage.uploads`), whatever its header says about the file's size.

Limits
======

Beyond the reference's own 100,000,000-byte header limit lorashelf accepts at most
:data:`MAX_HEADER_SIZE` bytes of header, :data:`MAX_TENSORS` JSON objects in it (one
per tensor, plus ``__metadata__``) and :data:`MAX_METADATA_ENTRIES` metadata entries.
Parsing runs in a child process with a memory ceiling
(:mod:`storage.system.sandbox`); a header that needs more is refused as
``HEADER_TOO_LARGE``. The rest is :mod:`storage.formats.safetensors.parts`: what is kept
of a header, and the public header.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from operator import itemgetter
from types import MappingProxyType
from typing import Any, NamedTuple

from storage.formats.safetensors.decoding import MAX_NESTING, Repeated, decode, depth
from storage.formats.safetensors.refusal import (
    ERROR_CODES,
    ErrorCode,
    SafetensorsError,
    fail,
)

__all__ = [  # the format's names, importable from here
    "ERROR_CODES",
    "MAX_HEADER_SIZE",
    "MAX_METADATA_ENTRIES",
    "MAX_NESTING",
    "MAX_TENSORS",
    "ErrorCode",
    "Header",
    "SafetensorsError",
    "check_header_start",
    "fail",
    "header_length",
    "parse",
]

MAX_HEADER_SIZE = 32 * 1024 * 1024
"""Largest accepted header length N (the JSON, without the 8-byte prefix): 32 MiB. The
tensors of a LoRA take well under 1 MiB of header; the rest is room for metadata."""

REFERENCE_MAX_HEADER_SIZE = 100_000_000
"""The reference loader's own limit (``MAX_HEADER_SIZE`` must stay below it)."""

MAX_TENSORS = 100_000
"""Most JSON objects in a header (one per tensor): 30 times a full SDXL checkpoint's."""

MAX_METADATA_ENTRIES = 256
"""Most ``__metadata__`` entries (kohya writes about 80)."""

MIN_HEADER_SIZE = 2
"""Smallest possible header: ``{}``."""

PREFIX_SIZE = 8
U64_MAX = 2**64 - 1

DTYPE_BITS: Mapping[str, int] = MappingProxyType(
    {
        "BOOL": 8,
        "F4": 4,
        "F6_E2M3": 6,
        "F6_E3M2": 6,
        "U8": 8,
        "I8": 8,
        "F8_E5M2": 8,
        "F8_E4M3": 8,
        "F8_E8M0": 8,
        "F8_E4M3FNUZ": 8,
        "F8_E5M2FNUZ": 8,
        "I16": 16,
        "U16": 16,
        "F16": 16,
        "BF16": 16,
        "I32": 32,
        "U32": 32,
        "F32": 32,
        "C64": 64,
        "F64": 64,
        "I64": 64,
        "U64": 64,
    }
)
"""Accepted dtypes (the reference's) and the size of one element in bits."""

METADATA_KEY = "__metadata__"
TENSOR_KEYS = frozenset({"dtype", "shape", "data_offsets"})

# A prefix at or above this is not a length anyone meant: it is text or another format.
IMPLAUSIBLE_LENGTH = 1 << 40


# --- The prefix -----------------------------------------------------------------------


def _foreign_format(prefix: bytes) -> str | None:
    """Name of the format the first bytes belong to, when they are a known other one."""
    if prefix[0] == 0x80 and 2 <= prefix[1] <= 5:
        return "a Python pickle (as in a PyTorch .ckpt or .pt file)"
    if prefix[:2] == b"PK" and prefix[2:4] in (b"\x03\x04", b"\x05\x06", b"\x07\x08"):
        return "a zip archive (as in a PyTorch .pt or .pth file)"
    if prefix[:2] == b"\x1f\x8b":
        return "gzip-compressed"
    if prefix[:4] == b"GGUF":
        return "a GGUF file"
    return None


def header_length(prefix: bytes, *, max_header_size: int, available: int | None) -> int:
    """N from the 8-byte prefix; ``available`` is how many bytes may follow it."""
    length = int.from_bytes(prefix, "little")
    problem: tuple[ErrorCode, str] | None = None
    if length > max_header_size:
        problem = (
            "HEADER_TOO_LARGE",
            f"the header is {length:,} bytes; at most {max_header_size:,} are accepted",
        )
    elif available is not None and length > available:
        problem = (
            "HEADER_TOO_LARGE",
            f"header length {length} is above the {available} bytes after the length prefix",
        )
    elif length < MIN_HEADER_SIZE:
        problem = ("BAD_HEADER", f"header length {length} is too small for a JSON object")
    if problem is None:
        return length
    refuse_foreign(prefix, length)
    fail(*problem)


def refuse_foreign(prefix: bytes, length: int) -> None:
    """For a length prefix that cannot be right: ``NOT_SAFETENSORS`` when the bytes are
    another format (pickle, zip, GGUF ...) or no header length at all."""
    foreign = _foreign_format(prefix)
    if foreign is not None:
        fail("NOT_SAFETENSORS", f"not a safetensors file: {foreign}")
    if length >= IMPLAUSIBLE_LENGTH:
        fail("NOT_SAFETENSORS", "not a safetensors file: it does not start with a header length")


def check_header_start(prefix: bytes, first: int) -> None:
    """The header's first byte: ``{`` or JSON whitespace, else no JSON object follows."""
    if first not in b"{ \t\n\r":
        foreign = _foreign_format(prefix)
        if foreign is not None:
            fail("NOT_SAFETENSORS", f"not a safetensors file: {foreign}")
        fail("BAD_HEADER", "the header does not start with '{'")


# --- The rules ------------------------------------------------------------------------


def _metadata(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        fail("BAD_METADATA", "__metadata__ is not an object")
    pairs = list(value.items())
    if isinstance(value, Repeated):
        pairs += value.shadowed
    for key, item in pairs:
        if not isinstance(item, str):
            fail("BAD_METADATA", f"__metadata__ value of {key[:100]!r} is not a string")
    if len(value) > MAX_METADATA_ENTRIES:
        fail(
            "BAD_METADATA",
            f"The header's __metadata__ has {len(value):,} entries; at most "
            f"{MAX_METADATA_ENTRIES:,} are accepted.",
        )
    return value


class _Entry(NamedTuple):
    begin: int
    end: int
    bits: int
    shape: list[int]
    name: str


def _counts(values: list[Any]) -> bool:
    """Whether every value is an integer from 0 to 2**64 - 1 (without a Python-level
    loop: a shape may hold millions of dimensions)."""
    if not values:
        return True
    return set(map(type, values)) == {int} and min(values) >= 0 and max(values) <= U64_MAX


def _entry(name: str, entry: object) -> _Entry:
    """One tensor entry as the reference deserializes it (types, dtype, 64-bit counts,
    fields once each, ignored fields within the nesting limit)."""
    label = repr(name[:100])
    if not isinstance(entry, dict) or not entry.keys() >= TENSOR_KEYS:
        fail("BAD_HEADER", f"tensor {label} is not an object of dtype, shape and data_offsets")
    if isinstance(entry, Repeated) and entry.repeated & TENSOR_KEYS:
        fail("BAD_HEADER", f"tensor {label} names a field twice")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str):
        fail("BAD_HEADER", f"tensor {label} has a dtype that is not a string")
    if not isinstance(shape, list):
        fail("BAD_HEADER", f"tensor {label} has a shape that is not a list")
    if not isinstance(offsets, list) or len(offsets) != 2:
        fail("BAD_HEADER", f"tensor {label} has data_offsets that are not a pair")
    ignored = len(entry) > len(TENSOR_KEYS) or isinstance(entry, Repeated)
    if ignored and 1 + depth(entry) > MAX_NESTING:  # fields the reference reads, then drops
        fail("BAD_HEADER", f"the header nests deeper than {MAX_NESTING} levels")
    bits = DTYPE_BITS.get(dtype)
    if bits is None:
        fail("UNKNOWN_DTYPE", f"tensor {label} has an unknown dtype {dtype[:20]!r}")
    if not _counts(shape):
        fail("BAD_TENSOR", f"tensor {label} has a dimension that is not a 64-bit count")
    if not _counts(offsets):
        fail("BAD_OFFSETS", f"tensor {label} has an offset that is not a 64-bit count")
    return _Entry(offsets[0], offsets[1], bits, shape, name)


def _size(entry: _Entry) -> int:
    """The tensor's size in bytes, computed as the reference does: the dimensions
    multiplied in order, refused as soon as the product (then the bits) pass 64 bits.

    The products of the dimensions before the first 0 never decrease, and every one
    after it is 0: so an overflow happens exactly when the dimensions before the first
    0 multiply past 64 bits, which at most 64 of them other than 1 can avoid."""
    label = repr(entry.name[:100])
    shape = entry.shape
    before_zero = shape[: shape.index(0)] if 0 in shape else shape
    if len(before_zero) - before_zero.count(1) > 64:
        fail("BAD_TENSOR", f"tensor {label}: its size overflows 64 bits")
    if math.prod(filter((1).__ne__, before_zero)) > U64_MAX:
        fail("BAD_TENSOR", f"tensor {label}: its size overflows 64 bits")
    bits = 0 if len(before_zero) < len(shape) else math.prod(before_zero) * entry.bits
    if bits > U64_MAX:
        fail("BAD_TENSOR", f"tensor {label}: its size overflows 64 bits")
    if bits % 8:
        fail("BAD_TENSOR", f"tensor {label} does not end on a byte boundary")
    return bits // 8


def _tiled_end(entries: list[_Entry]) -> int:
    """The end of the tensors, checked to tile ``[0, end)`` exactly, each its size."""
    position = 0
    for entry in sorted(entries, key=itemgetter(0, 1)):
        begin, end = entry.begin, entry.end
        if begin < position:
            fail("BAD_OFFSETS", f"tensors overlap at byte {begin} of the data section")
        if begin > position:
            fail("BAD_OFFSETS", f"no tensor covers bytes {position} to {begin} of the data")
        if end < begin:
            fail("BAD_OFFSETS", f"tensor {entry.name[:100]!r} ends before it begins")
        if end - begin != _size(entry):
            fail(
                "BAD_TENSOR",
                f"tensor {entry.name[:100]!r}: its shape and dtype do not fill its "
                f"{end - begin} bytes",
            )
        position = end
    return position


@dataclass(frozen=True)
class Header:
    """A header that passed every rule."""

    document: dict[str, Any]
    """The JSON object, as parsed (the last of each repeated key)."""
    metadata: dict[str, str]
    """Its ``__metadata__``, in header order (empty when absent or null)."""
    tensor_count: int
    data_size: int
    """Where the tensors end: the length of the data section."""


def parse(
    text: bytes | bytearray | memoryview, *, data_size: int | None, check_tensors: bool = True
) -> Header:
    """Validate a header (the JSON after the prefix); ``data_size`` is the expected
    length of the data section (None: wherever the tensors end). ``check_tensors=False``
    reads a header stored by an earlier lorashelf, whose tensor rules may have differed:
    the JSON and the metadata only (the data size is then unknown, 0)."""
    document = decode(text, max_objects=MAX_TENSORS + 1)
    if isinstance(document, Repeated) and METADATA_KEY in document.repeated:
        fail("BAD_HEADER", "the header names __metadata__ twice")
    metadata: dict[str, str] = {}
    entries = []
    for key, value in document.items():
        if key == METADATA_KEY:
            metadata = _metadata(value)
        elif check_tensors:
            entries.append(_entry(key, value))
    if not check_tensors:
        count = len(document) - (METADATA_KEY in document)
        return Header(document=document, metadata=metadata, tensor_count=count, data_size=0)
    if isinstance(document, Repeated):  # tensors named again later: read all the same
        for key, value in document.shadowed:
            _entry(key, value)
    end = _tiled_end(entries)
    if data_size is not None and end > data_size:
        fail("TRUNCATED", f"the tensors need {end} data bytes, the file has {data_size}")
    if data_size is not None and end < data_size:
        fail("TRAILING_DATA", f"the tensors cover {end} data bytes, the file has {data_size}")
    return Header(document=document, metadata=metadata, tensor_count=len(entries), data_size=end)
