"""Real processes for end-to-end tests: `lorashelf serve` (and later workers)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

LORASHELF = [sys.executable, "-m", "graph.cli"]
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_healthy(base_url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not become healthy in time")


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path):
        self.proc = proc
        self.port = port
        self.log = log
        self.url = f"http://127.0.0.1:{port}"

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers run."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def serve(
    env: Mapping[str, str], cwd: Path, port: int | None = None
) -> Iterator[Server]:
    """Run `lorashelf serve` until the block ends."""
    port = port or free_port()
    log = cwd / f"serve-{port}.log"
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [*LORASHELF, "serve", "--port", str(port)],
            cwd=cwd,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(proc, port, log)
    try:
        wait_until_healthy(server.url, proc)
        yield server
    finally:
        server.stop()
