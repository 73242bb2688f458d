"""Signed deletion receipts: canonical JSON, signed with Ed25519.

A receipt is three strings (``docs/security.md#deletion-receipts`` documents them for
anyone who checks one):

- ``payload``: canonical JSON: keys sorted, no spaces, UTF-8 (non-ASCII characters
  as they are), integers and strings only, times as ISO 8601 in UTC with their offset;
- ``signature``: Ed25519 over the payload's bytes, base64url without padding;
- ``keyId``: which receipt key signed it (also inside the payload, so it is signed).

Receipt keys live in ``receipt_keys``: the public half as published
(``Query.receiptPublicKeys``, ``/.well-known/lorashelf-receipt-keys.json``), the private
half wrapped by the master key. One is made on first use; ``lorashelf
rotate-receipt-key`` retires it for a new one, and a retired key stays published so the
receipts it signed can still be checked.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from storage.crypto import keystore
from storage.crypto.master import MasterKeys
from storage.db.key_tables import ReceiptKey

FORMAT = "lorashelf-receipt/1"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    text = text.strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical(payload: dict[str, Any]) -> bytes:
    """The payload's one encoding: sorted keys, no spaces, UTF-8."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def instant(moment: datetime | None) -> str | None:
    """A time as a receipt (and the API) shows it: ISO 8601 in UTC with its offset."""
    return moment.astimezone(UTC).isoformat() if moment is not None else None


@dataclass(frozen=True)
class Receipt:
    payload: str
    signature: str
    key_id: str

    def as_json(self) -> dict[str, str]:
        """The form ``lorashelf verify-receipt`` reads (and the API returns)."""
        return {"payload": self.payload, "signature": self.signature, "keyId": self.key_id}


class InvalidReceipt(Exception):
    """A receipt that does not verify."""


def key_id_of(public: bytes) -> str:
    return hashlib.sha256(public).hexdigest()[:16]


def key_purpose(key_id: str) -> str:
    return f"receipt-key:{key_id}"


async def _create(master: MasterKeys, now: datetime) -> ReceiptKey:
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    kid = key_id_of(public)
    seed = private.private_bytes_raw()
    wrapped_by, wrapped = master.wrap(seed, purpose=key_purpose(kid))
    return await ReceiptKey.create(
        key_id=kid,
        public_key=b64url(public),
        master_key_id=wrapped_by,
        wrapped_private=wrapped,
        created_at=now,
    )


async def current_key(master: MasterKeys, now: datetime) -> ReceiptKey:
    """The key that signs new receipts: the newest not retired (made on first use)."""
    await keystore.ready(master)
    row = await ReceiptKey.filter(retired_at=None).order_by("created_at", "key_id").first()
    if row is not None:
        return row
    await _create(master, now)
    # Two processes may each have made one at the same moment: both then sign with the
    # oldest of them (every one stays published, so any receipt can be checked).
    first = await ReceiptKey.filter(retired_at=None).order_by("created_at", "key_id").first()
    assert first is not None
    return first


async def sign(master: MasterKeys, payload: dict[str, Any], *, now: datetime) -> Receipt:
    """Sign ``payload`` (its ``format``, ``keyId`` and ``issuedAt`` added)."""
    return (await signer(master, now=now)).sign_all([payload])[0]


@dataclass(frozen=True)
class Signer:
    """The current receipt key, unwrapped, and the instant its receipts are issued at:
    for many receipts (a batch of deletions), signed with no database work. (Signing
    in a worker thread beside other Python work was measured slower: the canonical
    JSON around each signature contends for the GIL.)"""

    key_id: str
    private: Ed25519PrivateKey
    issued_at: str | None

    def sign_all(self, payloads: list[dict[str, Any]]) -> list[Receipt]:
        signed = []
        for payload in payloads:
            body = canonical(
                {**payload, "format": FORMAT, "keyId": self.key_id, "issuedAt": self.issued_at}
            )
            signed.append(Receipt(body.decode(), b64url(self.private.sign(body)), self.key_id))
        return signed


async def signer(master: MasterKeys, *, now: datetime) -> Signer:
    """The key that signs receipts issued ``now``, read and unwrapped once."""
    row = await current_key(master, now)
    seed = master.unwrap(
        row.master_key_id, bytes(row.wrapped_private), purpose=key_purpose(row.key_id)
    )
    return Signer(row.key_id, Ed25519PrivateKey.from_private_bytes(seed), instant(now))


async def rotate(master: MasterKeys, *, now: datetime) -> ReceiptKey:
    """Retire the current receipt key for a new one (the old one stays published)."""
    await keystore.ready(master)
    await ReceiptKey.filter(retired_at=None).update(retired_at=now)
    return await _create(master, now)


async def published(master: MasterKeys, *, now: datetime) -> list[ReceiptKey]:
    """Every receipt key, oldest first (retired ones included; the first made now if
    there is none yet, so the key that will sign is known before it signs)."""
    rows = list(await ReceiptKey.all().order_by("created_at", "key_id"))
    if not rows:
        await current_key(master, now)
        rows = list(await ReceiptKey.all().order_by("created_at", "key_id"))
    return rows


def verify(receipt: dict[str, Any], public_key: str) -> dict[str, Any]:
    """Check a receipt (``{"payload", "signature", "keyId"}``) against a public key
    (base64url of its 32 raw bytes); its payload, parsed. Raises :class:`InvalidReceipt`."""
    try:
        payload = str(receipt["payload"])
        signature = b64url_decode(str(receipt["signature"]))
        key = Ed25519PublicKey.from_public_bytes(b64url_decode(public_key))
        key.verify(signature, payload.encode())
    except (KeyError, ValueError, binascii.Error, InvalidSignature) as exc:
        raise InvalidReceipt("the signature does not match the payload and key") from exc
    parsed: dict[str, Any] = json.loads(payload)
    if canonical(parsed).decode() != payload:
        raise InvalidReceipt("the payload is not in canonical form")
    if parsed.get("keyId") != receipt.get("keyId", parsed.get("keyId")):
        raise InvalidReceipt("the receipt's keyId is not the one its payload names")
    return parsed
