"""Checking an uploaded zip archive: its central directory, then every entry inflated.

:func:`check_archive` takes a complete archive on local disk and either returns an
:class:`ArchiveReport` or raises :class:`ArchiveRejected` with a stable ``code`` and
the HTTP ``status`` to answer with:

======================== ====== ===================================================
code                     status refused because
======================== ====== ===================================================
``NOT_A_ZIP``            415    no readable zip central directory
``TOO_MANY_ENTRIES``     422    more than ``max_entries`` directory headers
``UNSAFE_ARCHIVE``       422    an absolute name, a drive letter or ``..``
``ZIP_BOMB``             422    declared or inflated total over ``max_ratio`` times
                                the archive's size; an entry inflating past its
                                declared size; entries overlapping each other or
                                the central directory
``UNSUPPORTED_ARCHIVE``  422    encryption, or a method other than stored, deflate,
                                bzip2 and LZMA (deflate64, zstd, ...), or an LZMA
                                dictionary over 64 MiB
``CORRUPT_ARCHIVE``      422    local header unreadable or disagreeing with the
                                directory, a broken or truncated compressed
                                stream, data after a stream's end, fewer bytes
                                than declared, a CRC-32 mismatch
``NESTED_ARCHIVE``       422    an entry that is itself a compressed archive
======================== ====== ===================================================

An entry producing *more* bytes than its headers declare is the one thing a zip
bomb needs to slip past a directory check, so it is ``ZIP_BOMB``; producing
*fewer* bytes, or the wrong CRC, is damage (``CORRUPT_ARCHIVE``).

Nothing is written anywhere and the archive is never extracted; the function is
synchronous and meant to run in a worker thread.
"""

from __future__ import annotations

import bz2
import lzma
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

MAX_ENTRIES = 100_000
READ_CHUNK = 64 * 1024  # compressed bytes read from disk at a time
STEP_OUTPUT = 256 * 1024  # most bytes a decompressor may produce per call
LZMA_MAX_DICTIONARY = 64 * 1024 * 1024

NOT_A_ZIP = "NOT_A_ZIP"
TOO_MANY_ENTRIES = "TOO_MANY_ENTRIES"
UNSAFE_ARCHIVE = "UNSAFE_ARCHIVE"
ZIP_BOMB = "ZIP_BOMB"
UNSUPPORTED_ARCHIVE = "UNSUPPORTED_ARCHIVE"
CORRUPT_ARCHIVE = "CORRUPT_ARCHIVE"
NESTED_ARCHIVE = "NESTED_ARCHIVE"
STATUSES: dict[str, int] = {
    NOT_A_ZIP: 415,
    TOO_MANY_ENTRIES: 422,
    UNSAFE_ARCHIVE: 422,
    ZIP_BOMB: 422,
    UNSUPPORTED_ARCHIVE: 422,
    CORRUPT_ARCHIVE: 422,
    NESTED_ARCHIVE: 422,
}


