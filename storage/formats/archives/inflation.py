"""Inflating every entry of an archive, chunk by chunk, refusing as soon as an entry
passes its declared size, the total passes its bound, or its first bytes are those of
another compressed archive; at its end, size and CRC-32 exactly as declared."""

from __future__ import annotations

import bz2
import lzma
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from typing import IO, Protocol

from storage.formats.archives.directory import (
    BZIP2,
    DEFLATED,
    LZMA_END_MARKER,
    STORED,
    Member,
)
from storage.formats.archives.refusal import (
    NESTED_ARCHIVE,
    UNSUPPORTED_ARCHIVE,
    ZIP_BOMB,
    ArchiveRejected,
    corrupt,
    label,
)

READ_CHUNK = 64 * 1024  # compressed bytes read from disk at a time
STEP_OUTPUT = 256 * 1024  # most bytes a decompressor may produce per call
LZMA_MAX_DICTIONARY = 64 * 1024 * 1024

# The first bytes of compressed archives: a training dataset is images and captions,
# never archives to be unpacked in turn (each would need checking, bombs included).
_HEAD = 16
_NESTED = re.compile(
    rb"(?P<zip>PK(?:\x03\x04|\x05\x06|\x07\x08))"
    rb"|(?P<gzip>\x1f\x8b\x08)"
    rb"|(?P<bzip2>BZh[1-9](?:1AY&SY|\x17rE8P\x90))"  # a block, or the end of the stream
    rb"|(?P<xz>\xfd7zXZ\x00)"
    rb"|(?P<zstd>\x28\xb5\x2f\xfd)"
    rb"|(?P<_7z>7z\xbc\xaf\x27\x1c)"
    rb"|(?P<rar>Rar!\x1a\x07)"
    rb"|(?P<lz4>\x04\x22\x4d\x18)"
)


# Inflation ------------------------------------------------------------------------------


