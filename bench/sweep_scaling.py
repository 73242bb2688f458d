"""Section 5: one full retention sweep against datasets tables of growing size.

Per size: a fresh data dir migrated by the app, ``rows`` datasets written in bulk
(``bulk.sweep_table``: 10% due, a blob file for each due one), a copy of the
database taken for the baseline, then in a child process (``--child``: the app's own
code, in-process, no HTTP):

- each "what is due" query of ``storage/retention/due.py`` run once with SQLite's trace
  callback on (its SQL as executed, timed over three runs) and its ``EXPLAIN QUERY
  PLAN``;
- one ``jobs.tasks.sweep`` (the safety net the runner and the worker run), timed, with
  the SQL statements it ran counted by kind.

The baseline, on the copy and the same rows the sweep deleted (the same number, in
the same expiry order): a plain ``SELECT`` of the due rows, an ``os.unlink`` loop over
their blob files and one ``DELETE ... WHERE id IN (...)`` (journal and sync settings
as the app's connection has them: WAL, synchronous FULL).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for _path in (str(ROOT), str(BENCH)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

DUE_SQL = (
    "SELECT id, blob_key FROM training_datasets WHERE status = 'AVAILABLE' "
    "AND visibility = 'PRIVATE' AND expires_at <= ? ORDER BY expires_at LIMIT ?"
)


# The child: the app's code in-process ----------------------------------------------


class Trace:
    def __init__(self) -> None:
        self.keep = False
        self.statements: list[str] = []
        self.kinds: Counter[str] = Counter()

        self.sample = 0  # keep the first ``sample`` statements (one deletion's worth)
        self.first_delete: str | None = None

    def __call__(self, statement: str) -> None:
        word = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "?"
        self.kinds[word] += 1
        if word == "DELETE" and self.first_delete is None and "dataset_events" in statement:
            self.first_delete = statement
        if self.keep or len(self.statements) < self.sample:
            self.statements.append(statement)


async def child(spec: dict[str, Any]) -> dict[str, Any]:
    for name in list(os.environ):
        if name.startswith("LORASHELF_"):
            del os.environ[name]
    from tortoise import connections

    from jobs import tasks
    from jobs.assembly import assemble
    from storage import uploads
    from storage.config.settings import load_settings
    from storage.db import connection as db
    from storage.db.enums import DatasetStatus
    from storage.db.models import TrainingDataset
    from storage.retention import due
    from storage.runtime import NoScheduler
    from storage.system.clock import SteadyClock

    settings = load_settings(spec["env"])
    # One sweep deletes at most MAX_BATCHES * BATCH rows per kind; the bench lowers the
    # cap so that every size does the same work (the time budget), which is also what
    # shows whether the cost follows the work or the table.
    if spec.get("max_batches"):
        tasks.MAX_BATCHES = int(spec["max_batches"])
    await db.connect(settings.database_url)
    rt = assemble(settings, clock=SteadyClock(), scheduler=NoScheduler()).runtime
    await connections.get("default").execute_query("SELECT 1")  # connects
    connection = connections.get("default")._connection
    trace = Trace()
    await connection._execute(connection._conn.set_trace_callback, trace)
    pragmas = {}
    for pragma in ("journal_mode", "synchronous"):
        rows = await connections.get("default").execute_query_dict(f"PRAGMA {pragma}")
        pragmas[pragma] = next(iter(rows[0].values())) if rows else None
    now = rt.clock.now()
    stale = uploads.staleness(settings)
    queries = {
        "overdue_expiries": lambda: due.overdue_expiries(now, limit=tasks.BATCH),
        "due_reminders": lambda: due.due_reminders(now, limit=tasks.BATCH),
        "stale_claims": lambda: due.stale_claims(
            TrainingDataset, DatasetStatus.DELETING, now, older_than=tasks.LEASE, limit=tasks.BATCH
        ),
        "abandoned_uploads": lambda: due.abandoned_uploads(
            TrainingDataset, now, older_than=stale, limit=tasks.BATCH
        ),
        "next_due": lambda: due.next_due(now),
    }
    captured: dict[str, Any] = {}
    for name, call in queries.items():
        trace.keep, trace.statements = True, []
        await call()
        statements = list(trace.statements)
        trace.keep = False
        times = []
        for _ in range(3):
            started = time.perf_counter()
            await call()
            times.append((time.perf_counter() - started) * 1000)
        captured[name] = {"sql": statements, "ms": statistics.median(times)}
    plans = sqlite3.connect(f"file:{settings.data_dir / 'lorashelf.sqlite3'}?mode=ro", uri=True)
    for item in captured.values():
        item["plans"] = [
            [row[3] for row in plans.execute("EXPLAIN QUERY PLAN " + sql)]
            for sql in item["sql"]
            if sql.lstrip().upper().startswith("SELECT")
        ]
    # Indexes whose key is an expression where the migration named a column: SQLite
    # reads a double-quoted name that is no column ("owner" for owner_id) as a string,
    # so the index is on a constant and no query by that column can use it.
    constant_indexes = []
    for name, table, sql in plans.execute(
        "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    ).fetchall():
        keys = [r for r in plans.execute(f'PRAGMA index_xinfo("{name}")') if r[5]]
        if any(r[1] == -2 for r in keys) and " ON " in sql and "(" in sql:
            constant_indexes.append({"index": name, "table": table, "sql": sql})
    plans.close()
    trace.kinds.clear()
    trace.statements, trace.sample = [], 60
    started = time.perf_counter()
    counts = await tasks.sweep({"runtime": rt})
    sweep_s = time.perf_counter() - started
    kinds = dict(trace.kinds)
    sample = [s[:400] for s in trace.statements]
    remaining = len(await due.overdue_expiries(rt.clock.now(), limit=10**9))
    deleted = await TrainingDataset.filter(
        status=DatasetStatus.DELETED, deleted_at__gte=now
    ).values_list("id", flat=True)
    await db.disconnect()
    return {
        "pragmas": pragmas,
        "queries": captured,
        "sweep_s": sweep_s,
        "sweep_counts": counts,
        "sweep_statements": kinds,
        "sweep_sample": sample,
        "events_delete": trace.first_delete,
        "deleted_ids": sorted(deleted),
        "constant_indexes": constant_indexes,
        "due_left": remaining,
    }


# The parent ----------------------------------------------------------------------


def baseline(database: Path, blob_root: Path, ids: list[int]) -> dict[str, Any]:
    """Delete the same rows the plain way: select them, unlink their blobs, one DELETE."""
    import bulk

    keys = [bulk.blob_key(i - 1) for i in ids]  # dataset id i has blob key of index i - 1
    bulk.write_blobs(blob_root, [i - 1 for i in ids])  # the sweep removed them: put back
    connection = sqlite3.connect(database, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    started = time.perf_counter()
    now = datetime.now(UTC).isoformat(sep=" ")
    rows = connection.execute(DUE_SQL, (now, len(ids))).fetchall()
    for _, key in rows:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(bulk.blob_path(blob_root, key))
    connection.execute("BEGIN")
    marks = ",".join("?" * len(rows))
    if rows:
        connection.execute(
            f"DELETE FROM training_datasets WHERE id IN ({marks})", [r[0] for r in rows]
        )
    connection.execute("COMMIT")
    elapsed = time.perf_counter() - started
    connection.close()
    same = sorted(r[0] for r in rows) == sorted(ids)
    return {"seconds": elapsed, "rows": len(rows), "same_rows": same, "keys": len(keys)}


def events_probe(database: Path, rows: int, statement: str) -> dict[str, Any]:
    """Give every dataset the three history events the API writes, then time the
    pruning DELETE that ``storage.retention.history.record`` runs on each deletion (rolled back)."""
    connection = sqlite3.connect(database, isolation_level=None)
    connection.execute("PRAGMA synchronous=OFF")
    connection.execute("BEGIN")
    for kind in ("UPLOAD_STARTED", "UPLOADED", "PUBLISHED"):
        connection.execute(
            "INSERT INTO dataset_events (dataset_id, kind, at, detail) "
            "SELECT id, ?, created_at, '' FROM training_datasets",
            (kind,),
        )
    connection.execute("COMMIT")
    events = connection.execute("SELECT count(*) FROM dataset_events").fetchall()[0][0]
    plan = [r[3] for r in connection.execute("EXPLAIN QUERY PLAN " + statement)]
    times = []
    for _ in range(3):
        connection.execute("BEGIN")
        started = time.perf_counter()
        connection.execute(statement)
        times.append((time.perf_counter() - started) * 1000)
        connection.execute("ROLLBACK")
    connection.close()
    return {"rows": rows, "events": events, "ms": statistics.median(times), "plan": plan,
            "sql": statement}  # fmt: skip


def run(workdir: Path, sizes: list[int], *, max_batches: int = 5) -> dict[str, Any]:
    import bulk
    from common import BASE_ENV, PYTHON, log

    wd = workdir / "sweep"
    wd.mkdir()
    result: dict[str, Any] = {"sizes": [], "errors": [], "max_batches": max_batches}
    for rows in sizes:
        data_dir = wd / f"rows-{rows}" / "var"
        started = time.monotonic()
        built = bulk.sweep_table(data_dir, rows)
        build_s = time.monotonic() - started
        database = data_dir / "lorashelf.sqlite3"
        copy = wd / f"rows-{rows}" / "baseline.sqlite3"
        shutil.copyfile(database, copy)
        spec = {
            "env": {**BASE_ENV, "LORASHELF_DATA_DIR": str(data_dir)},
            "max_batches": max_batches,
        }
        spec_path = wd / f"rows-{rows}" / "spec.json"
        spec_path.write_text(json.dumps(spec))
        out_path = wd / f"rows-{rows}" / "out.json"
        log(f"sweep: {rows:,} rows built in {build_s:.1f}s; sweeping")
        done = subprocess.run(
            [PYTHON, str(Path(__file__)), "--child", str(spec_path), str(out_path)],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            result["errors"].append(f"{rows:,} rows: the sweep failed: {done.stderr[-1500:]}")
            continue
        out = json.loads(out_path.read_text())
        base = baseline(copy, wd / f"rows-{rows}" / "baseline-blobs", out["deleted_ids"])
        deleted = out["sweep_counts"].get("expired", 0)
        entry = {
            "rows": rows,
            "due": built["due"],
            "build_s": build_s,
            "sweep_s": out["sweep_s"],
            "deleted": deleted,
            "due_left": out["due_left"],
            "sweep_counts": out["sweep_counts"],
            "sweep_statements": out["sweep_statements"],
            "sweep_sample": out["sweep_sample"],
            "pragmas": out["pragmas"],
            "queries": out["queries"],
            "baseline_s": base["seconds"],
            "baseline_rows": base["rows"],
            "baseline_same_rows": base["same_rows"],
            "constant_indexes": out.get("constant_indexes", []),
        }
        result["sizes"].append(entry)
        if out.get("events_delete"):
            probe = events_probe(database, rows, out["events_delete"])
            result.setdefault("events_probe", []).append(probe)
            log(f"sweep: {rows:,} rows: events.record's DELETE with {probe['events']:,} events: "
                f"{probe['ms']:.1f} ms ({'; '.join(probe['plan'])})")  # fmt: skip
        log(
            f"sweep: {rows:,} rows: deleted {deleted} in {out['sweep_s']:.1f}s "
            f"(baseline {base['seconds'] * 1000:.0f} ms), {out['due_left']} due left"
        )
        shutil.rmtree(wd / f"rows-{rows}", ignore_errors=True)
    return result


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        spec = json.loads(Path(sys.argv[2]).read_text())
        Path(sys.argv[3]).write_text(json.dumps(asyncio.run(child(spec))))
    else:
        print("run through bench/run.py", file=sys.stderr)
        sys.exit(2)