class ArchiveRejected(Exception):
    """An archive refused: ``code`` is stable, ``status`` the HTTP status to answer
    with, ``inflated`` how many uncompressed bytes were produced before refusing."""

    def __init__(
        self, message: str, *, code: str, status: int | None = None, inflated: int = 0
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = STATUSES.get(code, 422) if status is None else status
        self.inflated = inflated


@dataclass(frozen=True)
class ArchiveReport:
    """What a checked archive holds. ``uncompressed_bytes`` is the total its headers
    declare and ``inflated_bytes`` what inflating produced: equal, once accepted."""

    entries: int
    archive_bytes: int
    compressed_bytes: int
    uncompressed_bytes: int
    inflated_bytes: int


# Zip records (APPNOTE 4.3): end of central directory, its zip64 locator and record,
# a central directory file header and a local file header.
_END = struct.Struct("<4s4H2LH")
_END64_LOCATOR = struct.Struct("<4sLQL")
_END64 = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_LOCAL = struct.Struct("<4s5H3L2H")
_END_SIG = b"PK\x05\x06"
_LOCATOR_SIG = b"PK\x06\x07"
_END64_SIG = b"PK\x06\x06"
_CENTRAL_SIG = b"PK\x01\x02"
_LOCAL_SIG = b"PK\x03\x04"

# General purpose flag bits (APPNOTE 4.4.4).
_ENCRYPTED = 1 << 0
_LZMA_END_MARKER = 1 << 1
_DATA_DESCRIPTOR = 1 << 3
_PATCHED = 1 << 5
_STRONG_ENCRYPTION = 1 << 6
_UTF8 = 1 << 11
_MASKED_HEADERS = 1 << 13

_STORED, _DEFLATED, _BZIP2, _LZMA = 0, 8, 12, 14
_METHODS = {_STORED: "stored", _DEFLATED: "deflate", _BZIP2: "bzip2", _LZMA: "LZMA"}

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


def check_archive(path: Path, *, max_ratio: int, max_entries: int = MAX_ENTRIES) -> ArchiveReport:
    """Accept only a sound zip archive whose entries really inflate to what they declare.

    First the central directory, as before, with nothing decompressed: at most
    ``max_entries`` headers (counted before :mod:`zipfile` builds its table), names
    relative and staying inside the archive, and a declared uncompressed total of at
    most ``max_ratio`` times the archive's size. Then every entry's local header
    must agree with the directory, no entry may be encrypted or use another method
    than stored, deflate, bzip2 or LZMA (zip's LZMA: the 4-byte version/size header
    and 5 property bytes, as :mod:`zipfile` reads it; the end-of-stream marker is
    required when flag bit 1 says there is one), and the byte ranges from local
    header to end of data must not overlap each other nor the central directory.
    Only then is every entry inflated, in file order, from its local header's data
    on: never reading past its declared compressed size; refused as soon as it
    passes its declared size (``ZIP_BOMB``), as soon as the running total passes
    ``max_ratio`` times the archive's size (implied by the previous two checks,
    kept as a guard), or as soon as its first bytes are those of a compressed
    archive (zip, gzip, bzip2, xz, zstd, 7z, rar, lz4: ``NESTED_ARCHIVE``, since a
    training dataset is images and captions); at its end the stream must be
    complete with no bytes after it, and size and CRC-32 exactly as declared.

    Memory is O(chunk) whatever the archive's size: 64 KiB of compressed input and at
    most 256 KiB of output per decompressor call, plus the decompressor's own state
    (deflate 32 KiB window, bzip2 under 4 MiB, LZMA its dictionary, at most 64 MiB).
    Only the directory checks hold more: :mod:`zipfile` reads the central directory
    whole and keeps a table of its (at most ``max_entries``) entries, so that part
    grows with the directory's size (a few MiB for 100,000 ordinary names).

    Time: inflation produces at most ``max_ratio`` times the archive's size (plus one
    call's output) and reads each compressed byte once. Output per second, measured
    on the 2-core VM this was written on, shared with other jobs (one core, Python
    3.11.7, system zlib, 200 MiB of output unless noted; MB = 10^6 bytes; runs
    varied by up to 40% with the load):

    ======= ============= ================ ========================================
    method  zeros         random bytes     other
    ======= ============= ================ ========================================
    stored  --            1,300 MB/s
    deflate 250-390 MB/s  1,100-1,300 MB/s English-like text (ratio 2) 110-180 MB/s
    bzip2   210-290 MB/s  8-12 MB/s (32 MiB) text (ratio 3.5) 10-15 MB/s; one random
                                           4 KiB block repeated (ratio 86) 37-43 MB/s
    LZMA    150-350 MB/s  15 MB/s (32 MiB) text (ratio 3) 42-52 MB/s
    ======= ============= ================ ========================================

    An upload costs its ratio over the speed per byte; the worst is data compressed
    right up to ``max_ratio`` that is slow to rebuild. So a 2 GiB upload at ratio 100
    (at most 215 GB of output) costs at most 10-15 minutes of one core with deflate
    (zeros: the slowest deflate output at a high ratio), 10-25 with LZMA, and about
    1.5 hours with bzip2 (~40 MB/s near ratio 100). The directory checks alone take
    ~1.6 s per 100,000 entries; the local headers and inflating add ~1 s more.
    """
    with path.open("rb") as handle:
        archive_size, infos, directory_start = _check_directory(
            handle, max_ratio=max_ratio, max_entries=max_entries
        )
        members = _locate(handle, infos, directory_start, archive_size)
        inflation = _Inflation(handle, limit=max_ratio * archive_size, max_ratio=max_ratio)
        for member in members:
            inflation.inflate(member)
    return ArchiveReport(
        entries=len(infos),
        archive_bytes=archive_size,
        compressed_bytes=sum(info.compress_size for info in infos),
        uncompressed_bytes=sum(info.file_size for info in infos),
        inflated_bytes=inflation.total,
    )


# The central directory ----------------------------------------------------------------


def _count_entries(handle: IO[bytes], limit: int) -> int:
    """How many entries the central directory holds, counted header by header and
    only up to ``limit + 1``, so that a hostile directory costs no memory.

    It finds the directory exactly as :mod:`zipfile` does; when it cannot (not a zip,
    damaged), it answers 0 and leaves the verdict to :mod:`zipfile`.
    """
    size = handle.seek(0, os.SEEK_END)
    tail_start = max(size - (1 << 16) - _END.size, 0)
    handle.seek(tail_start)
    tail = handle.read()
    if tail[-_END.size :].startswith(_END_SIG) and tail.endswith(b"\0\0"):
        at = len(tail) - _END.size  # no archive comment
    else:
        at = tail.rfind(_END_SIG)
    if at < 0 or len(tail) - at < _END.size:
        return 0
    end_at = tail_start + at
    (_, _, _, _, entries, directory_size, _, _) = _END.unpack_from(tail, at)
    directory_end = end_at
    if end_at >= _END64_LOCATOR.size + _END64.size:
        handle.seek(end_at - _END64_LOCATOR.size)
        if handle.read(4) == _LOCATOR_SIG:
            handle.seek(end_at - _END64_LOCATOR.size - _END64.size)
            record = handle.read(_END64.size)
            if record.startswith(_END64_SIG):
                fields = _END64.unpack(record)
                entries, directory_size = fields[7], fields[8]
                directory_end = end_at - _END64_LOCATOR.size - _END64.size
    if entries > limit:
        return int(entries)
    # The count in the end record may lie; zipfile walks the directory by its size.
    handle.seek(directory_end - directory_size if directory_end >= directory_size else 0)
    counted = walked = 0
    while walked < directory_size and counted <= limit:
        header = handle.read(_CENTRAL.size)
        if len(header) != _CENTRAL.size or not header.startswith(_CENTRAL_SIG):
            break
        name, extra, comment = struct.unpack_from("<3H", header, 28)
        handle.seek(name + extra + comment, os.SEEK_CUR)
        walked += _CENTRAL.size + name + extra + comment
        counted += 1
    return counted


def _unsafe_name(name: str) -> bool:
    """An absolute path, a drive letter or ``..`` anywhere: never allowed in an entry."""
    return name.startswith(("/", "\\")) or ":" in name or ".." in re.split(r"[\\/]", name)


def _check_directory(
    handle: IO[bytes], *, max_ratio: int, max_entries: int
) -> tuple[int, list[zipfile.ZipInfo], int]:
    """The checks made before anything is inflated, reading only the central
    directory: entry count, safe names, declared total within the ratio. Answers the
    archive's size, its entries and where its central directory starts."""
    not_a_zip = ArchiveRejected("The body is not a zip archive.", code=NOT_A_ZIP)
    try:
        archive_size = handle.seek(0, os.SEEK_END)
        entries = _count_entries(handle, max_entries)
        if entries > max_entries:
            raise ArchiveRejected(
                f"The archive has more than {max_entries:,} entries.", code=TOO_MANY_ENTRIES
            )
        with zipfile.ZipFile(handle) as archive:
            infos = archive.infolist()
            directory_start = archive.start_dir
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, struct.error):
        raise not_a_zip from None
    if len(infos) > max_entries:  # the walk above and zipfile disagree: trust neither
        raise not_a_zip
    for info in infos:
        if _unsafe_name(info.filename) or _unsafe_name(info.orig_filename):
            raise ArchiveRejected(
                "The archive contains an unsafe path (absolute, a drive letter or '..').",
                code=UNSAFE_ARCHIVE,
            )
    expanded = sum(info.file_size for info in infos)
    if expanded > max_ratio * archive_size:
        raise ArchiveRejected(
            f"The archive would expand to {expanded:,} bytes, more than {max_ratio} times "
            f"its own {archive_size:,} bytes; it looks like a zip bomb.",
            code=ZIP_BOMB,
        )
    return archive_size, infos, directory_start


