"""Streaming validation of an uploaded safetensors file, and its hashes.

Hashes
======

``sha256`` is the hash of the whole uploaded file, ``public_sha256`` the hash of the
public file (public header, then the same data), ``auto_v3`` the hash of the data
section alone (the same for both), and AutoV2 is the first 10 hex digits of a file
hash. All are lowercase hex.

The header
==========

N is known from the first 8 bytes (:attr:`SafetensorsStream.header_size`). Then either
the stream holds the header's ``8 + N`` bytes and parses them itself once complete
(``buffer_header=True``: tests and tools), or the caller keeps them (the stream only
hashes and counts them): once the header is complete the stream is
:attr:`~SafetensorsStream.awaiting_header` until the caller, having parsed it elsewhere
(in a child process, :mod:`storage.system.sandbox`), hands the result to
:meth:`~SafetensorsStream.accept`. Data bytes are hashed and dropped at once, whatever
the chunk sizes: one chunk may hold the end of the header and the start of the data, and
is split where the header ends (the part after it waits for the header's verdict).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass, replace

from storage.formats.safetensors.header import (
    MAX_HEADER_SIZE,
    PREFIX_SIZE,
    SafetensorsError,
    check_header_start,
    fail,
    header_length,
    refuse_foreign,
)
from storage.formats.safetensors.keys import KeyMatcher
from storage.formats.safetensors.parts import HeaderParts, split


@dataclass(frozen=True)
class SafetensorsHeader:
    """A validated header: the bytes as uploaded, and what is kept of them."""

    header_bytes: bytes | bytearray
    """The 8-byte prefix and the header exactly as uploaded (empty once forgotten)."""
    parts: HeaderParts
    """What is kept of it (its byte sections empty once forgotten)."""
    data_offset: int
    """Where the data section starts in the original file: ``8 + N``."""
    public_header_size: int
    """Length of the public prefix and header."""

    @property
    def public_header_bytes(self) -> bytes | bytearray | memoryview:
        """Prefix and header without the withheld metadata keys."""
        public = self.parts.public_header
        return self.header_bytes if public is None else public

    @property
    def data_size(self) -> int:
        return self.parts.data_size

    @property
    def withheld(self) -> tuple[str, ...]:
        return self.parts.withheld

    @property
    def tensor_count(self) -> int:
        return self.parts.tensor_count

    @property
    def metadata(self) -> dict[str, str]:
        """The full ``__metadata__`` (tests and tools)."""
        return self.parts.metadata(owner=True)

    def forgotten(self) -> SafetensorsHeader:
        """The same header without its bytes (once they are stored)."""
        parts = self.parts
        emptied = replace(
            parts,
            public_header=None if parts.public_header is None else b"",
            public_metadata="{}",
            owner_metadata=None if parts.owner_metadata is None else b"",
        )
        return replace(self, header_bytes=b"", parts=emptied)


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


def matcher_of(withheld_keys: Collection[str] | KeyMatcher) -> KeyMatcher:
    return withheld_keys if isinstance(withheld_keys, KeyMatcher) else KeyMatcher(withheld_keys)


class SafetensorsStream:
    """Validates and hashes an upload chunk by chunk, holding only its header.

    ``declared_size`` is the size of the whole file announced before its bytes (the
    Content-Length of the upload). Feed every chunk to :meth:`feed` (and, with
    ``buffer_header=False``, :meth:`accept` the header when it is
    :attr:`awaiting_header`), then
    call :meth:`finish`. The first error is raised as early as possible and raised again
    by any later call; but what compares the file with its declared size (the header
    does not fit it, the tensors end before or after its end) is settled by
    :meth:`finish`, once the whole body has arrived: a body of another length than
    declared is the caller's to refuse as such, whatever its header says.
    """

    def __init__(
        self,
        *,
        declared_size: int,
        withheld_keys: Collection[str] | KeyMatcher,
        max_header_size: int = MAX_HEADER_SIZE,
        buffer_header: bool = True,
    ) -> None:
        if isinstance(declared_size, bool) or declared_size < 0:
            raise ValueError("declared_size must be a non-negative integer")
        self.declared_size = declared_size
        self.matcher = matcher_of(withheld_keys)
        self._max_header_size = max_header_size
        self._buffer_header = buffer_header
        self._received = 0
        self._buffer = bytearray()  # prefix and header while they arrive
        self._filled = 0  # how much of it has arrived
        self._prefix = b""
        self._length: int | None = None  # N, once the prefix is complete
        self._unfit: SafetensorsError | None = None  # N does not fit the declared size
        self._held = b""  # data bytes that arrived with the header's end, until its verdict
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
    def header_size(self) -> int | None:
        """N, once the first 8 bytes have arrived (and passed the prefix rules)."""
        return self._length

    @property
    def awaiting_header(self) -> bool:
        """Whether the complete header waits for :meth:`accept` (``buffer_header=False``)."""
        if self._header is not None or self._error is not None or self._length is None:
            return False
        return self._filled == PREFIX_SIZE + self._length

    @property
    def received(self) -> int:
        """Bytes accepted so far."""
        return self._received

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        """Take the next bytes of the file (any number, even none); raise
        :class:`SafetensorsError` as soon as they make the file invalid."""
        self._check_open()
        view = memoryview(chunk)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        try:
            self._feed(view)
        except SafetensorsError as error:
            self._error = error
            raise

    def accept(self, parts: HeaderParts, *, public_sha256: hashlib._Hash | None = None) -> None:
        """The verdict on the header :attr:`awaiting_header`: it is valid and splits into
        ``parts``. ``public_sha256``, if given, has hashed the public header already
        (a caller may do it off the event loop)."""
        if not self.awaiting_header:
            raise RuntimeError("accept() without a header awaiting it")
        try:
            self._accept(parts, public_sha256)
            held, self._held = self._held, b""
            if held:
                self._feed(memoryview(held))
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

    def _check_open(self) -> None:
        if self._error is not None:
            raise self._error
        if self._info is not None:
            raise RuntimeError("feed() after finish()")
        if self.awaiting_header:
            raise RuntimeError("feed() while the header waits for accept()")

    def _feed(self, view: memoryview) -> None:
        allowed = min(len(view), self.declared_size - self._received)
        excess = len(view) - allowed
        view = view[:allowed]
        if self._header is None and self._unfit is None:
            view = self._take_header(view)
            if self._header is None and self._unfit is None and len(view):
                self._held = bytes(view)  # they wait for the header's verdict
                view = view[:0]
        if self._unfit is not None:  # counted and dropped: the verdict waits for the end
            self._received += len(view)
            view = view[:0]
        if len(view):
            self._sha256.update(view)
            self._data_sha256.update(view)
            if self._public_sha256 is not None:
                self._public_sha256.update(view)
            self._data_received += len(view)
            self._received += len(view)
        if excess:
            fail("TRAILING_DATA", f"more than the declared {self.declared_size} bytes arrived")

    def _take_header(self, view: memoryview) -> memoryview:
        """Take the prefix and header bytes at the start of ``view``; the rest."""
        if self._length is None:
            taken = view[: PREFIX_SIZE - self._filled]
            self._take(taken)
            view = view[len(taken) :]
            if self._filled < PREFIX_SIZE:
                return view
            prefix = self._prefix = bytes(self._buffer)
            length = header_length(prefix, max_header_size=self._max_header_size, available=None)
            if PREFIX_SIZE + length > self.declared_size:
                refuse_foreign(prefix, length)  # another format says so at once
                # The declared size cannot hold the header; whether the body really is
                # that size is known only at its end (else it is a size mismatch).
                self._unfit = SafetensorsError(
                    f"header length {length} is above the "
                    f"{self.declared_size - PREFIX_SIZE} bytes after the length prefix",
                    "HEADER_TOO_LARGE",
                )
                return view
            self._length = length
            if self._buffer_header:
                # The whole header's room at once (pages the kernel gives as they are
                # written): never grown, never copied.
                self._buffer = bytearray(PREFIX_SIZE + self._length)
                self._buffer[:PREFIX_SIZE] = prefix
        taken = view[: PREFIX_SIZE + self._length - self._filled]
        if len(taken) and self._filled == PREFIX_SIZE:
            check_header_start(self._prefix, taken[0])
        self._take(taken)
        view = view[len(taken) :]
        if self._filled == PREFIX_SIZE + self._length and self._buffer_header:
            text = memoryview(self._buffer)[PREFIX_SIZE:]
            try:
                parts = split(text, data_size=None, matcher=self.matcher)
            finally:
                text.release()
            self._accept(parts, None)
        return view

    def _take(self, header_bytes: memoryview) -> None:
        end = self._filled + len(header_bytes)
        if self._length is None:
            self._buffer += header_bytes
        elif self._buffer_header:
            self._buffer[self._filled : end] = header_bytes
        self._filled = end
        self._sha256.update(header_bytes)
        self._received += len(header_bytes)

    def forget_header(self) -> None:
        """Drop the header's bytes (the caller has stored them): from now on the stream
        holds nothing but hashes and counts."""
        if self._header is None:
            raise RuntimeError("forget_header() before the header")
        self._header = self._header.forgotten()
        self._buffer = bytearray()

    def _accept(self, parts: HeaderParts, public_sha256: hashlib._Hash | None) -> None:
        size = self._filled
        public_size = size if parts.public_header is None else len(parts.public_header)
        header = SafetensorsHeader(
            header_bytes=self._buffer if self._buffer_header else b"",
            parts=parts,
            data_offset=size,
            public_header_size=public_size,
        )
        if parts.public_header is not None:
            self._public_sha256 = public_sha256 or hashlib.sha256(parts.public_header)
        self._header = header

    def _finish(self) -> SafetensorsInfo:
        header = self._header
        if self.awaiting_header:
            raise RuntimeError("finish() while the header waits for accept()")
        if header is None and self._unfit is None:
            where = "length prefix" if self._length is None else "header"
            fail("TRUNCATED", f"the file ends inside its {where}")
        if self._received < self.declared_size:
            fail(
                "TRUNCATED",
                f"the file ends after {self._received} of its {self.declared_size} bytes",
            )
        # The whole declared file arrived: what it holds is compared with its size only now
        # (a body of another size is a size mismatch, whatever its header says).
        if self._unfit is not None:
            raise self._unfit
        assert header is not None
        if header.data_size > self._data_received:
            fail(
                "TRUNCATED",
                f"the tensors need {header.data_size} data bytes, the file has "
                f"{self._data_received}",
            )
        if header.data_size < self._data_received:
            fail(
                "TRAILING_DATA",
                f"the tensors cover {header.data_size} data bytes, the file has "
                f"{self._data_received}",
            )
        sha256 = self._sha256.hexdigest()
        public = self._public_sha256
        return SafetensorsInfo(
            header_bytes=header.header_bytes,
            parts=header.parts,
            data_offset=header.data_offset,
            public_header_size=header.public_header_size,
            sha256=sha256,
            public_sha256=sha256 if public is None else public.hexdigest(),
            auto_v3=self._data_sha256.hexdigest(),
        )
