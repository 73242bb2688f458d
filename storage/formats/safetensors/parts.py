"""What is kept of a header: the public header and the metadata, in a compact form.

A validated header is split once, at upload (:func:`split`), into what lorashelf stores
so that no read ever parses a header again:

``public_header``
    The 8-byte prefix and header served to everybody but the owner: without the
    withheld metadata keys (see :mod:`storage.formats.safetensors.keys`). When none is
    present it *is* the uploaded header, byte for byte (``None`` here), so the public
    file equals the uploaded one. Otherwise the header is serialized again: compact
    JSON, raw UTF-8, keys in their original order, padded with spaces so that
    ``8 + N`` is a multiple of 8 (as the ``safetensors`` package writes it); a
    ``__metadata__`` left empty is dropped. Nothing of the original header text is
    reused (padding included), so no withheld value can survive in it. The data section
    is never changed, so the tensor offsets stay valid.
``public_metadata``
    The metadata without the withheld keys, as a compact JSON object in header order:
    everything anybody may read, kept in the database.
``owner_metadata``
    Every entry, withheld ones included, in the same form: what the owner reads while
    the withheld keys' window is open; ``None`` when nothing is withheld. It holds
    training data, so it is stored like the original header (a blob, never in the
    database) and erased with it.

The split runs where the header was parsed: in a child process for all but small
headers (:mod:`storage.system.sandbox`), which sends it back encoded by
:func:`encode` (a JSON line, then the byte sections) so that the server process never
parses the header itself. Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from storage.formats.safetensors.header import (
    ERROR_CODES,
    METADATA_KEY,
    PREFIX_SIZE,
    SafetensorsError,
    fail,
    parse,
)
from storage.formats.safetensors.keys import KeyMatcher


@dataclass(frozen=True)
class HeaderParts:
    """A validated header, split into what is stored (see the module docstring)."""

    tensor_count: int
    data_size: int
    """Where the tensors end: the length of the data section."""
    withheld: tuple[str, ...]
    """The withheld keys present, as written in the file, sorted."""
    public_header: bytes | memoryview | None
    """Prefix and header for everybody but the owner; None: the uploaded one."""
    public_metadata: str
    """The metadata others may read: a JSON object, in header order."""
    owner_metadata: bytes | memoryview | None
    """All of the metadata (UTF-8 JSON object) when some is withheld, else None."""

    def metadata(self, *, owner: bool) -> dict[str, str]:
        """The metadata as a mapping (tests and tools; the server reads it as stored)."""
        text = self.owner_metadata if owner and self.owner_metadata is not None else None
        entries: dict[str, str] = json.loads(self.public_metadata if text is None else bytes(text))
        return entries


def compact(entries: dict[str, Any]) -> str:
    """The stored form of a JSON object: compact, raw UTF-8, in order."""
    return json.dumps(entries, ensure_ascii=False, separators=(",", ":"))


def public_header_of(document: dict[str, Any], withheld: Iterable[str]) -> bytes:
    """The prefix and header of ``document`` without the ``withheld`` metadata keys."""
    hidden = frozenset(withheld)
    public: dict[str, Any] = {}
    for key, value in document.items():
        if key == METADATA_KEY and value is not None:
            value = {k: v for k, v in value.items() if k not in hidden}
            if not value:
                continue
        public[key] = value
    text = compact(public).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(PREFIX_SIZE, "little") + text


def split(
    text: bytes | bytearray | memoryview,
    *,
    data_size: int | None,
    matcher: KeyMatcher,
    check_tensors: bool = True,
) -> HeaderParts:
    """Validate a header (the JSON after the prefix) and split it for storage
    (``check_tensors``: see :func:`storage.formats.safetensors.header.parse`)."""
    header = parse(text, data_size=data_size, check_tensors=check_tensors)
    metadata = header.metadata
    withheld = tuple(sorted(key for key in metadata if matcher.withholds(key)))
    hidden = frozenset(withheld)
    public = {k: v for k, v in metadata.items() if k not in hidden}
    return HeaderParts(
        tensor_count=header.tensor_count,
        data_size=header.data_size,
        withheld=withheld,
        public_header=public_header_of(header.document, hidden) if withheld else None,
        public_metadata=compact(public),
        owner_metadata=compact(metadata).encode("utf-8") if withheld else None,
    )


# --- Across the process boundary ------------------------------------------------------


def request(*, data_size: int | None, keys: Iterable[str], check_tensors: bool = True) -> bytes:
    """What the child process is sent first: a JSON line of arguments (the header
    follows it)."""
    arguments = {"data_size": data_size, "keys": list(keys), "check_tensors": check_tensors}
    return json.dumps(arguments).encode() + b"\n"


def encode(parts: HeaderParts) -> bytes:
    public_header = parts.public_header
    public_metadata = parts.public_metadata.encode("utf-8")
    owner = parts.owner_metadata
    line = {
        "tensor_count": parts.tensor_count,
        "data_size": parts.data_size,
        "withheld": list(parts.withheld),
        "sizes": [
            -1 if public_header is None else len(public_header),
            len(public_metadata),
            -1 if owner is None else len(owner),
        ],
    }
    return b"".join(
        (json.dumps(line).encode(), b"\n", public_header or b"", public_metadata, owner or b"")
    )


def encode_error(error: SafetensorsError) -> bytes:
    return json.dumps({"error": error.code, "message": error.message}).encode() + b"\n"


def decode(answer: bytes | memoryview) -> HeaderParts:
    """The child's answer; raises its :class:`SafetensorsError` if it refused. The byte
    sections are views into ``answer`` (never copied: they may be tens of megabytes)."""
    answer = memoryview(answer)
    end = bytes(answer[:4096]).index(b"\n")
    line = json.loads(bytes(answer[:end]))
    if "error" in line:
        code = line["error"]
        if code not in ERROR_CODES:
            raise ValueError(f"unknown refusal code {code!r}")
        fail(code, str(line["message"]))
    position = end + 1
    sections: list[memoryview | None] = []
    for size in line["sizes"]:
        if size < 0:
            sections.append(None)
            continue
        sections.append(answer[position : position + size])
        position += size
    if position != len(answer):
        raise ValueError("the child's answer does not add up")
    public_header, public_metadata, owner = sections
    assert public_metadata is not None
    return HeaderParts(
        tensor_count=int(line["tensor_count"]),
        data_size=int(line["data_size"]),
        withheld=tuple(line["withheld"]),
        public_header=public_header,
        public_metadata=str(public_metadata, "utf-8"),
        owner_metadata=owner,
    )


def split_request(payload: bytes) -> bytes:
    """The child's work: :func:`split` on a :func:`request`, answered by :func:`encode`
    (or :func:`encode_error`)."""
    end = payload.index(b"\n")
    arguments = json.loads(payload[:end])
    text = memoryview(payload)[end + 1 :]
    try:
        parts = split(
            text,
            data_size=arguments["data_size"],
            matcher=KeyMatcher(arguments["keys"]),
            check_tensors=arguments["check_tensors"],
        )
    except SafetensorsError as error:
        return encode_error(error)
    return encode(parts)
