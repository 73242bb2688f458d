"""Models and versions: create, publish, delete, list, load in batches.

Service functions take the :class:`~storage.runtime.Runtime` first and keyword
arguments after it; they find objects only through :mod:`storage.privacy.lookups`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from tortoise.expressions import Q, Subquery
from tortoise.queryset import QuerySet

from storage import changes, files, search
from storage.db import reads
from storage.db.enums import (
    BaseModel,
    DatasetStatus,
    DeletionReason,
    EventKind,
    LoraType,
    ModelSort,
    VersionStatus,
    Visibility,
)
from storage.db.models import LoraModel, ModelFile, ModelTag, ModelVersion, TrainingDataset, User
from storage.db.pages import Page, largest_first, newest, newest_first, newest_first_read
from storage.db.reads import Fixed
from storage.errors import InvalidState, NotFound, ServiceError
from storage.privacy import access, lookups
from storage.retention import deletion, header_firewall, history
from storage.runtime import Runtime

NAME_MAX = 200
MAX_VERSIONS = 50  # per model, deleted ones included: bounds Model.versions
DEFAULT_VERSIONS = 10  # Model.versions without ``first``: the newest ten
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


def _clean_description(raw: str) -> str:
    if len(raw) > DESCRIPTION_MAX:
        raise ServiceError(
            f"Description must be at most {DESCRIPTION_MAX:,} characters.",
            field="description",
            code="DESCRIPTION_TOO_LONG",
        )
    return raw.strip()


async def create_model(
    rt: Runtime,
    viewer: int | None,
    *,
    name: str,
    description: str,
    type: LoraType = LoraType.LORA,
    tags: list[str] | None = None,
    nsfw: bool = False,
) -> LoraModel:
    owner = lookups.require_viewer(viewer)
    clean = _clean_name(name)
    text = _clean_description(description)
    tag_list = search.clean_tags(tags or [])
    limit = rt.settings.limits.max_models_per_user
    async with changes.transaction(rt.clock.now(), public=False):  # a model without versions
        await User.select_for_update().filter(id=owner).first()  # one creation at a time
        kept = await LoraModel.filter(owner_id=owner, deleted_at=None).count()
        if kept >= limit:
            raise ServiceError(
                f"You have {kept:,} models; an account may keep at most {limit:,}. "
                "Delete one to make room.",
                code="QUOTA_MODELS",
            )
        model = await LoraModel.create(
            owner_id=owner,
            name=clean,
            description=text,
            type=type,
            nsfw=nsfw,
            created_at=rt.clock.now(),
        )
        await search.set_tags(model.id, tag_list)
        await search.refresh(model.id)
    return await changes.reread(model)


async def update_model(
    rt: Runtime,
    viewer: int | None,
    *,
    model_id: str | None,
    name: str | None = None,
    description: str | None = None,
    type: LoraType | None = None,
    tags: list[str] | None = None,
    nsfw: bool | None = None,
) -> LoraModel:
    """Change a model's catalogue entry; what is not given stays as it is."""
    model = await lookups.owned(lookups.MODEL, viewer, model_id)
    edits: dict[str, object] = {}
    if name is not None:
        edits["name"] = _clean_name(name)
    if description is not None:
        edits["description"] = _clean_description(description)
    if type is not None:
        edits["type"] = type
    if nsfw is not None:
        edits["nsfw"] = nsfw
    tag_list = search.clean_tags(tags) if tags is not None else None
    public = await lookups.seen_by_anybody(lookups.MODEL, model.id)
    async with changes.transaction(rt.clock.now(), public=public):
        if edits:
            await LoraModel.filter(id=model.id, deleted_at=None).update(**edits)
        if tag_list is not None:
            await search.set_tags(model.id, tag_list)
        await search.refresh(model.id)
    return await changes.reread(model)


async def create_version(
    rt: Runtime,
    viewer: int | None,
    *,
    model_id: str | None,
    name: str,
    base_model: BaseModel,
    trained_words: list[str] | None = None,
) -> ModelVersion:
    model = await lookups.owned(lookups.MODEL, viewer, model_id)
    clean = _clean_name(name)
    words = search.clean_words(trained_words or [])
    # not onto a model being deleted at this moment; a draft: nobody else sees it
    async with changes.transaction(rt.clock.now(), public=False):
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
            model_id=model.id,
            owner_id=model.owner_id,
            name=clean,
            base_model=base_model,
            trained_words=words,
            created_at=rt.clock.now(),
        )


