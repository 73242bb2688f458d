"""The local raw store: blobs as files under one directory (``file://`` blob URLs)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from pathlib import Path

from storage.blobs.base import BLOB_KEY, CHUNK
from storage.blobs.spool import SpoolWriter, remove_stale_spool


class LocalBlobWriter(SpoolWriter):
    def __init__(self, store: LocalBlobStore, key: str):
        super().__init__(store.tmp_dir, key)
        self._store = store

    async def commit(self) -> None:
        await self.seal()
        target = self._store.path_for(self.key)

        def _move() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._tmp, target)

        await asyncio.to_thread(_move)


class LocalBlobStore:
    """Blobs under one directory: ``<root>/ab/abcdef…`` plus ``<root>/.tmp``."""

    def __init__(self, root: Path):
        self.root = root
        self.tmp_dir = root / ".tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> bool:
        return await asyncio.to_thread(os.access, self.tmp_dir, os.W_OK | os.X_OK)

    def path_for(self, key: str) -> Path:
        if not BLOB_KEY.match(key):
            raise ValueError("malformed blob key")
        return self.root / key[:2] / key

    def writer(self, key: str) -> LocalBlobWriter:
        return LocalBlobWriter(self, key)

    async def size(self, key: str) -> int | None:
        try:
            return self.path_for(key).stat().st_size
        except FileNotFoundError:
            return None

    async def exists(self, key: str) -> bool:
        return self.path_for(key).exists()

    async def read(
        self, key: str, start: int = 0, end: int | None = None, *, piece: int = CHUNK
    ) -> AsyncIterator[bytes]:
        """Stream bytes ``start`` .. ``end`` (inclusive) of a blob, ``piece`` at a time."""
        handle = await asyncio.to_thread(open, self.path_for(key), "rb")
        try:
            await asyncio.to_thread(handle.seek, start)
            remaining = None if end is None else end - start + 1
            while remaining is None or remaining > 0:
                want = piece if remaining is None else min(piece, remaining)
                chunk = await asyncio.to_thread(handle.read, want)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            handle.close()

    async def abort_uploads(self, key: str) -> int:
        return 0  # nothing is in progress outside the spool, which its writer removes

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path_for(key).unlink, True)

    async def delete_many(
        self, keys: Sequence[str], gone: Callable[[str], None]
    ) -> dict[str, Exception]:
        def _unlink_all() -> tuple[list[str], dict[str, Exception]]:
            removed: list[str] = []
            failed: dict[str, Exception] = {}
            for key in keys:
                try:
                    self.path_for(key).unlink(missing_ok=True)
                    removed.append(key)
                except (OSError, ValueError) as exc:
                    failed[key] = exc
            return removed, failed

        removed, failed = await asyncio.to_thread(_unlink_all)
        for key in removed:
            gone(key)
        return failed

    async def keys_older_than(self, cutoff: datetime, batch: int = 500) -> AsyncIterator[list[str]]:
        limit = cutoff.timestamp()

        def _scan() -> list[str]:
            found = []
            for shard in self.root.iterdir():
                if shard.name == ".tmp" or not shard.is_dir():
                    continue
                for path in shard.iterdir():
                    if BLOB_KEY.match(path.name) and path.stat().st_mtime < limit:
                        found.append(path.name)
            return found

        keys = await asyncio.to_thread(_scan)
        for start in range(0, len(keys), batch):
            yield keys[start : start + batch]

    async def remove_stale_temp_files(self, *, older_than: datetime) -> int:
        """Remove temporary files last written before ``older_than``, or whose writing
        process (on this host) is dead."""
        return await asyncio.to_thread(remove_stale_spool, self.tmp_dir, older_than)
