"""How late is a private dataset deleted after its ``expiresAt``?

Measures, in one run and against real processes on loopback:

  A  embedded runner: ``lorashelf serve`` with no Redis (retention work in-process);
  B  ARQ: ``lorashelf serve`` enqueues deferred jobs on a real ``redis-server`` that
     ``lorashelf worker`` runs (the worker's cron sweep at its default interval);
  C  baseline, sweep only: ``lorashelf worker`` on a real Redis, but ``serve`` points
     at a closed port, so every enqueue fails and only the worker's periodic sweep
     (``--sweep-interval``) deletes; what a plain periodic deletion job gives.

Per configuration: a fresh data dir and one user who, over HTTP GraphQL, creates N
models with one draft version each, uploads a small private zip to each (PUT to the
signed ``uploadUrl``), then publishes all N in a quick loop. The retention is long
enough that every dataset expires after the publish loop has finished (checked), so
expiries spread over about the duration of that loop. The bench then waits (bounded)
until all N are DELETED and computes ``deletedAt - expiresAt`` per dataset.

Run from the repository root with the project's virtualenv:

    .venv/bin/python bench/deletion_latency.py [--datasets 200] [--sweep-interval 10s]
                                               [--only A,B,C] [--retention 30s]
                                               [--spread 0] [--keep-logs]

``--spread 10`` paces the publishes over 10 s, so that the expiries cover a whole
baseline sweep interval instead of one phase of it (a fairer number for C).

Prints a Markdown table and writes it to ``bench/deletion_latency.md`` (regenerated
on every run). Exit status is non-zero if a configuration failed or did not delete
every dataset in time; server logs stay in a temp dir whose path is printed then
(``--keep-logs`` keeps them on success too).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from storage.config.parse import ConfigError, cron_fields, parse_duration  # noqa: E402
from tests.conftest import make_zip  # noqa: E402
from tests.processes import free_port, serve  # noqa: E402

LORASHELF = [sys.executable, "-m", "graph.cli"]
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
RESULTS = ROOT / "bench" / "deletion_latency.md"
PASSWORD = "correct horse battery staple"
STARTUP_TIMEOUT = 30.0  # seconds for redis-server / worker to come up
WAIT_GRACE = 60.0  # seconds after the last expiry (plus a sweep interval for C)

DESCRIPTIONS = {
    "A": "embedded runner (serve, no Redis)",
    "B": "ARQ deferred jobs (serve + worker + Redis)",
    "C": "baseline: worker cron sweep only (serve's enqueues fail)",
}


# Processes ---------------------------------------------------------------------------


class Proc:
    """A child process with its log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path):
        self.name = name
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _ping_redis(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A throwaway redis-server on a free loopback port, no persistence; yields its URL."""
    port = free_port()
    rdir = workdir / "redis"
    rdir.mkdir()
    proc = Proc(
        "redis-server",
        [
            REDIS_SERVER,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(rdir),
            "--protected-mode",
            "yes",
        ],
        dict(os.environ),
        rdir,
        workdir / f"redis-{port}.log",
    )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not _ping_redis(port):
            if not proc.alive():
                raise RuntimeError(f"redis-server exited with {proc.proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer PING in time")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.stop()


@contextlib.contextmanager
def worker(env: dict[str, str], workdir: Path) -> Iterator[Proc]:
    """``lorashelf worker`` until the block ends; waits for its 'worker ready' line."""
    log = workdir / f"worker-{len(list(workdir.glob('worker-*.log')))}.log"
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    proc = Proc("worker", [*LORASHELF, "worker"], full_env, workdir, log)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while "worker ready" not in log.read_text(errors="replace"):
            if not proc.alive():
                raise RuntimeError(f"worker exited with {proc.proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("worker did not log 'worker ready' in time")
            time.sleep(0.1)
        yield proc
    finally:
        proc.stop()


# GraphQL over HTTP ---------------------------------------------------------------------


class Api:
    def __init__(self, http: httpx.Client, url: str):
        self.http = http
        self.url = url
        self.token: str | None = None

    def gql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        response = self.http.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": variables or {}},
            headers=headers,
        )
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:500]}")
        body: dict[str, Any] = response.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        data: dict[str, Any] = body["data"]
        return data

    def mutate(self, name: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = self.gql(query, variables)[name]
        if payload.get("userErrors"):
            raise RuntimeError(f"{name}: userErrors {payload['userErrors']}")
        return payload


SIGN_UP = (
    "mutation($i: SignUpInput!) { signUp(input: $i) { token userErrors { field code message } } }"
)
CREATE_MODEL = (
    "mutation($i: CreateModelInput!) { createModel(input: $i) "
    "{ model { id } userErrors { field code message } } }"
)
CREATE_VERSION = (
    "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
    "{ version { id } userErrors { field code message } } }"
)
START_UPLOAD = (
    "mutation($i: StartDatasetUploadInput!) { startDatasetUpload(input: $i) "
    "{ dataset { id } uploadUrl userErrors { field code message } } }"
)
PUBLISH = (
    "mutation($i: PublishModelVersionInput!) { publishModelVersion(input: $i) "
    "{ version { trainingDataset { id expiresAt } } userErrors { field code message } } }"
)
DATASETS = (
    "query($after: String) { viewer { trainingDatasets(first: 100, after: $after) { "
    "edges { node { id expiresAt deletedAt status deletionReason } } "
    "pageInfo { hasNextPage endCursor } } } }"
)


def parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without a UTC offset: {value!r}")
    return moment


def all_datasets(api: Api) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        viewer = api.gql(DATASETS, {"after": after})["viewer"]
        page = viewer["trainingDatasets"]
        rows += [edge["node"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return rows
        after = page["pageInfo"]["endCursor"]


# One configuration ---------------------------------------------------------------------


@dataclass
class Result:
    key: str
    description: str
    sweep_note: str
    lateness_ms: list[float] = field(default_factory=list)
    expected: int = 0
    setup_s: float = 0.0
    publish_s: float = 0.0
    margin_s: float = 0.0  # first expiry minus end of the publish loop
    wait_s: float = 0.0
    deleted_by_sweep: int | None = None
    error: str | None = None
    log_findings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and len(self.lateness_ms) == self.expected


def sweep_note(key: str, sweep_interval: int) -> str:
    return {
        "A": "runner wakes at the next due time (sweep 60s default)",
        "B": "cron sweep 60s (default)",
        "C": f"cron sweep {sweep_interval}s",
    }[key]


def run_config(
    result: Result,
    *,
    n: int,
    retention: int,
    sweep_interval: int,
    spread: float,
    workdir: Path,
) -> None:
    """Run one configuration end to end, filling in ``result`` as it goes."""
    key = result.key
    cwd = workdir / key
    cwd.mkdir()
    base_env = {
        "LORASHELF_DATA_DIR": str(cwd / "var"),
        "LORASHELF_PRIVATE_RETENTION": f"{retention}s",
        "LORASHELF_REMINDERS": "",  # no reminder jobs: measure deletion alone
        "LORASHELF_MAX_DATASET_BYTES": "10MB",
    }
    with contextlib.ExitStack() as stack:
        if key == "A":
            serve_env = dict(base_env)
            worker_env: dict[str, str] | None = None
        elif key == "B":
            redis_url = stack.enter_context(redis_server(cwd))
            serve_env = {**base_env, "LORASHELF_REDIS_URL": redis_url}
            worker_env = dict(serve_env)
        else:
            redis_url = stack.enter_context(redis_server(cwd))
            closed = free_port()  # nothing listens there: every enqueue is refused
            serve_env = {
                **base_env,
                "LORASHELF_REDIS_URL": f"redis://127.0.0.1:{closed}/0",
                "LORASHELF_SWEEP_INTERVAL": f"{sweep_interval}s",
            }
            worker_env = {
                **base_env,
                "LORASHELF_REDIS_URL": redis_url,
                "LORASHELF_SWEEP_INTERVAL": f"{sweep_interval}s",
            }
        server = stack.enter_context(serve(serve_env, cwd))
        if worker_env is not None:
            # after serve is healthy, so serve has applied the migrations
            stack.enter_context(worker(worker_env, cwd))
        http = stack.enter_context(httpx.Client(timeout=30.0))
        api = Api(http, server.url)

        # setup: one user, N drafts with an uploaded private zip each
        started = time.monotonic()
        api.token = api.mutate(
            "signUp", SIGN_UP, {"i": {"username": f"bench{key.lower()}", "password": PASSWORD}}
        )["token"]
        body = make_zip({"images/cat.txt": b"meow" * 256})
        versions: list[str] = []
        for i in range(n):
            model = api.mutate(
                "createModel", CREATE_MODEL, {"i": {"name": f"m{i}", "description": "bench"}}
            )["model"]["id"]
            version = api.mutate(
                "createModelVersion", CREATE_VERSION, {"i": {"modelId": model, "name": "v1"}}
            )["version"]["id"]
            upload = api.mutate(
                "startDatasetUpload",
                START_UPLOAD,
                {
                    "i": {
                        "versionId": version,
                        "filename": f"d{i}.zip",
                        "sizeBytes": len(body),
                        "visibility": "PRIVATE",
                    }
                },
            )
            put = http.put(upload["uploadUrl"], content=body)
            if put.status_code != 200:
                raise RuntimeError(f"upload PUT {put.status_code}: {put.text[:300]}")
            versions.append(version)
        result.setup_s = time.monotonic() - started

        # publish all N in a quick loop (or paced evenly over ``spread`` seconds);
        # each window starts at its publish
        started = time.monotonic()
        expiries: list[datetime] = []
        for i, version in enumerate(versions):
            if spread > 0 and n > 1:
                time.sleep(max(0.0, started + spread * i / (n - 1) - time.monotonic()))
            payload = api.mutate("publishModelVersion", PUBLISH, {"i": {"versionId": version}})
            expiries.append(parse_time(payload["version"]["trainingDataset"]["expiresAt"]))
        publish_end = datetime.now(UTC)
        result.publish_s = time.monotonic() - started
        result.margin_s = (min(expiries) - publish_end).total_seconds()
        if result.margin_s <= 0:
            raise RuntimeError(
                f"the first dataset expired {-result.margin_s:.1f}s before the publish loop "
                f"ended (took {result.publish_s:.1f}s): raise --retention above {retention}s"
            )

        # do not poll while deletions are due (the poll would compete for SQLite)
        last = max(expiries)
        grace = WAIT_GRACE + (sweep_interval if key == "C" else 0)
        deadline = time.monotonic() + (last - datetime.now(UTC)).total_seconds() + grace
        time.sleep(max(0.0, (last - datetime.now(UTC)).total_seconds() + 0.5))
        wait_started = time.monotonic()
        while True:
            rows = all_datasets(api)
            deleted = [r for r in rows if r["status"] == "DELETED"]
            if len(deleted) >= n or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        result.wait_s = time.monotonic() - wait_started
        wrong = [r for r in deleted if r["deletionReason"] != "EXPIRED"]
        if wrong:
            raise RuntimeError(f"{len(wrong)} datasets deleted for another reason: {wrong[:3]}")
        result.lateness_ms = sorted(
            (parse_time(r["deletedAt"]) - parse_time(r["expiresAt"])).total_seconds() * 1000
            for r in deleted
        )
        if len(rows) != n:
            result.error = f"the owner sees {len(rows)} datasets, expected {n}"
        elif len(deleted) < n:
            result.error = f"only {len(deleted)}/{n} deleted {grace:.0f}s after the last expiry"


# Logs ------------------------------------------------------------------------------------

SWEEP_LINE = re.compile(r"sweep: \{[^}]*'expired': (\d+)")
EXPECTED_IN_C = "could not schedule retention jobs"
IGNORED = ("Memory overcommit must be enabled",)  # redis-server on this kind of VM
NOTEWORTHY = re.compile(r"\b(ERROR|WARNING|CRITICAL)\b|Traceback|[Dd]atabase is locked|Exception")


def scan_logs(result: Result, cwd: Path) -> None:
    """Count datasets the sweep deleted; collect errors, warnings and locks from the logs."""
    swept = 0
    for log in sorted(cwd.glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()
        if log.name.startswith(("worker", "serve")):
            swept += sum(int(m.group(1)) for m in map(SWEEP_LINE.search, lines) if m)
        expected = 0
        shown = 0
        for number, line in enumerate(lines, 1):
            if result.key == "C" and log.name.startswith("serve") and EXPECTED_IN_C in line:
                expected += 1
                continue
            if NOTEWORTHY.search(line) and not any(i in line for i in IGNORED):
                if shown < 8:
                    result.log_findings.append(f"{log.name}:{number}: {line.strip()[:300]}")
                shown += 1
        if shown > 8:
            result.log_findings.append(f"{log.name}: … {shown - 8} more such lines")
        if expected:
            result.log_findings.append(
                f"{log.name}: {expected} expected 'could not schedule retention jobs' "
                "warnings (enqueue to the closed port)"
            )
    result.deleted_by_sweep = swept


# Report ------------------------------------------------------------------------------------


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def fmt_ms(value: float) -> str:
    return f"{value:,.0f}"


def ratio(numerator: float, denominator: float) -> str:
    if denominator <= 0:
        return "n/a"
    return f"{numerator / denominator:,.1f}×"


def report(results: list[Result], args: argparse.Namespace, retention: int, workdir: Path) -> str:
    lines = [
        "# Deletion latency after `expiresAt`",
        "",
        f"Generated by `bench/deletion_latency.py` on {datetime.now(UTC):%Y-%m-%d %H:%M UTC}"
        f" ({platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()},"
        " SQLite, loopback). Regenerated on every run. Load average (1 min) at start/end: "
        f"{args.load_start:.2f}/{os.getloadavg()[0]:.2f}.",
        "",
        f"{args.datasets} private datasets per configuration, retention {retention}s, "
        + (f"publishes paced over {args.spread:g}s, " if args.spread > 0 else "")
        + "no reminders; lateness = `deletedAt - expiresAt` as reported by the API.",
        "",
        "| config | what deletes | datasets deleted | min ms | median ms | p95 ms | worst ms "
        "| deleted by a sweep | setup s | publish loop s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.lateness_ms:
            stats = [
                fmt_ms(min(r.lateness_ms)),
                fmt_ms(statistics.median(r.lateness_ms)),
                fmt_ms(p95(r.lateness_ms)),
                fmt_ms(max(r.lateness_ms)),
            ]
        else:
            stats = ["–"] * 4
        swept = "–" if r.deleted_by_sweep is None else str(r.deleted_by_sweep)
        lines.append(
            f"| {r.key} | {r.description}; {r.sweep_note} | {len(r.lateness_ms)}/{r.expected} "
            f"| {' | '.join(stats)} | {swept} | {r.setup_s:.1f} | {r.publish_s:.1f} |"
        )
    by_key = {r.key: r for r in results if r.lateness_ms}
    if "C" in by_key and ({"A", "B"} & by_key.keys()):
        lines += ["", "| ratio | median | worst |", "|---|---|---|"]
        base = by_key["C"].lateness_ms
        for key in ("A", "B"):
            if key in by_key:
                other = by_key[key].lateness_ms
                median = ratio(statistics.median(base), statistics.median(other))
                lines.append(f"| baseline C / {key} | {median} | {ratio(max(base), max(other))} |")
    notes = [r for r in results if r.error or r.log_findings]
    if notes:
        lines += ["", "## Notes", ""]
        for r in notes:
            if r.error:
                lines.append(f"- **{r.key}: {r.error}**")
            for finding in r.log_findings:
                lines.append(f"- {r.key}: `{finding}`")
    lines += [
        "",
        '"deleted by a sweep" counts the `expired` datasets in the `sweep: {...}` log lines '
        "(in A every deletion goes through the runner's sweep, woken at the due time).",
    ]
    return "\n".join(lines) + "\n"


# Main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=int, default=200, help="private datasets (200)")
    parser.add_argument(
        "--sweep-interval", default="10s", help="the baseline's sweep interval (10s)"
    )
    parser.add_argument("--only", default="A,B,C", help="configurations to run, e.g. A,C (A,B,C)")
    parser.add_argument(
        "--retention",
        default=None,
        help="LORASHELF_PRIVATE_RETENTION (default: 30s, more for many datasets); must be "
        "longer than the publish loop",
    )
    parser.add_argument(
        "--spread",
        type=float,
        default=0.0,
        help="pace the publish loop evenly over this many seconds, so that expiries cover "
        "several sweep phases (0: as fast as possible)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir")
    args = parser.parse_args(argv)
    if args.datasets < 1:
        parser.error("--datasets must be at least 1")
    if args.spread < 0:
        parser.error("--spread must not be negative")
    args.only = [k.strip().upper() for k in args.only.split(",") if k.strip()]
    if not args.only or set(args.only) - set(DESCRIPTIONS):
        parser.error("--only takes a comma-separated subset of A,B,C")
    try:
        args.sweep_seconds = parse_duration("--sweep-interval", args.sweep_interval)
        cron_fields(args.sweep_seconds)
        args.retention_seconds = (
            parse_duration("--retention", args.retention)
            if args.retention
            else max(30, math.ceil(args.datasets * 0.15)) + math.ceil(args.spread)
        )
    except ConfigError as exc:
        parser.error(str(exc))
    return args


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.load_start = os.getloadavg()[0]  # other work on the machine skews the numbers
    signal.signal(signal.SIGTERM, _terminate)
    for name in list(os.environ):  # only the configuration chosen here applies
        if name.startswith("LORASHELF_"):
            del os.environ[name]
    if any(k in args.only for k in ("B", "C")) and not Path(REDIS_SERVER).exists():
        print(f"redis-server not found at {REDIS_SERVER}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="lorashelf-bench-"))
    print(f"logs and data dirs: {workdir}", file=sys.stderr)
    results: list[Result] = []
    failed = True
    try:
        for key in args.only:
            print(f"[{key}] {DESCRIPTIONS[key]}: {args.datasets} datasets …", file=sys.stderr)
            began = time.monotonic()
            note = sweep_note(key, args.sweep_seconds)
            result = Result(key, DESCRIPTIONS[key], note, expected=args.datasets)
            try:
                run_config(
                    result,
                    n=args.datasets,
                    retention=args.retention_seconds,
                    sweep_interval=args.sweep_seconds,
                    spread=args.spread,
                    workdir=workdir,
                )
            except Exception as exc:  # noqa: BLE001 - report it and go on with the others
                result.error = f"{exc.__class__.__name__}: {exc}"
            scan_logs(result, workdir / key)
            results.append(result)
            status = "ok" if result.ok else f"FAILED ({result.error})"
            print(
                f"[{key}] {status} in {time.monotonic() - began:.0f}s (setup {result.setup_s:.1f}s,"
                f" publish loop {result.publish_s:.1f}s, first expiry {result.margin_s:.1f}s"
                " after it)",
                file=sys.stderr,
            )
        text = report(results, args, args.retention_seconds, workdir)
        print(text)
        RESULTS.write_text(text)
        failed = not all(r.ok for r in results)
    finally:
        if failed or args.keep_logs:
            print(f"server logs kept in {workdir}", file=sys.stderr)
            for log in sorted(workdir.glob("*/*.log")):
                print(f"  {log}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
