"""Requests to an ASGI app in-process (no sockets): SQL statements, CPU time and, under
valgrind, CPU instructions per request.

Run as a child process by ``bench/run.py``: ``python bench/inproc.py SPEC.json``. The
spec names the app (``lorashelf`` over a data dir, ``floor`` over a SQLite file, or
``null``: a trivial ASGI app answering fixed bytes, the cost of the client side of
the measurement itself), the warm-up, and segments of N identical requests sent
through ``httpx.AsyncClient(transport=httpx.ASGITransport(app))`` one after the other.

Instructions: under ``valgrind --tool=callgrind --instr-atstart=no`` each segment
switches instrumentation on after its warm-up, zeroes the counters, sends its N
requests, and dumps the counters under its name (callgrind client requests, from a
tiny C helper compiled with the valgrind headers), so start-up and warm-up are never
counted and one process measures every document. Without the helper the bench
falls back to full instrumentation with a dump before each ``os.getppid()``
(``--dump-before=os_getppid``), which brackets each segment the same way.

SQL statements: SQLite's trace callback on the app's own connection (every statement
SQLite runs for the request, BEGIN/COMMIT included).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for _path in (str(ROOT), str(BENCH)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import httpx  # noqa: E402

MARKER_C = r"""
#include <valgrind/callgrind.h>
void bench_begin(void) { CALLGRIND_START_INSTRUMENTATION; CALLGRIND_ZERO_STATS; }
void bench_end(const char *name) { CALLGRIND_DUMP_STATS_AT(name); CALLGRIND_STOP_INSTRUMENTATION; }
"""


class Markers:
    def __init__(self, kind: str, library: str | None):
        self.kind = kind
        self.lib = ctypes.CDLL(library) if kind == "client" and library else None

    def begin(self, name: str) -> None:
        if self.lib is not None:
            self.lib.bench_begin()
        elif self.kind == "getppid":
            os.getppid()

    def end(self, name: str) -> None:
        if self.lib is not None:
            self.lib.bench_end(name.encode())
        elif self.kind == "getppid":
            os.getppid()


class SqlCounter:
    """Statements the application sent; SQLite also traces the statements a trigger or
    a virtual table (FTS5) runs inside one, as ``-- ...``: counted apart. So are the
    response cache's re-reads of the public generation (graph/http/cache.py): one every
    0.25 s at most, whatever the requests, so they belong to no page."""

    def __init__(self) -> None:
        self.count = 0
        self.internal = 0
        self.generation = 0
        self.statements: list[str] = []
        self.keep = False

    def __call__(self, statement: str) -> None:
        if statement.startswith("--"):
            self.internal += 1
            return
        if '"public_generation"' in statement and statement.lstrip().upper().startswith("SELECT"):
            self.generation += 1
            return
        self.count += 1
        if self.keep:
            self.statements.append(statement)


async def _trace(connection: Any, counter: SqlCounter) -> None:
    """Install the trace callback on an aiosqlite connection, in its own thread."""
    await connection._execute(connection._conn.set_trace_callback, counter)


def null_app(body: bytes):  # type: ignore[no-untyped-def]
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        while (await receive()).get("more_body"):
            pass
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


async def main(spec: dict[str, Any]) -> dict[str, Any]:
    target = spec["target"]
    counter = SqlCounter()
    if target == "lorashelf":
        for name in list(os.environ):
            if name.startswith("LORASHELF_"):
                del os.environ[name]
        from graph.http.app import create_app
        from storage.config.settings import load_settings
        from storage.runtime import NoScheduler

        settings = load_settings(spec["env"])
        app = create_app(settings, scheduler=NoScheduler())
    elif target == "floor":
        import floor

        app = floor.create_app(spec["database"])
    else:
        app = null_app(spec["null_body"].encode())

    markers = Markers(spec.get("markers", "none"), spec.get("marker_lib"))
    results: dict[str, Any] = {"segments": []}
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))  # type: ignore[arg-type]
    lifespan = app.router.lifespan_context(app) if hasattr(app, "router") else None
    if lifespan is not None:
        await lifespan.__aenter__()
    try:
        if spec.get("count_sql") and target == "lorashelf":
            from tortoise import connections

            await _trace(connections.get("default")._connection, counter)
        elif spec.get("count_sql") and target == "floor":
            # the floor keeps its connection in the lifespan's closure: find it
            import aiosqlite

            for obj in gc.get_objects():
                if isinstance(obj, aiosqlite.Connection):
                    await _trace(obj, counter)
        nonce = [0]
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            for segment in spec["segments"]:
                method = segment["method"]
                path = segment["path"]
                headers = segment.get("headers", {})
                body = segment.get("body", "").encode() or None
                parts = segment.get("body_parts")

                async def one(
                    method: str = method,
                    path: str = path,
                    headers: dict[str, str] = headers,
                    body: bytes | None = body,
                    parts: list[str] | None = parts,
                ) -> httpx.Response:
                    if parts is not None:  # a new nonce per request (see documents.py)
                        nonce[0] += 1
                        body = f"{parts[0]}{nonce[0]}{parts[1]}".encode()
                    return await http.request(method, path, headers=headers, content=body)

                first = None
                warmup = spec.get("warmup", 3) if segment is spec["segments"][0] else 1
                for _ in range(max(1, warmup)):
                    first = await one()
                counter.count = counter.internal = counter.generation = 0
                counter.keep = bool(segment.get("keep_sql"))
                counter.statements = []
                n = int(segment["n"])
                statuses: set[int] = set()
                digests: set[str] = set()
                markers.begin(segment["name"])
                cpu0, wall0 = time.process_time(), time.perf_counter()
                for _ in range(n):
                    response = await one()
                    statuses.add(response.status_code)
                    digests.add(hashlib.sha256(response.content).hexdigest())
                cpu1, wall1 = time.process_time(), time.perf_counter()
                markers.end(segment["name"])
                counter.keep = False
                results["segments"].append(
                    {
                        "name": segment["name"],
                        "n": n,
                        "sql_total": counter.count,
                        "sql_per_request": counter.count / n if n else 0,
                        "sql": list(counter.statements),
                        "sql_internal_per_request": counter.internal / n if n else 0,
                        "generation_reads": counter.generation,
                        "cpu_ms": (cpu1 - cpu0) * 1000 / n if n else 0,
                        "wall_ms": (wall1 - wall0) * 1000 / n if n else 0,
                        "statuses": sorted(statuses),
                        "distinct_bodies": len(digests),
                        "bytes": len(first.content) if first is not None else 0,
                        "headers": dict(first.headers) if first is not None else {},
                    }
                )
    finally:
        if lifespan is not None:
            await lifespan.__aexit__(None, None, None)
    return results


if __name__ == "__main__":
    spec_path = Path(sys.argv[1])
    spec = json.loads(spec_path.read_text())
    out = asyncio.run(main(spec))
    Path(spec["out"]).write_text(json.dumps(out))
