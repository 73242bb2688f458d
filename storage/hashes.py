"""A weights file's identity as each viewer sees it: the size and hashes of the file they
download (the original with its withheld header keys, or the public file), and the
version a hash names (``modelVersionByHash``), which never lets anybody confirm a guess
of the training data by hashing candidate headers."""

from __future__ import annotations

from datetime import datetime

from tortoise.expressions import Q, Subquery

from storage.db.enums import DatasetStatus
from storage.db.models import ModelFile, ModelVersion
from storage.privacy import access


def size_of(file: ModelFile, *, original: bool) -> int:
    """The size of the file a download sends: the original, or the public file (its
    public header in place of the original one); the declared size until uploaded."""
    size = int(file.size_bytes)
    if original or file.header_size is None or file.public_header_size is None:
        return size
    return size - int(file.header_size) + int(file.public_header_size)


def sha256_of(file: ModelFile, *, original: bool) -> str | None:
    """The SHA-256 of the original or of the public file; None until uploaded."""
    return file.sha256 if original else file.public_sha256


HASH_LENGTHS = (10, 64)  # AutoV2, and SHA-256 / AutoV3


async def version_by_hash(viewer: int | None, value: str, *, now: datetime) -> ModelVersion | None:
    """The newest version the viewer may see with a file of this hash: the SHA-256 or
    AutoV2 of the file as the public downloads it, or its AutoV3 (any case).

    The hashes of the original file (withheld keys included) identify it only for
    those who may see those keys: anybody else could otherwise confirm a guess of the
    training data by hashing candidate headers. One query, whatever matches.
    """
    wanted = value.strip().lower()
    if len(wanted) not in HASH_LENGTHS or not all(c in "0123456789abcdef" for c in wanted):
        wanted = ""  # matches nothing, after the same query
    if len(wanted) == 10:
        public, original = Q(public_auto_v2=wanted), Q(auto_v2=wanted)
    else:
        public, original = Q(public_sha256=wanted) | Q(auto_v3=wanted), Q(sha256=wanted)
    matching = ModelFile.filter(
        access.visible_files_q(viewer),
        public | (original & access.sees_withheld_keys_q(viewer, now)),
        status=DatasetStatus.AVAILABLE,
    ).values("version_id")
    return (
        await ModelVersion.filter(access.visible_versions_q(viewer), id__in=Subquery(matching))
        .order_by("-id")
        .first()
    )