class _Decompressor(Protocol):
    """What :class:`bz2.BZ2Decompressor` and :class:`lzma.LZMADecompressor` share."""

    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...

    @property
    def eof(self) -> bool: ...

    @property
    def needs_input(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...


class _Stream:
    """One entry's data, fed chunk by chunk; yields output in pieces of at most
    ``STEP_OUTPUT`` bytes. ``finished`` once the compressed stream has ended;
    ``needs_end`` if its input running out before that is damage."""

    needs_end = True

    @property
    def finished(self) -> bool:
        return False

    @property
    def leftover(self) -> int:
        """Input bytes after the end of the stream."""
        return 0

    def feed(self, data: bytes) -> Iterator[bytes]:
        for at in range(0, len(data), STEP_OUTPUT):
            yield data[at : at + STEP_OUTPUT]


class _Stored(_Stream):
    needs_end = False


class _Deflated(_Stream):
    def __init__(self) -> None:
        self._zlib = zlib.decompressobj(-15)

    @property
    def finished(self) -> bool:
        return self._zlib.eof

    @property
    def leftover(self) -> int:
        return len(self._zlib.unused_data)

    def feed(self, data: bytes) -> Iterator[bytes]:
        while True:
            out = self._zlib.decompress(data, STEP_OUTPUT)
            data = self._zlib.unconsumed_tail
            if out:
                yield out
            # A full output buffer may leave output pending inside zlib even with
            # no input left: ask again until a call returns less than it could.
            if self._zlib.eof or (not data and len(out) < STEP_OUTPUT):
                return


class _Buffered(_Stream):
    """bzip2 and LZMA: they keep unconsumed input inside and say when they need more."""

    def __init__(self, decompressor: _Decompressor, *, needs_end: bool = True) -> None:
        self._decompressor = decompressor
        self.needs_end = needs_end

    @property
    def finished(self) -> bool:
        return self._decompressor.eof

    @property
    def leftover(self) -> int:
        return len(self._decompressor.unused_data)

    def feed(self, data: bytes) -> Iterator[bytes]:
        out = self._decompressor.decompress(data, STEP_OUTPUT)
        if out:
            yield out
        while not self._decompressor.eof and not self._decompressor.needs_input:
            out = self._decompressor.decompress(b"", STEP_OUTPUT)
            if out:
                yield out


_STREAM_ERRORS = (zlib.error, OSError, lzma.LZMAError, EOFError, ValueError)


class Inflation:
    """Inflates entries one after the other, counting every byte produced."""

    def __init__(self, handle: IO[bytes], *, limit: int, max_ratio: int) -> None:
        self.handle = handle
        self.limit = limit
        self.max_ratio = max_ratio
        self.total = 0

    def _open(self, info: zipfile.ZipInfo) -> tuple[_Stream, int]:
        """The entry's stream and how many compressed bytes remain to feed it."""
        if info.compress_type == STORED or info.compress_size == 0:
            return _Stored(), info.compress_size  # some writers leave empty entries so
        if info.compress_type == DEFLATED:
            return _Deflated(), info.compress_size
        if info.compress_type == BZIP2:
            return _Buffered(bz2.BZ2Decompressor()), info.compress_size
        # LZMA (APPNOTE 5.8.8): version (2 bytes), properties size (2), properties
        # (lc/lp/pb byte, dictionary size), then a raw LZMA1 stream.
        header = self.handle.read(9) if info.compress_size >= 9 else b""
        if len(header) != 9:
            raise corrupt(info, "has a truncated LZMA header", self.total)
        _, _, properties_size, settings, dictionary = struct.unpack("<2BHBL", header)
        if properties_size != 5 or settings >= 9 * 5 * 5:
            raise corrupt(info, "has invalid LZMA properties", self.total)
        if dictionary > LZMA_MAX_DICTIONARY:
            raise ArchiveRejected(
                f"The archive's entry {label(info)} needs a {dictionary:,}-byte LZMA "
                f"dictionary; at most {LZMA_MAX_DICTIONARY:,} are accepted.",
                code=UNSUPPORTED_ARCHIVE,
                inflated=self.total,
            )
        pb, rest = divmod(settings, 45)
        lp, lc = divmod(rest, 9)
        chain = [{"id": lzma.FILTER_LZMA1, "dict_size": dictionary, "lc": lc, "lp": lp, "pb": pb}]
        try:
            decompressor = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=chain)
        except lzma.LZMAError:
            raise corrupt(info, "has invalid LZMA properties", self.total) from None
        stream = _Buffered(decompressor, needs_end=bool(info.flag_bits & LZMA_END_MARKER))
        return stream, info.compress_size - 9

    def _check_head(self, info: zipfile.ZipInfo, head: bytes) -> None:
        nested = _NESTED.match(head)
        if nested:
            kind = (nested.lastgroup or "").lstrip("_")
            raise ArchiveRejected(
                f"The archive's entry {label(info)} is itself a {kind} archive; a "
                "training dataset holds images and captions, not nested archives.",
                code=NESTED_ARCHIVE,
                inflated=self.total,
            )

    def inflate(self, member: Member) -> None:
        info = member.info
        self.handle.seek(member.data_start)
        stream, remaining = self._open(info)
        produced = crc = 0
        head = b""
        while remaining and not stream.finished:
            data = self.handle.read(min(READ_CHUNK, remaining))
            if not data:
                raise corrupt(info, "runs past the end of the archive", self.total)
            remaining -= len(data)
            try:
                for piece in stream.feed(data):
                    produced += len(piece)
                    self.total += len(piece)
                    if produced > info.file_size:
                        raise ArchiveRejected(
                            f"The archive's entry {label(info)} inflates to more than its "
                            f"declared {info.file_size:,} bytes; it looks like a zip bomb.",
                            code=ZIP_BOMB,
                            inflated=self.total,
                        )
                    if self.total > self.limit:
                        raise ArchiveRejected(
                            f"The archive inflates to more than {self.limit:,} bytes, "
                            f"{self.max_ratio} times its own size; it looks like a zip bomb.",
                            code=ZIP_BOMB,
                            inflated=self.total,
                        )
                    crc = zlib.crc32(piece, crc)
                    if len(head) < _HEAD:
                        head += piece[: _HEAD - len(head)]
                        if len(head) == _HEAD:
                            self._check_head(info, head)
            except _STREAM_ERRORS:
                raise corrupt(info, "has a broken compressed stream", self.total) from None
        if 0 < len(head) < _HEAD:
            self._check_head(info, head)
        if stream.finished and (remaining or stream.leftover):
            raise corrupt(info, "has bytes after the end of its compressed stream", self.total)
        if not stream.finished and stream.needs_end:
            raise corrupt(info, "ends before its compressed stream does", self.total)
        if produced != info.file_size:
            raise corrupt(
                info, f"inflates to {produced:,} bytes, not {info.file_size:,}", self.total
            )
        if crc != info.CRC:
            raise corrupt(info, "fails its CRC-32 check", self.total)
