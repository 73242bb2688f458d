"""The links e-mail carries: where they point (``graph/http/email.py`` serves them) and
their sealed tokens (``storage.signing.MailTokens``). Links are absolute, built from
``LORASHELF_PUBLIC_URL`` (required with ``LORASHELF_SMTP_URL``)."""

from __future__ import annotations

from urllib.parse import quote

from storage.config.settings import Settings
from storage.signing import MailTokens

VERIFY_PATH = "/email/verify"
UNSUBSCRIBE_PATH = "/email/unsubscribe"


def tokens(settings: Settings) -> MailTokens:
    return MailTokens(settings.secret_key)


def verification_link(settings: Settings, token: str) -> str:
    return f"{settings.public_url}{VERIFY_PATH}?token={quote(token)}"


def unsubscribe_link(settings: Settings, user_id: int, topic: str) -> str:
    token = tokens(settings).unsubscribe(user_id, topic)
    return f"{settings.public_url}{UNSUBSCRIBE_PATH}?token={quote(token)}"
