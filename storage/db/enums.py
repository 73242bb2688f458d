"""The stored enums: every value a column holds, declared once. The API's enums
(graph/schema/enums.py) take their members from these."""

from __future__ import annotations

from enum import StrEnum


class VersionStatus(StrEnum):
    DRAFT = "DRAFT"
    PUBLISHED = "PUBLISHED"


class Visibility(StrEnum):
    PUBLIC = "PUBLIC"
    PRIVATE = "PRIVATE"


class DatasetStatus(StrEnum):
    PENDING_UPLOAD = "PENDING_UPLOAD"
    UPLOADING = "UPLOADING"  # a PUT holds the single-use claim
    AVAILABLE = "AVAILABLE"
    DELETING = "DELETING"  # a deletion holds the claim; bytes may or may not be gone
    DELETED = "DELETED"


class DeletionReason(StrEnum):
    EXPIRED = "EXPIRED"
    OWNER_REQUEST = "OWNER_REQUEST"
    MODEL_DELETED = "MODEL_DELETED"
    TAKEN_DOWN = "TAKEN_DOWN"  # an operator's takedown destroyed the private data
    ACCOUNT_DELETED = "ACCOUNT_DELETED"  # with its account: nobody sees the tombstone


class LoraType(StrEnum):
    """What kind of low-rank adapter a model is."""

    LORA = "LORA"
    LOCON = "LOCON"
    DORA = "DORA"


class BaseModel(StrEnum):
    """The base checkpoint a version was trained for."""

    SD_1_5 = "SD_1_5"
    SD_2_1 = "SD_2_1"
    SDXL_1_0 = "SDXL_1_0"
    PONY = "PONY"
    ILLUSTRIOUS = "ILLUSTRIOUS"
    SD_3_5 = "SD_3_5"
    FLUX_1_D = "FLUX_1_D"
    FLUX_1_S = "FLUX_1_S"
    OTHER = "OTHER"


class ModelSort(StrEnum):
    """How the catalogue is ordered."""

    NEWEST = "NEWEST"
    MOST_DOWNLOADED = "MOST_DOWNLOADED"


class NotificationKind(StrEnum):
    DATASET_EXPIRING = "DATASET_EXPIRING"
    DATASET_DELETED = "DATASET_DELETED"
    CONTENT_TAKEN_DOWN = "CONTENT_TAKEN_DOWN"
    CONTENT_RESTORED = "CONTENT_RESTORED"
    ACCOUNT_SUSPENDED = "ACCOUNT_SUSPENDED"
    ACCOUNT_REINSTATED = "ACCOUNT_REINSTATED"
    EXPORT_READY = "EXPORT_READY"


class ExportStatus(StrEnum):
    PENDING = "PENDING"
    BUILDING = "BUILDING"  # a job holds the claim and writes the archive
    READY = "READY"
    EXPIRED = "EXPIRED"  # shredded: key destroyed, bytes deleted


class EventKind(StrEnum):
    UPLOAD_STARTED = "UPLOAD_STARTED"
    UPLOADED = "UPLOADED"
    PUBLISHED = "PUBLISHED"
    MADE_PRIVATE = "MADE_PRIVATE"
    MADE_PUBLIC = "MADE_PUBLIC"
    DOWNLOADED = "DOWNLOADED"
    REMINDED = "REMINDED"
    DELETED = "DELETED"
    HEADER_ERASED = "HEADER_ERASED"


class ReportReason(StrEnum):
    """Why somebody reports an object."""

    COPYRIGHT = "COPYRIGHT"
    PRIVACY = "PRIVACY"
    ILLEGAL = "ILLEGAL"
    SPAM = "SPAM"
    IMPERSONATION = "IMPERSONATION"
    OTHER = "OTHER"


class ReportStatus(StrEnum):
    OPEN = "OPEN"
    ACTIONED = "ACTIONED"  # an operator acted on the subject (takedown, suspension)
    DISMISSED = "DISMISSED"


class AuditAction(StrEnum):
    """What an operator (or the command line) did: one append-only audit row each."""

    TAKE_DOWN = "TAKE_DOWN"
    RESTORE = "RESTORE"
    SUSPEND_USER = "SUSPEND_USER"
    UNSUSPEND_USER = "UNSUSPEND_USER"
    DISMISS_REPORT = "DISMISS_REPORT"
    GRANT_OPERATOR = "GRANT_OPERATOR"
    REVOKE_OPERATOR = "REVOKE_OPERATOR"


class MailKind(StrEnum):
    """What an outgoing e-mail is (and which preference, if any, may stop it)."""

    VERIFY_ADDRESS = "VERIFY_ADDRESS"
    REMINDER = "REMINDER"  # preference: reminders
    DELETION = "DELETION"  # preference: deletions
    MODERATION = "MODERATION"  # takedowns, restorations, suspensions: always sent


class MailStatus(StrEnum):
    PENDING = "PENDING"  # waiting for its next attempt
    SENDING = "SENDING"  # claimed by a sender
    SENT = "SENT"
    DEAD = "DEAD"  # given up after the retry window: a dead letter
    DROPPED = "DROPPED"  # no longer wanted (address changed or removed, opted out)
