"""The safetensors header: the format, its rules, and the public header.

The format
==========

A safetensors file is three consecutive parts::

    [ 8 bytes: N, unsigned little-endian ][ N bytes: JSON header ][ data section ]

The header is UTF-8 JSON, possibly padded at the end with spaces. It is an object
whose keys are tensor names, except the optional ``__metadata__`` key, which maps
strings to strings (training tools such as kohya's sd-scripts keep their settings,
and the tag counts and folder names of the training data, there). Each tensor entry
is ``{"dtype": str, "shape": [int, ...], "data_offsets": [begin, end]}``, with the
offsets counted from the start of the data section.

Rules enforced
==============

Every failure raises :class:`SafetensorsError` with one of these stable codes:

``NOT_SAFETENSORS``
    The bytes are some other format: a pickle (``0x80`` then a protocol byte, as in a
    PyTorch ``.ckpt``), a zip (``PK``, as in a PyTorch ``.pt``), gzip or GGUF, or the
    first 8 bytes are not a plausible length at all (2**40 or more). Only reported when
    the prefix is otherwise unusable: a real header length may well start with 0x80.
``HEADER_TOO_LARGE``
    N is above :data:`MAX_HEADER_SIZE` (100 MiB), or ``8 + N`` is above the declared
    file size. Checked as soon as the first 8 bytes arrive.
``BAD_HEADER``
    N is below 2; the header is not UTF-8, does not start with ``{``, is not JSON (or
    holds NaN/Infinity, unpaired surrogates, absurd nesting), is not an object, repeats
    a key in any object, or a tensor entry is not an object with exactly the keys
    ``dtype`` (a string), ``shape`` (a list) and ``data_offsets`` (a list of two).
``UNKNOWN_DTYPE``
    The dtype is not in :data:`DTYPE_SIZES`. The sub-byte types ``F4``, ``F6_E2M3``
    and ``F6_E3M2`` are refused here: no LoRA uses them and their bit packing would be
    the only place where a tensor's size is not a whole number of elements' bytes.
``BAD_TENSOR``
    A shape dimension is not a non-negative integer (booleans are not integers), or
    ``product(shape) * dtype size`` differs from ``end - begin`` (an empty shape is a
    scalar: one element).
``BAD_OFFSETS``
    An offset is not a non-negative integer, ``begin > end``, or the spans, sorted by
    ``begin``, do not start at 0 and follow each other with no gap and no overlap.
    Zero-length tensors (``begin == end``) are fine wherever the tiling allows.
``BAD_METADATA``
    ``__metadata__`` is not an object of strings to strings.
``TRUNCATED``
    The stream ended before the declared size, or the tensors end past the data
    section implied by the declared size (``declared_size - 8 - N``).
``TRAILING_DATA``
    More bytes arrived than declared, or the tensors end before the data section
    implied by the declared size (bytes no tensor covers).

Checks happen as early as the bytes allow: the prefix rules on the 8th byte, the
``{`` on the 9th, everything about the header once its last byte arrives and before
any data byte is accepted; afterwards only the count of data bytes is left to check,
by :meth:`storage.formats.safetensors.stream.SafetensorsStream.finish`.

The reference implementation (the ``safetensors`` package) is slightly more lenient
in places: it accepts leading whitespace, a ``null`` metadata, extra keys in a tensor
entry and the sub-byte dtypes. Files written by real tools have none of these.


Public header
=============

The metadata keys named in ``withheld_keys`` are removed from the header served to
others. Which keys those are is not this module's business: the header firewall
(:mod:`storage.retention.header_firewall`) declares them, with the policy that
withholds them, and passes them in. When none of them is present the public header
*is* the original one, byte for byte, so the public file equals the uploaded file.
Otherwise the header is serialized again: compact JSON, raw UTF-8, keys in their
original order, padded with spaces so that ``8 + N`` is a multiple of 8 (as the
``safetensors`` package writes it); a ``__metadata__`` left empty is dropped
altogether. Since nothing of the original header text is reused (padding included), no
withheld value can survive in it. The data section is never changed, so tensor offsets
stay valid.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, NoReturn, get_args

from storage.formats.safetensors.kohya import Architecture, architecture_of

MAX_HEADER_SIZE = 100 * 1024 * 1024
"""Largest accepted header length N (the JSON, without the 8-byte prefix)."""

MIN_HEADER_SIZE = 2
"""Smallest possible header: ``{}``."""

PREFIX_SIZE = 8

DTYPE_SIZES: Mapping[str, int] = MappingProxyType(
    {
        "BOOL": 1,
        "U8": 1,
        "I8": 1,
        "F8_E5M2": 1,
        "F8_E4M3": 1,
        "F8_E8M0": 1,
        "I16": 2,
        "U16": 2,
        "F16": 2,
        "BF16": 2,
        "I32": 4,
        "U32": 4,
        "F32": 4,
        "I64": 8,
        "U64": 8,
        "F64": 8,
    }
)
"""Accepted dtypes and the size of one element in bytes."""

METADATA_KEY = "__metadata__"
TENSOR_KEYS = frozenset({"dtype", "shape", "data_offsets"})

ErrorCode = Literal[
    "NOT_SAFETENSORS",
    "HEADER_TOO_LARGE",
    "BAD_HEADER",
    "UNKNOWN_DTYPE",
    "BAD_TENSOR",
    "BAD_OFFSETS",
    "BAD_METADATA",
    "TRUNCATED",
    "TRAILING_DATA",
]
ERROR_CODES: tuple[ErrorCode, ...] = get_args(ErrorCode)

# A prefix at or above this is not a length anyone meant: it is text or another format.
IMPLAUSIBLE_LENGTH = 1 << 40


class SafetensorsError(ValueError):
    """The bytes are not an acceptable safetensors file; ``code`` says why (see above)."""

    def __init__(self, message: str, code: ErrorCode) -> None:
        super().__init__(message)
        self.message = message
        self.code: ErrorCode = code

    def __repr__(self) -> str:
        return f"SafetensorsError({self.message!r}, {self.code!r})"


def fail(code: ErrorCode, message: str) -> NoReturn:
    raise SafetensorsError(message, code)


# --- Header parsing -----------------------------------------------------------------


@dataclass(frozen=True)
class SafetensorsHeader:
    """A validated header and what it says."""

    header_bytes: bytes
    """The 8-byte prefix and the header exactly as uploaded."""
    public_header_bytes: bytes
    """Prefix and header without the withheld metadata keys (see module docstring)."""
    data_size: int
    """Length of the data section, in bytes."""
    metadata: dict[str, str]
    """The full original ``__metadata__`` (empty when there is none)."""
    withheld: tuple[str, ...]
    """The withheld keys that were present, sorted."""
    tensor_count: int
    architecture: Architecture

    @property
    def data_offset(self) -> int:
        """Where the data section starts in the original file: ``8 + N``."""
        return len(self.header_bytes)


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
        problem = ("HEADER_TOO_LARGE", f"header length {length} is above {max_header_size}")
    elif available is not None and length > available:
        problem = (
            "HEADER_TOO_LARGE",
            f"header length {length} is above the {available} bytes after the length prefix",
        )
    elif length < MIN_HEADER_SIZE:
        problem = ("BAD_HEADER", f"header length {length} is too small for a JSON object")
    if problem is None:
        return length
    foreign = _foreign_format(prefix)
    if foreign is not None:
        fail("NOT_SAFETENSORS", f"not a safetensors file: {foreign}")
    if length >= IMPLAUSIBLE_LENGTH:
        fail("NOT_SAFETENSORS", "not a safetensors file: it does not start with a header length")
    fail(*problem)


def check_header_start(prefix: bytes, first: int) -> None:
    if first != ord("{"):
        foreign = _foreign_format(prefix)
        if foreign is not None:
            fail("NOT_SAFETENSORS", f"not a safetensors file: {foreign}")
        fail("BAD_HEADER", "the header does not start with '{'")


def _check_string(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        fail("BAD_HEADER", "the header holds an unpaired surrogate escape")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            fail("BAD_HEADER", f"duplicate key {key[:100]!r} in the header")
        _check_string(key)
        result[key] = value
    return result


def _no_constant(name: str) -> NoReturn:
    fail("BAD_HEADER", f"the header holds {name}, which is not JSON")


def _decode(header_bytes: bytes) -> dict[str, Any]:
    """The JSON object after the prefix (decoded without copying the bytes first)."""
    try:
        text = str(memoryview(header_bytes)[PREFIX_SIZE:], "utf-8")
    except UnicodeDecodeError:
        fail("BAD_HEADER", "the header is not UTF-8")
    try:
        document = json.loads(text, object_pairs_hook=_unique_object, parse_constant=_no_constant)
    except (ValueError, RecursionError) as error:
        if isinstance(error, SafetensorsError):
            raise
        fail("BAD_HEADER", "the header is not JSON")
    if not isinstance(document, dict):
        fail("BAD_HEADER", "the header is not a JSON object")
    return document


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _metadata(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        fail("BAD_METADATA", "__metadata__ is not an object")
    for key, item in value.items():
        if not isinstance(item, str):
            fail("BAD_METADATA", f"__metadata__ value of {key[:100]!r} is not a string")
        _check_string(item)
    return value


def _span(name: str, entry: object) -> tuple[int, int]:
    """Validate one tensor entry and return its ``(begin, end)``."""
    label = repr(name[:100])
    if not isinstance(entry, dict) or entry.keys() != TENSOR_KEYS:
        fail("BAD_HEADER", f"tensor {label} is not an object of dtype, shape and data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str):
        fail("BAD_HEADER", f"tensor {label} has a dtype that is not a string")
    if not isinstance(shape, list):
        fail("BAD_HEADER", f"tensor {label} has a shape that is not a list")
    if not isinstance(offsets, list) or len(offsets) != 2:
        fail("BAD_HEADER", f"tensor {label} has data_offsets that are not a pair")
    size = DTYPE_SIZES.get(dtype)
    if size is None:
        fail("UNKNOWN_DTYPE", f"tensor {label} has an unknown dtype {dtype[:20]!r}")
    if not all(_is_count(dim) for dim in shape):
        fail("BAD_TENSOR", f"tensor {label} has a dimension that is not a non-negative integer")
    begin, end = offsets
    if not (_is_count(begin) and _is_count(end)):
        fail("BAD_OFFSETS", f"tensor {label} has an offset that is not a non-negative integer")
    if begin > end:
        fail("BAD_OFFSETS", f"tensor {label} ends before it begins")
    span = end - begin
    # Stop multiplying once past the span: the product of a long shape can be enormous.
    elements = 0 if 0 in shape else 1
    for dim in shape:
        if elements * size > span:
            break
        elements *= dim
    if elements * size != span:
        fail("BAD_TENSOR", f"tensor {label}: its shape and dtype do not fill its {span} bytes")
    return begin, end


def _tiled_end(spans: list[tuple[int, int]]) -> int:
    """The end of the spans, checked to tile ``[0, end)`` exactly."""
    position = 0
    for begin, end in sorted(spans):
        if begin < position:
            fail("BAD_OFFSETS", f"tensors overlap at byte {begin} of the data section")
        if begin > position:
            fail("BAD_OFFSETS", f"no tensor covers bytes {position} to {begin} of the data")
        position = end
    return position


def _public_header(
    header_bytes: bytes, document: dict[str, Any], withheld: Collection[str]
) -> bytes:
    if not withheld:
        return header_bytes
    public: dict[str, Any] = {}
    for key, value in document.items():
        if key == METADATA_KEY:
            value = {k: v for k, v in value.items() if k not in withheld}
            if not value:
                continue
        public[key] = value
    text = json.dumps(public, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(PREFIX_SIZE, "little") + text


def validate_header(
    header_bytes: bytes, *, data_size: int | None, withheld_keys: Collection[str]
) -> SafetensorsHeader:
    """Validate a complete prefix+header; ``data_size`` is the expected data length."""
    document = _decode(header_bytes)
    metadata: dict[str, str] = {}
    spans = []
    for key, value in document.items():
        if key == METADATA_KEY:
            metadata = _metadata(value)
        else:
            spans.append(_span(key, value))
    end = _tiled_end(spans)
    if data_size is not None and end > data_size:
        fail("TRUNCATED", f"the tensors need {end} data bytes, the file has {data_size}")
    if data_size is not None and end < data_size:
        fail("TRAILING_DATA", f"the tensors cover {end} data bytes, the file has {data_size}")
    withheld = tuple(sorted(key for key in metadata if key in withheld_keys))
    return SafetensorsHeader(
        header_bytes=header_bytes,
        public_header_bytes=_public_header(header_bytes, document, withheld),
        data_size=end,
        metadata=metadata,
        withheld=withheld,
        tensor_count=len(spans),
        architecture=architecture_of(metadata),
    )


def key_set(withheld_keys: Collection[str]) -> frozenset[str]:
    if isinstance(withheld_keys, str):
        raise TypeError("withheld_keys is a collection of keys, not one string")
    return frozenset(withheld_keys)


def parse_header(
    header_bytes: bytes,
    *,
    withheld_keys: Collection[str],
    max_header_size: int = MAX_HEADER_SIZE,
) -> SafetensorsHeader:
    """Validate a stored header (8-byte prefix then exactly N header bytes, no data).

    The data section is not needed: its size is where the tensors end. Raises
    :class:`SafetensorsError` like the stream would (``TRUNCATED`` when fewer than
    ``8 + N`` bytes are given, ``TRAILING_DATA`` when more).
    """
    keys = key_set(withheld_keys)
    if len(header_bytes) < PREFIX_SIZE:
        fail("TRUNCATED", "the header ends inside its length prefix")
    prefix = header_bytes[:PREFIX_SIZE]
    length = header_length(prefix, max_header_size=max_header_size, available=None)
    if len(header_bytes) < PREFIX_SIZE + length:
        fail("TRUNCATED", f"the header is {length} bytes, only {len(header_bytes) - 8} given")
    if len(header_bytes) > PREFIX_SIZE + length:
        fail("TRAILING_DATA", f"{len(header_bytes) - 8 - length} bytes follow the header")
    check_header_start(prefix, header_bytes[PREFIX_SIZE])
    return validate_header(bytes(header_bytes), data_size=None, withheld_keys=keys)


def metadata_of(header_bytes: bytes) -> dict[str, str]:
    """The full ``__metadata__`` of a stored header."""
    return parse_header(header_bytes, withheld_keys=()).metadata


def public_header_of(header_bytes: bytes, withheld_keys: Collection[str]) -> bytes:
    """The public prefix+header of a stored header: what precedes the data for others."""
    return parse_header(header_bytes, withheld_keys=withheld_keys).public_header_bytes
