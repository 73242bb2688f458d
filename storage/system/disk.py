"""Disk space: uploads stop before the disk is full, and deletion never needs space.

- Uploads are refused (``STORAGE_FULL``, HTTP 507) while accepting them would leave
  less than ``LORASHELF_MIN_FREE_BYTES`` free: checked when an upload is asked for, and
  again as its bytes arrive.
- Deleting expired bytes needs no space: the bytes go first, then the tombstone is
  written; and a small preallocated reserve file (:class:`Reserve`) is given back to
  the disk when a database write fails for lack of space, so SQLite can still write
  the tombstones that free the rest.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path

from storage.errors import ServiceError

log = logging.getLogger("lorashelf.disk")

RESERVE_BYTES = 16 * 1024 * 1024
RESERVE_NAME = ".reserve"


class StorageFull(ServiceError):
    code = "STORAGE_FULL"

    def __init__(self) -> None:
        super().__init__(
            "The server is out of storage space for now; nothing was kept. Try again later.",
            field="sizeBytes",
        )


def free_bytes(path: Path) -> int:
    """Bytes free on the filesystem holding ``path`` (its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_room(path: Path, *, adding: int, min_free: int) -> None:
    """Refuse ``adding`` bytes that would leave less than ``min_free`` free."""
    if free_bytes(path) - adding < min_free:
        raise StorageFull()


def is_full(exc: BaseException) -> bool:
    """Whether an error means the disk is full (a write of the database or a blob)."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    text = str(exc).lower()
    return "database or disk is full" in text or "no space left" in text


class Reserve:
    """A preallocated file in the data dir, given back when a write runs out of space."""

    def __init__(self, data_dir: Path, size: int = RESERVE_BYTES):
        self.path = data_dir / RESERVE_NAME
        self.size = size

    def ensure(self) -> bool:
        """Hold the reserve again if the disk has room for it; whether it is held."""
        if self.path.exists():
            return True
        try:
            with self.path.open("wb") as handle:
                os.posix_fallocate(handle.fileno(), 0, self.size)
        except OSError:
            self.path.unlink(missing_ok=True)
            return False
        return True

    def release(self) -> bool:
        """Give the reserve back to the disk; whether there was one to give."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        log.warning("disk full: released the %s-byte reserve so deletion can go on", self.size)
        return True
