"""The floor: the least an HTTP JSON endpoint can do to answer lorashelf's front page.

A plain Starlette app over the same SQLite file, through ``aiosqlite`` (one
connection, as Tortoise has), answering with one hand-written SQL join per request
and ``json.dumps`` of plain dicts: the same JSON bytes lorashelf gives an anonymous
reader (``bench/run.py`` checks it byte for byte and stops if not). It applies the same
visibility rule for an anonymous reader (published, undeleted models and versions;
PUBLIC, AVAILABLE datasets of published versions; AVAILABLE files, their public
header's size and hash unless the dataset is public) and nothing else: no GraphQL, no
auth, no limits, no ORM.

    GET /front?first=50[&files=1]   the front page (``models(first:)``)
    GET /model?id=m_...[&files=1]   the model page (``model(id:)``)
    GET /healthz

Run by the bench under uvicorn exactly as ``lorashelf serve`` runs (same uvicorn
options): ``python bench/floor.py --db PATH --port P``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiosqlite
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

PREFIX = {"User": "u", "Model": "m", "ModelVersion": "v", "TrainingDataset": "d", "ModelFile": "f"}

# One join: the page's models (a keyset page, newest first), their owners, their
# published versions, the versions' public datasets and (with files) available files.
SQL = """
SELECT m.public_id, m.name, m.description, u.public_id, u.username,
       v.public_id, v.name, v.status, v.published_at,
       d.public_id, d.filename, d.size_bytes, d.sha256, d.visibility, d.status, d.expires_at
       {file_columns}
FROM lora_models m
JOIN users u ON u.id = m.owner_id
LEFT JOIN model_versions v
       ON v.model_id = m.id AND v.deleted_at IS NULL AND v.status = 'PUBLISHED'
LEFT JOIN training_datasets d
       ON d.version_id = v.id AND d.visibility = 'PUBLIC' AND d.status = 'AVAILABLE'
{file_join}
WHERE m.id IN ({models})
ORDER BY m.id DESC, v.created_at DESC, v.id DESC{file_order}
"""
FILE_COLUMNS = """,
       f.public_id, f.filename,
       CASE WHEN f.header_size IS NULL OR f.public_header_size IS NULL THEN f.size_bytes
            WHEN {keys_public} THEN f.size_bytes
            ELSE f.size_bytes - f.header_size + f.public_header_size END,
       CASE WHEN {keys_public} THEN f.sha256 ELSE f.public_sha256 END"""
# storage.privacy.access.sees_withheld_keys for an anonymous reader
KEYS_PUBLIC = (
    "(f.withheld_keys <> '[]' AND f.header_erased_at IS NULL "
    "AND (f.header_expires_at IS NULL OR f.header_expires_at > :now) AND d.id IS NOT NULL)"
)
FILE_JOIN = "LEFT JOIN model_files f ON f.version_id = v.id AND f.status = 'AVAILABLE'"
FILE_ORDER = ', f."primary" DESC, f.id'
PAGE = (
    "SELECT id FROM lora_models WHERE deleted_at IS NULL AND published_at IS NOT NULL "
    "AND nsfw = 0 ORDER BY id DESC LIMIT :first"
)
ONE = (
    "SELECT id FROM lora_models WHERE deleted_at IS NULL AND published_at IS NOT NULL "
    "AND public_id = :public_id"
)


def statement(page: str, files: bool) -> str:
    return SQL.format(
        file_columns=FILE_COLUMNS.format(keys_public=KEYS_PUBLIC) if files else "",
        file_join=FILE_JOIN if files else "",
        file_order=FILE_ORDER if files else "",
        models=page,
    )


STATEMENTS = {
    ("front", False): statement(PAGE, False),
    ("front", True): statement(PAGE, True),
    ("model", False): statement(ONE, False),
    ("model", True): statement(ONE, True),
}


def gid(type_name: str, public_id: str) -> str:
    return f"{PREFIX[type_name]}_{public_id}"


def iso(stored: str | None) -> str | None:
    """Tortoise stores ``2026-01-02 03:04:05.678901+00:00``; the API sends isoformat()."""
    return None if stored is None else stored.replace(" ", "T", 1)


def now_text() -> str:
    return datetime.now(UTC).isoformat(sep=" ")


def shape(rows: list[Any], files: bool) -> list[dict[str, Any]]:
    """Rows of the join -> models with their versions, files and datasets, in order."""
    models: list[dict[str, Any]] = []
    model: dict[str, Any] | None = None
    version: dict[str, Any] | None = None
    for row in rows:
        if model is None or model["id"] != gid("Model", row[0]):
            model = {
                "id": gid("Model", row[0]),
                "name": row[1],
                "description": row[2],
                "owner": {"id": gid("User", row[3]), "username": row[4]},
                "versions": [],
            }
            models.append(model)
            version = None
        if row[5] is None:
            continue
        if version is None or version["id"] != gid("ModelVersion", row[5]):
            version = {
                "id": gid("ModelVersion", row[5]),
                "name": row[6],
                "status": row[7],
                "publishedAt": iso(row[8]),
            }
            if files:
                version["files"] = []
            version["trainingDataset"] = (
                None
                if row[9] is None
                else {
                    "id": gid("TrainingDataset", row[9]),
                    "filename": row[10],
                    "sizeBytes": row[11],
                    "sha256": row[12],
                    "visibility": row[13],
                    "status": row[14],
                    "expiresAt": iso(row[15]),
                }
            )
            model["versions"].append(version)
        if files and row[16] is not None:
            version["files"].append(
                {
                    "id": gid("ModelFile", row[16]),
                    "filename": row[17],
                    "sizeBytes": row[18],
                    "sha256": row[19],
                }
            )
    return models


def answer(data: dict[str, Any]) -> Response:
    body = json.dumps({"data": data}, separators=(",", ":"))
    return Response(body, media_type="application/json")


def create_app(database: str) -> Starlette:
    holder: dict[str, aiosqlite.Connection] = {}

    async def fetch(key: tuple[str, bool], params: dict[str, Any]) -> list[Any]:
        if key[1]:
            params = {**params, "now": now_text()}
        async with holder["db"].execute(STATEMENTS[key], params) as cursor:
            return list(await cursor.fetchall())

    async def front(request: Request) -> Response:
        first = int(request.query_params.get("first", "20"))
        files = request.query_params.get("files") == "1"
        rows = await fetch(("front", files), {"first": first})
        models = shape(rows, files)
        return answer({"models": {"edges": [{"node": m} for m in models]}})

    async def model(request: Request) -> Response:
        files = request.query_params.get("files") == "1"
        global_id = request.query_params.get("id", "")
        prefix, _, public_id = global_id.partition("_")
        rows = await fetch(("model", files), {"public_id": public_id if prefix == "m" else ""})
        models = shape(rows, files)
        return answer({"model": models[0] if models else None})

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        holder["db"] = await aiosqlite.connect(database)
        try:
            yield
        finally:
            await holder["db"].close()

    return Starlette(
        routes=[
            Route("/front", front, methods=["GET"]),
            Route("/model", model, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    import logging

    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    # what `lorashelf serve` configures (graph/cli.py), so that only the app differs
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(
        create_app(args.db),
        host=args.host,
        port=args.port,
        log_level="info",
        proxy_headers=False,
        forwarded_allow_ips=None,
        timeout_keep_alive=5,
    )


if __name__ == "__main__":
    main()
