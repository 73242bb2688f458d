"""Log lines: plain text, or one JSON object per line (``LORASHELF_LOG_FORMAT=json``),
each carrying the id of the request it belongs to.

The id is made at the edge (:class:`RequestIds`, the outermost middleware) and kept
in a context variable, so every record logged while that request is handled, the
access log line included, carries it; the GraphQL context reuses it and sends it
back as ``x-request-id``.

Signed links never reach a log: the secret part of ``/downloads/<token>`` and
``/uploads/<token>`` is replaced by ``[redacted]`` in every record (:class:`Redact`,
on uvicorn's access log and on lorashelf's own handler), so whoever reads the logs
cannot replay a link. Nor does any query string's content, on any path: the values of
its parameters are redacted, but for ``operationName`` and ``extensions`` (a persisted
query's hash). That covers the e-mail links' tokens (``/email/verify?token=``,
``/email/unsubscribe?token=``: the unsubscribe token never expires) and a password a
careless client put in a ``GET /graphql`` document or its variables (a mutation sent
with ``GET`` is refused, after its URL reached the access log).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

request_id: ContextVar[str | None] = ContextVar("lorashelf_request_id", default=None)

# The routes whose path holds a signed token (graph/http/app.py: downloads, uploads).
_SIGNED_PATH = re.compile(r"(/(?:downloads|uploads)/)[^\s?#\"']+")
REDACTED = "[redacted]"
# A path's query string (any path), and the parameters whose values are kept.
_QUERY = re.compile(r"(/[^\s?#\"']*\?)([^\s#\"']*)")
_KEPT_PARAMETERS = frozenset({"operationName", "extensions"})


def _redact_parameters(query: str) -> str:
    kept = []
    for pair in query.split("&"):
        name, equals, _ = pair.partition("=")
        kept.append(pair if name in _KEPT_PARAMETERS or not equals else f"{name}={REDACTED}")
    return "&".join(kept)


def redact(text: str) -> str:
    """``text`` with the token of every signed link path, and the values of every
    query string's parameters (but ``operationName`` and ``extensions``), replaced by
    ``[redacted]``."""
    text = _SIGNED_PATH.sub(lambda match: match.group(1) + REDACTED, text)
    return _QUERY.sub(lambda m: m.group(1) + _redact_parameters(m.group(2)), text)


class Redact(logging.Filter):
    """Takes the tokens of signed links out of a record (its message, its arguments,
    which uvicorn's access formatter reads one by one, and its traceback's text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if record.exc_info and not record.exc_text:  # a traceback's messages too
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        return True


REDACTED_LOGGERS = ("uvicorn.access", "uvicorn.error")

# A download stopped on purpose (graph/http/streaming.py) returns without completing its
# response: uvicorn then closes the connection, and would call it an error.
_ended_on_purpose: ContextVar[bool] = ContextVar("lorashelf_ended_on_purpose", default=False)
UNCOMPLETED = "ASGI callable returned without completing response."


def ended_on_purpose() -> None:
    """This request's response stops short on purpose (its own line says why)."""
    _ended_on_purpose.set(True)


class QuietCut(logging.Filter):
    """Drops uvicorn's error line for a response stopped short on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg == UNCOMPLETED and _ended_on_purpose.get())


def redact_signed_links() -> None:
    """Put :class:`Redact` on the loggers that log request paths, and :class:`QuietCut`
    on uvicorn's error logger (idempotent; run again after uvicorn configures its own
    logging)."""
    for name in REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, Redact) for f in logger.filters):
            logger.addFilter(Redact())
    error = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, QuietCut) for f in error.filters):
        error.addFilter(QuietCut())


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
        if record.exc_text:  # formatted (and redacted) by Redact
            line["exc_info"] = record.exc_text
        elif record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def setup(log_format: str) -> None:
    """Configure the root logger for ``serve`` and ``worker``: text or JSON lines on
    stderr. With JSON, warnings and uvicorn's loggers go through it too."""
    handler = logging.StreamHandler()
    handler.addFilter(Redact())  # whatever logger a record comes from
    redact_signed_links()
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
