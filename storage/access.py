"""The privacy rule, in one place: who may see a model, a version, a dataset.

Every path (GraphQL fields, ``node``, connections, mutations, the upload and
download routes) asks these functions. Each rule is written twice, side by
side: as a predicate over loaded rows and as a query filter for listings, and
the tests check that both agree. Not allowed looks exactly like not found.
"""

from __future__ import annotations

from datetime import datetime

from tortoise.expressions import Q

from storage.models import (
    DatasetStatus,
    LoraModel,
    ModelVersion,
    TrainingDataset,
    VersionStatus,
    Visibility,
)

ViewerId = int | None


def can_see_model(viewer: ViewerId, model: LoraModel) -> bool:
    """A model is public once a version is published; before that, owner only."""
    if model.deleted_at is not None:
        return False
    return model.owner_id == viewer or model.published_at is not None


def visible_models_q(viewer: ViewerId) -> Q:
    public = Q(deleted_at=None, published_at__isnull=False)
    if viewer is None:
        return public
    return public | Q(deleted_at=None, owner_id=viewer)


def can_see_version(viewer: ViewerId, version: ModelVersion) -> bool:
    """A draft version is visible to its owner only."""
    if version.deleted_at is not None:
        return False
    return version.owner_id == viewer or version.status == VersionStatus.PUBLISHED


def visible_versions_q(viewer: ViewerId) -> Q:
    public = Q(deleted_at=None, status=VersionStatus.PUBLISHED)
    if viewer is None:
        return public
    return public | Q(deleted_at=None, owner_id=viewer)


def can_see_dataset(viewer: ViewerId, dataset: TrainingDataset, version: ModelVersion) -> bool:
    """The owner sees their dataset in every state, tombstones included.

    Anybody else sees it only when it is public, its bytes are available and its
    version is published. A private dataset is never visible to anybody else.
    """
    if dataset.owner_id == viewer:
        return True
    return (
        dataset.visibility == Visibility.PUBLIC
        and dataset.status == DatasetStatus.AVAILABLE
        and version.status == VersionStatus.PUBLISHED
        and version.deleted_at is None
    )


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


def can_download(
    viewer: ViewerId, dataset: TrainingDataset, version: ModelVersion, now: datetime
) -> bool:
    """Downloading needs the bytes, and for a private dataset an open window.

    Access ends at ``expires_at`` exactly, whether or not deletion has run yet.
    """
    if not can_see_dataset(viewer, dataset, version):
        return False
    if dataset.status != DatasetStatus.AVAILABLE or dataset.blob_key is None:
        return False
    return dataset.expires_at is None or now < dataset.expires_at


def can_manage(viewer: ViewerId, owner_id: int) -> bool:
    """Only the owner changes anything; everybody else gets "not found"."""
    return viewer is not None and viewer == owner_id