# Local headers and byte ranges ----------------------------------------------------------


@dataclass(frozen=True)
class _Member:
    info: zipfile.ZipInfo
    data_start: int  # where the compressed data begins, after the LOCAL name and extra


def _label(info: zipfile.ZipInfo) -> str:
    name = info.orig_filename
    return repr(name if len(name) <= 100 else name[:100] + "...")


def _corrupt(info: zipfile.ZipInfo, why: str, inflated: int = 0) -> ArchiveRejected:
    return ArchiveRejected(
        f"The archive is damaged: entry {_label(info)} {why}.",
        code=CORRUPT_ARCHIVE,
        inflated=inflated,
    )


def _check_method(info: zipfile.ZipInfo, flags: int, method: int) -> None:
    if flags & (_ENCRYPTED | _STRONG_ENCRYPTION | _MASKED_HEADERS):
        raise ArchiveRejected(
            f"The archive's entry {_label(info)} is encrypted; upload it unencrypted.",
            code=UNSUPPORTED_ARCHIVE,
        )
    if flags & _PATCHED:
        raise ArchiveRejected(
            f"The archive's entry {_label(info)} holds compressed patch data.",
            code=UNSUPPORTED_ARCHIVE,
        )
    if method not in _METHODS:
        raise ArchiveRejected(
            f"The archive's entry {_label(info)} uses compression method {method}; only "
            "stored, deflate, bzip2 and LZMA are accepted.",
            code=UNSUPPORTED_ARCHIVE,
        )


