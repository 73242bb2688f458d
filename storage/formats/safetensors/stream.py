"""Streaming validation of an uploaded safetensors file, and its hashes.

Hashes
======

``sha256`` is the hash of the whole uploaded file, ``public_sha256`` the hash of the
public file (public header, then the same data), ``auto_v3`` the hash of the data
section alone (the same for both), and AutoV2 is the first 10 hex digits of a file
hash. All are lowercase hex.

Memory
======

The only buffering is the header: up to ``8 + N`` bytes, held until it is complete,
then copied once into an immutable ``bytes``, decoded and parsed (so the peak is a
few times N: the Python objects of a parsed header take more room than its text;
callers expecting only LoRA files, whose headers are kilobytes to a few megabytes, may
pass a smaller ``max_header_size``). Data bytes are hashed and dropped at once,
whatever the chunk sizes: one chunk may hold the end of the header and the start of
the data, and is split where the header ends.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass

from storage.formats.safetensors.header import (
    MAX_HEADER_SIZE,
    PREFIX_SIZE,
    SafetensorsError,
    SafetensorsHeader,
    check_header_start,
    fail,
    header_length,
    key_set,
    validate_header,
)


@dataclass(frozen=True)
class SafetensorsInfo(SafetensorsHeader):
    """A complete, validated upload: its header and its hashes (lowercase hex)."""

    sha256: str
    """Hash of the whole original file."""
    public_sha256: str
    """Hash of the public file: public header then the same data section."""
    auto_v3: str
    """Hash of the data section alone, the same for the original and the public file."""

    @property
    def auto_v2(self) -> str:
        return self.sha256[:10]

    @property
    def public_auto_v2(self) -> str:
        return self.public_sha256[:10]


class SafetensorsStream:
    """Validates and hashes an upload chunk by chunk, holding only its header.

    ``declared_size`` is the size of the whole file announced before its bytes (the
    Content-Length of the upload). Feed every chunk to :meth:`feed`, then call
    :meth:`finish`. The first error is raised as early as possible and raised again
    by any later call.
    """

    def __init__(
        self,
        *,
        declared_size: int,
        withheld_keys: Collection[str],
        max_header_size: int = MAX_HEADER_SIZE,
    ) -> None:
        if isinstance(declared_size, bool) or declared_size < 0:
            raise ValueError("declared_size must be a non-negative integer")
        self.declared_size = declared_size
        self._withheld_keys = key_set(withheld_keys)
        self._max_header_size = max_header_size
        self._received = 0
        self._buffer = bytearray()  # prefix and header while they arrive, then nothing
        self._length = 0  # N, once the prefix is complete
        self._header: SafetensorsHeader | None = None
        self._data_received = 0
        self._sha256 = hashlib.sha256()
        self._public_sha256: hashlib._Hash | None = None  # None: the public file is the original
        self._data_sha256 = hashlib.sha256()
        self._error: SafetensorsError | None = None
        self._info: SafetensorsInfo | None = None

    @property
    def header(self) -> SafetensorsHeader | None:
        """The validated header, as soon as it has arrived (before the data)."""
        return self._header

    @property
    def received(self) -> int:
        """Bytes accepted so far."""
        return self._received

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        """Take the next bytes of the file (any number, even none); raise
        :class:`SafetensorsError` as soon as they make the file invalid."""
        if self._error is not None:
            raise self._error
        if self._info is not None:
            raise RuntimeError("feed() after finish()")
        view = memoryview(chunk)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        try:
            self._feed(view)
        except SafetensorsError as error:
            self._error = error
            raise

    def finish(self) -> SafetensorsInfo:
        """Check that the whole declared file arrived and return what it is."""
        if self._error is not None:
            raise self._error
        if self._info is None:
            try:
                self._info = self._finish()
            except SafetensorsError as error:
                self._error = error
                raise
        return self._info

    def _feed(self, view: memoryview) -> None:
        allowed = min(len(view), self.declared_size - self._received)
        excess = len(view) - allowed
        view = view[:allowed]
        position = 0
        buffer = self._buffer
        if self._header is None and len(buffer) < PREFIX_SIZE:
            taken = view[: PREFIX_SIZE - len(buffer)]
            buffer += taken
            position += len(taken)
            if len(buffer) == PREFIX_SIZE:
                self._length = header_length(
                    bytes(buffer),
                    max_header_size=self._max_header_size,
                    available=self.declared_size - PREFIX_SIZE,
                )
        if self._header is None and len(buffer) >= PREFIX_SIZE:
            taken = view[position : position + PREFIX_SIZE + self._length - len(buffer)]
            if taken and len(buffer) == PREFIX_SIZE:
                check_header_start(bytes(buffer), taken[0])
            buffer += taken
            position += len(taken)
            if len(buffer) == PREFIX_SIZE + self._length:
                self._complete_header()
        self._received += position
        if self._header is not None and position < len(view):
            data = view[position:]
            self._sha256.update(data)
            self._data_sha256.update(data)
            if self._public_sha256 is not None:
                self._public_sha256.update(data)
            self._data_received += len(data)
            self._received += len(data)
        if excess:
            fail("TRAILING_DATA", f"more than the declared {self.declared_size} bytes arrived")

    def _complete_header(self) -> None:
        header_bytes = bytes(self._buffer)
        self._buffer = bytearray()
        data_size = self.declared_size - len(header_bytes)
        header = validate_header(
            header_bytes, data_size=data_size, withheld_keys=self._withheld_keys
        )
        self._sha256.update(header_bytes)
        if header.public_header_bytes != header_bytes:
            self._public_sha256 = hashlib.sha256(header.public_header_bytes)
        self._header = header

    def _finish(self) -> SafetensorsInfo:
        header = self._header
        if header is None:
            where = "length prefix" if len(self._buffer) < PREFIX_SIZE else "header"
            fail("TRUNCATED", f"the file ends inside its {where}")
        if self._data_received < header.data_size:
            fail(
                "TRUNCATED",
                f"the file ends after {self._received} of its {self.declared_size} bytes",
            )
        sha256 = self._sha256.hexdigest()
        public = self._public_sha256
        return SafetensorsInfo(
            header_bytes=header.header_bytes,
            public_header_bytes=header.public_header_bytes,
            data_size=header.data_size,
            metadata=header.metadata,
            withheld=header.withheld,
            tensor_count=header.tensor_count,
            architecture=header.architecture,
            sha256=sha256,
            public_sha256=sha256 if public is None else public.hexdigest(),
            auto_v3=self._data_sha256.hexdigest(),
        )
