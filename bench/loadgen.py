"""HTTP load with ``wrk`` (Debian's wrk 4.x): a fixed number of connections, each
sending its next request as soon as the previous answer arrived (closed loop), for a
fixed duration, one wrk thread (the machine has 2 cores: wrk's own CPU is shared
with the server under test, the same for lorashelf and the floor).

Each run gets a Lua script that sets the method, headers and body (read from a file)
and prints wrk's summary and latency percentiles as one JSON line.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

WRK = shutil.which("wrk")

LUA = """
wrk.method = {method}
{body}
{headers}
{request}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"mean":%f,' ..
    '"max":%d}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max))
end
"""


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


@dataclass
class Load:
    target: str  # lorashelf / floor
    mode: str  # uncached / cached / floor / revalidated
    doc: str
    concurrency: int
    seconds: float
    requests: int = 0
    rps: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    mean_ms: float = 0.0
    max_ms: float = 0.0
    errors: int = 0  # socket errors, timeouts and non-2xx/3xx answers
    error_detail: str = ""

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def run_wrk(
    url: str,
    path: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    body_parts: tuple[bytes, bytes] | None = None,
    headers: dict[str, str] | None = None,
    concurrency: int,
    seconds: float,
    load: Load,
    timeout_s: int = 30,
) -> Load:
    if WRK is None:
        raise RuntimeError("wrk is not installed (apt-get install -y wrk)")
    whole = max(1, math.ceil(seconds - 1e-9))  # wrk takes whole seconds
    load.seconds = whole
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        body_lua = ""
        if body is not None:
            body_file = Path(tmp) / "body"
            body_file.write_bytes(body)
            body_lua = (
                f"local f = assert(io.open({_lua_string(str(body_file))}, 'rb'))\n"
                "wrk.body = f:read('*a')\nf:close()"
            )
        request_lua = ""
        if body_parts is not None:  # a new body per request: prefix .. counter .. suffix
            for name, part in zip(("prefix", "suffix"), body_parts, strict=True):
                (Path(tmp) / name).write_bytes(part)
            request_lua = "\n".join(
                [
                    f"local pf = assert(io.open({_lua_string(str(Path(tmp) / 'prefix'))}, 'rb'))",
                    "local prefix = pf:read('*a')\npf:close()",
                    f"local sf = assert(io.open({_lua_string(str(Path(tmp) / 'suffix'))}, 'rb'))",
                    "local suffix = sf:read('*a')\nsf:close()",
                    "local counter = 0",
                    "request = function()",
                    "  counter = counter + 1",
                    "  return wrk.format(nil, nil, nil, prefix .. counter .. suffix)",
                    "end",
                ]
            )
        header_lua = "\n".join(
            f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in (headers or {}).items()
        )
        script = Path(tmp) / "script.lua"
        script.write_text(
            LUA.format(
                method=_lua_string(method), body=body_lua, headers=header_lua, request=request_lua
            )
        )
        argv = [
            WRK,
            "-t1",
            f"-c{concurrency}",
            f"-d{whole}s",
            f"--timeout={timeout_s}s",
            "-s",
            str(script),
            url + path,
        ]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=whole + timeout_s + 30)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary (exit {out.returncode}): {out.stderr[-500:]}")
    data = json.loads(line.removeprefix("BENCHJSON "))
    load.requests = data["requests"]
    load.rps = data["requests"] / (data["duration_us"] / 1e6) if data["duration_us"] else 0.0
    load.p50_ms = data["p50"] / 1000
    load.p90_ms = data["p90"] / 1000
    load.p99_ms = data["p99"] / 1000
    load.mean_ms = data["mean"] / 1000
    load.max_ms = data["max"] / 1000
    errors = {k: data[k] for k in ("connect", "read", "write", "status", "timeout") if data[k]}
    load.errors = sum(errors.values())
    load.error_detail = ", ".join(f"{k} {v}" for k, v in errors.items())
    return load
