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