async def update_version(
    rt: Runtime,
    viewer: int | None,
    *,
    version_id: str | None,
    name: str | None = None,
    base_model: BaseModel | None = None,
    trained_words: list[str] | None = None,
) -> ModelVersion:
    """Change a version's catalogue entry; what is not given stays as it is."""
    version = await lookups.owned(lookups.VERSION, viewer, version_id)
    edits: dict[str, object] = {}
    if name is not None:
        edits["name"] = _clean_name(name)
    if base_model is not None:
        edits["base_model"] = base_model
    if trained_words is not None:
        edits["trained_words"] = search.clean_words(trained_words)
    if edits:
        public = await lookups.seen_by_anybody(lookups.VERSION, version.id)
        async with changes.transaction(rt.clock.now(), public=public):
            await ModelVersion.filter(id=version.id, deleted_at=None).update(**edits)
            await search.refresh(version.model_id)
    return await changes.reread(version)


async def publish_version(
    rt: Runtime, viewer: int | None, *, version_id: str | None
) -> ModelVersion:
    """Publish a draft; a private dataset's window starts now."""
    version = await lookups.owned(lookups.VERSION, viewer, version_id)
    now = rt.clock.now()
    async with changes.transaction(rt.clock.now(), public=False) as change:
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
        weights = await ModelFile.filter(version_id=version.id).exclude(
            status__in=(DatasetStatus.DELETING, DatasetStatus.DELETED)
        )
        if any(f.status != DatasetStatus.AVAILABLE for f in weights):
            raise InvalidState(
                "A weights file has not finished uploading: finish or delete it first.",
                field="versionId",
                code="UPLOAD_INCOMPLETE",
            )
        if not weights:
            raise InvalidState(
                "Upload at least one weights file (safetensors) before publishing.",
                field="versionId",
                code="NO_FILES",
            )
        await LoraModel.filter(id=version.model_id, published_at=None).update(published_at=now)
        if dataset is not None and dataset.status == DatasetStatus.AVAILABLE:
            window = rt.policy.window_for(
                private=dataset.visibility == Visibility.PRIVATE, published=True, start=now
            )
            # A draft's window that has already ended is never reopened: the dataset is
            # deleted as expired, whatever the version does meanwhile.
            still_open = Q(expires_at=None) | Q(expires_at__gt=now)
            await TrainingDataset.filter(still_open, id=dataset.id).update(**window.fields())
            await history.record(dataset.id, EventKind.PUBLISHED, now)
        moved = await header_firewall.recompute(rt, version.id)
        await search.refresh(version.model_id)
        # public only if anonymous viewers see it now (not under a takedown, say)
        change.public = await lookups.seen_by_anybody(lookups.VERSION, version.id)
    if dataset is not None:
        await changes.after_commit("scheduling a dataset", rt.dataset_changed(dataset.id))
    await changes.after_commit("scheduling header erasures", header_firewall.reschedule(rt, moved))
    return await changes.reread(version)


async def _refresh_published(model_id: int) -> None:
    """A model stays public only while one of its versions is published."""
    published = await ModelVersion.filter(
        model_id=model_id, status=VersionStatus.PUBLISHED, deleted_at=None
    ).exists()
    if not published:
        await LoraModel.filter(id=model_id).update(published_at=None)


async def _claim_datasets(dataset_ids: list[int], *, now: datetime) -> None:
    for dataset_id in dataset_ids:
        await deletion.claim(dataset_id, reason=DeletionReason.MODEL_DELETED, now=now)


async def delete_version(
    rt: Runtime, viewer: int | None, *, version_id: str | None
) -> ModelVersion:
    """Delete a version; its dataset's and files' bytes go now, leaving the owner
    tombstones."""
    version = await lookups.owned(lookups.VERSION, viewer, version_id)
    now = rt.clock.now()
    public = await lookups.seen_by_anybody(lookups.VERSION, version.id)
    # the version goes and its bytes are claimed, or neither
    async with changes.transaction(rt.clock.now(), public=public):
        await ModelVersion.filter(id=version.id, deleted_at=None).update(deleted_at=now)
        ids = [d.id for d in await TrainingDataset.filter(version_id=version.id).only("id")]
        await _claim_datasets(ids, now=now)
        file_ids = await files.claim_files([version.id], now=now)
        await _refresh_published(version.model_id)
        await search.refresh(version.model_id)
    # The bytes go now; what fails here (or a crash) is finished by the sweep, which
    # completes stuck claims.
    await changes.after_commit("deleting bytes", _delete_claimed(rt, ids, file_ids, now=now))
    return await changes.reread(version)


async def delete_model(rt: Runtime, viewer: int | None, *, model_id: str | None) -> LoraModel:
    """Delete a model and its versions; their datasets' and files' bytes go now."""
    model = await lookups.owned(lookups.MODEL, viewer, model_id)
    now = rt.clock.now()
    public = await lookups.seen_by_anybody(lookups.MODEL, model.id)
    # everything is marked and claimed, or nothing
    async with changes.transaction(rt.clock.now(), public=public):
        await LoraModel.filter(id=model.id, deleted_at=None).update(deleted_at=now)
        await ModelVersion.filter(model_id=model.id, deleted_at=None).update(deleted_at=now)
        rows = await TrainingDataset.filter(version__model_id=model.id).only("id")
        ids = [d.id for d in rows]
        await _claim_datasets(ids, now=now)
        versions = await ModelVersion.filter(model_id=model.id).only("id")
        file_ids = await files.claim_files([v.id for v in versions], now=now)
    await changes.after_commit("deleting bytes", _delete_claimed(rt, ids, file_ids, now=now))
    return await changes.reread(model)


