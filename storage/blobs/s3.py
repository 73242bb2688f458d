"""S3-compatible object store: ``LORASHELF_BLOB_URL=s3://bucket/prefix``.

Configured by the standard AWS variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_ENDPOINT_URL_S3`` for a store that is
not AWS), through aiobotocore: one client per process, made in the event loop on first
use and closed at shutdown (:meth:`S3BlobStore.close`).

- Uploads are spooled to a local file (the archive and safetensors checks read it),
  then sent on commit: one ``PutObject`` up to :data:`SINGLE` bytes, else a multipart
  upload of :data:`PART`-sized parts (its start, which carries no data, is the first
  contact: bounded like a HEAD), aborted if anything fails. A multipart upload a
  dead process left behind is aborted by :meth:`S3BlobStore.remove_stale_temp_files`.
- Reads are ranged ``GetObject`` calls, streamed.
- Every call is bounded (:mod:`storage.blobs.s3_client`: the one place the timeouts and
  retries are set; a call on a request's path as a whole), and a store that does not
  answer (refused, reset, timing out, answering 5xx) raises
  :class:`~storage.blobs.base.StoreUnavailable`, which the routes answer as 503
  ``TRY_AGAIN`` (graph/http/errors.py).
- Deletes are idempotent and remove every version and delete marker of the object
  (``ListObjectVersions``, then ``DeleteObjects`` by version id), so a bucket that keeps
  versions is accepted: it only ever holds ciphertext (:mod:`storage.blobs.sealed`), and
  what lorashelf deletes leaves no version behind (the credentials need
  ``s3:DeleteObjectVersion`` and ``s3:ListBucketVersions`` for that). A start-up note
  says so when the bucket's versioning is ``Enabled`` or ``Suspended``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storage.blobs.base import BLOB_KEY, CHUNK
from storage.blobs.s3_client import MISSING as _MISSING
from storage.blobs.s3_client import bucket_versioning, client_config, deadline, reaching
from storage.blobs.s3_client import error_code as _code
from storage.blobs.spool import SpoolWriter, remove_stale_spool
from storage.config.parse import parse_s3_url

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client

log = logging.getLogger("lorashelf.blobs")

PART = 8 * 1024 * 1024  # bytes of a multipart upload's part (S3's minimum is 5 MiB)
SINGLE = 256 * 1024  # bytes sent in one PutObject at most: its bound stays about 5 s
MAX_PARTS = 10_000  # S3's limit; parts grow past PART for objects beyond 80 GB
DELETES_AT_ONCE = 16  # objects deleted concurrently by delete_many


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # "" or ending in "/"

    @classmethod
    def parse(cls, url: str) -> S3Location:
        return cls(*parse_s3_url("LORASHELF_BLOB_URL", url))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


class S3BlobWriter(SpoolWriter):
    def __init__(self, store: S3BlobStore, key: str):
        super().__init__(store.spool_dir, key)
        self._store = store

    async def commit(self) -> None:
        await self.seal()
        await self._store.upload(self._tmp, self.size, self.key)
        self._tmp.unlink(missing_ok=True)


class S3BlobStore:
    """Blobs as objects ``<prefix><key>`` of one bucket, spooled in ``spool_dir``."""

    def __init__(self, location: S3Location, *, spool_dir: Path):
        self.location = location
        self.spool_dir = spool_dir
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self._client: S3Client | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._lock = asyncio.Lock()
        self.versioned = False  # the bucket keeps versions (Enabled or Suspended)

    @classmethod
    def from_url(cls, url: str, *, spool_dir: Path) -> S3BlobStore:
        return cls(S3Location.parse(url), spool_dir=spool_dir)

    # The client ----------------------------------------------------------------------

    async def connect(self) -> None:
        await self.client()

    async def client(self) -> S3Client:
        """This process's client, made on first use (in the running event loop) after
        checking that the bucket is there (and whether it keeps versions)."""
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                from aiobotocore.session import get_session

                stack = contextlib.AsyncExitStack()
                try:
                    client = await stack.enter_async_context(
                        get_session().create_client(
                            "s3",
                            # botocore reads AWS_DEFAULT_REGION itself, not AWS_REGION
                            region_name=os.environ.get("AWS_REGION") or None,
                            # bounded, so a store away or hung cannot hold a request
                            config=client_config(),
                        )
                    )
                    await self._check_bucket(client)
                except BaseException:
                    await stack.aclose()
                    raise
                self._client, self._stack = client, stack
        return self._client

    async def ping(self) -> bool:
        """One HEAD of the bucket, bounded to a few seconds."""
        try:
            client = await asyncio.wait_for(self.client(), 5)
            await asyncio.wait_for(client.head_bucket(Bucket=self.location.bucket), 5)
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            return False
        return True

    async def _check_bucket(self, client: S3Client) -> None:
        where = f"LORASHELF_BLOB_URL={self.location}"
        status = await bucket_versioning(client, self.location.bucket, where)
        self.versioned = status in ("Enabled", "Suspended")
        if self.versioned:
            log.info(
                "%s: the bucket's object versioning is %s; it only ever holds ciphertext, and "
                "every version and delete marker of what lorashelf deletes is deleted too",
                where,
                status,
            )

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    def reaching(self) -> contextlib.AbstractContextManager[None]:
        """Calls to the store within: a store that does not answer raises
        :class:`StoreUnavailable`."""
        return reaching(str(self.location))

    def name_of(self, key: str) -> str:
        """The object's name in the bucket."""
        if not BLOB_KEY.match(key):
            raise ValueError("malformed blob key")
        return f"{self.location.prefix}{key}"

    # Writing -------------------------------------------------------------------------

    def writer(self, key: str) -> S3BlobWriter:
        return S3BlobWriter(self, key)

    async def upload(self, path: Path, size: int, key: str) -> None:
        """Send a sealed spool file as the object ``key``."""
        with self.reaching():
            await self._upload(path, size, key)

    async def _upload(self, path: Path, size: int, key: str) -> None:
        s3, bucket = await self.client(), self.location.bucket
        name = self.name_of(key)
        if size <= SINGLE:
            body = await asyncio.to_thread(path.read_bytes)
            async with deadline(len(body)):
                await s3.put_object(Bucket=bucket, Key=name, Body=body)
            return
        part_size = max(PART, -(-size // MAX_PARTS))
        async with deadline():
            started = await s3.create_multipart_upload(Bucket=bucket, Key=name)
        upload_id = started["UploadId"]
        try:
            parts: list[dict[str, Any]] = []
            handle = await asyncio.to_thread(path.open, "rb")
            try:
                while chunk := await asyncio.to_thread(handle.read, part_size):
                    number = len(parts) + 1
                    async with deadline(len(chunk)):
                        sent = await s3.upload_part(
                            Bucket=bucket,
                            Key=name,
                            UploadId=upload_id,
                            PartNumber=number,
                            Body=chunk,
                        )
                    parts.append({"ETag": sent["ETag"], "PartNumber": number})
            finally:
                handle.close()
            async with deadline():
                await s3.complete_multipart_upload(
                    Bucket=bucket,
                    Key=name,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                )
        except BaseException:
            # Its parts would be kept (and billed) until aborted; if the store does not
            # take the abort now, the failed upload's removal is owed and the sweep
            # aborts it (abort_uploads) once the store answers again.
            with contextlib.suppress(Exception):
                async with deadline():
                    await s3.abort_multipart_upload(Bucket=bucket, Key=name, UploadId=upload_id)
            raise

    async def abort_uploads(self, key: str) -> int:
        """Abort every multipart upload of the object still in progress (what a failed
        commit left when the store did not take its abort); how many."""
        with self.reaching():
            s3, bucket, name = await self.client(), self.location.bucket, self.name_of(key)
            listed = await s3.list_multipart_uploads(Bucket=bucket, Prefix=name)
            found = [u["UploadId"] for u in listed.get("Uploads", []) if u["Key"] == name]
            for upload_id in found:
                with contextlib.suppress(s3.exceptions.NoSuchUpload):
                    await s3.abort_multipart_upload(Bucket=bucket, Key=name, UploadId=upload_id)
            return len(found)

    # Reading -------------------------------------------------------------------------

    async def size(self, key: str) -> int | None:
        with self.reaching():
            return await self._size(key)

    async def _size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        s3 = await self.client()
        try:
            async with deadline():
                head = await s3.head_object(Bucket=self.location.bucket, Key=self.name_of(key))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise
        return int(head["ContentLength"])

    async def exists(self, key: str) -> bool:
        return await self.size(key) is not None

    async def read(
        self, key: str, start: int = 0, end: int | None = None, *, piece: int = CHUNK
    ) -> AsyncIterator[bytes]:
        """Stream bytes ``start`` .. ``end`` (inclusive) of a blob (a ranged GET)."""
        with self.reaching():
            async for chunk in self._read(key, start, end, piece=piece):
                yield chunk

    async def _read(
        self, key: str, start: int, end: int | None, *, piece: int
    ) -> AsyncIterator[bytes]:
        from botocore.exceptions import ClientError

        if end is not None and end < start:
            return
        s3, name = await self.client(), self.name_of(key)
        wanted = f"bytes={start}-{'' if end is None else end}"
        body, first = None, None
        try:
            # the answer and its first chunk within the deadline; then only READ_TIMEOUT
            # between chunks (a slow transfer is not cut)
            async with deadline():
                if start == 0 and end is None:
                    answer = await s3.get_object(Bucket=self.location.bucket, Key=name)
                else:
                    answer = await s3.get_object(
                        Bucket=self.location.bucket, Key=name, Range=wanted
                    )
                body = answer["Body"]
                chunks = body.iter_chunks(piece)
                first = await anext(chunks, b"")
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise FileNotFoundError(f"no blob {key}") from None
            if _code(exc) == "InvalidRange":  # starts past the end: nothing, like a file
                return
            raise
        finally:
            if first is None and body is not None:
                body.close()
        try:
            if first:
                yield first
            async for chunk in chunks:
                yield chunk
        finally:
            body.close()

    async def keys_older_than(self, cutoff: datetime, batch: int = 500) -> AsyncIterator[list[str]]:
        """Keys of objects last written before ``cutoff``; on a bucket that keeps versions,
        of noncurrent versions and delete markers too (what a crash mid-delete left)."""
        with self.reaching():
            async for keys in self._keys_older_than(cutoff, batch):
                yield keys

    async def _keys_older_than(self, cutoff: datetime, batch: int) -> AsyncIterator[list[str]]:
        s3, prefix = await self.client(), self.location.prefix
        bucket = self.location.bucket
        if not self.versioned:
            pages = s3.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": batch}
            )
            async for page in pages:
                keys = [
                    item["Key"][len(prefix) :]
                    for item in page.get("Contents", [])
                    if item["LastModified"] < cutoff and BLOB_KEY.match(item["Key"][len(prefix) :])
                ]
                if keys:
                    yield keys
            return
        newest: dict[str, datetime] = {}
        versions = s3.get_paginator("list_object_versions").paginate(
            Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": batch}
        )
        async for page in versions:
            for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                key = item["Key"][len(prefix) :]
                if BLOB_KEY.match(key):
                    newest[key] = max(newest.get(key, item["LastModified"]), item["LastModified"])
        keys = sorted(k for k, at in newest.items() if at < cutoff)
        for start in range(0, len(keys), batch):
            yield keys[start : start + batch]

    # Removing ------------------------------------------------------------------------

    async def delete(self, key: str) -> None:
        """Remove the object and every version and delete marker of it (a missing one is
        fine). Listing the versions first costs one request; a store that cannot list
        them (no versioning support) gets a plain delete."""
        with self.reaching():
            await self._delete(key)

    async def delete_many(
        self, keys: Sequence[str], gone: Callable[[str], None]
    ) -> dict[str, Exception]:
        gate = asyncio.Semaphore(DELETES_AT_ONCE)
        failed: dict[str, Exception] = {}

        async def one(key: str) -> None:
            async with gate:
                try:
                    await self.delete(key)
                except Exception as exc:  # noqa: BLE001 - the caller retries it
                    failed[key] = exc
                    return
            gone(key)

        await asyncio.gather(*(one(key) for key in keys))
        return failed

    async def _delete(self, key: str) -> None:
        from botocore.exceptions import ClientError

        s3, bucket, name = await self.client(), self.location.bucket, self.name_of(key)
        found: list[dict[str, str]] = []
        try:
            pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=name)
            async for page in pages:
                for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                    if item["Key"] == name:
                        found.append({"Key": name, "VersionId": item["VersionId"]})
        except ClientError as exc:
            if _code(exc) not in ("NotImplemented", "MethodNotAllowed", "InvalidRequest"):
                raise
        if not found:
            await s3.delete_object(Bucket=bucket, Key=name)
            return
        for start in range(0, len(found), 1000):
            answer = await s3.delete_objects(
                Bucket=bucket,
                Delete={"Objects": found[start : start + 1000], "Quiet": True},  # type: ignore[typeddict-item]
            )
            errors = answer.get("Errors", [])
            if errors:
                raise OSError(f"could not delete every version of blob {key}: {errors[0]}")

    async def remove_stale_temp_files(self, *, older_than: datetime) -> int:
        """Remove spool files last written before ``older_than`` or whose writer (on
        this host) is dead, and abort multipart uploads under the prefix started before
        ``older_than`` (a commit takes seconds, so such an upload's writer is gone)."""
        with self.reaching():
            return await self._remove_stale_temp_files(older_than)

    async def _remove_stale_temp_files(self, older_than: datetime) -> int:
        from botocore.exceptions import ClientError

        removed = await asyncio.to_thread(remove_stale_spool, self.spool_dir, older_than)
        s3, bucket = await self.client(), self.location.bucket
        pages = s3.get_paginator("list_multipart_uploads").paginate(
            Bucket=bucket, Prefix=self.location.prefix
        )
        async for page in pages:
            for upload in page.get("Uploads", []):
                if upload["Initiated"] >= older_than:
                    continue
                try:
                    await s3.abort_multipart_upload(
                        Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                except ClientError as exc:
                    if _code(exc) != "NoSuchUpload":  # another process aborted it first
                        raise
                    continue
                removed += 1
        return removed
