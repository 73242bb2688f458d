"""Data exports: one zip of everything a user owns, sealed like any blob.

``requestDataExport`` records a ``PENDING`` export (one at a time per account) and
tells the scheduler; a job (:func:`build`) claims it, writes the archive through the
sealed store (never a plaintext byte on disk), marks it ``READY`` for
``LORASHELF_EXPORT_RETENTION`` and notifies the owner (the live subscription fires).
Its signed download link works for the owner alone until ``expires_at``; then
:func:`shred` destroys its key and deletes its bytes, like a private dataset's.

The archive: :mod:`storage.export_archive`.

An export never outlives what it holds: it ends with the first window among the
private datasets and withheld header keys it holds, and at once (:func:`withdraw`) when
one of its owner's datasets is deleted or a header's window moves earlier.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from storage import changes, export_archive
from storage.crypto import keystore
from storage.db.enums import ExportStatus, NotificationKind
from storage.db.models import DataExport, Notification
from storage.db.pages import Page, newest_first
from storage.privacy import access, lookups
from storage.runtime import Runtime
from storage.system.claim_holder import holder

log = logging.getLogger("lorashelf.exports")

LEASE = 120  # seconds a build's claim lasts without a heartbeat before another takes it
REBUILDS = 3  # builds in a row whose contents' window ended meanwhile, before giving up
NOBODY = 0  # an owner id no account has (ids start at 1)


async def request_export(rt: Runtime, viewer: int | None) -> DataExport:
    """Ask for an export of everything the viewer owns; one already on its way is
    returned instead of a second."""
    owner = lookups.require_viewer(viewer)
    waiting = await DataExport.filter(
        owner_id=owner, status__in=(ExportStatus.PENDING, ExportStatus.BUILDING)
    ).first()
    if waiting is not None:
        return waiting
    now = rt.clock.now()
    async with changes.transaction(now, public=False):  # the owner's alone
        export = await DataExport.create(
            owner_id=owner, status=ExportStatus.PENDING, created_at=now
        )
    # the sweep builds a pending export the scheduler was not told of
    await changes.after_commit("scheduling an export", rt.scheduler.export_changed(export.id))
    return export


async def exports_page(
    viewer: int | None, *, owner_id: int, first: int | None, after: str | None
) -> Page[DataExport]:
    """A user's exports as this viewer may see them (the owner only), newest first."""
    rows = DataExport.filter(access.visible_exports_q(viewer), owner_id=owner_id)
    return await newest_first(rows, tag="exports", first=first, after=after)


async def visible(viewer: int | None, export_id: int) -> DataExport | None:
    """An export if this viewer may see it (its owner), else None."""
    return await DataExport.filter(access.visible_exports_q(viewer), id=export_id).first()


# Building ---------------------------------------------------------------------------


async def _claim(export_id: int, now: datetime) -> DataExport | None:
    stale = now - timedelta(seconds=LEASE)
    mine = {"status": ExportStatus.BUILDING, "claimed_at": now, "claimed_by": holder()}
    claimed = await DataExport.filter(id=export_id, status=ExportStatus.PENDING).update(**mine)
    if not claimed:
        claimed = await DataExport.filter(
            id=export_id, status=ExportStatus.BUILDING, claimed_at__lte=stale
        ).update(**mine)
    return await DataExport.get_or_none(id=export_id) if claimed else None


