"""Health: ``/healthz`` (the process and its database), ``/readyz`` (everything it
needs to serve), and ``/`` (where the API is)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from graph.http.errors import error_response
from graph.schema.context import services_of
from storage.db import connection
from storage.system import disk


async def readyz(request: Request) -> Response:
    """Whether this process can serve: the database and the object store answer, Redis
    too when configured, and the disk has room for uploads. 503 (with what is wrong)
    when not: deletions still go on. Only these words: no number a stranger could
    watch move with somebody's private upload (free bytes, counts, sizes)."""
    services = services_of(request)
    settings = services.settings
    free = await asyncio.to_thread(disk.free_bytes, settings.data_dir)
    checks = {
        "database": "ok" if await connection.ping() else "unavailable",
        "disk": "ok" if free >= settings.min_free_bytes else "full",
        "objectStore": "ok" if await services.runtime.blobs.ping() else "unavailable",
    }
    if services.queue is not None:
        checks["redis"] = "ok" if await services.queue.ping() else "unavailable"
    ready = all(value == "ok" for value in checks.values())
    body = {"status": "ok" if ready else "unavailable", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)


async def home(request: Request) -> Response:
    """``/``: a browser is sent to GraphiQL (307 to /graphql); anything else learns where
    the API is."""
    settings = services_of(request).settings
    graphql = settings.public_url + "/graphql"
    if settings.graphiql and "text/html" in request.headers.get("accept", ""):
        return RedirectResponse(graphql, status_code=307)
    return error_response(404, "NOT_FOUND", f"Nothing here: the GraphQL API is at {graphql}.")


async def healthz(request: Request) -> Response:
    if await connection.ping():
        return JSONResponse({"status": "ok"})
    return JSONResponse({"status": "database unavailable"}, status_code=503)
