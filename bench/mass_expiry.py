"""Section mass: many private datasets due at once, deleted by the embedded runner's
sweep or by two workers' jobs, against plain SQL on the same rows in the same run.

Per runner: a fresh data dir migrated by the app, a datasets table written in bulk
(``bulk.sweep_table``: ``due`` of its rows due now, each with a blob file; the rest
live, public or tombstones), a copy of the database taken for the baseline. Then, in
child processes running the app's own code (no HTTP, no Redis):

- ``embedded``: one ``jobs.tasks.sweep``, as ``serve``'s embedded runner runs it when
  the datasets fall due;
- ``two workers``: two processes started at the same instant, each running the
  ``expire_dataset`` jobs of half the datasets ten at a time (an ARQ worker's
  ``max_jobs``), as two ``lorashelf worker`` processes do when the jobs fall due.

Timed from the start until every due dataset is a tombstone (bytes gone, receipt,
history entry). The baseline, on the copy and the same rows: a plain ``SELECT`` of the
due rows, an ``os.unlink`` loop over their blob files and one ``DELETE ... WHERE id IN
(...)`` (``sweep_scaling.baseline``). The ratio is the runner's time over the
baseline's; a second ratio compares the first ``SWEEP_CAP`` deletions of a sweep (the
sweep section's cap) with the baseline of as many rows.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for _path in (str(ROOT), str(BENCH)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

JOBS_AT_ONCE = 10  # an ARQ worker's max_jobs
SWEEP_CAP = 500  # the sweep section's deletions per sweep


async def child(spec: dict[str, Any]) -> dict[str, Any]:
    for name in list(os.environ):
        if name.startswith("LORASHELF_"):
            del os.environ[name]
    from storage.config.settings import load_settings
    from storage.db import connection as db

    settings = load_settings(spec["env"])
    await db.connect(settings.database_url)
    try:
        return await _timed(spec)
    finally:
        await db.disconnect()  # a failed child must exit, not wait on the database thread


async def _timed(spec: dict[str, Any]) -> dict[str, Any]:
    from jobs import tasks
    from jobs.assembly import assemble
    from storage.config.settings import load_settings
    from storage.db.models import TrainingDataset
    from storage.retention import batches
    from storage.runtime import NoScheduler
    from storage.system.clock import SteadyClock

    settings = load_settings(spec["env"])
    rt = assemble(settings, clock=SteadyClock(), scheduler=NoScheduler()).runtime
    ctx = {"runtime": rt}
    await TrainingDataset.filter(id=0).exists()  # connected before the clock starts
    delay = spec["start_at"] - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
    started = time.time()
    if spec["mode"] == "sweep":
        if spec.get("max_batches"):
            tasks.MAX_BATCHES = int(spec["max_batches"])
        await tasks.sweep(ctx)
    else:
        gate = asyncio.Semaphore(JOBS_AT_ONCE)

        async def job(dataset_id: int) -> None:
            async with gate:
                await tasks.expire_dataset(ctx, dataset_id)

        await asyncio.gather(*(job(i) for i in spec["ids"]))
    while batches._RUNNING:  # bytes and tombstones still under way
        await asyncio.wait(set(batches._RUNNING))
    return {"started": started, "ended": time.time()}


def tombstones(database: Path, due: int) -> int:
    """How many of the due rows are finished tombstones (receipt written)."""
    import sqlite3

    connection = sqlite3.connect(database)
    try:
        query = (
            "SELECT count(*) FROM training_datasets WHERE id <= ? AND status = 'DELETED' "
            "AND receipt_payload IS NOT NULL"
        )
        return int(connection.execute(query, (due,)).fetchone()[0])
    finally:
        connection.close()


def _children(specs: list[tuple[Path, dict[str, Any]]]) -> list[dict[str, Any]]:
    procs = []
    for folder, spec in specs:
        spec_path, out_path = folder / f"spec-{len(procs)}.json", folder / f"out-{len(procs)}.json"
        spec_path.write_text(json.dumps(spec))
        procs.append(
            (
                subprocess.Popen(
                    [sys.executable, str(Path(__file__)), "--child", str(spec_path), str(out_path)],
                    stderr=subprocess.PIPE,
                    text=True,
                ),
                out_path,
            )
        )
    outs = []
    for proc, out_path in procs:
        _, err = proc.communicate(timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"mass expiry child failed: {err[-1500:]}")
        outs.append(json.loads(out_path.read_text()))
    return outs


def run(workdir: Path, due: int = 1000) -> dict[str, Any]:
    import bulk
    import sweep_scaling
    from common import BASE_ENV, log

    wd = workdir / "mass"
    wd.mkdir()
    result: dict[str, Any] = {"due": due, "runs": [], "errors": []}
    runs = [("embedded", "sweep", 1, None), ("two workers", "jobs", 2, None)]
    runs.append((f"sweep of {SWEEP_CAP}", "sweep", 1, SWEEP_CAP // 100))
    for name, mode, processes, max_batches in runs:
        folder = wd / name.replace(" ", "-")
        data_dir = folder / "var"
        bulk.sweep_table(data_dir, due * 10)  # a tenth of the rows are due
        copy = folder / "baseline.sqlite3"
        shutil.copyfile(data_dir / "lorashelf.sqlite3", copy)
        ids = list(range(1, due + 1))  # the due rows are the first ones (bulk.sweep_table)
        start_at = time.time() + 3.0  # every child connected and waiting by then
        env = {**BASE_ENV, "LORASHELF_DATA_DIR": str(data_dir)}
        specs = [
            (
                folder,
                {
                    "env": env,
                    "mode": mode,
                    "ids": ids[k::processes],
                    "start_at": start_at,
                    "max_batches": max_batches,
                },
            )
            for k in range(processes)
        ]
        try:
            outs = _children(specs)
        except Exception as exc:  # noqa: BLE001 - reported with the results
            result["errors"].append(f"{name}: {exc}")
            continue
        seconds = max(o["ended"] for o in outs) - min(o["started"] for o in outs)
        deleted = tombstones(data_dir / "lorashelf.sqlite3", due)
        if max_batches:
            deleted = min(deleted, SWEEP_CAP)
        base = sweep_scaling.baseline(copy, folder / "baseline-blobs", ids[:deleted])
        entry = {
            "runner": name,
            "due": due,
            "deleted": deleted,
            "seconds": seconds,
            "baseline_s": base["seconds"],
            "baseline_rows": base["rows"],
            "ratio": seconds / base["seconds"] if base["seconds"] else None,
        }
        result["runs"].append(entry)
        log(
            f"mass: {name}: {deleted} of {due} due deleted in {seconds:.2f}s; plain SQL + "
            f"unlink of the same {base['rows']} rows {base['seconds'] * 1000:.0f} ms: "
            f"{entry['ratio']:.1f}x"
        )
        shutil.rmtree(folder, ignore_errors=True)
    return result


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| runner | due | deleted | time | plain SQL + unlink, same rows | ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['runner']} | {r['due']} | {r['deleted']} | {r['seconds']:.2f} s | "
            f"{r['baseline_s'] * 1000:.0f} ms ({r['baseline_rows']} rows) | {r['ratio']:.1f}x |"
        )
    lines += [f"- error: {e}" for e in result["errors"]]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        spec = json.loads(Path(sys.argv[2]).read_text())
        Path(sys.argv[3]).write_text(json.dumps(asyncio.run(child(spec))))
    elif len(sys.argv) in (1, 2):
        import tempfile

        count = int(sys.argv[1]) if len(sys.argv) == 2 else 1000
        with tempfile.TemporaryDirectory() as tmp:
            print(markdown(run(Path(tmp), count)))
    else:
        print("usage: bench/mass_expiry.py [DUE]  (or through bench/run.py)", file=sys.stderr)
        sys.exit(2)
