"""S3-compatible object store: ``LORASHELF_BLOB_URL=s3://bucket/prefix``.

Configured by the standard AWS variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_ENDPOINT_URL_S3`` for a store that is
not AWS), through aiobotocore: one client per process, made in the event loop on first
use and closed at shutdown (:meth:`S3BlobStore.close`).

- Uploads are spooled to a local file (the archive and safetensors checks read it),
  then sent on commit: one ``PutObject`` up to :data:`PART` bytes, else a multipart
  upload of :data:`PART`-sized parts, aborted if anything fails. A multipart upload a
  dead process left behind is aborted by :meth:`S3BlobStore.remove_stale_temp_files`.
- Reads are ranged ``GetObject`` calls, streamed.
- Deletes are idempotent, and final: the bucket must not keep versions. It is checked
  when the client is made, and a bucket whose versioning is ``Enabled`` or
  ``Suspended`` is refused (a deleted object would survive as a noncurrent version).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storage.blobs.base import BLOB_KEY, CHUNK
from storage.blobs.spool import SpoolWriter, remove_stale_spool
from storage.config.parse import ConfigError, parse_s3_url

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client

PART = 8 * 1024 * 1024  # bytes of a multipart upload's part (S3's minimum is 5 MiB)
MAX_PARTS = 10_000  # S3's limit; parts grow past PART for objects beyond 80 GB
_MISSING = {"NoSuchKey", "NotFound", "404"}


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # "" or ending in "/"

    @classmethod
    def parse(cls, url: str) -> S3Location:
        return cls(*parse_s3_url("LORASHELF_BLOB_URL", url))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


def _code(exc: Exception) -> str:
    response: dict[str, Any] = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class S3BlobWriter(SpoolWriter):
    def __init__(self, store: S3BlobStore):
        super().__init__(store.spool_dir)
        self._store = store

    async def commit(self) -> str:
        await self.seal()
        key = await self._store.upload(self._tmp, self.size)
        self._tmp.unlink(missing_ok=True)
        return key


class S3BlobStore:
    """Blobs as objects ``<prefix><key>`` of one bucket, spooled in ``spool_dir``."""

    def __init__(self, location: S3Location, *, spool_dir: Path):
        self.location = location
        self.spool_dir = spool_dir
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self._client: S3Client | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str, *, spool_dir: Path) -> S3BlobStore:
        return cls(S3Location.parse(url), spool_dir=spool_dir)

    # The client ----------------------------------------------------------------------

    async def connect(self) -> None:
        await self.client()

    async def client(self) -> S3Client:
        """This process's client, made on first use (in the running event loop) after
        checking that the bucket is there and keeps no versions."""
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                from aiobotocore.config import AioConfig
                from aiobotocore.session import get_session

                stack = contextlib.AsyncExitStack()
                try:
                    client = await stack.enter_async_context(
                        get_session().create_client(
                            "s3",
                            # botocore reads AWS_DEFAULT_REGION itself, not AWS_REGION
                            region_name=os.environ.get("AWS_REGION") or None,
                            # retries: botocore's (AWS_RETRY_MODE, AWS_MAX_ATTEMPTS); waits
                            # bounded so a hung store cannot hold a request for minutes
                            config=AioConfig(connect_timeout=10, read_timeout=60),
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
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

        where = f"LORASHELF_BLOB_URL={self.location}"
        try:
            answer = await client.get_bucket_versioning(Bucket=self.location.bucket)
        except NoCredentialsError:
            raise ConfigError(
                f"{where}: no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
            ) from None
        except EndpointConnectionError as exc:
            raise ConfigError(
                f"{where}: the object store does not answer at {exc.kwargs.get('endpoint_url')} "
                "(AWS_ENDPOINT_URL_S3, AWS_REGION)"
            ) from None
        except ClientError as exc:
            raise ConfigError(
                f"{where}: the bucket cannot be used ({_code(exc) or exc}); it must exist and "
                "these credentials must reach it"
            ) from None
        status = answer.get("Status")
        if status in ("Enabled", "Suspended"):
            raise ConfigError(
                f"{where}: the bucket's object versioning is {status}; lorashelf refuses it, "
                "because a deleted dataset would survive as a noncurrent version. Use a bucket "
                "that has never had versioning enabled"
            )

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    def name_of(self, key: str) -> str:
        """The object's name in the bucket."""
        if not BLOB_KEY.match(key):
            raise ValueError("malformed blob key")
        return f"{self.location.prefix}{key}"

    # Writing -------------------------------------------------------------------------

    def writer(self) -> S3BlobWriter:
        return S3BlobWriter(self)

    async def upload(self, path: Path, size: int) -> str:
        """Send a sealed spool file as a new object; its key."""
        s3, bucket = await self.client(), self.location.bucket
        key = secrets.token_hex(16)
        name = self.name_of(key)
        if size <= PART:
            body = await asyncio.to_thread(path.read_bytes)
            await s3.put_object(Bucket=bucket, Key=name, Body=body)
            return key
        part_size = max(PART, -(-size // MAX_PARTS))
        upload_id = (await s3.create_multipart_upload(Bucket=bucket, Key=name))["UploadId"]
        try:
            parts: list[dict[str, Any]] = []
            handle = await asyncio.to_thread(path.open, "rb")
            try:
                while chunk := await asyncio.to_thread(handle.read, part_size):
                    number = len(parts) + 1
                    sent = await s3.upload_part(
                        Bucket=bucket, Key=name, UploadId=upload_id, PartNumber=number, Body=chunk
                    )
                    parts.append({"ETag": sent["ETag"], "PartNumber": number})
            finally:
                handle.close()
            await s3.complete_multipart_upload(
                Bucket=bucket,
                Key=name,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
            )
        except BaseException:
            # Its parts would be kept (and billed) until aborted; a failure here leaves it
            # to remove_stale_temp_files.
            with contextlib.suppress(Exception):
                await s3.abort_multipart_upload(Bucket=bucket, Key=name, UploadId=upload_id)
            raise
        return key

    # Reading -------------------------------------------------------------------------

    async def size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        s3 = await self.client()
        try:
            head = await s3.head_object(Bucket=self.location.bucket, Key=self.name_of(key))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise
        return int(head["ContentLength"])

    async def exists(self, key: str) -> bool:
        return await self.size(key) is not None

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream bytes ``start`` .. ``end`` (inclusive) of a blob (a ranged GET)."""
        from botocore.exceptions import ClientError

        if end is not None and end < start:
            return
        s3, name = await self.client(), self.name_of(key)
        try:
            if start == 0 and end is None:
                answer = await s3.get_object(Bucket=self.location.bucket, Key=name)
            else:
                wanted = f"bytes={start}-{'' if end is None else end}"
                answer = await s3.get_object(Bucket=self.location.bucket, Key=name, Range=wanted)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise FileNotFoundError(f"no blob {key}") from None
            if _code(exc) == "InvalidRange":  # starts past the end: nothing, like a file
                return
            raise
        body = answer["Body"]
        try:
            async for chunk in body.iter_chunks(CHUNK):
                yield chunk
        finally:
            body.close()

    async def keys_older_than(self, cutoff: datetime, batch: int = 500) -> AsyncIterator[list[str]]:
        s3, prefix = await self.client(), self.location.prefix
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.location.bucket, Prefix=prefix, PaginationConfig={"PageSize": batch}
        )
        async for page in pages:
            keys = [
                item["Key"][len(prefix) :]
                for item in page.get("Contents", [])
                if item["LastModified"] < cutoff and BLOB_KEY.match(item["Key"][len(prefix) :])
            ]
            if keys:
                yield keys

    # Removing ------------------------------------------------------------------------

    async def delete(self, key: str) -> None:
        """Remove the object; a missing one is fine (S3's DeleteObject says so too)."""
        s3 = await self.client()
        await s3.delete_object(Bucket=self.location.bucket, Key=self.name_of(key))

    async def remove_stale_temp_files(self, *, older_than: datetime) -> int:
        """Remove spool files last written before ``older_than`` or whose writer (on
        this host) is dead, and abort multipart uploads under the prefix started before
        ``older_than`` (a commit takes seconds, so such an upload's writer is gone)."""
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