def _zip64_sizes(extra: bytes) -> tuple[int, int] | None:
    """Uncompressed and compressed sizes from a local header's zip64 extra field
    (APPNOTE 4.5.3: both present in a local header), or None."""
    at = 0
    while at + 4 <= len(extra):
        kind, size = struct.unpack_from("<2H", extra, at)
        if kind == 1:
            body = extra[at + 4 : at + 4 + size]
            return struct.unpack_from("<2Q", body) if len(body) >= 16 else None
        at += 4 + size
    return None


def _locate(
    handle: IO[bytes],
    infos: Sequence[zipfile.ZipInfo],
    directory_start: int,
    archive_size: int,
) -> list[_Member]:
    """Every entry's local header read and checked against the directory, in file
    order, its range [local header, end of data) apart from the others' and ending
    before the central directory. Nothing is decompressed yet."""
    members: list[_Member] = []
    previous_end = 0
    for info in sorted(infos, key=lambda i: i.header_offset):
        _check_method(info, info.flag_bits, info.compress_type)
        if info.header_offset < 0:  # zipfile shifts offsets by what precedes the archive
            raise _corrupt(info, "has its local header before the start of the file")
        if info.header_offset < previous_end:
            raise ArchiveRejected(
                f"The archive's entries overlap (at entry {_label(info)}); "
                "it looks like a zip bomb.",
                code=ZIP_BOMB,
            )
        if info.header_offset + _LOCAL.size > directory_start:
            raise _corrupt(info, "has no local header before the central directory")
        handle.seek(info.header_offset)
        header = handle.read(_LOCAL.size)
        if len(header) != _LOCAL.size or not header.startswith(_LOCAL_SIG):
            raise _corrupt(info, "has no local header where the directory says")
        fields = _LOCAL.unpack(header)
        flags, method, crc, compressed, size, name_size, extra_size = fields[2:4] + fields[6:]
        name, extra = handle.read(name_size), handle.read(extra_size)
        if len(name) != name_size or len(extra) != extra_size:
            raise _corrupt(info, "has a truncated local header")
        _check_method(info, flags, method)
        try:
            local_name = name.decode("utf-8" if flags & _UTF8 else "cp437")
        except UnicodeDecodeError:
            local_name = None
        if local_name != info.orig_filename:
            raise _corrupt(info, "has another name in its local header")
        if method != info.compress_type:
            raise _corrupt(info, "has another compression method in its local header")
        if not flags & _DATA_DESCRIPTOR:  # else the local values are zeros
            if 0xFFFFFFFF in (compressed, size):
                sizes = _zip64_sizes(extra)
                if sizes is None:
                    raise _corrupt(info, "lacks the zip64 sizes its local header announces")
                size = sizes[0] if size == 0xFFFFFFFF else size
                compressed = sizes[1] if compressed == 0xFFFFFFFF else compressed
            if (crc, compressed, size) != (info.CRC, info.compress_size, info.file_size):
                raise _corrupt(info, "has other sizes or CRC in its local header")
        if info.compress_type == _STORED and info.compress_size != info.file_size:
            raise _corrupt(info, "is stored but declares two different sizes")
        data_start = info.header_offset + _LOCAL.size + name_size + extra_size
        previous_end = data_start + info.compress_size
        if previous_end > archive_size:
            raise _corrupt(info, "runs past the end of the archive")
        if previous_end > directory_start:
            raise ArchiveRejected(
                f"The archive's entry {_label(info)} overlaps its central directory; "
                "it looks like a zip bomb.",
                code=ZIP_BOMB,
            )
        members.append(_Member(info, data_start))
    return members


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


