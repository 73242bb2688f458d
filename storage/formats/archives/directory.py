"""An archive's central directory and local headers, checked with nothing
decompressed: entry count, names, declared sizes, methods and flags, and the byte
ranges entries take (never overlapping)."""

from __future__ import annotations

import os
import re
import struct
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from storage.formats.archives.refusal import (
    NOT_A_ZIP,
    TOO_MANY_ENTRIES,
    UNSAFE_ARCHIVE,
    UNSUPPORTED_ARCHIVE,
    ZIP_BOMB,
    ArchiveRejected,
    corrupt,
    label,
)

# Zip records (APPNOTE 4.3): end of central directory, its zip64 locator and record,
# a central directory file header and a local file header.
END = struct.Struct("<4s4H2LH")
END64_LOCATOR = struct.Struct("<4sLQL")
END64 = struct.Struct("<4sQ2H2L4Q")
CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
LOCAL = struct.Struct("<4s5H3L2H")
END_SIG = b"PK\x05\x06"
LOCATOR_SIG = b"PK\x06\x07"
END64_SIG = b"PK\x06\x06"
CENTRAL_SIG = b"PK\x01\x02"
LOCAL_SIG = b"PK\x03\x04"

# General purpose flag bits (APPNOTE 4.4.4).
ENCRYPTED = 1 << 0
LZMA_END_MARKER = 1 << 1
DATA_DESCRIPTOR = 1 << 3
PATCHED = 1 << 5
STRONG_ENCRYPTION = 1 << 6
UTF8 = 1 << 11
MASKED_HEADERS = 1 << 13

STORED, DEFLATED, BZIP2, LZMA = 0, 8, 12, 14
METHODS = {STORED: "stored", DEFLATED: "deflate", BZIP2: "bzip2", LZMA: "LZMA"}


# The central directory ----------------------------------------------------------------


def count_entries(handle: IO[bytes], limit: int) -> int:
    """How many entries the central directory holds, counted header by header and
    only up to ``limit + 1``, so that a hostile directory costs no memory.

    It finds the directory exactly as :mod:`zipfile` does; when it cannot (not a zip,
    damaged), it answers 0 and leaves the verdict to :mod:`zipfile`.
    """
    size = handle.seek(0, os.SEEK_END)
    tail_start = max(size - (1 << 16) - END.size, 0)
    handle.seek(tail_start)
    tail = handle.read()
    if tail[-END.size :].startswith(END_SIG) and tail.endswith(b"\0\0"):
        at = len(tail) - END.size  # no archive comment
    else:
        at = tail.rfind(END_SIG)
    if at < 0 or len(tail) - at < END.size:
        return 0
    end_at = tail_start + at
    (_, _, _, _, entries, directory_size, _, _) = END.unpack_from(tail, at)
    directory_end = end_at
    if end_at >= END64_LOCATOR.size + END64.size:
        handle.seek(end_at - END64_LOCATOR.size)
        if handle.read(4) == LOCATOR_SIG:
            handle.seek(end_at - END64_LOCATOR.size - END64.size)
            record = handle.read(END64.size)
            if record.startswith(END64_SIG):
                fields = END64.unpack(record)
                entries, directory_size = fields[7], fields[8]
                directory_end = end_at - END64_LOCATOR.size - END64.size
    if entries > limit:
        return int(entries)
    # The count in the end record may lie; zipfile walks the directory by its size.
    handle.seek(directory_end - directory_size if directory_end >= directory_size else 0)
    counted = walked = 0
    while walked < directory_size and counted <= limit:
        header = handle.read(CENTRAL.size)
        if len(header) != CENTRAL.size or not header.startswith(CENTRAL_SIG):
            break
        name, extra, comment = struct.unpack_from("<3H", header, 28)
        handle.seek(name + extra + comment, os.SEEK_CUR)
        walked += CENTRAL.size + name + extra + comment
        counted += 1
    return counted


def unsafe_name(name: str) -> bool:
    """An absolute path, a drive letter or ``..`` anywhere: never allowed in an entry."""
    return name.startswith(("/", "\\")) or ":" in name or ".." in re.split(r"[\\/]", name)


