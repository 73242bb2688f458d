"""The privacy rule, in one place: who may see and who may change each kind of object.

Each rule is a query filter, so that a lookup, a DataLoader batch, a listing and a
count all ask the database the same question, and an object the viewer may not see
is exactly as absent as one that does not exist. :mod:`storage.privacy.lookups` applies these
filters; nothing else decides visibility.

- An account is visible to itself, and to others once it has a published model.
- A model is visible to everyone once one of its versions is published, and to its
  owner always; a deleted one to nobody.
- A version is visible to everyone once published, a draft to its owner only.
- A training dataset is visible to its owner in every state (tombstones included);
  to anybody else only when it is PUBLIC, its bytes are AVAILABLE and its version is
  published. A private dataset is never visible to anybody but its owner.
- A weights file is visible like its version, once its bytes are available; its
  owner sees it in every state. The training-data keys of its header are visible to
  everyone only while the version's dataset is PUBLIC; otherwise to the owner alone,
  until they are erased (``sees_withheld_keys``).
- Notifications and a dataset's history are their owner's only.
- Only the owner changes anything.
"""

from __future__ import annotations

from datetime import datetime

from tortoise.expressions import Q, Subquery

from storage.db.enums import DatasetStatus, VersionStatus, Visibility
from storage.db.models import LoraModel, ModelFile, TrainingDataset

ViewerId = int | None


def visible_users_q(viewer: ViewerId) -> Q:
    """An account is visible to itself, and to others only once something of theirs is
    public (a published model): accounts cannot be listed or probed by id."""
    public = Q(id__in=Subquery(LoraModel.filter(visible_models_q(None)).values("owner_id")))
    return public if viewer is None else public | Q(id=viewer)


def visible_models_q(viewer: ViewerId) -> Q:
    public = Q(deleted_at=None, published_at__isnull=False)
    if viewer is None:
        return public
    return public | Q(deleted_at=None, owner_id=viewer)


def visible_versions_q(viewer: ViewerId) -> Q:
    public = Q(deleted_at=None, status=VersionStatus.PUBLISHED)
    if viewer is None:
        return public
    return public | Q(deleted_at=None, owner_id=viewer)


def visible_datasets_q(viewer: ViewerId) -> Q:
    public = Q(
        visibility=Visibility.PUBLIC,
        status=DatasetStatus.AVAILABLE,
        version__status=VersionStatus.PUBLISHED,
        version__deleted_at=None,
    )
    if viewer is None:
        return public
    return public | Q(owner_id=viewer)


def visible_files_q(viewer: ViewerId) -> Q:
    public = Q(
        status=DatasetStatus.AVAILABLE,
        version__status=VersionStatus.PUBLISHED,
        version__deleted_at=None,
    )
    if viewer is None:
        return public
    return public | Q(owner_id=viewer)


def visible_notifications_q(viewer: ViewerId) -> Q:
    return Q(user_id=viewer)  # NULL for anonymous: matches nothing


def visible_events_q(viewer: ViewerId) -> Q:
    return Q(dataset__owner_id=viewer)


def owned_models_q(owner: int) -> Q:
    return Q(owner_id=owner, deleted_at=None)


def owned_versions_q(owner: int) -> Q:
    return Q(owner_id=owner, deleted_at=None)


def owned_datasets_q(owner: int) -> Q:
    return Q(owner_id=owner)  # tombstones included: deleting one again is a no-op


def owned_files_q(owner: int) -> Q:
    return Q(owner_id=owner)


def owned_notifications_q(owner: int) -> Q:
    return Q(user_id=owner)


def owns(viewer: ViewerId, owner_id: int) -> bool:
    """Owner-only fields (history, notifications) of an object already visible."""
    return viewer is not None and viewer == owner_id


def downloadable(dataset: TrainingDataset, now: datetime) -> bool:
    """A dataset the viewer may see can be downloaded while its bytes exist and, for a
    private one, its window is open: access ends at ``expires_at`` exactly, whether or
    not deletion has run yet."""
    if dataset.status != DatasetStatus.AVAILABLE or dataset.blob_key is None:
        return False
    return dataset.expires_at is None or now < dataset.expires_at


def dataset_is_public(dataset: TrainingDataset | None) -> bool:
    """Whether a version's training dataset is shared: PUBLIC with its bytes available."""
    return (
        dataset is not None
        and dataset.visibility == Visibility.PUBLIC
        and dataset.status == DatasetStatus.AVAILABLE
    )


def sees_withheld_keys(
    viewer: ViewerId, file: ModelFile, dataset: TrainingDataset | None, now: datetime
) -> bool:
    """Whether this viewer is shown a file's withheld header keys (and downloads the
    original header): everyone while the version's dataset is public, else the owner
    alone until the keys' window ends. Nobody once they are erased, or due to be.
    ``dataset`` is the version's dataset as this viewer may see it."""
    if not file.withheld_keys or file.header_erased_at is not None:
        return False
    if file.header_expires_at is not None and now >= file.header_expires_at:
        return False
    return dataset_is_public(dataset) or owns(viewer, file.owner_id)


def sees_withheld_keys_q(viewer: ViewerId, now: datetime) -> Q:
    """:func:`sees_withheld_keys` as a filter on weights files (for the hash lookup)."""
    window = Q(header_erased_at=None) & (Q(header_expires_at=None) | Q(header_expires_at__gt=now))
    shared = Q(
        version__training_dataset__visibility=Visibility.PUBLIC,
        version__training_dataset__status=DatasetStatus.AVAILABLE,
    )
    return window & (shared | Q(owner_id=viewer) if viewer is not None else shared)
