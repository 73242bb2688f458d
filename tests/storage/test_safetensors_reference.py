"""lorashelf accepts exactly the files the reference loader accepts (the ``safetensors``
package: ``safe_open`` and ``safetensors.numpy.load``), within the limits it states.

The same bytes go to both: a corpus of files written by the package, the malformed
table of ``test_safetensors.py``, files the reference reads although no tool writes them
(padding, duplicate names, ignored fields, sub-byte dtypes...), and files made by a
hypothesis strategy that starts from a valid file and bends one thing about it (the
whitespace, a number's spelling, a name repeated, a field added or dropped, nesting,
escapes, the data's length). A file is refused by lorashelf beyond the reference only
for a stated limit, and those are checked on their own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load, save

from storage.formats.safetensors.header import (
    DTYPE_BITS,
    MAX_HEADER_SIZE,
    MAX_METADATA_ENTRIES,
    MAX_NESTING,
    MAX_TENSORS,
    REFERENCE_MAX_HEADER_SIZE,
    SafetensorsError,
)
from storage.formats.safetensors.stream import SafetensorsStream
from storage.retention.header_firewall import TRAINING_DATA_KEYS
from tests.storage.test_safetensors import KOHYA_METADATA, MALFORMED, lora_tensors, raw

pytestmark = pytest.mark.backend_independent(
    reason="a file-format parser against the reference loader"
)

NUMPY_DTYPES = {"BOOL", "U8", "I8", "I16", "U16", "F16", "I32", "U32", "F32", "I64", "U64", "F64"}


def ours(data: bytes) -> str | None:
    """None if lorashelf accepts the file, else its refusal code."""
    stream = SafetensorsStream(declared_size=len(data), withheld_keys=TRAINING_DATA_KEYS)
    try:
        stream.feed(data)
        stream.finish()
    except SafetensorsError as error:
        return error.code
    return None


def reference(data: bytes, path: Path) -> bool:
    """Whether the reference opens the file and reads its header (every tensor's
    dtype and shape, the metadata)."""
    path.write_bytes(data)
    try:
        with safe_open(str(path), framework="np") as opened:
            for name in opened.keys():  # noqa: SIM118 - not a dict
                piece = opened.get_slice(name)
                piece.get_dtype(), piece.get_shape()
            opened.metadata()
    except SafetensorError:
        return False
    return True


def numpy_agrees(data: bytes, accepted: bool) -> None:
    """``safetensors.numpy.load`` agrees too, where numpy can hold the tensors."""
    header = _header_of(data)
    if accepted and header is not None:
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        if not all(
            isinstance(t, dict)
            and t.get("dtype") in NUMPY_DTYPES
            and len(t.get("shape", [])) <= 32
            and all(isinstance(d, int) and d < 2**31 for d in t.get("shape", []))
            for t in tensors.values()
        ):
            return  # types or shapes numpy has no room for: not the format's business
    try:
        load(data)
        loaded = True
    except (SafetensorError, ValueError, KeyError):
        loaded = False
    assert loaded == accepted


def _header_of(data: bytes) -> dict[str, Any] | None:
    try:
        header: dict[str, Any] = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    except (ValueError, RecursionError):
        return None
    return header if isinstance(header, dict) else None


def agree(data: bytes, path: Path) -> None:
    code = ours(data)
    accepted = reference(data, path)
    assert (code is None) == accepted, f"lorashelf: {code or 'accepted'}, reference: {accepted}"
    numpy_agrees(data, accepted)


# --- The corpus -----------------------------------------------------------------------


def text(header: bytes, data: bytes = b"") -> bytes:
    return raw(header, data)


def u8(begin: int, end: int, **extra: Any) -> dict[str, Any]:
    return {"dtype": "U8", "shape": [end - begin], "data_offsets": [begin, end], **extra}


ENTRY = b'{"dtype":"U8","shape":[1],"data_offsets":[0,1]}'

# Files no tool writes but the reference reads (lorashelf refused many of them once).
READ_BY_THE_REFERENCE: list[tuple[str, bytes]] = [
    ("leading whitespace", text(b' \t\n\r{"a":' + ENTRY + b"}", b"\0")),
    ("padded with tabs and newlines", text(b'{"a":' + ENTRY + b"}\t\n\r\n\t", b"\0")),
    ("whitespace between tokens", text(b'{ "a" :\n' + ENTRY.replace(b",", b" ,\t") + b" }", b"\0")),
    ("null metadata", text(b'{"__metadata__":null}')),
    (
        "an extra field in a tensor entry",
        text(json.dumps({"a": u8(0, 1, extra=[1, "x"])}).encode(), b"\0"),
    ),
    (
        "an unknown field named twice",
        text(b'{"a":{"x":1,"x":2,"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"\0"),
    ),
    (
        "a tensor named twice, the last one kept",
        text(b'{"a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]},"a":' + ENTRY + b"}", b"\0"),
    ),
    ("a metadata key named twice", text(b'{"__metadata__":{"k":"1","k":"2"}}')),
    ("sub-byte dtype", text(b'{"a":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}}', b"\0")),
    (
        "six-bit dtype",
        text(b'{"a":{"dtype":"F6_E2M3","shape":[4],"data_offsets":[0,3]}}', b"\0" * 3),
    ),
    ("complex dtype", text(b'{"a":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}', b"\0" * 8)),
    (
        "FNUZ dtype",
        text(b'{"a":{"dtype":"F8_E5M2FNUZ","shape":[2],"data_offsets":[0,2]}}', b"\0" * 2),
    ),
    (
        "escaped names",
        text(b'{"\\u0061":{"dtype":"U\\u0038","shape":[1],"data_offsets":[0,1]}}', b"\0"),
    ),
    ("an escaped surrogate pair", text(b'{"__metadata__":{"k":"\\ud83d\\ude00"}}')),
    (
        "minus zero in an ignored field",
        text(b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":-0}}', b"\0"),
    ),
    (
        "a big integer in an ignored field",
        text(
            b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":' + b"9" * 300 + b"}}", b"\0"
        ),
    ),
    (
        "ignored nesting at the limit",
        text(
            b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":'
            + b"[" * (MAX_NESTING - 2)
            + b"]" * (MAX_NESTING - 2)
            + b"}}",
            b"\0",
        ),
    ),
    (
        "a 64-bit dimension beside a zero",
        text(b'{"a":{"dtype":"U8","shape":[0,18446744073709551615],"data_offsets":[0,0]}}'),
    ),
    (
        "zero-length tensors sharing an offset",
        text(json.dumps({"a": u8(0, 0), "b": u8(0, 0), "c": u8(0, 4)}).encode(), b"\0" * 4),
    ),
    (
        "a zero-length tensor at the end",
        text(json.dumps({"a": u8(0, 4), "b": u8(4, 4)}).encode(), b"\0" * 4),
    ),
    ("an empty name", text(b'{"":' + ENTRY + b"}", b"\0")),
    ("nothing at all", text(b"{}")),
]

# Refused by both (beyond the malformed table).
REFUSED_BY_BOTH: list[tuple[str, bytes]] = [
    ("padded with a vertical tab", text(b'{"a":' + ENTRY + b"}\x0b", b"\0")),
    ("padded with NUL", text(b'{"a":' + ENTRY + b"}\0", b"\0")),
    ("a byte order mark", text("\ufeff".encode() + b"{}")),
    (
        "a dimension past 64 bits beside a zero",
        text(b'{"a":{"dtype":"F32","shape":[99999999999999999999999,0],"data_offsets":[0,0]}}'),
    ),
    (
        "an overflow before a zero",
        text(b'{"a":{"dtype":"U8","shape":[18446744073709551615,2,0],"data_offsets":[0,0]}}'),
    ),
    (
        "bits past 64 bits",
        text(b'{"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,0]}}'),
    ),
    ("minus zero as a dimension", text(b'{"a":{"dtype":"U8","shape":[-0],"data_offsets":[0,0]}}')),
    ("minus zero as an offset", text(b'{"a":{"dtype":"U8","shape":[0],"data_offsets":[-0,0]}}')),
    (
        "an exponent as a dimension",
        text(b'{"a":{"dtype":"U8","shape":[1E0],"data_offsets":[0,1]}}', b"\0"),
    ),
    (
        "an offset past 64 bits",
        text(b'{"a":{"dtype":"U8","shape":[0],"data_offsets":[18446744073709551616,0]}}'),
    ),
    (
        "a number out of range, ignored",
        text(b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":1e400}}', b"\0"),
    ),
    (
        "an integer out of range, ignored",
        text(
            b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":' + b"9" * 400 + b"}}", b"\0"
        ),
    ),
    ("NaN, ignored", text(b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":NaN}}', b"\0")),
    (
        "an unpaired surrogate, ignored",
        text(b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":{"\\ud800":1}}}', b"\0"),
    ),
    ("an unpaired surrogate as a name", text(b'{"\\udfff":' + ENTRY + b"}", b"\0")),
    (
        "ignored nesting past the limit",
        text(
            b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":'
            + b"[" * (MAX_NESTING - 1)
            + b"]" * (MAX_NESTING - 1)
            + b"}}",
            b"\0",
        ),
    ),
    ("a shadowed tensor entry that is not one", text(b'{"a":5,"a":' + ENTRY + b"}", b"\0")),
    (
        "a shadowed tensor entry with an unknown dtype",
        text(b'{"a":{"dtype":"F42","shape":[1],"data_offsets":[0,1]},"a":' + ENTRY + b"}", b"\0"),
    ),
    (
        "a shadowed metadata value that is not a string",
        text(b'{"__metadata__":{"k":null,"k":"v"}}'),
    ),
    (
        "a sub-byte tensor off a byte boundary",
        text(b'{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}', b"\0\0"),
    ),
    (
        "a zero-length tensor past the end",
        text(json.dumps({"a": u8(0, 4), "b": u8(5, 5)}).encode(), b"\0" * 4),
    ),
    ("null as a shape", text(b'{"a":{"dtype":"U8","shape":null,"data_offsets":[0,0]}}')),
    ("null as a header", text(b"null")),
]

WRITTEN_BY_THE_PACKAGE: list[tuple[str, bytes]] = [
    ("a kohya LoRA", save(lora_tensors(), metadata=KOHYA_METADATA)),
    ("tensors without metadata", save(lora_tensors())),
    ("no tensors", save({})),
    (
        "every numpy dtype",
        save(
            {
                str(t): np.zeros((2, 3), dtype=t)
                for t in (
                    np.bool_,
                    np.uint8,
                    np.int8,
                    np.int16,
                    np.uint16,
                    np.float16,
                    np.int32,
                    np.uint32,
                    np.float32,
                    np.int64,
                    np.uint64,
                    np.float64,
                )
            }
        ),
    ),
    (
        "a scalar and an empty tensor",
        save({"s": np.array(3.0), "e": np.zeros((0, 7), dtype=np.int8)}),
    ),
]

LIMITS = {"too many metadata entries"}  # a lorashelf limit: checked below

CORPUS = [
    *WRITTEN_BY_THE_PACKAGE,
    *READ_BY_THE_REFERENCE,
    *REFUSED_BY_BOTH,
    *[(case[0], case[1]) for case in MALFORMED if case[2] is None and case[0] not in LIMITS],
]


@pytest.mark.parametrize("data", [case[1] for case in CORPUS], ids=[case[0] for case in CORPUS])
def test_the_corpus_gets_the_reference_verdict(data: bytes, tmp_path: Path) -> None:
    agree(data, tmp_path / "file.safetensors")


def test_the_corpus_holds_both_verdicts(tmp_path: Path) -> None:
    verdicts = {name: reference(data, tmp_path / "f") for name, data in CORPUS}
    assert all(verdicts[name] for name, _ in [*WRITTEN_BY_THE_PACKAGE, *READ_BY_THE_REFERENCE])
    assert not any(verdicts[name] for name, _ in REFUSED_BY_BOTH)


# --- The limits lorashelf adds --------------------------------------------------------


def test_lorashelf_refuses_beyond_the_reference_only_at_its_stated_limits(tmp_path: Path) -> None:
    assert MAX_HEADER_SIZE < REFERENCE_MAX_HEADER_SIZE
    path = tmp_path / "file.safetensors"
    many_tensors = {f"t{i}": u8(0, 0) for i in range(MAX_TENSORS + 1)}
    many_entries = {"__metadata__": {str(i): "" for i in range(MAX_METADATA_ENTRIES + 1)}}
    long_header = b"{}" + b" " * (MAX_HEADER_SIZE - 1)
    for data, code in (
        (text(json.dumps(many_tensors).encode()), "HEADER_TOO_LARGE"),
        (text(json.dumps(many_entries).encode()), "BAD_METADATA"),
        (text(long_header), "HEADER_TOO_LARGE"),
    ):
        assert reference(data, path)  # the reference reads each
        assert ours(data) == code
    # and one below each limit is accepted
    fewer = {f"t{i}": u8(0, 0) for i in range(MAX_TENSORS)}
    assert ours(text(json.dumps(fewer).encode())) is None
    assert (
        ours(text(json.dumps({"__metadata__": {str(i): "" for i in range(256)}}).encode())) is None
    )
    assert ours(text(long_header[:-1])) is None


# --- Files bent one way -----------------------------------------------------------------

WHITESPACE = [b" ", b"\t", b"\n", b"\r", b"\x0b", b"\x0c", b"\0", b"\xc2\xa0"]
NUMBERS = [
    b"-0",
    b"0.0",
    b"1e0",
    b"1E0",
    b"-1",
    b"18446744073709551615",
    b"18446744073709551616",
    b"99999999999999999999999",
    b"1e400",
    b"9" * 320,
    b"00",
    b"+1",
    b"NaN",
    b"true",
    b"null",
    b'"1"',
]


@st.composite
def valid_files(draw: st.DrawFn) -> tuple[dict[str, Any], bytes]:
    """A valid file: its header (as an object) and its data."""
    header: dict[str, Any] = {}
    if draw(st.booleans()):
        keys = st.text(st.characters(codec="utf-8"), max_size=6)
        header["__metadata__"] = draw(st.dictionaries(keys, st.text(max_size=6), max_size=3))
    position = 0
    for name in draw(st.lists(st.text(max_size=4), max_size=4, unique=True)):
        dtype = draw(st.sampled_from(sorted(DTYPE_BITS)))
        shape = draw(st.lists(st.integers(0, 4), max_size=3))
        bits = int(np.prod(shape, dtype=np.int64)) * DTYPE_BITS[dtype]
        if bits % 8:
            shape = [*shape, 8]  # whole bytes
            bits *= 8
        header[name] = {
            "dtype": dtype,
            "shape": shape,
            "data_offsets": [position, position + bits // 8],
        }
        position += bits // 8
    return header, bytes(draw(st.binary(min_size=position, max_size=position)))


@st.composite
def bent_files(draw: st.DrawFn) -> bytes:
    """A valid file with one thing bent (or none)."""
    header, data = draw(valid_files())
    body = json.dumps(header, ensure_ascii=draw(st.booleans())).encode()
    bend = draw(
        st.sampled_from(
            [
                "none",
                "pad",
                "number",
                "repeat",
                "drop",
                "extra",
                "nest",
                "escape",
                "data",
                "metadata",
            ]
        )
    )
    if bend == "pad":
        before, after = (
            draw(st.lists(st.sampled_from(WHITESPACE), max_size=3)),
            draw(st.lists(st.sampled_from(WHITESPACE), max_size=3)),
        )
        body = b"".join(before) + body + b"".join(after)
    elif bend == "number" and b"[" in body:
        spots = [
            i
            for i in range(len(body))
            if body[i : i + 1].isdigit() and not body[i - 1 : i].isdigit()
        ]
        if spots:
            at = draw(st.sampled_from(spots))
            end = at
            while body[end : end + 1].isdigit():
                end += 1
            body = body[:at] + draw(st.sampled_from(NUMBERS)) + body[end:]
    elif bend == "repeat" and len(body) > 2:
        inner = body[1:-1]
        first = inner.split(b',"', 1)[0] if inner else b""
        if first:
            body = b"{" + first + b"," + inner + b"}"
    elif bend == "drop":
        field = draw(st.sampled_from([b'"dtype":', b'"shape":', b'"data_offsets":']))
        body = body.replace(field, b'"dropped":', 1)
    elif bend == "extra":
        value = draw(st.sampled_from([b"1", b"[1,[2]]", b'{"k":null}', b'"x"', b"-0", b"1.5e3"]))
        body = body.replace(b'"dtype":', b'"extra":' + value + b',"dtype":', 1)
    elif bend == "nest":
        depth = draw(st.integers(MAX_NESTING - 4, MAX_NESTING + 2))
        body = body.replace(b'"dtype":', b'"x":' + b"[" * depth + b"]" * depth + b',"dtype":', 1)
    elif bend == "escape":
        escape = draw(
            st.sampled_from(
                [
                    b"\\ud800",
                    b"\\udc00",
                    b"\\ud83d\\ude00",
                    b"\\u0000",
                    b"\\\\ud800",
                    b"\\x41",
                    b"\\/",
                ]
            )
        )
        body = body.replace(b'"', b'"' + escape, 1) if body.count(b'"') else body
    elif bend == "data":
        data = data + b"\0" if draw(st.booleans()) or not data else data[:-1]
    elif bend == "metadata":
        body = (
            body.replace(
                b"{",
                b'{"__metadata__":'
                + draw(st.sampled_from([b"null", b"[]", b'"x"', b'{"k":1}', b'{"k":null}', b"{}"]))
                + b",",
                1,
            )
            if b"__metadata__" not in body
            else body
        )
    return len(body).to_bytes(8, "little") + body + data


@settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=bent_files())
@example(data=text(b'{"a":' + ENTRY + b"}\t\n", b"\0"))
@example(
    data=text(b'{"a":{"dtype":"F32","shape":[99999999999999999999999,0],"data_offsets":[0,0]}}')
)
def test_bent_files_get_the_reference_verdict(data: bytes, tmp_path: Path) -> None:
    agree(data, tmp_path / "file.safetensors")
