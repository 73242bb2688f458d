"""Section 6: 1,000 private datasets due in the same second, embedded runner.

``lorashelf serve`` without Redis (the retention work runs in-process). The owner
signs up through the API; the 1,000 published models, versions and private
datasets (a blob file each, three history events each as the API would have written:
upload started, uploaded, published) are written in bulk through SQL while serve is
stopped, with ``expires_at`` spread over one second a few seconds ahead: publishing
1,000 versions through the API takes longer than a second, so no API sequence can
make them fall due together. Serve is started again (its runner sweeps at start,
finds nothing due yet and sleeps until the first expiry); the bench waits, then reads
``deletedAt - expiresAt`` of every dataset as the API reports it to the owner
(``bench/deletion_latency.py``'s ``all_datasets``).

The baseline, measured in the same run: the same 1,000 rows deleted the plain way
(select, unlink the blobs, one DELETE), on a copy of the database taken before
serve started: how long the whole backlog takes when deleting is all one does.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bulk
import httpx
from common import PASSWORD, Api, log, lorashelf, median, percentile
from deletion_latency import all_datasets, parse_time
from seed import SIGN_UP

LEAD_S = 12.0  # expiries start this long after the rows are written (serve restarts)


def seed_due(database: Path, blobs: Path, owner: int, n: int, first: datetime) -> None:
    """``n`` published models with one version and a private dataset each, due from
    ``first`` over one second (spread evenly)."""
    connection = bulk.connect(database)
    created = datetime.now(UTC) - timedelta(days=30)
    at, published = bulk.ts(created), bulk.ts(created + timedelta(minutes=5))
    pids = bulk.public_ids(4 * n)
    connection.execute("BEGIN")
    connection.executemany(
        "INSERT INTO lora_models (id, name, description, created_at, published_at, owner_id, "
        "download_count, nsfw, search_text, type, public_id) "
        "VALUES (?, ?, 'bench', ?, ?, ?, 0, 0, ?, 'LORA', ?)",
        [(i + 1, f"m{i}", at, published, owner, f"m{i}\nbench", next(pids)) for i in range(n)],
    )
    connection.executemany(
        "INSERT INTO model_versions (id, name, status, published_at, created_at, model_id, "
        "owner_id, base_model, download_count, trained_words, public_id) "
        "VALUES (?, 'v1', 'PUBLISHED', ?, ?, ?, ?, 'OTHER', 0, '[]', ?)",
        [(i + 1, published, at, i + 1, owner, next(pids)) for i in range(n)],
    )
    rows = []
    for i in range(n):
        expires = first + timedelta(microseconds=int(i * 1_000_000 / n))
        rows.append(
            (i + 1, f"d{i}.zip", 22, "0" * 64, bulk.blob_key(i), bulk.ts(expires), at, at,
             owner, i + 1, next(pids))
        )  # fmt: skip
    connection.executemany(
        "INSERT INTO training_datasets (id, filename, size_bytes, sha256, visibility, status, "
        "blob_key, expires_at, created_at, uploaded_at, owner_id, version_id, public_id) "
        "VALUES (?, ?, ?, ?, 'PRIVATE', 'AVAILABLE', ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    events = []
    for i in range(n):
        for kind, detail in (("UPLOAD_STARTED", ""), ("UPLOADED", "sha256 0"), ("PUBLISHED", "")):
            events.append((i + 1, kind, published if kind == "PUBLISHED" else at, detail))
    connection.executemany(
        "INSERT INTO dataset_events (dataset_id, kind, at, detail) VALUES (?, ?, ?, ?)", events
    )
    connection.execute("COMMIT")
    connection.close()
    bulk.write_blobs(blobs, range(n))


def baseline(database: Path, blobs: Path, n: int) -> float:
    connection = sqlite3.connect(database, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    started = time.perf_counter()
    rows = connection.execute(
        "SELECT id, blob_key FROM training_datasets WHERE status = 'AVAILABLE' "
        "AND visibility = 'PRIVATE' ORDER BY expires_at LIMIT ?",
        (n,),
    ).fetchall()
    for _, key in rows:
        bulk.blob_path(blobs, key).unlink(missing_ok=True)
    connection.execute("BEGIN")
    connection.execute(
        f"DELETE FROM training_datasets WHERE id IN ({','.join('?' * len(rows))})",
        [r[0] for r in rows],
    )
    connection.execute("COMMIT")
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def run(workdir: Path, *, n: int = 1000) -> dict[str, Any]:
    wd = workdir / "lateness"
    wd.mkdir()
    data_dir = wd / "var"
    env = {"LORASHELF_REMINDERS": ""}  # no reminder work: deletion alone
    with lorashelf(data_dir, wd, **env) as server, httpx.Client(timeout=60) as http:
        api = Api(http, server.url)
        api.token = api.mutate(
            "signUp", SIGN_UP, {"i": {"username": "latecomer", "password": PASSWORD}}
        )["token"]
    database = data_dir / "lorashelf.sqlite3"
    reader = sqlite3.connect(database)
    owner = reader.execute("SELECT id FROM users").fetchall()[0][0]
    reader.close()
    first = datetime.now(UTC) + timedelta(seconds=LEAD_S)
    seed_due(database, data_dir / "blobs", owner, n, first)
    copy_dir = wd / "baseline"
    copy_dir.mkdir()
    shutil.copyfile(database, copy_dir / "db.sqlite3")
    shutil.copytree(data_dir / "blobs", copy_dir / "blobs", ignore=shutil.ignore_patterns(".tmp"))
    log(f"lateness: {n} datasets due from {first:%H:%M:%S.%f} over one second; serve restarts")
    result: dict[str, Any] = {"n": n, "seeding": "SQL (owner through the API)"}
    with lorashelf(data_dir, wd, **env) as server, httpx.Client(timeout=120) as http:
        ready = datetime.now(UTC)
        result["serve_ready_before_first_expiry_s"] = (first - ready).total_seconds()
        if ready >= first:
            result["error"] = (
                f"serve was ready only {(ready - first).total_seconds():.1f}s after the first "
                "expiry: the start-up sweep, not the runner's wake-up, did the work"
            )
        api = Api(http, server.url)
        api.token = api.mutate(
            "logIn",
            "mutation($i: LogInInput!) { logIn(input: $i) { token userErrors { code message } } }",
            {"i": {"username": "latecomer", "password": PASSWORD}},
        )["token"]
        last = first + timedelta(seconds=1)
        time.sleep(max(0.0, (last - datetime.now(UTC)).total_seconds() + 1.0))
        deadline = time.monotonic() + 180
        while True:
            rows = all_datasets(api)
            deleted = [r for r in rows if r["status"] == "DELETED" and r["deletedAt"]]
            if len(deleted) >= n or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        result["all_deleted_after_s"] = (datetime.now(UTC) - first).total_seconds()
    lateness = sorted(
        (parse_time(r["deletedAt"]) - parse_time(r["expiresAt"])).total_seconds() * 1000
        for r in deleted
    )
    result.update(
        {
            "deleted": len(deleted),
            "min_ms": lateness[0] if lateness else None,
            "median_ms": median(lateness) if lateness else None,
            "p95_ms": percentile(lateness, 95) if lateness else None,
            "max_ms": lateness[-1] if lateness else None,
            "lateness_ms": lateness,
        }
    )
    if len(deleted) < n:
        result["error"] = f"only {len(deleted)}/{n} deleted within the wait"
    result["baseline_ms"] = baseline(copy_dir / "db.sqlite3", copy_dir / "blobs", n) * 1000
    log(
        f"lateness: median {result['median_ms']:.0f} ms, p95 {result['p95_ms']:.0f} ms, "
        f"max {result['max_ms']:.0f} ms (baseline: all {n} deleted in "
        f"{result['baseline_ms']:.0f} ms)"
    )
    return result
