"""Zip archives as training datasets: checked before they are accepted.

Pure functions over a complete file on local disk (the upload is sealed first); no
database. The caller runs :func:`check_archive` in a thread.
"""

from __future__ import annotations

import os
import re
import struct
import zipfile
from pathlib import Path
from typing import IO

MAX_ZIP_ENTRIES = 100_000


class ArchiveRejected(Exception):
    """An archive refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, *, code: str, status: int):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


# Zip records (APPNOTE 4.3): end of central directory, its zip64 locator and record,
# and a central directory file header.
_END = struct.Struct("<4s4H2LH")
_END64_LOCATOR = struct.Struct("<4sLQL")
_END64 = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_END_SIG = b"PK\x05\x06"
_LOCATOR_SIG = b"PK\x06\x07"
_END64_SIG = b"PK\x06\x06"
_CENTRAL_SIG = b"PK\x01\x02"


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


def check_archive(path: Path, *, max_ratio: int, max_entries: int = MAX_ZIP_ENTRIES) -> None:
    """Refuse what is not a sound zip archive, reading only its central directory.

    Nothing is decompressed: the entry count is bounded before :mod:`zipfile` builds
    its table; the names must be relative and stay inside the archive; the declared
    uncompressed total may be at most ``max_ratio`` times the archive's size (zip bombs,
    including overlapping entries, declare far more than they occupy).
    """
    not_a_zip = ArchiveRejected("The body is not a zip archive.", code="NOT_A_ZIP", status=415)
    try:
        with path.open("rb") as handle:
            archive_size = handle.seek(0, os.SEEK_END)
            entries = _count_entries(handle, max_entries)
            if entries > max_entries:
                raise ArchiveRejected(
                    f"The archive has more than {max_entries:,} entries.",
                    code="TOO_MANY_ENTRIES",
                    status=422,
                )
            with zipfile.ZipFile(handle) as archive:
                infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, struct.error):
        raise not_a_zip from None
    if len(infos) > max_entries:  # the walk above and zipfile disagree: trust neither
        raise not_a_zip
    for info in infos:
        if _unsafe_name(info.filename) or _unsafe_name(info.orig_filename):
            raise ArchiveRejected(
                "The archive contains an unsafe path (absolute, a drive letter or '..').",
                code="UNSAFE_ARCHIVE",
                status=422,
            )
    expanded = sum(info.file_size for info in infos)
    if expanded > max_ratio * archive_size:
        raise ArchiveRejected(
            f"The archive would expand to {expanded:,} bytes, more than {max_ratio} times "
            f"its own {archive_size:,} bytes; it looks like a zip bomb.",
            code="ZIP_BOMB",
            status=422,
        )
