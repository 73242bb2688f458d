"""The reference web app (``web/``, built by Vite into ``web/dist``), served at ``/app/``.

Same origin as the API, so it needs no CORS. Files of the build are served as they
are: the content-hashed ones under ``assets/`` cached for a year, the rest (the page)
revalidated every time. Any other path under ``/app/`` that does not name a file (no
extension, not under ``assets/``) is a route of the app itself: ``index.html``, so a
link to ``/app/models/m_…`` can be opened, reloaded and shared.

The page's CSP allows this origin only: scripts, styles, images, and connections to
the API (``/graphql``, uploads, downloads) and its WebSocket; nothing inline.

Without a build the API works as ever and ``/app/`` answers 503 saying how to build it
(``scripts/serve`` builds it when Node.js is installed).
"""

from __future__ import annotations

import html
import os
from pathlib import Path, PurePosixPath

import anyio
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Receive, Scope, Send

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
DIST_DIR = WEB_DIR / "dist"
URL_PREFIX = "/app"
BUILD_COMMAND = "npm --prefix web ci && npm --prefix web run build"
INDEX = "index.html"

# 'self' covers the same host's ws:// and wss:// too (CSP Level 3), so the
# subscriptions' WebSocket needs no host named here.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "object-src 'none'; frame-ancestors 'none'"
)
IMMUTABLE = "public, max-age=31536000, immutable"  # assets/ names carry their hash
REVALIDATE = "no-cache"

_NOT_BUILT = """<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>lorashelf web app: not built</title>
    <link rel="icon" href="data:,">
  </head>
  <body>
    <h1>The web app is not built on this server</h1>
    <p>lorashelf serves its reference web app from <code>{dist}</code>, which has no
    <code>index.html</code> yet. With Node.js 20.19+ and npm, build it with
    <code>{command}</code> (<code>scripts/serve</code> does it for you), then reload.</p>
    <p>The API itself works without it: GraphQL at <code>/graphql</code>.</p>
  </body>
</html>
"""


def is_built(dist: Path = DIST_DIR) -> bool:
    return (dist / INDEX).is_file()


def _is_route(path: str) -> bool:
    """A path the app routes itself (``models/m_x``), not a missing file (``x.js``)."""
    parts = PurePosixPath(path.replace(os.sep, "/")).parts
    return not (parts and parts[0] == "assets") and not (parts and "." in parts[-1][1:])


class WebApp(StaticFiles):
    """Starlette's static files (safe paths, ETag/304, HEAD, ranges) with the app's
    index.html for its own routes, its cache headers and its CSP."""

    def __init__(self, dist: Path = DIST_DIR):
        super().__init__(directory=dist, check_dir=False)
        self.dist = dist

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not is_built(self.dist):
            body = _NOT_BUILT.format(
                dist=html.escape(str(self.dist)), command=html.escape(BUILD_COMMAND)
            )
            page = HTMLResponse(body, status_code=503, headers={"cache-control": "no-store"})
            await page(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            return await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code != 404 or not _is_route(path):
                raise
        full_path, stat_result = await anyio.to_thread.run_sync(self.lookup_path, INDEX)
        if stat_result is None:
            raise HTTPException(status_code=404)
        return self.file_response(full_path, stat_result, scope)

    def file_response(
        self,
        full_path: PathLike,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        name = Path(full_path).relative_to(self.dist.resolve()).as_posix()
        response.headers["cache-control"] = IMMUTABLE if name.startswith("assets/") else REVALIDATE
        if name.endswith(".html"):
            response.headers["content-security-policy"] = CSP
        return response
