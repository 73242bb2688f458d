"""Tortoise ORM models: the database is the source of truth, retention included."""

from __future__ import annotations

import secrets
from typing import ClassVar

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model

from storage.db.enums import (
    BaseModel,
    DatasetStatus,
    DeletionReason,
    EventKind,
    ExportStatus,
    LoraType,
    NotificationKind,
    VersionStatus,
    Visibility,
)


def new_public_id() -> str:
    """A row's public id: 128 random bits (22 URL-safe characters). What the API shows of
    a row is this, never its key: nothing about order, count or creation time shows."""
    return secrets.token_urlsafe(16)


class User(Model):
    id = fields.IntField(primary_key=True)
    public_id = fields.CharField(max_length=24, unique=True, null=True, default=new_public_id)
    username = fields.CharField(max_length=32, unique=True)
    password_hash = fields.CharField(max_length=255)
    created_at = fields.DatetimeField()
    is_operator = fields.BooleanField(default=False)  # from the CLI only (storage.operators)
    suspended_at = fields.DatetimeField(null=True)  # no sign-in, public content hidden
    suspension_reason = fields.TextField(null=True)
    # Its owner's only (storage.email_addresses); the nonce: the latest link's, single-use.
    email = fields.CharField(max_length=254, null=True)
    email_verified_at = fields.DatetimeField(null=True)
    email_nonce = fields.CharField(max_length=32, null=True)
    email_reminders = fields.BooleanField(default=True)
    email_deletions = fields.BooleanField(default=True)
    deleting_at = fields.DatetimeField(null=True)  # deletion started; the row goes last

    class Meta:
        table = "users"


class AuthToken(Model):
    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="tokens", on_delete=fields.CASCADE
    )
    token_hash = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)

    user_id: int
    # Not a column: whether the user owned anything only they see when the token was
    # read (storage.accounts.authenticate); unknown counts as yes.
    owns_unshared: bool = True

    class Meta:
        table = "auth_tokens"


class LoraModel(Model):
    id = fields.IntField(primary_key=True)
    public_id = fields.CharField(max_length=24, unique=True, null=True, default=new_public_id)
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="lora_models", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200)
    description = fields.TextField()
    created_at = fields.DatetimeField()
    # Set while at least one version is published: the model is public then.
    published_at = fields.DatetimeField(null=True)
    deleted_at = fields.DatetimeField(null=True)
    type = fields.CharEnumField(LoraType, max_length=16, default=LoraType.LORA)
    nsfw = fields.BooleanField(default=False)
    download_count = fields.BigIntField(default=0)
    # What catalogue search matches: public text only (name, description, tags, the
    # trained words of published versions, the owner's name); kept by storage.search.
    search_text = fields.TextField(default="")
    # Hidden by an operator (storage.takedowns): only the owner and operators see it.
    taken_down_at = fields.DatetimeField(null=True)
    taken_down_reason = fields.TextField(null=True)

    owner_id: int

    class Meta:
        table = "lora_models"
        indexes = (Index(fields=("download_count", "id"), name="model_downloads"),)


class ModelTag(Model):
    id = fields.IntField(primary_key=True)
    model: fields.ForeignKeyRelation[LoraModel] = fields.ForeignKeyField(
        "models.LoraModel", related_name="tag_rows", on_delete=fields.CASCADE
    )
    tag = fields.CharField(max_length=32)
    position = fields.SmallIntField(default=0)

    model_id: int

    class Meta:
        table = "model_tags"
        unique_together = (("model", "tag"),)
        indexes = (Index(fields=("tag", "model_id"), name="tag_models"),)


