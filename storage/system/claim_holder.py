"""This process, as the holder of a claim (an upload in progress, a deletion).

A claim records ``host:pid``, so that a process restarted on the same host can tell at
once that a claim's holder is gone (a holder on another host is judged by its claim's
age instead). An upload's temporary file is named after its holder too.
"""

from __future__ import annotations

import os
import re
import socket

HOST = socket.gethostname()[:64]


def holder() -> str:
    """Who holds a claim (an upload in progress, a deletion): this process, as
    ``host:pid``. Recorded on the row, so that a restarted process can tell at once
    that a claim's holder on the same host is gone."""
    return f"{HOST}:{os.getpid()}"


def holder_gone(claimed_by: str | None) -> bool:
    """Whether a claim's holder is known to be dead: a process of this host that no
    longer runs. (A holder on another host is judged by its claim's age instead.)"""
    if not claimed_by:
        return False
    host, _, pid = claimed_by.rpartition(":")
    if host != HOST or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def file_tag() -> str:
    """The holder as it goes into a temporary file's name (no path characters)."""
    return f"{re.sub(r'[^A-Za-z0-9.-]', '_', HOST)}~{os.getpid()}"


def file_holder_gone(name: str) -> bool:
    """Whether the process that wrote a temporary file named by :func:`file_tag` is
    known to be dead."""
    host, sep, rest = name.partition("~")
    pid = rest.split("~", 1)[0]
    if not sep or host != re.sub(r"[^A-Za-z0-9.-]", "_", HOST):
        return False
    return holder_gone(f"{HOST}:{pid}")
