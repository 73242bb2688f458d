"""A throwaway PostgreSQL cluster for the suite run with ``--db=postgres``.

One cluster per test session (``initdb`` into a temporary directory, ``postgres`` on a
free loopback port with its socket in that directory, trust authentication, no
fsync); one database per test, copied from a template database that the real
migrations built once (``CREATE DATABASE ... TEMPLATE``), dropped after the test.

``initdb`` refuses to run as root: as root the cluster runs as ``nobody``. Raises (the
run fails, it does not skip) when the server binaries are missing; ``scripts/test``
installs them.
"""

from __future__ import annotations

import asyncio
import glob
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from tests.processes import free_port, log_tail

T = TypeVar("T")
TEMPLATE = "lorashelf_template"
_names = itertools.count(1)


def binaries() -> Path:
    """The directory holding initdb and postgres (PATH, then Debian's layout)."""
    found = shutil.which("initdb")
    if found and Path(found).resolve().with_name("postgres").exists():
        return Path(found).resolve().parent
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if debian:
        return Path(debian[-1]).parent
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, postgres) are not installed: the --db=postgres "
        "run needs them (apt-get install postgresql; scripts/test installs them in CI)"
    )


def _as_cluster_user() -> list[str]:
    """The command prefix that runs the server as an unprivileged user when we are root."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def run_async(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on its own loop in its own thread (callable from
    sync code and from inside a running loop alike)."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        async def main() -> T:
            return await make()

        try:
            result.append(asyncio.run(main()))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            error.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


class Cluster:
    def __init__(self, directory: Path, port: int):
        self.directory = directory
        self.port = port
        self.data = directory / "data"
        self.log = directory / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 30) -> None:
        bindir = binaries()
        prefix = _as_cluster_user()
        if prefix:
            shutil.chown(self.directory, "nobody", "nogroup")
        subprocess.run(
            [
                *prefix,
                str(bindir / "initdb"),
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.resume(timeout)

    def resume(self, timeout: float = 30) -> None:
        """Start the server on its existing data (after :meth:`stop`), at the same port;
        return when it answers."""
        bindir = binaries()
        prefix = _as_cluster_user()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    *prefix,
                    str(bindir / "postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-h",
                    "127.0.0.1",
                    "-k",
                    str(self.directory),
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=300",
                    "-c",
                    "shared_buffers=64MB",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                run_async(lambda: self._execute("postgres", "SELECT 1"))
                return
            except OSError:
                pass
            except Exception as exc:  # noqa: BLE001 - "starting up" until it is ready
                if "starting up" not in str(exc):
                    raise
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"postgres exited with {self.proc.returncode}:\n{log_tail(self.log)}"
                )
            if time.monotonic() >= deadline:
                raise RuntimeError(f"postgres did not start in {timeout}s:\n{log_tail(self.log)}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # smart shutdown... then fast
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def restart(self, down_for: float) -> None:
        """A fast shutdown (SIGINT: every session ends with admin_shutdown, open
        transactions roll back), ``down_for`` seconds with nothing listening, then the
        server again on the same data and port."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)
        self.proc = None
        time.sleep(down_for)
        self.resume()

    async def _execute(self, database: str, *statements: str) -> None:
        import asyncpg

        connection = await asyncpg.connect(
            host="127.0.0.1", port=self.port, user="postgres", database=database, timeout=5
        )
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    def prepare_template(self) -> None:
        """The template every test's database is copied from: all migrations applied."""
        from storage.db import connection as db

        async def build() -> None:
            await self._execute("postgres", f"CREATE DATABASE {TEMPLATE}")
            await db.migrate(self.url(TEMPLATE))

        run_async(build)

    def new_database(self) -> str:
        """A fresh, migrated database; its URL."""
        name = f"test_{os.getpid()}_{next(_names)}"
        run_async(lambda: self._execute("postgres", f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}"))
        return name

    def empty_database(self) -> str:
        """A fresh database with no tables at all (no migration applied); its name."""
        name = f"empty_{os.getpid()}_{next(_names)}"
        run_async(lambda: self._execute("postgres", f"CREATE DATABASE {name}"))
        return name

    def drop_database(self, name: str) -> None:
        run_async(lambda: self._execute("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@contextmanager
def cluster() -> Iterator[Cluster]:
    # A short path: the Unix socket's path must fit in 107 bytes.
    directory = Path(tempfile.mkdtemp(prefix="lorashelf-pg-"))
    server = Cluster(directory, free_port())
    try:
        server.start()
        server.prepare_template()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


class LazyDatabase:
    """A test's database, created when first asked for (most tests that never touch a
    database never pay for one), dropped at the end of the test."""

    def __init__(self, server: Cluster):
        self.server = server
        self.name: str | None = None

    def url(self) -> str:
        if self.name is None:
            self.name = self.server.new_database()
        return self.server.url(self.name)

    def drop(self) -> None:
        if self.name is not None:
            self.server.drop_database(self.name)
            self.name = None


def query(url: str, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """One statement on a PostgreSQL database over a connection of its own; its rows.
    ``?`` placeholders (SQLite's) are numbered as PostgreSQL wants them."""
    parts = sql.split("?")
    numbered = parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], 1))

    async def run() -> list[tuple[object, ...]]:
        import asyncpg

        connection = await asyncpg.connect(url, timeout=10)
        try:
            return [tuple(row) for row in await connection.fetch(numbered, *args)]
        finally:
            await connection.close()

    return run_async(run)
