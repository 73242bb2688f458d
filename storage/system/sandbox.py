"""Work on untrusted bytes in a child process, so that it never holds up the server.

Parsing a large upload's header takes CPU time and memory in proportion to what the
uploader chose to send. Done on the event loop, it would stall every other request
(a thread would not help: the JSON decoder holds the interpreter lock). So such work
runs in a fresh child process (:func:`run`), under ceilings the kernel enforces:

- address space: ``memory_bytes`` (``RLIMIT_AS``); the work gets ``MemoryError`` past it;
- CPU time: ``cpu_seconds`` (``RLIMIT_CPU``: the child is killed past it), and a wall
  clock deadline of twice that, after which the parent kills it;
- a lower scheduling priority (``nice`` 10), so the server's own process wins the CPU;
- no core dumps, an isolated interpreter (``-I -S``: no site packages, no environment),
  and only the functions listed in :data:`ENTRIES` (pure functions of bytes to bytes
  that import nothing outside the standard library).

The event loop only writes the input to a pipe and waits for the answer. A child that
runs out of memory or time raises :class:`Exhausted` in the parent; anything else that
goes wrong there is a bug, raised as ``RuntimeError``. Whatever happens, including the
caller being cancelled, the child is gone when :func:`run` returns.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import AsyncIterable
from typing import Any, Literal

# The child imports this module: it imports nothing more than it needs at start (asyncio
# alone would add tens of milliseconds to every child), so the parent's side imports
# asyncio where it runs.

ENTRIES = {
    "safetensors.split": "storage.formats.safetensors.parts:split_request",
}
"""What a child may run: name -> ``module:function`` (``bytes -> bytes``)."""

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_BOOT = (
    f"import sys; sys.path.insert(0, {_ROOT!r}); from storage.system.sandbox import child; child()"
)
_OK, _OUT_OF_MEMORY = b"O", b"M"


class Exhausted(Exception):
    """The work needed more memory or time than its ceiling."""

    def __init__(self, resource: Literal["memory", "time"]) -> None:
        super().__init__(f"the work needed more {resource} than allowed")
        self.resource = resource


async def run(
    entry: str,
    payload: AsyncIterable[bytes | bytearray | memoryview],
    *,
    memory_bytes: int,
    cpu_seconds: int,
) -> memoryview:
    """Run ``ENTRIES[entry]`` on the concatenated ``payload`` (sent as it comes, a
    piece at a time) in a child process and return its answer. Raises
    :class:`Exhausted` past a ceiling."""
    import asyncio

    if entry not in ENTRIES:
        raise ValueError(f"unknown sandbox entry {entry!r}")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        "-S",
        "-c",
        _BOOT,
        entry,
        str(memory_bytes),
        str(cpu_seconds),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = bytearray(), bytearray()
    try:
        async with asyncio.timeout(2 * cpu_seconds + 5):
            await asyncio.gather(
                _send(process.stdin, payload),
                _drain(process.stdout, out),
                _drain(process.stderr, err),
            )
            await process.wait()
    except TimeoutError:
        raise Exhausted("time") from None
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    status = process.returncode
    if status == 0 and out[:1] == _OK:
        return memoryview(out)[1:]
    if status == 0 and out[:1] == _OUT_OF_MEMORY:
        raise Exhausted("memory")
    if status in (-9, -24):  # SIGKILL, SIGXCPU: the CPU ceiling
        raise Exhausted("time")
    raise RuntimeError(f"sandboxed {entry} failed (status {status}): {err[-2000:]!r}")


_PIECE = 1024 * 1024  # written and read at a time: never a second copy of the whole


async def _send(pipe: Any, payload: AsyncIterable[bytes | bytearray | memoryview]) -> None:
    assert pipe is not None
    try:
        async for part in payload:
            view = memoryview(part)
            for start in range(0, len(view), _PIECE):
                pipe.write(view[start : start + _PIECE])
                await pipe.drain()
        pipe.close()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the child died reading: its exit status says why


async def _drain(pipe: Any, into: bytearray) -> None:
    assert pipe is not None
    while piece := await pipe.read(_PIECE):
        into += piece


def child() -> None:
    """The child's side: set the ceilings, read the input, run the entry, answer."""
    import resource

    entry, memory, cpu = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    module, name = ENTRIES[entry].split(":")
    function = getattr(importlib.import_module(module), name)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    os.nice(10)
    payload = sys.stdin.buffer.read()
    try:
        answer = _OK + function(payload)
    except MemoryError:
        answer = _OUT_OF_MEMORY
    del payload
    sys.stdout.buffer.write(answer)
    sys.stdout.buffer.flush()
