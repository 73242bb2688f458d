"""A slow HTTP reader for download tests: a raw socket with a small receive buffer,
read at a chosen rate in a thread of its own, recording how many bytes had arrived
when, so a test can say how many arrived after a given moment."""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit


class SlowReader(threading.Thread):
    """GET ``url`` (``Connection: close``) and read the body at ``rate`` bytes a second;
    with ``stall_after``, read nothing past that many bytes until :meth:`resume`, then
    read the rest as fast as it comes."""

    def __init__(
        self,
        url: str,
        *,
        rate: int,
        receive_buffer: int = 64 * 1024,
        headers: dict[str, str] | None = None,
        stall_after: int | None = None,
    ):
        super().__init__(daemon=True)
        self.url = urlsplit(url)
        self.rate = rate
        self.receive_buffer = receive_buffer
        self.headers = headers or {}
        self.stall_after = stall_after
        self.status = 0
        self.content_length: int | None = None
        self.received = 0
        self.samples: list[tuple[float, int]] = []  # (monotonic time, bytes so far)
        self.ended_at: float | None = None
        self.error: BaseException | None = None
        self._resumed = threading.Event()

    def run(self) -> None:
        try:
            self._read()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc
        finally:
            self.ended_at = time.monotonic()

    def resume(self) -> None:
        """Read on, as fast as the bytes come (after a stall)."""
        self._resumed.set()

    def _read(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
        sock.settimeout(60)
        sock.connect((self.url.hostname or "127.0.0.1", self.url.port or 80))
        with sock:
            lines = [f"GET {self.url.path} HTTP/1.1", f"Host: {self.url.netloc}"]
            lines += [f"{k}: {v}" for k, v in {"Connection": "close", **self.headers}.items()]
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            head = b""
            while b"\r\n\r\n" not in head:
                data = sock.recv(1024)
                if not data:
                    return
                head += data
            head, _, body = head.partition(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            self.status = int(status_line.split()[1])
            for line in header_lines:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    self.content_length = int(value)
            started = time.monotonic()
            self._got(len(body))
            while True:
                stalled = self.stall_after is not None and self.received >= self.stall_after
                if stalled and not self._resumed.is_set():
                    time.sleep(0.05)
                    continue
                due = started + self.received / self.rate
                if not self._resumed.is_set() and (wait := due - time.monotonic()) > 0:
                    time.sleep(min(wait, 0.05))
                    continue
                data = sock.recv(16 * 1024)
                if not data:
                    return
                self._got(len(data))

    def _got(self, count: int) -> None:
        self.received += count
        self.samples.append((time.monotonic(), self.received))

    def received_by(self, moment: float) -> int:
        """Bytes of the body that had arrived at ``moment``."""
        before = [count for at, count in self.samples if at <= moment]
        return before[-1] if before else 0
