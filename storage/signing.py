"""Sealed tokens: upload and download URLs, and connection cursors.

Every token lorashelf hands out is sealed with AES-256-GCM under a key derived from
``LORASHELF_SECRET_KEY``: authenticated (tampering is refused) *and* encrypted, so a
token reveals nothing, not even the sequential keys inside it that would tell how
many rows exist or in which order they were made. Each purpose has its own
associated data, so a token of one kind is never accepted as another.

E-mail links carry tokens too: an address verification names the account, the
single-use nonce of that link and when it expires; an unsubscribe link names the account
and the e-mail it stops.

An upload token names the kind of object (a training dataset ``"d"`` or a weights
file ``"f"``), its key and the single-use nonce; a download token also names the
viewer it was minted for, the sign-in (bearer token) it dies with, when it expires,
and a random link id (one download link, however many ranged requests it serves).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage.errors import ServiceError

Kind = Literal["d", "f", "x"]
DATASET: Kind = "d"
FILE: Kind = "f"
EXPORT: Kind = "x"  # a data export (downloads only)
MAX_TOKEN = 1024  # characters: anything longer is not one of ours


class BadToken(Exception):
    """A token that is malformed, tampered with, of another purpose, or expired."""


@dataclass(frozen=True)
class UploadGrant:
    kind: Kind
    object_id: int
    nonce: str


@dataclass(frozen=True)
class DownloadGrant:
    kind: Kind
    object_id: int
    viewer: int | None
    expires: int  # unix seconds
    session: int | None = None  # the sign-in the link was minted for: it dies with it
    link: str = field(default_factory=lambda: secrets.token_hex(16))


def _kind(value: object) -> Kind:
    if value == DATASET:
        return DATASET
    if value == FILE:
        return FILE
    if value == EXPORT:
        return EXPORT
    raise BadToken("unknown kind")


def _optional_int(value: object) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise BadToken("malformed token")


def _int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise BadToken("malformed token")


class Sealer:
    """Seals and opens JSON payloads for one secret key."""

    def __init__(self, secret_key: str):
        key = hashlib.sha256(b"lorashelf tokens v1\0" + secret_key.encode()).digest()
        self._aead = AESGCM(key)

    def seal(self, purpose: str, payload: Any) -> str:
        nonce = secrets.token_bytes(12)
        data = json.dumps(payload, separators=(",", ":")).encode()
        sealed = nonce + self._aead.encrypt(nonce, data, purpose.encode())
        return base64.urlsafe_b64encode(sealed).decode().rstrip("=")

    def open(self, purpose: str, token: str) -> Any:
        if not token or len(token) > MAX_TOKEN or not token.isascii():
            raise BadToken("malformed token")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            data = self._aead.decrypt(raw[:12], raw[12:], purpose.encode())
            return json.loads(data)
        except (binascii.Error, ValueError, InvalidTag):
            raise BadToken("invalid token") from None


class Signer:
    """The upload and download URL tokens."""

    def __init__(self, secret_key: str):
        self.sealer = Sealer(secret_key)

    def upload_token(self, grant: UploadGrant) -> str:
        return self.sealer.seal("upload", [grant.kind, grant.object_id, grant.nonce])

    def read_upload_token(self, token: str) -> UploadGrant:
        payload = self.sealer.open("upload", token)
        if not isinstance(payload, list) or len(payload) != 3:
            raise BadToken("malformed token")
        kind, object_id, nonce = payload
        if not isinstance(nonce, str):
            raise BadToken("malformed token")
        return UploadGrant(_kind(kind), _int(object_id), nonce)

    def download_token(self, grant: DownloadGrant) -> str:
        payload = [
            grant.kind,
            grant.object_id,
            grant.viewer,
            grant.expires,
            grant.session,
            grant.link,
        ]
        return self.sealer.seal("download", payload)

    def read_download_token(self, token: str, *, now: datetime) -> DownloadGrant:
        payload = self.sealer.open("download", token)
        if not isinstance(payload, list) or len(payload) != 6:
            raise BadToken("malformed token")
        kind, object_id, viewer, expires, session, link = payload
        if not isinstance(link, str) or len(link) != 32:
            raise BadToken("malformed token")
        grant = DownloadGrant(
            _kind(kind),
            _int(object_id),
            _optional_int(viewer),
            _int(expires),
            _optional_int(session),
            link,
        )
        if now.timestamp() >= grant.expires:
            raise BadToken("expired download token")
        return grant


@dataclass(frozen=True)
class EmailGrant:
    """An address verification link: the account, the link's nonce, its expiry."""

    user_id: int
    nonce: str
    expires: int  # unix seconds


class MailTokens:
    """The tokens in e-mail links (``storage/mail/links.py``)."""

    def __init__(self, secret_key: str):
        self.sealer = Sealer(secret_key)

    def verification(self, grant: EmailGrant) -> str:
        return self.sealer.seal("verify-email", [grant.user_id, grant.nonce, grant.expires])

    def read_verification(self, token: str) -> EmailGrant:
        """The grant in a verification token, expired or not (the caller says which, to
        answer clearly); BadToken for anything that is not one."""
        payload = self.sealer.open("verify-email", token)
        if not isinstance(payload, list) or len(payload) != 3:
            raise BadToken("malformed token")
        user_id, nonce, expires = payload
        if not isinstance(nonce, str):
            raise BadToken("malformed token")
        return EmailGrant(_int(user_id), nonce, _int(expires))

    def unsubscribe(self, user_id: int, topic: str) -> str:
        return self.sealer.seal("unsubscribe", [user_id, topic])

    def read_unsubscribe(self, token: str) -> tuple[int, str]:
        payload = self.sealer.open("unsubscribe", token)
        if not isinstance(payload, list) or len(payload) != 2 or not isinstance(payload[1], str):
            raise BadToken("malformed token")
        return _int(payload[0]), payload[1]


class Cursors:
    """Connection cursors: a listing's position (``storage.db.pages``), sealed."""

    def __init__(self, sealer: Sealer):
        self._sealer = sealer

    def seal(self, position: str) -> str:
        return self._sealer.seal("cursor", position)

    def open(self, cursor: str) -> str:
        """The position in a cursor we made, else INVALID_CURSOR (never a server error)."""
        try:
            position = self._sealer.open("cursor", cursor)
        except BadToken:
            position = None
        if not isinstance(position, str):
            raise ServiceError("Malformed cursor.", field="after", code="INVALID_CURSOR")
        return position
