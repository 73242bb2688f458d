"""Signed upload and download URLs (itsdangerous, HMAC with constant-time checks).

A token names the kind of object (a training dataset ``"d"`` or a weights file
``"f"``), its key and, for an upload, the single-use nonce; a download token also
names the viewer it was minted for, when it expires, and a random link id (one
download link, however many ranged requests it serves).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from itsdangerous import BadSignature, URLSafeSerializer

Kind = Literal["d", "f"]
DATASET: Kind = "d"
FILE: Kind = "f"


class BadToken(Exception):
    """A URL token that is malformed, tampered with or expired."""


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
    raise BadToken("unknown kind")


class Signer:
    def __init__(self, secret_key: str):
        self._upload = URLSafeSerializer(secret_key, salt="lorashelf.upload.v2")
        self._download = URLSafeSerializer(secret_key, salt="lorashelf.download.v2")

    def upload_token(self, grant: UploadGrant) -> str:
        return str(self._upload.dumps([grant.kind, grant.object_id, grant.nonce]))

    def read_upload_token(self, token: str) -> UploadGrant:
        try:
            kind, object_id, nonce = self._upload.loads(token)
        except (BadSignature, ValueError, TypeError):
            raise BadToken("invalid upload token") from None
        if not isinstance(object_id, int) or not isinstance(nonce, str):
            raise BadToken("invalid upload token")
        return UploadGrant(_kind(kind), object_id, nonce)

    def download_token(self, grant: DownloadGrant) -> str:
        payload = [
            grant.kind,
            grant.object_id,
            grant.viewer,
            grant.expires,
            grant.session,
            grant.link,
        ]
        return str(self._download.dumps(payload))

    def read_download_token(self, token: str, *, now: datetime) -> DownloadGrant:
        try:
            kind, object_id, viewer, expires, session, link = self._download.loads(token)
        except (BadSignature, ValueError, TypeError):
            raise BadToken("invalid download token") from None
        if not isinstance(object_id, int) or not isinstance(expires, int):
            raise BadToken("invalid download token")
        for optional in (viewer, session):
            if optional is not None and not isinstance(optional, int):
                raise BadToken("invalid download token")
        if not isinstance(link, str) or len(link) != 32:
            raise BadToken("invalid download token")
        if now.timestamp() >= expires:
            raise BadToken("expired download token")
        return DownloadGrant(_kind(kind), object_id, viewer, expires, session, link)
