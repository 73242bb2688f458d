"""Models and versions: create, publish, list, load in batches."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

from tortoise.transactions import in_transaction

from storage import access, events, retention
from storage.blobs import BlobStore
from storage.errors import InvalidState, NotFound, ServiceError, Unauthenticated
from storage.models import (
    DatasetStatus,
    DeletionReason,
    EventKind,
    LoraModel,
    ModelVersion,
    TrainingDataset,
    User,
    VersionStatus,
    Visibility,
)
from storage.pages import Page, newest_first

NAME_MAX = 200
MAX_VERSIONS = 50  # per model, deleted ones included: bounds Model.versions
DESCRIPTION_MAX = 20_000


def require_viewer(viewer: int | None) -> int:
    if viewer is None:
        raise Unauthenticated("Sign in first.")
    return viewer


def _clean_name(raw: str, *, field: str = "name") -> str:
    name = " ".join(raw.split())
    if not name:
        raise ServiceError("Name must not be empty.", field=field, code="NAME_REQUIRED")
    if len(name) > NAME_MAX:
        raise ServiceError(
            f"Name must be at most {NAME_MAX} characters.", field=field, code="NAME_TOO_LONG"
        )
    return name


async def create_model(
    *, viewer: int | None, name: str, description: str, now: datetime
) -> LoraModel:
    owner = require_viewer(viewer)
    clean = _clean_name(name)
    if len(description) > DESCRIPTION_MAX:
        raise ServiceError(
            f"Description must be at most {DESCRIPTION_MAX} characters.",
            field="description",
            code="DESCRIPTION_TOO_LONG",
        )
    return await LoraModel.create(
        owner_id=owner, name=clean, description=description.strip(), created_at=now
    )


async def owned_model(viewer: int | None, model_id: int | None) -> LoraModel:
    """The viewer's own model, or NotFound exactly as for a missing id."""
    owner = require_viewer(viewer)
    model = None
    if model_id is not None:
        model = await LoraModel.get_or_none(id=model_id, deleted_at=None)
    if model is None or not access.can_manage(owner, model.owner_id):
        raise NotFound("No such model.", field="modelId")
    return model


async def owned_version(viewer: int | None, version_id: int | None) -> ModelVersion:
    owner = require_viewer(viewer)
    version = None
    if version_id is not None:
        version = await ModelVersion.get_or_none(id=version_id, deleted_at=None)
    if version is None or not access.can_manage(owner, version.owner_id):
        raise NotFound("No such model version.", field="versionId")
    return version


async def lock_draft(version_id: int) -> ModelVersion:
    """Inside a transaction: the version, locked, still a live draft."""
    version = await ModelVersion.select_for_update().get_or_none(id=version_id, deleted_at=None)
    if version is None:
        raise NotFound("No such model version.", field="versionId")
    if version.status != VersionStatus.DRAFT:
        raise InvalidState(
            "A published version's dataset cannot be replaced.",
            field="versionId",
            code="VERSION_PUBLISHED",
        )
    return version


async def create_version(
    *, viewer: int | None, model_id: int | None, name: str, now: datetime
) -> ModelVersion:
    model = await owned_model(viewer, model_id)
    clean = _clean_name(name)
    async with in_transaction():  # not onto a model being deleted at this moment
        live = await LoraModel.select_for_update().filter(id=model.id, deleted_at=None).exists()
        if not live:
            raise NotFound("No such model.", field="modelId")
        if await ModelVersion.filter(model_id=model.id).count() >= MAX_VERSIONS:
            raise ServiceError(
                f"A model may have at most {MAX_VERSIONS} versions; delete one first.",
                field="modelId",
                code="TOO_MANY_VERSIONS",
            )
        return await ModelVersion.create(
            model_id=model.id, owner_id=model.owner_id, name=clean, created_at=now
        )


async def publish_version(
    *,
    viewer: int | None,
    version_id: int | None,
    now: datetime,
    retention_seconds: int,
    reminders: Sequence[int],
) -> tuple[ModelVersion, TrainingDataset | None]:
    """Publish a draft; a private dataset's window starts now."""
    version = await owned_version(viewer, version_id)
    async with in_transaction():
        claimed = await ModelVersion.filter(
            id=version.id, status=VersionStatus.DRAFT, deleted_at=None
        ).update(status=VersionStatus.PUBLISHED, published_at=now)
        if not claimed:
            raise InvalidState(
                "This version is already published.", field="versionId", code="ALREADY_PUBLISHED"
            )
        dataset = await TrainingDataset.get_or_none(version_id=version.id)
        if dataset is not None and dataset.status in (
            DatasetStatus.PENDING_UPLOAD,
            DatasetStatus.UPLOADING,
        ):
            raise InvalidState(
                "The training dataset has not finished uploading: finish or delete it first.",
                field="versionId",
                code="UPLOAD_INCOMPLETE",
            )
        await LoraModel.filter(id=version.model_id, published_at=None).update(published_at=now)
        if dataset is not None and dataset.status == DatasetStatus.AVAILABLE:
            if dataset.visibility == Visibility.PRIVATE:
                dataset.expires_at, dataset.next_reminder_at = retention.window(
                    now, retention=retention_seconds, offsets=reminders
                )
                await dataset.save(update_fields=["expires_at", "next_reminder_at"])
            await events.record(dataset.id, EventKind.PUBLISHED, now)
    await version.refresh_from_db()
    return version, dataset


