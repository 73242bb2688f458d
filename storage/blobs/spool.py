"""The spool: a blob being written, in a temporary file named after its writer.

Both raw stores write through it (the local store renames the sealed file into place,
the S3 store uploads it). What is spooled is already ciphertext (the sealed writer,
:mod:`storage.blobs.sealed`, encrypts before it writes): no upload's plaintext ever
reaches the disk. A partial file whose writer died is found by its name and removed at
start-up.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from datetime import datetime
from pathlib import Path

from storage.blobs.base import BLOB_KEY
from storage.system.claim_holder import file_holder_gone, file_tag


class SpoolWriter:
    """Writes a blob to a temporary file in ``tmp_dir``; a subclass's ``commit`` moves
    the sealed file into its store under ``key``."""

    def __init__(self, tmp_dir: Path, key: str):
        if not BLOB_KEY.match(key):
            raise ValueError("malformed blob key")
        self.key = key
        # Named after the writing process: a partial file whose writer died is removed
        # at once (at the next start-up sweep), not an hour later.
        self._tmp = tmp_dir / f"{file_tag()}~{secrets.token_hex(16)}.part"
        self._file = open(self._tmp, "xb")  # noqa: SIM115 - closed in seal/abort
        self.size = 0

    @property
    def temp_path(self) -> Path:
        return self._tmp

    def write_sync(self, data: bytes) -> None:
        self._file.write(data)
        self.size += len(data)

    async def seal(self) -> None:
        def _seal() -> None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

        if not self._file.closed:
            await asyncio.to_thread(_seal)

    async def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


def remove_stale_spool(tmp_dir: Path, older_than: datetime) -> int:
    """Remove temporary files in ``tmp_dir`` last written before ``older_than``, or
    whose writing process (on this host) is dead; how many were removed."""
    limit = older_than.timestamp()
    removed = 0
    for path in tmp_dir.iterdir():
        try:
            stale = path.stat().st_mtime < limit or file_holder_gone(path.name)
        except FileNotFoundError:
            continue
        if stale:
            path.unlink(missing_ok=True)
            removed += 1
    return removed
