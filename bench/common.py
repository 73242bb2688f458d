"""Shared pieces of the benchmark harness (``bench/run.py``).

Processes come from ``tests/processes.py`` (``serve``, ``free_port``, ``child_env``)
and ``bench/deletion_latency.py`` (``Proc``, ``Api`` and its mutation texts); this
module adds what several sections need: a floor-app process, statistics, RSS
sampling, and the machine description.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for _path in (str(ROOT), str(BENCH)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import httpx  # noqa: E402
from deletion_latency import Api, Proc  # noqa: E402,F401  (re-exported for the sections)

from tests.processes import child_env, free_port, log_tail, serve  # noqa: E402,F401

PYTHON = sys.executable
PASSWORD = "correct horse battery staple"

# What every lorashelf process of the bench is configured with, unless a section says
# otherwise. The cost and depth limits are the defaults: issue 11 asks that the front
# page and the model page pass them (the identity check fails the run if one is refused).
BASE_ENV = {
    "LORASHELF_GRAPHIQL": "false",
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# Statistics ------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(0, math.ceil(q / 100 * len(ordered)) - 1)
    return ordered[min(rank, len(ordered) - 1)]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def ratio(value: float, base: float) -> float:
    if not base or math.isnan(base) or math.isnan(value):
        return math.nan
    return value / base


def fmt_ratio(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value >= 100:
        return f"{value:,.0f}×"
    if value >= 10:
        return f"{value:.1f}×"
    if value >= 0.1:
        return f"{value:.2f}×"
    return f"{value:.3f}×"


def fmt_num(value: float, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


# Processes -------------------------------------------------------------------


class Floor:
    """``bench/floor.py`` on a free loopback port, run by uvicorn as ``lorashelf serve``
    runs lorashelf (same uvicorn version, loop, HTTP parser and logging)."""

    def __init__(self, database: Path, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"floor-{self.port}.log"
        env = {**child_env({}), "PYTHONPATH": f"{ROOT}{os.pathsep}{BENCH}"}
        self.proc = Proc(
            "floor",
            [PYTHON, str(BENCH / "floor.py"), "--db", str(database), "--port", str(self.port)],
            env,
            workdir,
            self.log,
        )

    @property
    def pid(self) -> int:
        return self.proc.proc.pid

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise RuntimeError(f"floor exited:\n{log_tail(self.log)}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the floor app did not become ready in time")

    def stop(self) -> None:
        self.proc.stop()


@contextlib.contextmanager
def floor(database: Path, workdir: Path) -> Iterator[Floor]:
    app = Floor(database, workdir)
    try:
        app.wait_ready()
        yield app
    finally:
        app.stop()


@contextlib.contextmanager
def lorashelf(data_dir: Path, workdir: Path, **extra: str) -> Iterator[object]:
    """``lorashelf serve`` (embedded runner, no Redis) on a fresh port over ``data_dir``."""
    env = {**BASE_ENV, "LORASHELF_DATA_DIR": str(data_dir), **extra}
    with serve(env, workdir) as server:
        yield server


# Memory of a process ---------------------------------------------------------


def _status_kib(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def rss_kib(pid: int) -> int | None:
    return _status_kib(pid, "VmRSS")


def reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (Linux: write 5 to clear_refs)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


class PeakRss:
    """Samples VmRSS every ``interval`` seconds while the block runs; with a reset
    VmHWM it also reads the kernel's exact peak."""

    def __init__(self, pid: int, interval: float = 0.02):
        self.pid = pid
        self.interval = interval
        self.idle_kib = rss_kib(pid) or 0
        self.sampled_peak_kib = self.idle_kib
        self.hwm_kib: int | None = None
        self._stop = threading.Event()
        self._reset = reset_peak(pid)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            value = rss_kib(self.pid)
            if value is not None and value > self.sampled_peak_kib:
                self.sampled_peak_kib = value
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self._reset:
            self.hwm_kib = _status_kib(self.pid, "VmHWM")

    @property
    def peak_kib(self) -> int:
        return max(self.sampled_peak_kib, self.hwm_kib or 0)

    @property
    def above_idle_mib(self) -> float:
        return (self.peak_kib - self.idle_kib) / 1024


# The machine -----------------------------------------------------------------


@dataclass
class Machine:
    nproc: int
    cpu_model: str
    ram_gib: float
    python: str
    sqlite: str
    kernel: str
    load_start: float
    disk_free_gib: float
    tools: dict[str, str]

    @classmethod
    def describe(cls, where: Path) -> Machine:
        import sqlite3

        model = "unknown"
        with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        ram_kib = 0
        with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    ram_kib = int(line.split()[1])
                    break
        nproc = int(subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip() or 0)
        tools = {}
        for tool, args in (("wrk", ["-v"]), ("valgrind", ["--version"]), ("curl", ["--version"])):
            path = shutil.which(tool)
            if path is None:
                tools[tool] = "missing"
                continue
            out = subprocess.run([path, *args], capture_output=True, text=True)
            text = (out.stdout or out.stderr).strip().splitlines()
            tools[tool] = text[0] if text else "present"
        return cls(
            nproc=nproc,
            cpu_model=model,
            ram_gib=ram_kib / 2**20,
            python=platform.python_version(),
            sqlite=sqlite3.sqlite_version,
            kernel=platform.release(),
            load_start=os.getloadavg()[0],
            disk_free_gib=shutil.disk_usage(where).free / 2**30,
            tools=tools,
        )