async def build(rt: Runtime, export_id: int) -> bool:
    """Build a pending export (or one whose builder died); whether this call did."""
    export = await _claim(export_id, rt.clock.now())
    if export is None:
        return False
    for _ in range(REBUILDS):
        writer = rt.blobs.writer()
        try:
            archive = export_archive.Archive(writer)
            holds_until = await export_archive.write(rt, archive, export.owner_id)
            await archive.close()
            key = await writer.commit()
        except BaseException:
            await writer.abort()
            await DataExport.filter(id=export_id, status=ExportStatus.BUILDING).update(
                status=ExportStatus.PENDING, claimed_at=None, claimed_by=None
            )
            raise
        now = rt.clock.now()
        if holds_until is None or holds_until > now:
            break
        # a window of what it holds ended while it was written: written again without it
        await rt.blobs.delete(key)
    else:
        await DataExport.filter(id=export_id, status=ExportStatus.BUILDING).update(
            status=ExportStatus.PENDING, claimed_at=None, claimed_by=None
        )
        return False
    # never kept past the window of anything it holds (a private dataset, a header's
    # withheld keys): it ends with the first of them
    expires = now + timedelta(seconds=rt.settings.export_retention)
    if holds_until is not None:
        expires = min(expires, holds_until)
    done = await DataExport.filter(id=export_id, status=ExportStatus.BUILDING).update(
        status=ExportStatus.READY,
        blob_key=key,
        size_bytes=writer.size,
        ready_at=now,
        expires_at=expires,
        claimed_at=None,
        claimed_by=None,
    )
    if not done:  # the account went meanwhile, or something it holds was deleted
        await rt.blobs.delete(key)
        return False
    notice = await Notification.create(
        user_id=export.owner_id,
        kind=NotificationKind.EXPORT_READY,
        offset_seconds=0,
        window_end=expires,
        message=(
            f"Your data export is ready ({writer.size:,} bytes). Download it from your "
            f"account page before {expires:%Y-%m-%d %H:%M} UTC; it is deleted then."
        ),
        created_at=now,
    )
    await rt.deliver(notice)
    await rt.scheduler.export_changed(export_id)
    log.info("data export %s ready", export_id)
    return True


# Shredding --------------------------------------------------------------------------


async def withdraw(
    owner_ids: Iterable[int], now: datetime, *, until: datetime | None = None
) -> int:
    """Something of these owners' was deleted (or its window moved earlier, to
    ``until``): their ready exports, which may hold it, end then (now by default), and
    an export being built is built again (its builder's result is refused). How many
    ready exports were cut short.

    An export ended now has its key destroyed in the caller's transaction, with the
    claim on what it holds: its bytes are unreadable before that dataset's own key goes
    and its receipt is signed, not at the next sweep (which deletes them).

    The same statements run whatever it is given, none included: a caller's work must
    not say whether something private was deleted (an operator's takedown)."""
    owners = sorted(set(owner_ids)) or [NOBODY]
    end = until or now
    ended = await DataExport.filter(
        owner_id__in=owners, status=ExportStatus.READY, expires_at__gt=end
    ).update(expires_at=end)
    await keystore.destroy_selected(
        DataExport.filter(
            owner_id__in=owners, status=ExportStatus.READY, expires_at__lte=now
        ).values("blob_key")
    )
    await DataExport.filter(owner_id__in=owners, status=ExportStatus.BUILDING).update(
        status=ExportStatus.PENDING, claimed_at=None, claimed_by=None
    )
    return int(ended)


async def due(now: datetime, *, limit: int) -> list[int]:
    """Exports whose window has ended (their bytes still kept)."""
    rows = (
        DataExport.filter(status=ExportStatus.READY, expires_at__lte=now)
        .order_by("expires_at")
        .limit(limit)
    )
    return [row.id for row in await rows.only("id")]


async def waiting(now: datetime, *, older_than: int, limit: int) -> list[int]:
    """Exports asked for ``older_than`` seconds ago and not built (their job was lost,
    or their builder died)."""
    cutoff = now - timedelta(seconds=older_than)
    pending = DataExport.filter(status=ExportStatus.PENDING, created_at__lte=cutoff)
    stale = DataExport.filter(
        status=ExportStatus.BUILDING, claimed_at__lte=now - timedelta(seconds=LEASE)
    )
    found = [row.id for row in await pending.order_by("id").limit(limit).only("id")]
    found += [row.id for row in await stale.order_by("id").limit(limit).only("id")]
    return found[:limit]


async def shred(rt: Runtime, export_id: int) -> bool:
    """An export whose window ended: its key destroyed, then its bytes; whether this call
    did it. Safe to rerun."""
    now = rt.clock.now()
    export = await DataExport.get_or_none(
        id=export_id, status=ExportStatus.READY, expires_at__lte=now
    )
    if export is None or export.blob_key is None:
        return False
    await keystore.destroy([export.blob_key])  # gone already if it was withdrawn
    await keystore.settle()
    await rt.blobs.remove_bytes(export.blob_key)
    done = await DataExport.filter(id=export_id, status=ExportStatus.READY).update(
        status=ExportStatus.EXPIRED, blob_key=None, shredded_at=now
    )
    if done:
        await rt.scheduler.export_changed(export_id)
    return bool(done)