# Batched loads for DataLoaders: one query per batch, results in key order.


async def users_by_ids(ids: Iterable[int]) -> dict[int, User]:
    return {u.id: u for u in await User.filter(id__in=list(ids))}


async def models_by_ids(ids: Iterable[int]) -> dict[int, LoraModel]:
    return {m.id: m for m in await LoraModel.filter(id__in=list(ids))}


async def versions_by_ids(ids: Iterable[int]) -> dict[int, ModelVersion]:
    return {v.id: v for v in await ModelVersion.filter(id__in=list(ids))}


async def versions_by_model_ids(
    ids: Iterable[int], *, viewer: int | None
) -> dict[int, list[ModelVersion]]:
    """Each model's versions the viewer may see, newest first."""
    grouped: dict[int, list[ModelVersion]] = defaultdict(list)
    rows = ModelVersion.filter(access.visible_versions_q(viewer), model_id__in=list(ids))
    for version in await rows.order_by("-created_at", "-id"):
        grouped[version.model_id].append(version)
    return grouped


async def models_page(
    *, viewer: int | None, owner_id: int | None = None, first: int | None, after: str | None
) -> Page[LoraModel]:
    query = LoraModel.filter(access.visible_models_q(viewer))
    if owner_id is not None:
        query = query.filter(owner_id=owner_id)
    return await newest_first(query, first=first, after=after)


async def _erase_datasets(dataset_ids: list[int], *, now: datetime, blobs: BlobStore) -> None:
    """Delete claimed datasets' bytes now, leaving tombstones (a crash here is finished
    by the sweep, which completes claims stuck in DELETING)."""
    for dataset_id in dataset_ids:
        await retention.complete_deletion(dataset_id, now=now, blobs=blobs)


async def _claim_for_model_deletion(dataset_ids: list[int], *, now: datetime) -> None:
    for dataset_id in dataset_ids:
        await retention.claim(dataset_id, reason=DeletionReason.MODEL_DELETED, now=now)


async def _refresh_published(model_id: int) -> None:
    """A model stays public only while one of its versions is published."""
    published = await ModelVersion.filter(
        model_id=model_id, status=VersionStatus.PUBLISHED, deleted_at=None
    ).exists()
    if not published:
        await LoraModel.filter(id=model_id).update(published_at=None)


async def delete_version(
    *, viewer: int | None, version_id: int | None, now: datetime, blobs: BlobStore
) -> tuple[ModelVersion, list[int]]:
    """Delete a version; its dataset's bytes go now, leaving the owner a tombstone."""
    version = await owned_version(viewer, version_id)
    async with in_transaction():  # the version goes and its dataset is claimed, or neither
        await ModelVersion.filter(id=version.id, deleted_at=None).update(deleted_at=now)
        ids = [d.id for d in await TrainingDataset.filter(version_id=version.id).only("id")]
        await _claim_for_model_deletion(ids, now=now)
        await _refresh_published(version.model_id)
    await _erase_datasets(ids, now=now, blobs=blobs)
    await version.refresh_from_db()
    return version, ids


async def delete_model(
    *, viewer: int | None, model_id: int | None, now: datetime, blobs: BlobStore
) -> tuple[LoraModel, list[int]]:
    """Delete a model and its versions; their datasets' bytes go now."""
    model = await owned_model(viewer, model_id)
    async with in_transaction():  # everything is marked and claimed, or nothing
        await LoraModel.filter(id=model.id, deleted_at=None).update(deleted_at=now)
        await ModelVersion.filter(model_id=model.id, deleted_at=None).update(deleted_at=now)
        rows = await TrainingDataset.filter(version__model_id=model.id).only("id")
        ids = [d.id for d in rows]
        await _claim_for_model_deletion(ids, now=now)
    await _erase_datasets(ids, now=now, blobs=blobs)
    await model.refresh_from_db()
    return model, ids
