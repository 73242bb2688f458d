"""Section 7: catalogue search and filters over 100,000 published models.

The models, tags and versions are written in bulk through SQL (``bulk.catalogue``)
into a database migrated by the app; the search documents are what
``storage.search.refresh`` would write, indexed by the migration's FTS5 table (one
``rebuild``, as the migration does). Then, through a real ``lorashelf serve``,
anonymous POSTs of each listing (a page of 20), one after another after two warm-up
requests: p50/p95 latency.

The baseline, measured in the same run on the same file: a hand-written SQL query
answering the same page (ids, names, download counts) through ``sqlite3``, timed the
same way. The app's own SQL for each listing is captured in-process (SQLite's trace
callback) and its ``EXPLAIN QUERY PLAN`` recorded.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import bulk
import httpx
from common import BASE_ENV, log, lorashelf, median, percentile
from front_page import finish, run_inproc

FIELDS = "edges { node { id name downloadCount } } pageInfo { hasNextPage endCursor }"
VISIBLE = "m.deleted_at IS NULL AND m.published_at IS NOT NULL AND m.nsfw = 0"
COLUMNS = "SELECT m.id, m.public_id, m.name, m.download_count FROM lora_models m WHERE "

# key: (label, GraphQL arguments, the floor's SQL for the same page)
LISTINGS: dict[str, tuple[str, str, str]] = {
    "newest": (
        "newest first (no filter)",
        "first: 20",
        f"{COLUMNS}{VISIBLE} ORDER BY m.id DESC LIMIT 21",
    ),
    "query-common": (
        'query: "dragon" (one common word)',
        'first: 20, query: "dragon"',
        f"{COLUMNS}{VISIBLE} AND m.id IN (SELECT rowid FROM model_search WHERE model_search "
        "MATCH '\"dragon\"') ORDER BY m.id DESC LIMIT 21",
    ),
    "query-two": (
        'query: "dragon castle" (two words)',
        'first: 20, query: "dragon castle"',
        f"{COLUMNS}{VISIBLE} AND m.id IN (SELECT rowid FROM model_search WHERE model_search "
        'MATCH \'"dragon" AND "castle"\') ORDER BY m.id DESC LIMIT 21',
    ),
    "query-rare": (
        'query: "77777" (a rare term)',
        'first: 20, query: "77777"',
        f"{COLUMNS}{VISIBLE} AND m.id IN (SELECT rowid FROM model_search WHERE model_search "
        "MATCH '\"77777\"') ORDER BY m.id DESC LIMIT 21",
    ),
    "tag": (
        'tag: "style"',
        'first: 20, tag: "style"',
        f"{COLUMNS}{VISIBLE} AND m.id IN (SELECT model_id FROM model_tags WHERE tag = 'style') "
        "ORDER BY m.id DESC LIMIT 21",
    ),
    "base-model": (
        "baseModel: SDXL_1_0",
        "first: 20, baseModel: SDXL_1_0",
        f"{COLUMNS}{VISIBLE} AND m.id IN (SELECT model_id FROM model_versions WHERE "
        "deleted_at IS NULL AND status = 'PUBLISHED' AND base_model = 'SDXL_1_0') "
        "ORDER BY m.id DESC LIMIT 21",
    ),
    "most-downloaded": (
        "sort: MOST_DOWNLOADED",
        "first: 20, sort: MOST_DOWNLOADED",
        f"{COLUMNS}{VISIBLE} ORDER BY m.download_count DESC, m.id DESC LIMIT 21",
    ),
}


def document(arguments: str) -> str:
    return f"{{ models({arguments}) {{ {FIELDS} }} }}"


def nonce_parts(arguments: str) -> tuple[str, str]:
    """The body split around a per-request nonce (an undeclared variable: see
    documents.py), so that a response cache never answers: search is measured."""
    payload = {"query": document(arguments), "variables": {"benchNonce": "@NONCE@"}}
    prefix, suffix = json.dumps(payload, separators=(",", ":")).split('"@NONCE@"')
    return prefix, suffix


def timed_http(
    http: httpx.Client, url: str, parts: tuple[str, str], n: int
) -> tuple[list[float], int]:
    headers = {"content-type": "application/json", "cache-control": "no-cache"}
    times = []
    edges = 0
    for i in range(n + 2):
        body = f"{parts[0]}{i}{parts[1]}".encode()
        started = time.perf_counter()
        response = http.post(url + "/graphql", content=body, headers=headers)
        elapsed = (time.perf_counter() - started) * 1000
        data = response.json()
        if response.status_code != 200 or "errors" in data:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
        edges = len(data["data"]["models"]["edges"])
        if i >= 2:
            times.append(elapsed)
    return times, edges


def timed_sql(database: Path, sql: str, n: int) -> tuple[list[float], int]:
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    times = []
    rows = 0
    for i in range(n + 2):
        started = time.perf_counter()
        rows = len(connection.execute(sql).fetchall())
        if i >= 2:
            times.append((time.perf_counter() - started) * 1000)
    connection.close()
    return times, min(rows, 20)


def run(workdir: Path, *, models: int = 100_000, n: int = 15) -> dict[str, Any]:
    wd = workdir / "catalogue"
    wd.mkdir()
    data_dir = wd / "var"
    started = time.monotonic()
    built = bulk.catalogue(data_dir, models)
    result: dict[str, Any] = {"built": built, "build_s": time.monotonic() - started, "rows": []}
    log(f"catalogue: {models:,} models built in {result['build_s']:.1f}s")
    database = data_dir / "lorashelf.sqlite3"
    with lorashelf(data_dir, wd) as server, httpx.Client(timeout=120) as http:
        for key, (label, arguments, sql) in LISTINGS.items():
            api_ms, edges = timed_http(http, server.url, nonce_parts(arguments), n)
            sql_ms, rows = timed_sql(database, sql, n)
            if rows != edges:
                result.setdefault("errors", []).append(
                    f"{key}: the API returned {edges} models, the SQL baseline {rows}"
                )
            result["rows"].append(
                {
                    "key": key,
                    "label": label,
                    "document": document(arguments),
                    "n": n,
                    "edges": edges,
                    "p50_ms": median(api_ms),
                    "p95_ms": percentile(api_ms, 95),
                    "sql_p50_ms": median(sql_ms),
                    "sql_p95_ms": percentile(sql_ms, 95),
                    "baseline_sql": sql,
                }
            )
            log(
                f"catalogue: {key}: p50 {median(api_ms):.1f} ms, p95 "
                f"{percentile(api_ms, 95):.1f} ms (SQL {median(sql_ms):.1f} ms)"
            )
    # the app's own SQL for each listing, and its plans
    spec = {
        "target": "lorashelf",
        "env": {**BASE_ENV, "LORASHELF_DATA_DIR": str(data_dir)},
        "warmup": 1,
        "count_sql": True,
        "segments": [
            {
                "name": key,
                "method": "POST",
                "path": "/graphql",
                "headers": {"content-type": "application/json"},
                "body_parts": list(nonce_parts(arguments)),
                "n": 1,
                "keep_sql": True,
            }
            for key, (_, arguments, _) in LISTINGS.items()
        ],
    }
    out = finish(run_inproc(spec, wd, "catalogue-sql"), wd, "catalogue-sql")
    plans = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    by_key = {row["key"]: row for row in result["rows"]}
    for segment in out["segments"]:
        row = by_key[segment["name"]]
        row["app_sql"] = []
        for statement in segment["sql"]:
            plan = []
            if statement.lstrip().upper().startswith("SELECT"):
                plan = [r[3] for r in plans.execute("EXPLAIN QUERY PLAN " + statement)]
            row["app_sql"].append({"sql": statement, "plan": plan})
        row["statements"] = segment["sql_per_request"]
    plans.close()
    return result
