"""The API's enums, derived from the storage enums (one declaration per fact).

Each API enum takes its members from a ``storage.db.enums`` enum and adds only the
descriptions a client shows. Internal states a client never sees (a dataset being
uploaded or deleted) are listed with the public state they appear as; deriving
fails at import if a storage member is neither described nor mapped. Resolvers may
return storage members directly: the API values equal the storage values.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

import strawberry

from storage.db import enums as db

E = TypeVar("E", bound=StrEnum)


def derive(
    source: type[E],
    *,
    description: str,
    values: Mapping[E, str],
    shown_as: Mapping[E, E] | None = None,
    name: str | None = None,
) -> type[StrEnum]:
    """An API enum named like ``source`` (or ``name``) with the described members, in
    source order."""
    hidden = dict(shown_as or {})
    unaccounted = [m for m in source if m not in values and m not in hidden]
    if unaccounted or any(target not in values for target in hidden.values()):
        raise TypeError(f"{source.__name__}: describe or map every member ({unaccounted})")
    api = StrEnum(name or source.__name__, [(m.name, m.value) for m in source if m in values])  # type: ignore[misc]
    strawberry.enum(api, description=description)
    for value in api.__strawberry_definition__.values:  # type: ignore[attr-defined]
        value.description = values[source(value.value)]
    return api


DATASET_STATUS_SHOWN_AS = {
    db.DatasetStatus.UPLOADING: db.DatasetStatus.PENDING_UPLOAD,
    db.DatasetStatus.DELETING: db.DatasetStatus.DELETED,
}


def shown_status(status: db.DatasetStatus) -> db.DatasetStatus:
    """The state a client sees: an upload in progress is still pending, a deletion in
    progress is already deleted (access ended when it was claimed)."""
    return DATASET_STATUS_SHOWN_AS.get(status, status)


def shown_reason(reason: db.DeletionReason | None) -> db.DeletionReason | None:
    """The reason a client sees (a dataset deleted with its account: the owner's request)."""
    if reason == db.DeletionReason.ACCOUNT_DELETED:
        return db.DeletionReason.OWNER_REQUEST
    return reason


if TYPE_CHECKING:  # type checkers see the storage enums the API ones mirror
    VersionStatus = db.VersionStatus
    Visibility = db.Visibility
    DatasetStatus = db.DatasetStatus
    FileStatus = db.DatasetStatus
    DeletionReason = db.DeletionReason
    NotificationKind = db.NotificationKind
    DataExportStatus = db.ExportStatus
    DatasetEventKind = db.EventKind
    LoraType = db.LoraType
    BaseModelName = db.BaseModel
    ModelSort = db.ModelSort
    ReportReason = db.ReportReason
    ReportStatus = db.ReportStatus
    AuditAction = db.AuditAction
else:
    VersionStatus = derive(
        db.VersionStatus,
        description="Whether a model version is still being prepared or is public.",
        values={
            db.VersionStatus.DRAFT: "Being prepared; only the owner sees it.",
            db.VersionStatus.PUBLISHED: "Published; everybody sees the version.",
        },
    )
    Visibility = derive(
        db.Visibility,
        description="Who may see and download a training dataset.",
        values={
            db.Visibility.PUBLIC: (
                "Shared: anyone may see and download it once the version is published."
            ),
            db.Visibility.PRIVATE: (
                "Only the owner may see and download it, for a limited window (from "
                "publishing, or from its upload while the version is a draft); then it is "
                "deleted automatically (see retentionPolicy)."
            ),
        },
    )
    DatasetStatus = derive(
        db.DatasetStatus,
        description="Where a training dataset is in its life.",
        values={
            db.DatasetStatus.PENDING_UPLOAD: "Recorded; its bytes have not arrived yet.",
            db.DatasetStatus.AVAILABLE: "Its bytes are stored.",
            db.DatasetStatus.DELETED: (
                "Deleted: nobody can download it any more, its bytes are gone (or going, "
                "within moments), and only this record (a tombstone) remains."
            ),
        },
        shown_as=DATASET_STATUS_SHOWN_AS,
    )
    DeletionReason = derive(
        db.DeletionReason,
        description="Why a training dataset was deleted.",
        values={
            db.DeletionReason.EXPIRED: (
                "A private dataset reached the end of its retention window."
            ),
            db.DeletionReason.OWNER_REQUEST: "The owner deleted it.",
            db.DeletionReason.MODEL_DELETED: "Its model or model version was deleted.",
            db.DeletionReason.TAKEN_DOWN: (
                "The site's operators took its model version down and the law required the "
                "removal of its private data (the operators never saw it)."
            ),
        },
        # deleted with its account: no one is left to see the tombstone
        shown_as={db.DeletionReason.ACCOUNT_DELETED: db.DeletionReason.OWNER_REQUEST},
    )
    NotificationKind = derive(
        db.NotificationKind,
        description="What a notification is about.",
        values={
            db.NotificationKind.DATASET_EXPIRING: "A private dataset will be deleted soon.",
            db.NotificationKind.DATASET_DELETED: "A private dataset has been deleted.",
            db.NotificationKind.CONTENT_TAKEN_DOWN: (
                "The site's operators took down one of your models or versions."
            ),
            db.NotificationKind.CONTENT_RESTORED: (
                "The site's operators restored one of your models or versions."
            ),
            db.NotificationKind.ACCOUNT_SUSPENDED: "The site's operators suspended your account.",
            db.NotificationKind.ACCOUNT_REINSTATED: (
                "The site's operators reinstated your account."
            ),
            db.NotificationKind.EXPORT_READY: (
                "A data export the owner asked for is ready to download."
            ),
        },
    )
    DataExportStatus = derive(
        db.ExportStatus,
        name="DataExportStatus",
        description="Where a data export stands.",
        values={
            db.ExportStatus.PENDING: "Being built; the owner is notified when it is ready.",
            db.ExportStatus.READY: "Ready to download until its expiresAt.",
            db.ExportStatus.EXPIRED: "Its window ended; its bytes have been shredded.",
        },
        shown_as={db.ExportStatus.BUILDING: db.ExportStatus.PENDING},
    )
    DatasetEventKind = derive(
        db.EventKind,
        name="DatasetEventKind",
        description="What happened to a training dataset.",
        values={
            db.EventKind.UPLOAD_STARTED: "The owner asked for an upload URL.",
            db.EventKind.UPLOADED: "The bytes arrived and were checked.",
            db.EventKind.PUBLISHED: "Its model version was published.",
            db.EventKind.MADE_PRIVATE: "It was made private.",
            db.EventKind.MADE_PUBLIC: "It was made public.",
            db.EventKind.DOWNLOADED: "Somebody downloaded it.",
            db.EventKind.REMINDED: "The owner was reminded of its coming deletion.",
            db.EventKind.DELETED: "Its bytes were deleted.",
            db.EventKind.HEADER_ERASED: (
                "The training-data keys it left in the version's weights file header were "
                "erased at the end of its window."
            ),
        },
    )
    FileStatus = derive(
        db.DatasetStatus,
        name="FileStatus",
        description="Where a weights file is in its life.",
        values={
            db.DatasetStatus.PENDING_UPLOAD: "Recorded; its bytes have not arrived yet.",
            db.DatasetStatus.AVAILABLE: "Its bytes are stored and were checked.",
            db.DatasetStatus.DELETED: "Deleted: its bytes are gone; only this record remains.",
        },
        shown_as=DATASET_STATUS_SHOWN_AS,
    )
    LoraType = derive(
        db.LoraType,
        name="ModelType",
        description="What kind of low-rank adapter a model is.",
        values={
            db.LoraType.LORA: "A LoRA (low-rank adaptation of the attention layers).",
            db.LoraType.LOCON: "A LoCon: LoRA extended to the convolution layers (LyCORIS).",
            db.LoraType.DORA: "A DoRA: weight-decomposed low-rank adaptation.",
        },
    )
    BaseModelName = derive(
        db.BaseModel,
        name="BaseModelName",  # not BaseModel: pydantic's base class, in generated clients
        description="The base checkpoint a version was trained for.",
        values={
            db.BaseModel.SD_1_5: "Stable Diffusion 1.5.",
            db.BaseModel.SD_2_1: "Stable Diffusion 2.1.",
            db.BaseModel.SDXL_1_0: "Stable Diffusion XL 1.0.",
            db.BaseModel.PONY: "Pony Diffusion (an SDXL fine-tune).",
            db.BaseModel.ILLUSTRIOUS: "Illustrious (an SDXL fine-tune).",
            db.BaseModel.SD_3_5: "Stable Diffusion 3.5.",
            db.BaseModel.FLUX_1_D: "FLUX.1 [dev].",
            db.BaseModel.FLUX_1_S: "FLUX.1 [schnell].",
            db.BaseModel.OTHER: "Another base model.",
        },
    )
    ModelSort = derive(
        db.ModelSort,
        description="How the catalogue is ordered.",
        values={
            db.ModelSort.NEWEST: "Newest first.",
            db.ModelSort.MOST_DOWNLOADED: "Most downloaded first (full downloads of files).",
        },
    )
    ReportReason = derive(
        db.ReportReason,
        description="Why something is reported.",
        values={
            db.ReportReason.COPYRIGHT: "It infringes somebody's copyright.",
            db.ReportReason.PRIVACY: "It violates somebody's privacy (e.g. their likeness).",
            db.ReportReason.ILLEGAL: "It is illegal.",
            db.ReportReason.SPAM: "It is spam or misleading.",
            db.ReportReason.IMPERSONATION: "It impersonates somebody.",
            db.ReportReason.OTHER: "Something else (say what in the details).",
        },
    )
    ReportStatus = derive(
        db.ReportStatus,
        description="Where a report is.",
        values={
            db.ReportStatus.OPEN: "Waiting for the operators.",
            db.ReportStatus.ACTIONED: (
                "The operators acted on what was reported (a takedown or a suspension)."
            ),
            db.ReportStatus.DISMISSED: "The operators looked at it and did not act.",
        },
    )
    AuditAction = derive(
        db.AuditAction,
        description="What an operator did (one audit entry each).",
        values={
            db.AuditAction.TAKE_DOWN: "Took a model or version down.",
            db.AuditAction.RESTORE: "Restored a model or version taken down.",
            db.AuditAction.SUSPEND_USER: "Suspended an account.",
            db.AuditAction.UNSUSPEND_USER: "Reinstated a suspended account.",
            db.AuditAction.DISMISS_REPORT: "Closed a report without acting on its subject.",
            db.AuditAction.GRANT_OPERATOR: "Made an account an operator (from the command line).",
            db.AuditAction.REVOKE_OPERATOR: (
                "Took the operator role from an account (from the command line)."
            ),
        },
    )
