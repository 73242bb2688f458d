"""Which blob store a configuration names (``LORASHELF_BLOB_URL``)."""

from __future__ import annotations

from storage.blobs.base import RawStore
from storage.blobs.local import LocalBlobStore
from storage.blobs.s3 import S3BlobStore
from storage.config.settings import Settings


def open_blob_store(settings: Settings) -> RawStore:
    """The raw store ``LORASHELF_BLOB_URL`` names: a directory (``file://``) or an
    S3-compatible bucket (``s3://``, spooling uploads under the data dir). The services
    use it through the sealed store (:mod:`storage.blobs.sealed`), which
    :func:`jobs.assembly.assemble` puts over it."""
    if settings.blob_url.startswith("s3://"):
        return S3BlobStore.from_url(settings.blob_url, spool_dir=settings.data_dir / "spool")
    return LocalBlobStore(settings.blob_dir)
