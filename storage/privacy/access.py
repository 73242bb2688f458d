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
- Hidden content: a model or version an operator took down, and everything public of a
  suspended account, is visible to its owner alone, exactly as if it were a draft
  (everything under a hidden model or version is hidden with it). Operators are no
  exception: on every path they see exactly what any other signed-in user sees.
- Operators act on what is public, or would be if it were not hidden
  (``moderated_*_q``): never on a draft, never on a private dataset. Their own views
  (the report queue, the audit trail) name such objects without opening them.
- A report is its reporter's and the operators'; an audit entry the operators' and
  the owner's of its subject.
- Only the owner changes anything.
"""

from __future__ import annotations

from datetime import datetime

from tortoise.expressions import Q, Subquery

from storage.db.enums import DatasetStatus, ExportStatus, VersionStatus, Visibility
from storage.db.models import DataExport, LoraModel, ModelFile, TrainingDataset

ViewerId = int | None


def visible_users_q(viewer: ViewerId) -> Q:
    """An account is visible to itself, and to others only once something of theirs is
    public (a published model): accounts cannot be listed or probed by id."""
    public = Q(id__in=Subquery(LoraModel.filter(visible_models_q(None)).values("owner_id")))
    return public if viewer is None else public | Q(id=viewer)


# Public content, before hiding: what operators may act on (``moderated_*_q``).


def _published_models_q() -> Q:
    return Q(deleted_at=None, published_at__isnull=False)


def _published_versions_q() -> Q:
    return Q(deleted_at=None, status=VersionStatus.PUBLISHED)


def _shared_datasets_q() -> Q:
    return Q(
        visibility=Visibility.PUBLIC,
        status=DatasetStatus.AVAILABLE,
        version__status=VersionStatus.PUBLISHED,
        version__deleted_at=None,
    )


def _published_files_q() -> Q:
    return Q(
        status=DatasetStatus.AVAILABLE,
        version__status=VersionStatus.PUBLISHED,
        version__deleted_at=None,
    )


# Not hidden: neither taken down (itself, its version, its model) nor of a suspended owner.


def _shown_models_q() -> Q:
    return Q(taken_down_at=None, owner__suspended_at=None)


def _shown_versions_q() -> Q:
    return Q(taken_down_at=None, model__taken_down_at=None, owner__suspended_at=None)


def _shown_under_version_q() -> Q:
    """Datasets and weights files: shown while their version is."""
    return Q(
        version__taken_down_at=None,
        version__model__taken_down_at=None,
        owner__suspended_at=None,
    )


def visible_models_q(viewer: ViewerId) -> Q:
    public = _published_models_q() & _shown_models_q()
    if viewer is None:
        return public
    return public | Q(deleted_at=None, owner_id=viewer)


def visible_versions_q(viewer: ViewerId) -> Q:
    public = _published_versions_q() & _shown_versions_q()
    if viewer is None:
        return public
    return public | Q(deleted_at=None, owner_id=viewer)


def visible_datasets_q(viewer: ViewerId) -> Q:
    public = _shared_datasets_q() & _shown_under_version_q()
    if viewer is None:
        return public
    return public | Q(owner_id=viewer)


def visible_files_q(viewer: ViewerId) -> Q:
    public = _published_files_q() & _shown_under_version_q()
    if viewer is None:
        return public
    return public | Q(owner_id=viewer)


def moderated_users_q() -> Q:
    """Accounts operators may suspend or reinstate: every account (ids are unguessable:
    an operator has one from a report, a model or the audit trail)."""
    return Q()


def moderated_models_q() -> Q:
    """Models operators may take down or restore: published ones, hidden or not."""
    return _published_models_q()


def moderated_versions_q() -> Q:
    """Versions operators may take down or restore: published ones, hidden or not."""
    return _published_versions_q()


def moderated_datasets_q() -> Q:
    """Datasets operators may name: public ones of published versions. Never a private
    one: a takedown destroys private data without anybody seeing it."""
    return _shared_datasets_q()


def moderated_files_q() -> Q:
    return _published_files_q()


NOTHING = Q(id__in=[])  # matches no row ("WHERE 1=0")


def visible_reports_q(viewer: ViewerId, *, operator: bool = False) -> Q:
    """A report is its reporter's, and every operator's (the queue). (A report whose
    reporter deleted their account is the operators' alone.)"""
    if operator:
        return Q()
    return NOTHING if viewer is None else Q(reporter_id=viewer)


def visible_audit_q(viewer: ViewerId, *, operator: bool = False) -> Q:
    """The audit trail is the operators'; the owner of a subject sees the entries about
    it (without who acted)."""
    if operator:
        return Q()
    return NOTHING if viewer is None else Q(subject_owner_id=viewer)


def visible_notifications_q(viewer: ViewerId) -> Q:
    return Q(user_id=viewer)  # NULL for anonymous: matches nothing


def visible_exports_q(viewer: ViewerId) -> Q:
    """A data export: its owner's alone (anonymous: nothing)."""
    return Q(owner_id=viewer)


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


def export_downloadable(export: DataExport, now: datetime) -> bool:
    """A data export can be downloaded (by its owner) from when it is ready until its
    ``expires_at``, exactly, whether or not it has been shredded yet."""
    return (
        export.status == ExportStatus.READY
        and export.blob_key is not None
        and export.expires_at is not None
        and now < export.expires_at
    )


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


UNSHARED: tuple[tuple[str, str], ...] = (
    # (table, condition): what its owner sees and nobody else does.
    # A model of theirs that is not public (a draft), or that anonymous listings leave
    # out and theirs do not (NSFW: ``models_page`` lists the viewer's own).
    ("lora_models", "deleted_at IS NULL AND (published_at IS NULL OR nsfw)"),
    # A draft version (``visible_versions_q``).
    ("model_versions", "deleted_at IS NULL AND status = 'DRAFT'"),
    # A dataset that is not public, in every state the owner still sees, tombstones
    # included (``visible_datasets_q``; one of a draft version is found by the
    # version's row, one of a deleted version is claimed in the same transaction).
    ("training_datasets", "visibility <> 'PUBLIC' OR status <> 'AVAILABLE'"),
    # A weights file that is not available (``visible_files_q``, the same way).
    ("model_files", "status <> 'AVAILABLE'"),
    # Withheld header keys not yet erased (``sees_withheld_keys``; their window is
    # left out: a key past it counts until the erasure runs, erring on the owner's side).
    ("model_files", "header_erased_at IS NULL AND withheld_keys <> '[]'"),
    # A model or version taken down by the operators: hidden from everybody but its
    # owner (a suspended account cannot sign in, so its hidden content needs no part).
    ("lora_models", "taken_down_at IS NOT NULL"),
    ("model_versions", "taken_down_at IS NOT NULL"),
)
"""Each kind of object its owner may see while nobody else does, as a condition on the
rows of a table with an ``owner_id`` column. :func:`owns_unshared_sql` asks them all
at once; each is one index probe by owner (partial indexes: migrations 0009 and 0014)."""


def owns_unshared_sql(owner_id: str) -> str:
    """Whether an account owns anything only it sees, as one SQL expression over the
    column ``owner_id`` (e.g. ``"auth_tokens"."user_id"``): a draft model or version,
    an NSFW model, a dataset or weights file that is not public, withheld header keys
    the public does not see. When it is false, every field the schema declares shared
    (graph/schema/sharing.py) answers this account exactly as it answers anonymous
    viewers. Each part is one probe of a partial index."""
    exists = []
    for table, condition in UNSHARED:
        where = f"t.owner_id = {owner_id} AND ({condition})"
        if table == "model_files" and "withheld_keys" in condition:
            # the keys are public while the version's dataset is public (sees_withheld_keys)
            where += (
                " AND NOT EXISTS (SELECT 1 FROM training_datasets d WHERE "
                "d.version_id = t.version_id AND d.visibility = 'PUBLIC' "
                "AND d.status = 'AVAILABLE')"
            )
        exists.append(f"EXISTS (SELECT 1 FROM {table} t WHERE {where})")
    return "(" + " OR ".join(exists) + ")"


def sees_withheld_keys_q(viewer: ViewerId, now: datetime) -> Q:
    """:func:`sees_withheld_keys` as a filter on weights files (for the hash lookup)."""
    window = Q(header_erased_at=None) & (Q(header_expires_at=None) | Q(header_expires_at__gt=now))
    shared = Q(
        version__training_dataset__visibility=Visibility.PUBLIC,
        version__training_dataset__status=DatasetStatus.AVAILABLE,
    )
    return window & (shared | Q(owner_id=viewer) if viewer is not None else shared)
