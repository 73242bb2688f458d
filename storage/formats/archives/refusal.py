"""Why an archive is refused: each code with the HTTP status to answer with (the table
in :mod:`storage.formats.archives.check`)."""

from __future__ import annotations

import zipfile

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


def label(info: zipfile.ZipInfo) -> str:
    name = info.orig_filename
    return repr(name if len(name) <= 100 else name[:100] + "...")


def corrupt(info: zipfile.ZipInfo, why: str, inflated: int = 0) -> ArchiveRejected:
    return ArchiveRejected(
        f"The archive is damaged: entry {label(info)} {why}.",
        code=CORRUPT_ARCHIVE,
        inflated=inflated,
    )
