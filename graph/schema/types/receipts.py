"""Deletion receipts and the keys that sign them (storage/crypto/receipts.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry

from storage.crypto.receipts import Receipt
from storage.db.key_tables import ReceiptKey


@strawberry.type(
    name="DeletionReceipt",
    description=(
        "A signed record of a deletion: what was deleted, when its window ended, when its "
        "key was destroyed, when the last stored copy was removed, and why. Check it with "
        "`lorashelf verify-receipt` or any Ed25519 library (see the security docs)."
    ),
)
class DeletionReceiptType:
    payload: str = strawberry.field(
        description="Canonical JSON (keys sorted, no spaces, UTF-8): what the receipt says."
    )
    signature: str = strawberry.field(
        description="Ed25519 signature over the payload's bytes, base64url without padding."
    )
    key_id: str = strawberry.field(
        description="The receipt key that signed it (see receiptPublicKeys)."
    )

    @classmethod
    def of(cls, receipt: Receipt) -> DeletionReceiptType:
        return cls(payload=receipt.payload, signature=receipt.signature, key_id=receipt.key_id)

    @classmethod
    def stored(
        cls, payload: str | None, signature: str | None, key_id: str | None
    ) -> DeletionReceiptType | None:
        if payload is None or signature is None or key_id is None:
            return None
        return cls(payload=payload, signature=signature, key_id=key_id)


@strawberry.type(name="ReceiptKey", description="A public key that signs deletion receipts.")
class ReceiptKeyType:
    key_id: str = strawberry.field(description="Its id, as receipts name it (keyId).")
    public_key: str = strawberry.field(
        description="The Ed25519 public key: its 32 raw bytes, base64url without padding."
    )
    created_at: datetime = strawberry.field(description="When it was made.")
    retired_at: datetime | None = strawberry.field(
        description="When it stopped signing new receipts (it still checks old ones)."
    )

    @classmethod
    def of(cls, row: ReceiptKey) -> ReceiptKeyType:
        return cls(
            key_id=row.key_id,
            public_key=row.public_key,
            created_at=row.created_at.astimezone(UTC),
            retired_at=row.retired_at.astimezone(UTC) if row.retired_at else None,
        )


@strawberry.type(
    name="AccountDeletionReceipt",
    description=(
        "The signed record of an account's deletion, returned once by deleteAccount (the "
        "account is gone afterwards: keep it). Its payload holds every dataset's own "
        "receipt."
    ),
)
class AccountDeletionReceiptType:
    payload: str = strawberry.field(description="Canonical JSON: what was deleted, and when.")
    signature: str = strawberry.field(
        description="Ed25519 signature over the payload's bytes, base64url without padding."
    )
    key_id: str = strawberry.field(description="The receipt key that signed it.")
    dataset_receipts: list[DeletionReceiptType] = strawberry.field(
        description="Each training dataset's deletion receipt (also inside the payload)."
    )
