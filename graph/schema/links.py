"""Signed links a field or a payload hands out: download URLs and upload URLs, built
from ``LORASHELF_PUBLIC_URL``, never from the request's ``Host``."""

from __future__ import annotations

from datetime import timedelta

from graph.schema.context import Info
from storage import signing


def download_link(info: Info, kind: signing.Kind, object_id: int) -> str:
    """A signed download URL for this viewer, good for a few minutes and only while the
    sign-in it was minted for lasts (the route checks both, and the rule, again when it
    is used)."""
    ctx = info.context
    lifetime = ctx.services.settings.download_url_lifetime
    expires = ctx.now() + timedelta(seconds=lifetime)
    session = ctx.token.id if ctx.token is not None else None
    grant = signing.DownloadGrant(
        kind, object_id, ctx.viewer_id, int(expires.timestamp()) + 1, session
    )
    token = ctx.services.signer.download_token(grant)
    return ctx.services.link(ctx.request, "download", token=token)


def upload_url(info: Info, grant: signing.UploadGrant) -> str:
    """The single-use upload URL for a grant."""
    ctx = info.context
    return ctx.services.link(ctx.request, "upload", token=ctx.services.signer.upload_token(grant))