def check_directory(
    handle: IO[bytes], *, max_ratio: int, max_entries: int
) -> tuple[int, list[zipfile.ZipInfo], int]:
    """The checks made before anything is inflated, reading only the central
    directory: entry count, safe names, declared total within the ratio. Answers the
    archive's size, its entries and where its central directory starts."""
    not_a_zip = ArchiveRejected("The body is not a zip archive.", code=NOT_A_ZIP)
    try:
        archive_size = handle.seek(0, os.SEEK_END)
        entries = count_entries(handle, max_entries)
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
        if unsafe_name(info.filename) or unsafe_name(info.orig_filename):
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
class Member:
    info: zipfile.ZipInfo
    data_start: int  # where the compressed data begins, after the LOCAL name and extra


def check_method(info: zipfile.ZipInfo, flags: int, method: int) -> None:
    if flags & (ENCRYPTED | STRONG_ENCRYPTION | MASKED_HEADERS):
        raise ArchiveRejected(
            f"The archive's entry {label(info)} is encrypted; upload it unencrypted.",
            code=UNSUPPORTED_ARCHIVE,
        )
    if flags & PATCHED:
        raise ArchiveRejected(
            f"The archive's entry {label(info)} holds compressed patch data.",
            code=UNSUPPORTED_ARCHIVE,
        )
    if method not in METHODS:
        raise ArchiveRejected(
            f"The archive's entry {label(info)} uses compression method {method}; only "
            "stored, deflate, bzip2 and LZMA are accepted.",
            code=UNSUPPORTED_ARCHIVE,
        )


def zip64_sizes(extra: bytes) -> tuple[int, int] | None:
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


def locate(
    handle: IO[bytes],
    infos: Sequence[zipfile.ZipInfo],
    directory_start: int,
    archive_size: int,
) -> list[Member]:
    """Every entry's local header read and checked against the directory, in file
    order, its range [local header, end of data) apart from the others' and ending
    before the central directory. Nothing is decompressed yet."""
    members: list[Member] = []
    previous_end = 0
    for info in sorted(infos, key=lambda i: i.header_offset):
        check_method(info, info.flag_bits, info.compress_type)
        if info.header_offset < 0:  # zipfile shifts offsets by what precedes the archive
            raise corrupt(info, "has its local header before the start of the file")
        if info.header_offset < previous_end:
            raise ArchiveRejected(
                f"The archive's entries overlap (at entry {label(info)}); "
                "it looks like a zip bomb.",
                code=ZIP_BOMB,
            )
        if info.header_offset + LOCAL.size > directory_start:
            raise corrupt(info, "has no local header before the central directory")
        handle.seek(info.header_offset)
        header = handle.read(LOCAL.size)
        if len(header) != LOCAL.size or not header.startswith(LOCAL_SIG):
            raise corrupt(info, "has no local header where the directory says")
        fields = LOCAL.unpack(header)
        flags, method, crc, compressed, size, name_size, extra_size = fields[2:4] + fields[6:]
        name, extra = handle.read(name_size), handle.read(extra_size)
        if len(name) != name_size or len(extra) != extra_size:
            raise corrupt(info, "has a truncated local header")
        check_method(info, flags, method)
        try:
            local_name = name.decode("utf-8" if flags & UTF8 else "cp437")
        except UnicodeDecodeError:
            local_name = None
        if local_name != info.orig_filename:
            raise corrupt(info, "has another name in its local header")
        if method != info.compress_type:
            raise corrupt(info, "has another compression method in its local header")
        if not flags & DATA_DESCRIPTOR:  # else the local values are zeros
            if 0xFFFFFFFF in (compressed, size):
                sizes = zip64_sizes(extra)
                if sizes is None:
                    raise corrupt(info, "lacks the zip64 sizes its local header announces")
                size = sizes[0] if size == 0xFFFFFFFF else size
                compressed = sizes[1] if compressed == 0xFFFFFFFF else compressed
            if (crc, compressed, size) != (info.CRC, info.compress_size, info.file_size):
                raise corrupt(info, "has other sizes or CRC in its local header")
        if info.compress_type == STORED and info.compress_size != info.file_size:
            raise corrupt(info, "is stored but declares two different sizes")
        data_start = info.header_offset + LOCAL.size + name_size + extra_size
        previous_end = data_start + info.compress_size
        if previous_end > archive_size:
            raise corrupt(info, "runs past the end of the archive")
        if previous_end > directory_start:
            raise ArchiveRejected(
                f"The archive's entry {label(info)} overlaps its central directory; "
                "it looks like a zip bomb.",
                code=ZIP_BOMB,
            )
        members.append(Member(info, data_start))
    return members