class ModelVersion(Model):
    id = fields.IntField(primary_key=True)
    public_id = fields.CharField(max_length=24, unique=True, null=True, default=new_public_id)
    model: fields.ForeignKeyRelation[LoraModel] = fields.ForeignKeyField(
        "models.LoraModel", related_name="versions", on_delete=fields.CASCADE
    )
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="model_versions", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200)
    status = fields.CharEnumField(VersionStatus, max_length=16, default=VersionStatus.DRAFT)
    published_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()
    deleted_at = fields.DatetimeField(null=True)
    base_model = fields.CharEnumField(BaseModel, max_length=16, default=BaseModel.OTHER)
    trained_words: list[str] = fields.JSONField(default=list)  # type: ignore[assignment]
    download_count = fields.BigIntField(default=0)
    taken_down_at = fields.DatetimeField(null=True)
    taken_down_reason = fields.TextField(null=True)

    model_id: int
    owner_id: int

    class Meta:
        table = "model_versions"
        indexes = (
            Index(fields=("model_id", "base_model"), name="version_base_model"),
            # The catalogue's baseModel filter starts from the base model.
            Index(fields=("base_model", "model_id"), name="base_model_versions"),
        )


class TrainingDataset(Model):
    id = fields.IntField(primary_key=True)
    public_id = fields.CharField(max_length=24, unique=True, null=True, default=new_public_id)
    version: fields.OneToOneRelation[ModelVersion] = fields.OneToOneField(
        "models.ModelVersion", related_name="training_dataset", on_delete=fields.CASCADE
    )
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="training_datasets", on_delete=fields.CASCADE
    )
    filename = fields.CharField(max_length=255)
    size_bytes = fields.BigIntField()
    sha256 = fields.CharField(max_length=64, null=True)
    visibility = fields.CharEnumField(Visibility, max_length=16)
    status = fields.CharEnumField(DatasetStatus, max_length=16)
    blob_key = fields.CharField(max_length=64, null=True)
    upload_nonce = fields.CharField(max_length=64, null=True)
    upload_expires_at = fields.DatetimeField(null=True)
    expires_at = fields.DatetimeField(null=True)
    # When the next unsent reminder falls due (null: none left); kept by storage.retention.
    next_reminder_at = fields.DatetimeField(null=True)
    claimed_at = fields.DatetimeField(null=True)
    claimed_by = fields.CharField(max_length=128, null=True)  # storage.system.claim_holder.holder()
    deleted_at = fields.DatetimeField(null=True)
    deletion_reason = fields.CharEnumField(DeletionReason, max_length=16, null=True)
    created_at = fields.DatetimeField()
    uploaded_at = fields.DatetimeField(null=True)
    # When its data key was destroyed (storage.retention.deletion), and the signed
    # receipt its tombstone carries (storage.crypto.receipts).
    key_destroyed_at = fields.DatetimeField(null=True)
    receipt_payload = fields.TextField(null=True)
    receipt_signature = fields.CharField(max_length=128, null=True)
    receipt_key_id = fields.CharField(max_length=32, null=True)

    version_id: int
    owner_id: int

    class Meta:
        table = "training_datasets"
        indexes = (
            Index(fields=("status", "expires_at"), name="dataset_status_expires"),
            Index(fields=("status", "next_reminder_at"), name="dataset_status_reminder"),
            Index(fields=("owner_id", "id"), name="dataset_owner"),
        )


class Notification(Model):
    id = fields.IntField(primary_key=True)
    public_id = fields.CharField(max_length=24, unique=True, null=True, default=new_public_id)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="notifications", on_delete=fields.CASCADE
    )
    dataset: fields.ForeignKeyNullableRelation[TrainingDataset] = fields.ForeignKeyField(
        "models.TrainingDataset",
        related_name="notifications",
        null=True,
        on_delete=fields.SET_NULL,
    )
    kind = fields.CharEnumField(NotificationKind, max_length=32)
    # Seconds before expiry for a reminder, 0 for a deletion notice: with the
    # unique constraint, one notification per dataset, kind, offset and window, ever.
    offset_seconds = fields.IntField(default=0)
    # The end of the window the notification is about: a new window (private again
    # after being public) gets its own reminders.
    window_end = fields.DatetimeField()
    message = fields.TextField()
    created_at = fields.DatetimeField()
    read_at = fields.DatetimeField(null=True)

    user_id: int
    dataset_id: int | None

    class Meta:
        table = "notifications"
        unique_together = (("dataset", "kind", "offset_seconds", "window_end"),)
        indexes = (Index(fields=("user_id", "read_at"), name="notification_user_read"),)


