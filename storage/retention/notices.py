"""The owner's notices about a dataset's retention: the reminder before deletion and
the notice after it, with their wording.

A notice is stored in the same transaction as the change it reports: the stored row
*is* the in-app notification and the record that it was sent (a unique constraint
makes it once per dataset, kind, offset and window, ever). Its e-mail, if the owner
has a confirmed address and wants it, is queued in that same transaction
(:mod:`storage.mail.outbox`). Listing, counting and marking read are the inbox's
(:mod:`storage.notifications`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from storage.config.parse import describe_duration
from storage.config.settings import Settings
from storage.db import bulk, reads
from storage.db.enums import DeletionReason, EventKind, NotificationKind
from storage.db.models import (
    ModelVersion,
    Notification,
    TrainingDataset,
    new_public_id,
)
from storage.mail import messages, outbox
from storage.retention import history


async def _names(dataset: TrainingDataset) -> tuple[str, str]:
    """The dataset's model and version names, in one query."""
    return (await _names_of([dataset]))[dataset.version_id]


async def _names_of(datasets: Sequence[TrainingDataset]) -> dict[int, tuple[str, str]]:
    """(model name, version name) by version, for ``datasets``, in one query."""
    rows = await ModelVersion.filter(id__in={d.version_id for d in datasets}).values_list(
        "id", "name", "model__name"
    )
    return {int(v): (str(model), str(version)) for v, version, model in rows}


async def record_reminder(
    settings: Settings,
    dataset: TrainingDataset,
    *,
    offset: int,
    now: datetime,
    late: bool = False,
) -> Notification | None:
    """Store the reminder for this dataset, offset and window, once ever (a unique
    constraint), with its history entry. None if it was already sent."""
    assert dataset.expires_at is not None
    model, version = await _names(dataset)
    left = describe_duration(max(1, round((dataset.expires_at - now).total_seconds())))
    message = (
        f'Your private training dataset "{dataset.filename}" for {model} {version} will be '
        f"deleted on {messages.moment(dataset.expires_at)} (in about {left}). Download it "
        "before then if you still need it."
    )
    if late:
        message += " (This reminder comes late: it could not be sent on time.)"
    try:
        async with in_transaction():
            notification = await Notification.create(
                user_id=dataset.owner_id,
                dataset_id=dataset.id,
                kind=NotificationKind.DATASET_EXPIRING,
                offset_seconds=offset,
                window_end=dataset.expires_at,
                message=message,
                created_at=now,
            )
            await history.record(
                dataset.id, EventKind.REMINDED, now, f"{describe_duration(offset)} before deletion"
            )
            await outbox.enqueue_notice(settings, notification, now=now)
    except IntegrityError:
        return None
    return notification


DELETED_BECAUSE = {
    DeletionReason.EXPIRED: "its retention window ended.",
    DeletionReason.TAKEN_DOWN: (
        "the operators of this site took the version down and the law required its removal."
    ),
}
"""The deletions the owner is told about (they did not ask for them), and why."""


def _deleted_message(
    dataset: TrainingDataset, model: str, version: str, *, now: datetime, reason: DeletionReason
) -> str:
    return (
        f'Your private training dataset "{dataset.filename}" for {model} {version} was '
        f"deleted on {messages.moment(now)}: {DELETED_BECAUSE[reason]}"
    )


async def record_deletion(
    settings: Settings,
    dataset: TrainingDataset,
    *,
    now: datetime,
    reason: DeletionReason = DeletionReason.EXPIRED,
) -> Notification:
    """The owner's notice that a private dataset was deleted without their asking: at
    the end of its window, or by a takedown (inside the transaction that writes the
    tombstone)."""
    model, version = await _names(dataset)
    message = _deleted_message(dataset, model, version, now=now, reason=reason)
    notification = await Notification.create(
        user_id=dataset.owner_id,
        dataset_id=dataset.id,
        kind=NotificationKind.DATASET_DELETED,
        offset_seconds=0,
        window_end=dataset.expires_at or now,
        message=message,
        created_at=now,
    )
    await outbox.enqueue_notice(settings, notification, now=now)
    return notification


async def deletion_notices(
    datasets: list[TrainingDataset],
    *,
    when: dict[int, datetime],
    reasons: dict[int, DeletionReason],
) -> dict[int, dict[str, Any]]:
    """The deletion notices of a batch of datasets (:func:`record_deletion`'s), by
    dataset, as rows not stored yet (the names read in one query): made ahead of the
    transaction that stores them with :func:`store_deletions`."""
    if not datasets:
        return {}
    names = await _names_of(datasets)
    made = {}
    for dataset in datasets:
        model, version = names[dataset.version_id]
        now = when[dataset.id]
        made[dataset.id] = {
            "public_id": new_public_id(),
            "user_id": dataset.owner_id,
            "dataset_id": dataset.id,
            "kind": NotificationKind.DATASET_DELETED,
            "offset_seconds": 0,
            "window_end": dataset.expires_at or now,
            "message": _deleted_message(
                dataset, model, version, now=now, reason=reasons[dataset.id]
            ),
            "created_at": now,
        }
    return made


async def store_deletions(settings: Settings, rows: list[dict[str, Any]]) -> list[Notification]:
    """Store notices made by :func:`deletion_notices` (inside the transaction that writes
    their tombstones) in one ``INSERT``, each e-mail queued as :func:`record_deletion`
    does; the notices stored."""
    stored = reads.instances(Notification, await bulk.insert(Notification, rows, returning=("*",)))
    if settings.smtp_url:
        for notification in stored:
            await outbox.enqueue_notice(settings, notification, now=notification.created_at)
    return stored
