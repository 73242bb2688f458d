"""The rule applied: one visible-lookup and one owned-lookup per kind of object.

Every path that turns an id into an object goes through here: ``node(id)`` and the
typed root fields, every DataLoader, the download route, and every mutation. A
lookup is one query whose filter is the rule from :mod:`storage.privacy.access`, so an
object the viewer may not see costs the same and answers the same as one that does
not exist.

A new kind of object plugs in with one :class:`Kind` below: its model, its visible
and owned filters from :mod:`storage.privacy.access`, and its not-found wording.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from dataclasses import field as attribute
from typing import Any, Generic, TypeVar

from tortoise.expressions import Q
from tortoise.models import Model

from storage.db import reads
from storage.db.enums import VersionStatus
from storage.db.models import (
    LoraModel,
    ModelFile,
    ModelVersion,
    Notification,
    TrainingDataset,
    User,
)
from storage.errors import InvalidState, NotFound, Unauthenticated
from storage.privacy import access

M = TypeVar("M", bound=Model)


@dataclass(frozen=True)
class Kind(Generic[M]):
    name: str  # the API's type name, e.g. "TrainingDataset"
    model: type[M]
    visible: Callable[[access.ViewerId], Q]
    owned: Callable[[int], Q]
    missing: str  # the not-found message
    field: str  # the input field an id of this kind arrives in
    moderated: Callable[[], Q] = access.moderated_users_q  # what operators may act on
    owner_key: str = "owner_id"  # the column naming whose it is

    def __post_init__(self) -> None:
        # The visible-lookups, prepared once per shape (storage/db/reads.py).
        model, visible = self.model, self.visible
        by_ids = reads.Read(model, lambda viewer, ids: model.filter(visible(viewer), id__in=ids))
        by_public_ids = reads.Read(
            model, lambda viewer, ids: model.filter(visible(viewer), public_id__in=ids)
        )
        object.__setattr__(self, "by_ids", by_ids)
        object.__setattr__(self, "by_public_ids", by_public_ids)

    by_ids: reads.Read[M] = attribute(init=False, repr=False, compare=False)
    by_public_ids: reads.Read[M] = attribute(init=False, repr=False, compare=False)


USER: Kind[User] = Kind(
    "User",
    User,
    access.visible_users_q,
    lambda owner: Q(id=owner),
    "No such user.",
    "userId",
    access.moderated_users_q,
    "id",
)
MODEL: Kind[LoraModel] = Kind(
    "Model",
    LoraModel,
    access.visible_models_q,
    access.owned_models_q,
    "No such model.",
    "modelId",
    access.moderated_models_q,
)
VERSION: Kind[ModelVersion] = Kind(
    "ModelVersion",
    ModelVersion,
    access.visible_versions_q,
    access.owned_versions_q,
    "No such model version.",
    "versionId",
    access.moderated_versions_q,
)
DATASET: Kind[TrainingDataset] = Kind(
    "TrainingDataset",
    TrainingDataset,
    access.visible_datasets_q,
    access.owned_datasets_q,
    "No such training dataset.",
    "datasetId",
    access.moderated_datasets_q,
)
FILE: Kind[ModelFile] = Kind(
    "ModelFile",
    ModelFile,
    access.visible_files_q,
    access.owned_files_q,
    "No such model file.",
    "fileId",
    access.moderated_files_q,
)
NOTIFICATION: Kind[Notification] = Kind(
    "Notification",
    Notification,
    access.visible_notifications_q,
    access.owned_notifications_q,
    "No such notification.",
    "ids",
    lambda: access.NOTHING,  # nobody moderates an inbox
    "user_id",
)

KINDS: tuple[Kind[Any], ...] = (USER, MODEL, VERSION, DATASET, FILE, NOTIFICATION)
"""Every kind of object, in the order the API lists them."""

BY_NAME: dict[str, Kind[Any]] = {kind.name: kind for kind in KINDS}


def require_viewer(viewer: access.ViewerId) -> int:
    if viewer is None:
        raise Unauthenticated("Sign in first.")
    return viewer


async def visible(kind: Kind[M], viewer: access.ViewerId, pk: int) -> M | None:
    """The object behind an internal key (a link, a token) if the viewer may see it."""
    return (await visible_many(kind, viewer, [pk])).get(pk)


async def visible_many(kind: Kind[M], viewer: access.ViewerId, pks: Iterable[int]) -> dict[int, M]:
    """Those of ``pks`` the viewer may see, by key: one query (DataLoaders batch here)."""
    rows = await kind.by_ids(viewer, list(pks))
    return {row.pk: row for row in rows}


async def seen_by_anybody(kind: Kind[M], pk: int) -> bool:
    """Whether anonymous viewers see this object now: the rule for nobody signed in
    (whether a change to it is public, storage/db/public_generation.py)."""
    return bool(await kind.model.filter(kind.visible(None), id=pk).exists())


async def visible_public(
    kind: Kind[M], viewer: access.ViewerId, public_ids: Iterable[str | None]
) -> dict[str, M]:
    """Those of the public ids the viewer may see, by public id: one query, the same
    whether an id is hidden from the viewer, missing or malformed."""
    wanted = [p if p is not None else "" for p in public_ids]
    rows = await kind.by_public_ids(viewer, wanted)
    found: dict[str, M] = {}
    for row in rows:
        public_id: str = row.public_id  # type: ignore[attr-defined]  # every Kind has one
        found[public_id] = row
    return found


async def owned(kind: Kind[M], viewer: access.ViewerId, public_id: str | None) -> M:
    """The viewer's own object, by its public id, for a change. Anybody else's, a
    deleted one, a malformed id and a missing one all raise the same :class:`NotFound`
    after the same query."""
    owner = require_viewer(viewer)
    row = await kind.model.filter(kind.owned(owner), public_id=public_id or "").first()
    if row is None:
        raise NotFound(kind.missing, field=kind.field)
    return row


async def moderated(kind: Kind[M], public_id: str | None) -> M | None:
    """An object an operator may act on, by its public id (the caller has checked that
    the viewer is an operator): public, or public but hidden (taken down, suspended).
    Never a draft or a private dataset: those answer as a missing id, after the same
    query."""
    return await kind.model.filter(kind.moderated(), public_id=public_id or "").first()


async def moderated_many(kind: Kind[M], pks: Iterable[int]) -> dict[int, M]:
    """Those of ``pks`` operators may act on, by key: one query (the queue and the
    trail name their subjects with it)."""
    rows = await kind.model.filter(kind.moderated(), id__in=list(pks))
    return {row.pk: row for row in rows}


async def locked_draft(version_id: int, *, field: str = VERSION.field) -> ModelVersion:
    """Inside a transaction: the version, locked, still a live draft (errors name
    ``field``, the input the version came from)."""
    version = await ModelVersion.select_for_update().get_or_none(id=version_id, deleted_at=None)
    if version is None:
        raise NotFound(VERSION.missing, field=field)
    if version.status != VersionStatus.DRAFT:
        raise InvalidState(
            "This version is published: its dataset and files can no longer change.",
            field=field,
            code="VERSION_PUBLISHED",
        )
    return version