class DatasetEvent(Model):
    id = fields.IntField(primary_key=True)
    dataset: fields.ForeignKeyRelation[TrainingDataset] = fields.ForeignKeyField(
        "models.TrainingDataset", related_name="events", on_delete=fields.CASCADE
    )
    kind = fields.CharEnumField(EventKind, max_length=32)
    at = fields.DatetimeField()
    detail = fields.TextField(default="")

    dataset_id: int

    class Meta:
        table = "dataset_events"
        # A dataset's history, and the pruning each new event does, seek by dataset.
        indexes = (Index(fields=("dataset_id", "kind", "id"), name="event_dataset_kind"),)


class ModelFile(Model):
    """A weights file (safetensors) of a model version.

    The bytes live in three blobs: the header as uploaded (``header_key``), the header
    without the withheld training-data keys (``public_header_key``; the same blob when
    nothing was withheld) and the tensor data (``data_key``). A download is a header
    followed by the data. The header's metadata is kept parsed: what anybody may read in
    the database (:class:`ModelFileMetadata`), all of it, withheld keys included, in a
    fourth blob (``owner_metadata_key``) while they are not erased. Withheld values, and
    anything derived from them, are never stored in the database: only in the original
    header and owner's metadata blobs, both deleted at ``header_expires_at``.
    """

    id = fields.IntField(primary_key=True)
    public_id = fields.CharField(max_length=24, unique=True, null=True, default=new_public_id)
    version: fields.ForeignKeyRelation[ModelVersion] = fields.ForeignKeyField(
        "models.ModelVersion", related_name="files", on_delete=fields.CASCADE
    )
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="model_files", on_delete=fields.CASCADE
    )
    filename = fields.CharField(max_length=255)
    size_bytes = fields.BigIntField()  # as uploaded
    status = fields.CharEnumField(DatasetStatus, max_length=16)
    primary = fields.BooleanField(default=False)
    upload_nonce = fields.CharField(max_length=64, null=True)
    upload_expires_at = fields.DatetimeField(null=True)
    claimed_at = fields.DatetimeField(null=True)
    claimed_by = fields.CharField(max_length=128, null=True)  # storage.system.claim_holder.holder()
    header_key = fields.CharField(max_length=64, null=True)
    public_header_key = fields.CharField(max_length=64, null=True)
    data_key = fields.CharField(max_length=64, null=True)
    header_size = fields.BigIntField(null=True)
    public_header_size = fields.BigIntField(null=True)
    # Hashes, lower-case hex: of the file as uploaded, of the file without the withheld
    # keys, and of the tensor data (the same for both).
    sha256 = fields.CharField(max_length=64, null=True, db_index=True)
    auto_v2 = fields.CharField(max_length=10, null=True, db_index=True)
    public_sha256 = fields.CharField(max_length=64, null=True, db_index=True)
    public_auto_v2 = fields.CharField(max_length=10, null=True, db_index=True)
    auto_v3 = fields.CharField(max_length=64, null=True, db_index=True)
    withheld_keys: list[str] = fields.JSONField(default=list)  # type: ignore[assignment]
    # The whole metadata, withheld keys included (a JSON object): the owner's view.
    owner_metadata_key = fields.CharField(max_length=64, null=True)
    owner_metadata_size = fields.BigIntField(null=True)
    # The withheld list the public header was made with (header_firewall.fingerprint).
    withheld_list = fields.CharField(max_length=16, null=True)
    # When the original header (with the withheld keys) is erased; null: never.
    header_expires_at = fields.DatetimeField(null=True)
    header_erased_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()
    uploaded_at = fields.DatetimeField(null=True)
    deleted_at = fields.DatetimeField(null=True)
    deletion_reason = fields.CharEnumField(DeletionReason, max_length=16, null=True)
    # The original header's erasure: when its key was destroyed, and the signed receipt.
    header_key_destroyed_at = fields.DatetimeField(null=True)
    header_receipt_payload = fields.TextField(null=True)
    header_receipt_signature = fields.CharField(max_length=128, null=True)
    header_receipt_key_id = fields.CharField(max_length=32, null=True)

    version_id: int
    owner_id: int

    # The columns naming the file's blobs: every one is destroyed with the file.
    BLOB_COLUMNS: ClassVar = ("header_key", "public_header_key", "owner_metadata_key", "data_key")

    def blob_keys(self) -> set[str]:
        """The keys of the blobs it holds now (its two headers may be one blob)."""
        return {key for column in self.BLOB_COLUMNS if (key := getattr(self, column))}

    def parts(self, *, original: bool) -> list[tuple[str, int]]:
        """The blobs a download is made of, end to end: a header (the original, or the
        public one), then the data; each with its size."""
        assert self.data_key is not None and self.header_size is not None
        data_size = self.size_bytes - self.header_size
        if original:
            assert self.header_key is not None
            return [(self.header_key, self.header_size), (self.data_key, data_size)]
        assert self.public_header_key is not None and self.public_header_size is not None
        return [(self.public_header_key, self.public_header_size), (self.data_key, data_size)]

    class Meta:
        table = "model_files"
        indexes = (
            Index(fields=("version_id", "id"), name="file_version"),
            Index(fields=("status", "header_expires_at"), name="file_status_header"),
            Index(fields=("owner_id", "status"), name="file_owner"),
        )


