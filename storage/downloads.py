"""Download links as they are used: a link's first use, its full download, forgetting.

A signed download URL (``storage.signing.DownloadGrant``) carries a random link id.
The first request through it is recorded once (for a dataset: one history entry per
link, however many ranged requests it serves); a weights file's download counts once,
when the link that served its first byte serves its last one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F

from storage.db.models import DownloadLink, LoraModel, ModelFile, ModelVersion


async def first_use(
    link: str, *, kind: str, object_id: int, now: datetime, from_start: bool
) -> bool:
    """Note a request through a link; True when it is the link's first."""
    try:
        await DownloadLink.create(
            link=link, kind=kind, object_id=object_id, first_used_at=now, from_start=from_start
        )
    except IntegrityError:
        if from_start:
            await DownloadLink.filter(link=link, from_start=False).update(from_start=True)
        return False
    return True


async def completed(link: str, file: ModelFile, *, by_owner: bool) -> bool:
    """The link served a file's last byte: count one download for its version and model
    if the same link served the first byte too, once per link, and not for the owner.
    Returns whether this call counted it."""
    if by_owner:
        return False
    counted = await DownloadLink.filter(link=link, from_start=True, counted=False).update(
        counted=True
    )
    if not counted:
        return False
    version = await ModelVersion.get(id=file.version_id)
    await ModelVersion.filter(id=version.id).update(download_count=F("download_count") + 1)
    await LoraModel.filter(id=version.model_id).update(download_count=F("download_count") + 1)
    return True


async def forget(now: datetime, *, older_than: int) -> int:
    """Forget links first used long ago: their URLs expired (minutes after they were
    minted), so they can never be used, or counted, again."""
    cutoff = now - timedelta(seconds=older_than)
    return int(await DownloadLink.filter(first_used_at__lt=cutoff).delete())
