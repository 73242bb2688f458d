"""Tables that keep account of requests and time rather than of the catalogue: the
clock mark, the public generation, idempotency keys, held usernames, blobs whose
removal is owed. Tortoise finds
them through storage.db.models, which re-exports them (one module in the app's list)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from storage.db.models import User


class ClockMark(Model):
    """The latest instant any process has seen (storage.clock): time as lorashelf sees
    it never goes back, across processes and restarts, even if a wall clock does.

    (The first line is stored as the table's description: kept as written when the
    table was made, though the clock is now storage.system.clock.)"""

    name = fields.CharField(max_length=32, primary_key=True)
    at = fields.DatetimeField()

    class Meta:
        table = "clock_marks"


class PublicGeneration(Model):
    """A counter that goes up with every write that can change what anonymous viewers
    see (storage.db.public_generation): cached anonymous answers are valid for one value of it."""

    id = fields.IntField(primary_key=True)
    value = fields.BigIntField(default=0)

    class Meta:
        table = "public_generation"


class IdempotencyKey(Model):
    """A mutation request sent with an ``Idempotency-Key`` (storage/idempotency.py): claimed
    before it runs, marked in the transaction of the change it makes, and answered once;
    a retry with the same key gets the stored answer. Kept 24 hours.

    Nothing here is readable without the client's key: ``lookup`` is an HMAC of the
    viewer's scope and the key, ``request_mac`` an HMAC of the request under a key derived
    from it, and ``answer`` is sealed (AES-GCM) under another."""

    id = fields.BigIntField(primary_key=True)
    lookup = fields.CharField(max_length=64, unique=True)
    user: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="idempotency_keys", null=True, on_delete=fields.CASCADE
    )
    request_mac = fields.CharField(max_length=64)
    created_at = fields.DatetimeField(db_index=True)
    claim_token = fields.CharField(max_length=32)
    claimed_by = fields.CharField(max_length=80)
    claimed_at = fields.DatetimeField()
    acted_at = fields.DatetimeField(null=True)
    status = fields.SmallIntField(null=True)
    answer = fields.BinaryField(null=True)

    user_id: int | None

    class Meta:
        table = "idempotency_keys"


class UsernameHold(Model):
    """A deleted account's username, held back from sign-up until ``until``: kept as a
    keyed hash (storage.account_deletion.held_name), never as the name."""

    name_hash = fields.CharField(max_length=64, primary_key=True)
    until = fields.DatetimeField(db_index=True)

    class Meta:
        table = "username_holds"


class BlobRemoval(Model):
    """A blob written by an upload that failed, whose removal from the store failed too
    (the store was away): its key was destroyed, its bytes are removed by the sweep
    (storage.blobs.removals). Only ever a generated blob key."""

    object_id = fields.CharField(max_length=32, primary_key=True)
    recorded_at = fields.DatetimeField(db_index=True)

    class Meta:
        table = "blob_removals"
