"""The key store's tables, apart from everything else (storage.crypto.keystore).

``blob_keys`` holds one wrapped data key per sealed blob and nothing else: destroying a
blob's key is deleting its row (then SQLite's ``secure_delete`` has zeroed it and a WAL
checkpoint drops the old page; PostgreSQL's table is rewritten by ``VACUUM FULL`` in the
sweep). ``plaintext_blobs`` lists the blobs stored before encryption, until
``lorashelf encrypt-existing`` has sealed them; ``receipt_keys`` the Ed25519 keys that
sign deletion receipts (private halves wrapped like data keys).
"""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class BlobKey(Model):
    """A sealed blob's data key, wrapped by a master key."""

    object_id = fields.CharField(max_length=32, primary_key=True)  # the blob's key
    master_key_id = fields.CharField(max_length=16, db_index=True)
    wrapped = fields.BinaryField()
    created_at = fields.DatetimeField()

    class Meta:
        table = "blob_keys"


class PlaintextBlob(Model):
    """A blob written before blobs were sealed: read as it is until it is sealed."""

    object_id = fields.CharField(max_length=32, primary_key=True)

    class Meta:
        table = "plaintext_blobs"


class ReceiptKey(Model):
    """An Ed25519 key that signs deletion receipts, its public half published for good."""

    key_id = fields.CharField(max_length=32, primary_key=True)
    public_key = fields.CharField(max_length=64)  # base64url of the raw 32 bytes
    master_key_id = fields.CharField(max_length=16)
    wrapped_private = fields.BinaryField()
    created_at = fields.DatetimeField()
    retired_at = fields.DatetimeField(null=True)

    class Meta:
        table = "receipt_keys"
