"""Models and versions: create, publish, delete, list, load in batches.

Service functions take the :class:`~storage.runtime.Runtime` first and keyword
arguments after it; they find objects only through :mod:`storage.lookups`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from tortoise.transactions import in_transaction

from storage import access, events, lookups, retention
from storage.errors import InvalidState, NotFound, ServiceError
from storage.models import (
    DatasetStatus,
    DeletionReason,
    EventKind,
    LoraModel,
    ModelVersion,
    TrainingDataset,
    VersionStatus,
    Visibility,
)
from storage.pages import Page, newest_first
from storage.runtime import Runtime

NAME_MAX = 200
MAX_VERSIONS = 50  # per model, deleted ones included: bounds Model.versions
DESCRIPTION_MAX = 20_000


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
    rt: Runtime, viewer: int | None, *, name: str, description: str
) -> LoraModel:
    owner = lookups.require_viewer(viewer)
    clean = _clean_name(name)
    if len(description) > DESCRIPTION_MAX:
        raise ServiceError(
            f"Description must be at most {DESCRIPTION_MAX} characters.",
            field="description",
            code="DESCRIPTION_TOO_LONG",
        )
    return await LoraModel.create(
        owner_id=owner, name=clean, description=description.strip(), created_at=rt.clock.now()
    )


async def lock_draft(version_id: int) -> ModelVersion:
    """Inside a transaction: the version, locked, still a live draft."""
    version = await ModelVersion.select_for_update().get_or_none(id=version_id, deleted_at=None)
    if version is None:
        raise NotFound(lookups.VERSION.missing, field=lookups.VERSION.field)
    if version.status != VersionStatus.DRAFT:
        raise InvalidState(
            "A published version's dataset cannot be replaced.",
            field="versionId",
            code="VERSION_PUBLISHED",
        )
    return version


async def create_version(
    rt: Runtime, viewer: int | None, *, model_id: int | None, name: str
) -> ModelVersion:
    model = await lookups.owned(lookups.MODEL, viewer, model_id)
    clean = _clean_name(name)
    async with in_transaction():  # not onto a model being deleted at this moment
        live = await LoraModel.select_for_update().filter(id=model.id, deleted_at=None).exists()
        if not live:
            raise NotFound(lookups.MODEL.missing, field=lookups.MODEL.field)
        if await ModelVersion.filter(model_id=model.id).count() >= MAX_VERSIONS:
            raise ServiceError(
                f"A model may have at most {MAX_VERSIONS} versions; delete one first.",
                field="modelId",
                code="TOO_MANY_VERSIONS",
            )
        return await ModelVersion.create(
            model_id=model.id, owner_id=model.owner_id, name=clean, created_at=rt.clock.now()
        )


async def publish_version(
    rt: Runtime, viewer: int | None, *, version_id: int | None
) -> ModelVersion:
    """Publish a draft; a private dataset's window starts now."""
    version = await lookups.owned(lookups.VERSION, viewer, version_id)
    now = rt.clock.now()
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
            window = rt.policy.window_for(
                private=dataset.visibility == Visibility.PRIVATE, published=True, start=now
            )
            await TrainingDataset.filter(id=dataset.id).update(**window.fields())
            await events.record(dataset.id, EventKind.PUBLISHED, now)
    if dataset is not None:
        await rt.scheduler.dataset_changed(dataset.id)
    await version.refresh_from_db()
    return version


async def _refresh_published(model_id: int) -> None:
    """A model stays public only while one of its versions is published."""
    published = await ModelVersion.filter(
        model_id=model_id, status=VersionStatus.PUBLISHED, deleted_at=None
    ).exists()
    if not published:
        await LoraModel.filter(id=model_id).update(published_at=None)


async def _claim_datasets(dataset_ids: list[int], *, now: datetime) -> None:
    for dataset_id in dataset_ids:
        await retention.claim(dataset_id, reason=DeletionReason.MODEL_DELETED, now=now)


async def delete_version(
    rt: Runtime, viewer: int | None, *, version_id: int | None
) -> ModelVersion:
    """Delete a version; its dataset's bytes go now, leaving the owner a tombstone."""
    version = await lookups.owned(lookups.VERSION, viewer, version_id)
    now = rt.clock.now()
    async with in_transaction():  # the version goes and its dataset is claimed, or neither
        await ModelVersion.filter(id=version.id, deleted_at=None).update(deleted_at=now)
        ids = [d.id for d in await TrainingDataset.filter(version_id=version.id).only("id")]
        await _claim_datasets(ids, now=now)
        await _refresh_published(version.model_id)
    # A crash from here on is finished by the sweep, which completes stuck claims.
    await retention.delete_claimed(rt, ids, now=now)
    await version.refresh_from_db()
    return version


async def delete_model(rt: Runtime, viewer: int | None, *, model_id: int | None) -> LoraModel:
    """Delete a model and its versions; their datasets' bytes go now."""
    model = await lookups.owned(lookups.MODEL, viewer, model_id)
    now = rt.clock.now()
    async with in_transaction():  # everything is marked and claimed, or nothing
        await LoraModel.filter(id=model.id, deleted_at=None).update(deleted_at=now)
        await ModelVersion.filter(model_id=model.id, deleted_at=None).update(deleted_at=now)
        rows = await TrainingDataset.filter(version__model_id=model.id).only("id")
        ids = [d.id for d in rows]
        await _claim_datasets(ids, now=now)
    await retention.delete_claimed(rt, ids, now=now)
    await model.refresh_from_db()
    return model


# Batched loads and listings ----------------------------------------------------


async def versions_by_model_ids(
    ids: Iterable[int], *, viewer: int | None
) -> dict[int, list[ModelVersion]]:
    """Each model's versions the viewer may see, newest first: one query."""
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
