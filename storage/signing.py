"""Signed upload and download URLs (itsdangerous, HMAC with constant-time checks)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from itsdangerous import BadSignature, URLSafeSerializer


class BadToken(Exception):
    """A URL token that is malformed, tampered with or expired."""


@dataclass(frozen=True)
class DownloadGrant:
    dataset_id: int
    viewer: int | None
    expires: int  # unix seconds


class Signer:
    def __init__(self, secret_key: str):
        self._upload = URLSafeSerializer(secret_key, salt="lorashelf.upload")
        self._download = URLSafeSerializer(secret_key, salt="lorashelf.download")

    def upload_token(self, dataset_id: int, nonce: str) -> str:
        return str(self._upload.dumps([dataset_id, nonce]))

    def read_upload_token(self, token: str) -> tuple[int, str]:
        try:
            dataset_id, nonce = self._upload.loads(token)
        except (BadSignature, ValueError, TypeError):
            raise BadToken("invalid upload token") from None
        if not isinstance(dataset_id, int) or not isinstance(nonce, str):
            raise BadToken("invalid upload token")
        return dataset_id, nonce

    def download_token(self, grant: DownloadGrant) -> str:
        return str(self._download.dumps([grant.dataset_id, grant.viewer, grant.expires]))

    def read_download_token(self, token: str, *, now: datetime) -> DownloadGrant:
        try:
            dataset_id, viewer, expires = self._download.loads(token)
        except (BadSignature, ValueError, TypeError):
            raise BadToken("invalid download token") from None
        if not isinstance(dataset_id, int) or not isinstance(expires, int):
            raise BadToken("invalid download token")
        if viewer is not None and not isinstance(viewer, int):
            raise BadToken("invalid download token")
        if now.timestamp() >= expires:
            raise BadToken("expired download token")
        return DownloadGrant(dataset_id, viewer, expires)
