"""Log lines: plain text, or one JSON object per line (``LORASHELF_LOG_FORMAT=json``),
each carrying the id of the request it belongs to.

The id is made at the edge (:class:`RequestIds`, the outermost middleware) and kept
in a context variable, so every record logged while that request is handled, the
access log line included, carries it; the GraphQL context reuses it and sends it
back as ``x-request-id``.
"""

from __future__ import annotations

import json
import logging
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

request_id: ContextVar[str | None] = ContextVar("lorashelf_request_id", default=None)


def current_request_id() -> str:
    """The id of the request being handled; a new one outside any request."""
    return request_id.get() or uuid.uuid4().hex


class RequestIds:
    """Give every HTTP request and WebSocket connection an id, for its log records."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        token = request_id.set(uuid.uuid4().hex)
        try:
            await self.app(scope, receive, send)
        finally:
            request_id.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request_id when known,
    exc_info as text."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id.get()
        if rid is not None:
            line["request_id"] = rid
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def setup(log_format: str) -> None:
    """Configure the root logger for ``serve`` and ``worker``: text or JSON lines on
    stderr. With JSON, warnings and uvicorn's loggers go through it too."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
        logging.captureWarnings(True)
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # The object store's client says where it found credentials at every start: noise.
    for name in ("aiobotocore", "botocore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if log_format == "json":
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "arq"):
            logger = logging.getLogger(name)
            for old in list(logger.handlers):
                logger.removeHandler(old)
            logger.propagate = True