class _Inflation:
    """Inflates entries one after the other, counting every byte produced."""

    def __init__(self, handle: IO[bytes], *, limit: int, max_ratio: int) -> None:
        self.handle = handle
        self.limit = limit
        self.max_ratio = max_ratio
        self.total = 0

    def _open(self, info: zipfile.ZipInfo) -> tuple[_Stream, int]:
        """The entry's stream and how many compressed bytes remain to feed it."""
        if info.compress_type == _STORED or info.compress_size == 0:
            return _Stored(), info.compress_size  # some writers leave empty entries so
        if info.compress_type == _DEFLATED:
            return _Deflated(), info.compress_size
        if info.compress_type == _BZIP2:
            return _Buffered(bz2.BZ2Decompressor()), info.compress_size
        # LZMA (APPNOTE 5.8.8): version (2 bytes), properties size (2), properties
        # (lc/lp/pb byte, dictionary size), then a raw LZMA1 stream.
        header = self.handle.read(9) if info.compress_size >= 9 else b""
        if len(header) != 9:
            raise _corrupt(info, "has a truncated LZMA header", self.total)
        _, _, properties_size, settings, dictionary = struct.unpack("<2BHBL", header)
        if properties_size != 5 or settings >= 9 * 5 * 5:
            raise _corrupt(info, "has invalid LZMA properties", self.total)
        if dictionary > LZMA_MAX_DICTIONARY:
            raise ArchiveRejected(
                f"The archive's entry {_label(info)} needs a {dictionary:,}-byte LZMA "
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
            raise _corrupt(info, "has invalid LZMA properties", self.total) from None
        stream = _Buffered(decompressor, needs_end=bool(info.flag_bits & _LZMA_END_MARKER))
        return stream, info.compress_size - 9

    def _check_head(self, info: zipfile.ZipInfo, head: bytes) -> None:
        nested = _NESTED.match(head)
        if nested:
            kind = (nested.lastgroup or "").lstrip("_")
            raise ArchiveRejected(
                f"The archive's entry {_label(info)} is itself a {kind} archive; a "
                "training dataset holds images and captions, not nested archives.",
                code=NESTED_ARCHIVE,
                inflated=self.total,
            )

    def inflate(self, member: _Member) -> None:
        info = member.info
        self.handle.seek(member.data_start)
        stream, remaining = self._open(info)
        produced = crc = 0
        head = b""
        while remaining and not stream.finished:
            data = self.handle.read(min(READ_CHUNK, remaining))
            if not data:
                raise _corrupt(info, "runs past the end of the archive", self.total)
            remaining -= len(data)
            try:
                for piece in stream.feed(data):
                    produced += len(piece)
                    self.total += len(piece)
                    if produced > info.file_size:
                        raise ArchiveRejected(
                            f"The archive's entry {_label(info)} inflates to more than its "
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
                raise _corrupt(info, "has a broken compressed stream", self.total) from None
        if 0 < len(head) < _HEAD:
            self._check_head(info, head)
        if stream.finished and (remaining or stream.leftover):
            raise _corrupt(info, "has bytes after the end of its compressed stream", self.total)
        if not stream.finished and stream.needs_end:
            raise _corrupt(info, "ends before its compressed stream does", self.total)
        if produced != info.file_size:
            raise _corrupt(
                info, f"inflates to {produced:,} bytes, not {info.file_size:,}", self.total
            )
        if crc != info.CRC:
            raise _corrupt(info, "fails its CRC-32 check", self.total)
