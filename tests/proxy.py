"""A TCP forwarder on a loopback port, for putting a dependency (an object store, a
database) out of reach and back without losing its state: ``stop()`` closes the port
and every connection through it (clients see refusals and resets), ``start()`` opens
the same port again. ``hang()`` keeps accepting connections but passes nothing on
(clients see a store that does not answer), ``resume()`` passes bytes on again;
``stop_after(n)`` stops once clients have sent ``n`` more bytes (a transfer cut midway).
``cut_next_commit()`` (PostgreSQL's protocol) loses the answer to the next ``COMMIT``
with its connection, delivered to the server or not: the client cannot tell whether it
committed."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

from tests.processes import free_port


class Proxy:
    def __init__(self, target_port: int, port: int | None = None):
        self.target_port = target_port
        self.port = port or free_port()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._hung = threading.Event()
        self._commit_cut: tuple[bool, threading.Event] | None = None
        self._stop_in: list[int] = []  # bytes clients may still send before stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            sockets, self._open = self._open, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def hang(self) -> None:
        self._hung.set()

    def resume(self) -> None:
        self._hung.clear()

    def stop_after(self, sent: int) -> None:
        """``stop()`` once clients have sent ``sent`` more bytes through the proxy."""
        with self._lock:
            self._stop_in = [sent]

    def _sent(self, count: int) -> bool:
        """Count bytes clients sent; whether it is time to stop."""
        with self._lock:
            if not self._stop_in:
                return False
            self._stop_in[0] -= count
            if self._stop_in[0] > 0:
                return False
            self._stop_in = []
            return True

    def cut_next_commit(self, *, deliver: bool) -> threading.Event:
        """The next ``COMMIT`` a client sends through the proxy reaches the server
        (``deliver``) or not; either way its connection is then closed before any answer
        gets back. The event is set once that happened."""
        done = threading.Event()
        with self._lock:
            self._commit_cut = (deliver, done)
        return done

    def _take_commit_cut(self, data: bytes) -> tuple[bool, threading.Event] | None:
        with self._lock:
            cut = self._commit_cut
            # A simple-protocol Query message ('Q', its length, the text) saying COMMIT
            if cut is None or not (data[:1] == b"Q" and data[5:].upper().startswith(b"COMMIT")):
                return None
            self._commit_cut = None
            return cut

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            muted = threading.Event()  # set when the connection's answers are to be lost
            threading.Thread(
                target=self._pipe, args=(client, upstream, muted, True), daemon=True
            ).start()
            threading.Thread(
                target=self._pipe, args=(upstream, client, muted, False), daemon=True
            ).start()

    def _pipe(
        self, source: socket.socket, sink: socket.socket, muted: threading.Event, outbound: bool
    ) -> None:
        try:
            while data := source.recv(65536):
                while self._hung.is_set():
                    time.sleep(0.05)
                if not outbound and muted.is_set():
                    return  # the answer is lost with the connection
                cut = self._take_commit_cut(data) if outbound else None
                if cut is not None:
                    deliver, done = cut
                    muted.set()
                    if deliver:
                        sink.sendall(data)
                    done.set()
                    if deliver:
                        time.sleep(0.5)  # the server commits; its answer goes nowhere
                    return
                sink.sendall(data)
                if outbound and self._sent(len(data)):
                    self.stop()
                    return
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._open.discard(source)


@contextlib.contextmanager
def proxy(target_port: int, *, started: bool = True) -> Iterator[Proxy]:
    forwarder = Proxy(target_port)
    if started:
        forwarder.start()
    try:
        yield forwarder
    finally:
        forwarder.stop()