async def _delete_claimed(
    rt: Runtime, dataset_ids: list[int], file_ids: list[int], *, now: datetime
) -> None:
    await deletion.delete_claimed(rt, dataset_ids, now=now)
    for file_id in file_ids:
        await files.complete_file_deletion(rt, file_id, now=now)


# Batched loads and listings ----------------------------------------------------


_VERSIONS_OF = reads.Read(
    ModelVersion,
    lambda viewer, ids: ModelVersion.filter(
        access.visible_versions_q(viewer), model_id__in=ids
    ).order_by("-created_at", "-id"),
)


async def versions_by_model_ids(
    ids: Iterable[int], *, viewer: int | None
) -> dict[int, list[ModelVersion]]:
    """Each model's versions the viewer may see, newest first: one query."""
    grouped: dict[int, list[ModelVersion]] = defaultdict(list)
    for version in await _VERSIONS_OF(viewer, list(ids)):
        grouped[version.model_id].append(version)
    return grouped


def _catalogue(
    viewer: int | None,
    owner_id: str | None,
    tag: str | None,
    base_model: BaseModel | None,
    type: LoraType | None,
    include_nsfw: bool,
) -> QuerySet[LoraModel]:
    """The models the viewer may see, narrowed (every part optional)."""
    query = LoraModel.filter(access.visible_models_q(viewer))
    if owner_id is not None:
        owners = User.filter(access.visible_users_q(viewer), public_id=owner_id)
        query = query.filter(owner_id__in=Subquery(owners.values("id")))
    if not include_nsfw:
        query = query.filter(Q(nsfw=False) | Q(owner_id=viewer) if viewer else Q(nsfw=False))
    if type is not None:
        query = query.filter(type=type)
    if tag is not None:
        query = query.filter(id__in=Subquery(ModelTag.filter(tag=tag).values("model_id")))
    if base_model is not None:
        versions = ModelVersion.filter(
            access.visible_versions_q(viewer), base_model=base_model
        ).values("model_id")
        query = query.filter(id__in=Subquery(versions))
    return query


_NEWEST_MODELS = reads.Read(
    LoraModel,
    lambda viewer, owner_id, tag, base_model, type, nsfw, before, limit: newest(
        _catalogue(viewer, owner_id, tag, base_model, type, nsfw), before, limit
    ),
)


def _fixed(narrow: CatalogueFilter) -> tuple[BaseModel | None, LoraType | None, bool]:
    """The parts of a narrowing that shape the query (a handful of values each)."""
    return narrow.base_model, narrow.type, narrow.include_nsfw


@dataclass(frozen=True)
class CatalogueFilter:
    """What a catalogue listing is narrowed to (every part optional)."""

    owner_id: str | None = None  # a user's public id
    query: str | None = None
    tag: str | None = None
    base_model: BaseModel | None = None
    type: LoraType | None = None
    include_nsfw: bool = False


async def models_page(
    *,
    viewer: int | None,
    narrow: CatalogueFilter | None = None,
    sort: ModelSort = ModelSort.NEWEST,
    first: int | None,
    after: str | None,
) -> Page[LoraModel]:
    """Models the viewer may see, narrowed and sorted; keyset-paged, one query a page.

    NSFW models are left out unless asked for, except the viewer's own.
    """
    narrow = narrow or CatalogueFilter()
    tag = None
    if narrow.tag is not None:
        try:
            cleaned = search.clean_tags([narrow.tag])
        except ServiceError as exc:
            raise ServiceError(exc.message, field="tag", code=exc.code) from None
        tag = cleaned[0] if cleaned else ""
    if sort == ModelSort.NEWEST and not narrow.query:
        # the usual pages: a query prepared once per shape (storage/db/reads.py)
        narrowed = (viewer, narrow.owner_id, tag, *map(Fixed, _fixed(narrow)))
        return await newest_first_read(
            _NEWEST_MODELS, *narrowed, tag="models", first=first, after=after
        )
    query = _catalogue(viewer, narrow.owner_id, tag, *_fixed(narrow))
    if narrow.query:
        query = query.filter(search.matching(narrow.query))
    if sort == ModelSort.MOST_DOWNLOADED:
        return await largest_first(
            query, "download_count", tag="models-by-downloads", first=first, after=after
        )
    return await newest_first(query, tag="models", first=first, after=after)
