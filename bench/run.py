"""lorashelf's benchmarks in one command: real processes, baselines measured in the same
run, ``docs/benchmarks/results.md`` and its charts written at the end.

    .venv/bin/python bench/run.py            # everything: about 8-10 minutes on 2 cores
    .venv/bin/python bench/run.py --quick    # a smoke check: a minute or two
    .venv/bin/python bench/run.py --only front,sweep

Sections (each in a fresh data dir under a temporary work dir, every process stopped
at the end, whatever happens):

  front      the front page and the model page against the floor app (bench/floor.py):
             HTTP load with wrk (rps, p50/p99), uncached and cached, concurrency 1 and
             32, page sizes 5/20/50; SQL statements and CPU per request in-process; CPU
             instructions per request under valgrind (callgrind)
  transfers  100 MB and 1 GiB private datasets PUT and GET through serve vs cp, peak RSS
  sweep      one retention sweep (capped at 500 deletions) over 10k/100k/1M-row
             datasets tables vs DELETE + unlink, EXPLAIN QUERY PLAN of the what-is-due
             queries, the events-pruning DELETE against realistic histories
  pgplans    the same what-is-due queries on PostgreSQL (a throw-away cluster migrated
             by the app, the largest sweep table), EXPLAIN ANALYZE; skipped without
             PostgreSQL
  lateness   1,000 private datasets due in one second, embedded runner
  catalogue  search and filters over 100,000 models through the API vs plain SQL
  hotrow     public changes per second with 32 writers at once on PostgreSQL: the
             public generation as one row (before) vs the app's sequence, and no
             generation at all (bench/hot_row.py; skipped without PostgreSQL)
  mass       mass expiry: 1,000 due at once deleted by the embedded runner's sweep and by
             two workers' jobs, and a sweep of 500, each vs DELETE + unlink of the same
             rows (``--mass-due N`` for another size)
  proof      the proof run (bench/proof_run.py, tests/proof_scenario.py): PostgreSQL,
             Redis, S3, two serves, two workers, 1,000 private datasets whose windows end
             through a worker SIGKILL, a Redis and a PostgreSQL restart and 30 s without
             the object store (``--proof-datasets N`` for another size; about 5 minutes)

Needs: wrk (apt-get install -y wrk), valgrind (apt-get install -y valgrind; gcc and the
valgrind headers make the instruction counts exact), curl, and matplotlib (the dev
extra). Exit status: 0 when every section ran, 1 otherwise (results.md says what failed).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for _path in (str(ROOT), str(BENCH)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import catalogue  # noqa: E402
import front_page  # noqa: E402
import hot_row  # noqa: E402
import lateness  # noqa: E402
import mass_expiry  # noqa: E402
import pgplans  # noqa: E402
import proof_run  # noqa: E402
import report  # noqa: E402
import sweep_scaling  # noqa: E402
import transfers  # noqa: E402
from common import Machine, log  # noqa: E402

SECTIONS = (
    "front",
    "transfers",
    "sweep",
    "pgplans",
    "lateness",
    "catalogue",
    "hotrow",
    "mass",
    "proof",
)
OUT = ROOT / "docs" / "benchmarks"
MB = 1000**2
GIB = 1024**3


def git_description() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "graph", "storage", "jobs")
    branch = git("rev-parse", "--abbrev-ref", "HEAD")
    return f"{commit} ({branch}{', app code modified' if dirty else ''})"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke check: small and short")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"sections to run ({','.join(SECTIONS)})"
    )
    parser.add_argument(
        "--seconds", type=float, help="wrk run length, whole seconds (2; --quick 1)"
    )
    parser.add_argument(
        "--sweep-sizes", help="comma-separated datasets table sizes (10000,100000,1000000)"
    )
    parser.add_argument("--mass-due", type=int, help="datasets due at once in section mass")
    parser.add_argument("--proof-datasets", type=int, help="datasets in section proof")
    parser.add_argument("--out", type=Path, default=OUT, help="where results.md goes")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, data)")
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    return args


def carry_over(results: dict[str, Any], previous: Path, ran: list[str]) -> None:
    """Sections this command did not run (``--only``) are kept from the last full run's
    ``results.json``, unchanged and labelled with when, where and on what code they
    were measured (each section's ratios are against baselines of its own run)."""
    try:
        before = json.loads(previous.read_text())
    except (OSError, ValueError):
        return
    if before.get("mode_note"):  # a --quick run is never carried over
        return
    carried = dict(before.get("carried", {}))
    for name in SECTIONS:
        if name in ran or name not in before:
            continue
        results[name] = before[name]
        results["durations"].setdefault(name, before.get("durations", {}).get(name, 0.0))
        origin = carried.get(name) or {
            "date": before.get("date"),
            "git": before.get("git"),
            "cpu": (before.get("machine") or {}).get("cpu_model"),
        }
        results.setdefault("carried", {})[name] = origin


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    for name in list(os.environ):  # only the configuration chosen here applies
        if name.startswith("LORASHELF_"):
            del os.environ[name]
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="lorashelf-bench-"))
    log(f"work dir: {workdir}")
    results: dict[str, Any] = {
        "command": " ".join(
            [".venv/bin/python bench/run.py", *(shlex.quote(a) for a in (argv or sys.argv[1:]))]
        ),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": Machine.describe(workdir).__dict__,
        "git": git_description(),
        "errors": [],
        "durations": {},
    }
    seconds = args.seconds or (1.0 if args.quick else 2.0)
    if not args.quick:
        results["reductions"] = [
            "HTTP load at concurrency 1 and 32 only (the issue's two), "
            f"{seconds:g} s of wrk per cell (up to 4x longer at concurrency 32 when the server "
            "is slow, so that every connection gets a few answers); the front page with weights "
            "files at concurrency 1 only",
            "CPU instructions (callgrind) of 2 requests each for front5, front50 and the model "
            "page (the counts barely move between requests); the files variant is measured by "
            "SQL statements and CPU time only",
            "the sweep is capped at 500 deletions per table size (5 batches of 100; the app's "
            "cap is 50 batches): the same work at every size",
            "deletion work in the sweep tables runs without history events; their cost is "
            "measured apart (events probe)",
            "PostgreSQL plans on a 50,000-row table (generating a million rows there takes "
            "minutes on this machine)",
        ]
    if args.quick:
        results["mode_note"] = (
            "--quick: a smoke check with small sizes and short runs; not comparable with a "
            "full run."
        )
    if args.sweep_sizes:
        sweep_sizes = [int(s) for s in args.sweep_sizes.split(",")]
    else:
        sweep_sizes = [10_000] if args.quick else [10_000, 100_000, 1_000_000]
    plans: dict[str, Any] = {
        "front": lambda: front_page.run(
            workdir,
            front_page.Settings(
                page_sizes=(5, 50) if args.quick else (5, 20, 50),
                concurrencies=(1, 32),
                seconds=seconds,
                extras=not args.quick,
                instr_n=(
                    {"front50": 1, "front5": 1}
                    if args.quick
                    else {"front5": 2, "front50": 2, "model": 2}
                ),
                sql_n=3,
            ),
        ),
        "transfers": lambda: transfers.run(
            workdir,
            sizes=[("100 MB", 100 * MB)] + ([] if args.quick else [("1 GiB", GIB)]),
        ),
        "sweep": lambda: sweep_scaling.run(workdir, sweep_sizes),
        "pgplans": lambda: pgplans.run(
            workdir,
            min(50_000, sweep_sizes[-1]),  # generating 1M rows there takes minutes
            ((results.get("sweep") or {}).get("sizes") or [{}])[-1].get("queries"),
        ),
        "lateness": lambda: lateness.run(workdir, n=200 if args.quick else 1000),
        "mass": lambda: mass_expiry.run(workdir, args.mass_due or (200 if args.quick else 1000)),
        "proof": lambda: proof_run.run(
            workdir, args.proof_datasets or (300 if args.quick else 1000)
        ),
        "catalogue": lambda: catalogue.run(
            workdir, models=10_000 if args.quick else 100_000, n=5 if args.quick else 40
        ),
        "hotrow": lambda: hot_row.run(
            workdir, writers=32, seconds=1.0 if args.quick else 3.0, rounds=2 if args.quick else 3
        ),
    }
    failed = False
    try:
        for name in SECTIONS:
            if name not in args.only:
                continue
            log(f"== {name}")
            began = time.monotonic()
            try:
                results[name] = plans[name]()
            except Exception as exc:  # noqa: BLE001 - report it, go on with the others
                failed = True
                results["errors"].append(f"{name}: {exc.__class__.__name__}: {exc}")
                log(f"{name} FAILED:\n{traceback.format_exc()}")
            results["durations"][name] = time.monotonic() - began
            log(f"== {name} done in {results['durations'][name]:.0f}s")
        results["elapsed_s"] = time.monotonic() - started
        results["load_end"] = os.getloadavg()[0]
        if not args.quick:
            carry_over(results, args.out / "results.json", args.only)
        target = report.write(results, args.out)
        raw = {k: v for k, v in results.items()}
        (args.out / "results.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
        log(f"wrote {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target} "
            f"in {results['elapsed_s'] / 60:.1f} minutes")  # fmt: skip
        failed = failed or bool(results["errors"])
        for key in ("front", "catalogue", "sweep"):
            failed = failed or bool((results.get(key) or {}).get("errors"))
        failed = failed or bool((results.get("proof") or {}).get("problems"))
    finally:
        if failed or args.keep:
            log(f"logs and data kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