class ModelFileMetadata(Model):
    """A weights file's header metadata as anybody may read it: without the withheld
    keys, a JSON object in header order, kept apart from the file's row so that only
    a read of the metadata loads it."""

    id = fields.IntField(primary_key=True)
    file: fields.OneToOneRelation[ModelFile] = fields.OneToOneField(
        "models.ModelFile", related_name="metadata", on_delete=fields.CASCADE
    )
    entries = fields.TextField()
    size = fields.BigIntField()  # of ``entries``, in UTF-8 bytes

    file_id: int

    class Meta:
        table = "model_file_metadata"


class DownloadLink(Model):
    """A download link that was used: one history entry (datasets) and at most one
    counted download (weights files) per link, however many ranged requests it serves.
    Forgotten an hour after first use (the link itself dies within minutes)."""

    link = fields.CharField(max_length=32, primary_key=True)
    kind = fields.CharField(max_length=1)  # storage.signing.Kind: "d" dataset, "f" file
    object_id = fields.IntField()
    first_used_at = fields.DatetimeField(db_index=True)
    counted = fields.BooleanField(default=False)  # its spans covered the whole file
    # The bytes it served, as JSON [[start, end), ...] (sorted, disjoint), of a file
    # ``size`` bytes long (storage.downloads.served).
    spans = fields.TextField(null=True)
    size = fields.BigIntField(null=True)

    class Meta:
        table = "download_links"


class DataExport(Model):
    """A zip of everything a user owns (storage.exports): built by a job, sealed like any
    blob, downloadable until ``expires_at``, then shredded."""

    id = fields.IntField(primary_key=True)
    public_id = fields.CharField(max_length=24, unique=True, null=True, default=new_public_id)
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="data_exports", on_delete=fields.CASCADE
    )
    status = fields.CharEnumField(ExportStatus, max_length=16)
    blob_key = fields.CharField(max_length=64, null=True)
    size_bytes = fields.BigIntField(null=True)
    created_at = fields.DatetimeField()
    claimed_at = fields.DatetimeField(null=True)
    claimed_by = fields.CharField(max_length=128, null=True)
    ready_at = fields.DatetimeField(null=True)
    expires_at = fields.DatetimeField(null=True)
    shredded_at = fields.DatetimeField(null=True)

    owner_id: int

    class Meta:
        table = "data_exports"
        indexes = (
            Index(fields=("owner_id", "id"), name="export_owner"),
            Index(fields=("status", "expires_at"), name="export_status_expires"),
        )


# Kept in storage/db/bookkeeping.py, found by Tortoise here (the app lists this module).
from storage.db.bookkeeping import BlobRemoval as BlobRemoval  # noqa: E402
from storage.db.bookkeeping import ClockMark as ClockMark  # noqa: E402
from storage.db.bookkeeping import IdempotencyKey as IdempotencyKey  # noqa: E402
from storage.db.bookkeeping import PublicGeneration as PublicGeneration  # noqa: E402
from storage.db.bookkeeping import UsernameHold as UsernameHold  # noqa: E402
