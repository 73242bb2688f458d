"""Section: public changes per second with many writers at once on PostgreSQL (the
public generation: one row before, a sequence now).

    .venv/bin/python bench/hot_row.py                 # 32 writers, 3 rounds of 3 s
    .venv/bin/python bench/hot_row.py --writers 32 --seconds 2 --rounds 2

A throw-away PostgreSQL cluster (bench/pgplans.py's), measured twice (``MODES``): with
fsync and synchronous_commit off (commits cost no disk flush: lock waits alone), then
durable (both on, as a site runs); a database migrated by ``lorashelf migrate``, then
``--writers`` concurrent writers (one process, one asyncio task and one pooled
connection each) each making changes through
the app's own ``storage.changes.transaction`` for ``--seconds``: each change updates a
row of the writer's own (a public change touches one row of what it changes), and

  floor     says ``public=False``: the generation is not touched (the most possible)
  row       says ``public=False`` and increments one counter row in the same
            transaction, where the generation is moved: ``UPDATE public_generation
            SET value = value + 1 WHERE id = 1``, what main did before (the baseline)
  sequence  says ``public=True``: the app's generation (storage/db/public_generation.py)

The three alternate, ``--rounds`` times, each round in a random order; the median rate
of each is reported, with ratios to ``row`` and to ``floor`` of the same run. Also
timed: the reader's side (``public_generation.current()``, what each process's response
cache reads at most every 0.25 s) with the writers running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for _path in (str(ROOT), str(BENCH)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from common import BASE_ENV, PYTHON, child_env, log  # noqa: E402
from pgplans import Cluster  # noqa: E402

VARIANTS = ("floor", "row", "sequence")
# The server's settings for each measurement: commits without a disk flush (waiting on
# locks measured alone), then durable commits as a site runs them (each commit waits
# for its WAL flush, so a lock held until commit is held for that flush too).
MODES = {
    "no flush": {"fsync": "off", "synchronous_commit": "off"},
    "durable": {"fsync": "on", "synchronous_commit": "on"},
}
_OLD_COUNTER = 'UPDATE "public_generation" SET "value" = "value" + 1 WHERE "id" = 1'


async def _drive(url: str, writers: int, seconds: float, rounds: int) -> dict[str, Any]:
    from tortoise import connections

    from storage import changes
    from storage.db import connection as db
    from storage.db import public_generation

    await db.connect(url, writers + 4, 15)
    try:
        client = connections.get("default")
        await client.execute_script(
            "CREATE TABLE IF NOT EXISTS bench_hot_row (id int PRIMARY KEY, n bigint NOT NULL);"
            f"INSERT INTO bench_hot_row SELECT i, 0 FROM generate_series(1, {writers}) AS i "
            "ON CONFLICT DO NOTHING;"
            'INSERT INTO "public_generation" ("id", "value") VALUES (1, 0) ON CONFLICT DO NOTHING;'
        )

        async def change(variant: str, me: int) -> None:
            now = datetime.now(UTC)
            async with changes.transaction(now, public=variant == "sequence"):
                tx = connections.get("default")
                await tx.execute_query("UPDATE bench_hot_row SET n = n + 1 WHERE id = $1", [me])
                if variant == "row":
                    await tx.execute_query(_OLD_COUNTER)

        async def one_round(variant: str, length: float = seconds) -> float:
            done = [0] * writers
            stop = time.monotonic() + length

            async def writer(me: int) -> None:
                while time.monotonic() < stop:
                    await change(variant, me + 1)
                    done[me] += 1

            began = time.monotonic()
            await asyncio.gather(*(writer(i) for i in range(writers)))
            return sum(done) / (time.monotonic() - began)

        async def reads_while(variant: str) -> list[float]:
            """current()'s time, every 50 ms, while ``variant``'s writers run."""
            took: list[float] = []
            stop = time.monotonic() + seconds

            async def reader() -> None:
                while time.monotonic() < stop:
                    began = time.perf_counter()
                    await public_generation.current()
                    took.append(time.perf_counter() - began)
                    await asyncio.sleep(0.05)

            await asyncio.gather(reader(), one_round(variant))
            return took

        for variant in VARIANTS:  # warm-up: connections opened, statements prepared
            await one_round(variant, 0.5)
        rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for _ in range(rounds):
            order = list(VARIANTS)
            random.shuffle(order)
            for variant in order:
                rates[variant].append(await one_round(variant))
                log(f"hotrow: {variant} {rates[variant][-1]:,.0f} changes/s")
        reads = await reads_while("sequence")
        settled = 0
        for _ in range(20):
            settled += await public_generation.current() >= 0
        return {
            "rates": rates,
            "median": {v: statistics.median(r) for v, r in rates.items()},
            "read_ms_p50": 1000 * statistics.median(reads) if reads else None,
            "read_ms_max": 1000 * max(reads) if reads else None,
            "reads_settled_when_idle": settled,
        }
    finally:
        await db.disconnect()


def run(
    workdir: Path, *, writers: int = 32, seconds: float = 3.0, rounds: int = 3
) -> dict[str, Any]:
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="lorashelf-bench-pg-")))
    if cluster.available:
        shutil.rmtree(cluster.root, ignore_errors=True)
        return {"skipped": cluster.available}
    result: dict[str, Any] = {"writers": writers, "seconds": seconds, "rounds": rounds}
    try:
        cluster.start()
        cluster.sql("CREATE DATABASE lorashelf;", database="postgres")
        result["server"] = cluster.sql("SHOW server_version;").strip()
        env = child_env(
            {**BASE_ENV, "LORASHELF_DATA_DIR": str(workdir / "hotrow-var"),
             "LORASHELF_DATABASE_URL": cluster.url}
        )  # fmt: skip
        migrated = subprocess.run([PYTHON, "-m", "graph.cli", "migrate"], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=180)  # fmt: skip
        if migrated.returncode != 0:
            raise RuntimeError(f"lorashelf migrate failed: {migrated.stderr[-800:]}")
        result["modes"] = {}
        for mode, settings in MODES.items():
            for name, value in settings.items():
                cluster.sql(f"ALTER SYSTEM SET {name} = {value};")
            cluster.sql("SELECT pg_reload_conf();")
            log(f"hotrow: {mode}")
            measured = asyncio.run(_drive(cluster.url, writers, seconds, rounds))
            median = measured["median"]
            measured["ratio_to_row"] = median["sequence"] / median["row"]
            measured["ratio_to_floor"] = median["sequence"] / median["floor"]
            result["modes"][mode] = measured
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)
    return result


def section(hot: dict[str, Any]) -> list[str]:
    """The section of docs/benchmarks/results.md (bench/report.py)."""
    lines = ["## Public changes with 32 writers at once (PostgreSQL): no hot row", ""]
    if hot.get("skipped") or hot.get("error"):
        return [*lines, f"Not measured: {hot.get('skipped') or hot.get('error')}", ""]
    lines += [
        f"{hot['writers']} writers (asyncio tasks with a pooled connection each, in one "
        f"process), {hot['rounds']} rounds of {hot['seconds']:g} s per variant, alternating "
        f"in a random order; PostgreSQL {hot.get('server', '?')}, first with fsync and "
        "synchronous_commit off (lock waits alone), then durable (both on: each commit "
        "waits for its WAL flush). Each change goes through `storage.changes.transaction` "
        "and updates one row of its writer's own. `row`: the generation as one counter row "
        "(main before; the baseline); `sequence`: the app's (a sequence and a shared "
        "advisory lock); `floor`: no generation at all. Run with "
        "`.venv/bin/python bench/hot_row.py`.",
        "",
        "| server | variant | public changes/s (median) | rounds | vs row | vs floor |",
        "|---|---|---:|---|---:|---:|",
    ]
    for mode, measured in hot["modes"].items():
        median = measured["median"]
        for variant in VARIANTS:
            rates = ", ".join(f"{r:,.0f}" for r in measured["rates"][variant])
            lines.append(
                f"| {mode} | {variant} | {median[variant]:,.0f} | {rates} | "
                f"{median[variant] / median['row']:.2f}x | "
                f"{median[variant] / median['floor']:.2f}x |"
            )
    reads = ", ".join(
        f"{mode}: p50 {m['read_ms_p50']:.2f} ms, max {m['read_ms_max']:.2f} ms"
        for mode, m in hot["modes"].items()
        if m.get("read_ms_p50") is not None
    )
    settled = ", ".join(f"{m['reads_settled_when_idle']} of 20" for m in hot["modes"].values())
    lines += [
        "",
        "The reader's side with the `sequence` writers running (`public_generation.current()`: "
        "a sequence read and a `pg_locks` probe, at most one every 0.25 s per process, in "
        f"the writers' process): {reads}. With nothing in flight the value read is settled "
        f"(a number that can be reused): {settled}.",
    ]
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the raw results too")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="lorashelf-bench-"))
    try:
        result = run(workdir, writers=args.writers, seconds=args.seconds, rounds=args.rounds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=1))
    print("\n".join(section(result)))
    return 0 if not (result.get("skipped") or result.get("error")) else 1


if __name__ == "__main__":
    sys.exit(main())
