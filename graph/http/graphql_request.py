"""A ``/graphql`` request as it was sent (a GET query string or a POST JSON object), read
once in front of the GraphQL app, and the answers given there without it.

Text that is not Unicode (an unpaired UTF-16 surrogate: JSON's ``\\ud800`` escape
decodes to one, and no UTF-8 encoder takes it) is refused as it is read, 400
``INVALID_UNICODE``, before anything else looks at the request.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from starlette.types import Receive, Scope

from graph.http.messages import replay


class Refused(Exception):
    """A request answered here, before the GraphQL app: its status, message and code."""

    def __init__(self, status: int, message: str, code: str):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def _invalid_unicode() -> Refused:
    return Refused(
        400,
        "The request holds text that is not Unicode (an unpaired UTF-16 surrogate such as "
        "\\ud800); send valid UTF-8.",
        "INVALID_UNICODE",
    )


def is_unicode(value: Any) -> bool:
    """Whether every string in a decoded JSON value is Unicode (JSON's ``\\ud800``
    escape decodes to a lone surrogate, which no UTF-8 encoder takes)."""
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


class GraphQLRequest:
    """The GraphQL request as sent (GET query string or POST JSON object)."""

    def __init__(self, method: str, params: dict[str, Any]):
        self.method = method
        self.params = params

    @classmethod
    async def read(cls, scope: Scope, receive: Receive) -> tuple[GraphQLRequest | None, bytes]:
        """The request (None: not a JSON request, for the GraphQL app to refuse) and the
        body read; raises :class:`Refused` for text that is not Unicode."""
        if scope["method"] == "GET":
            pairs = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
            params: dict[str, Any] = dict(pairs)
            for name in ("variables", "extensions"):
                if name in params:
                    try:
                        params[name] = json.loads(params[name])
                    except ValueError:
                        return None, b""
            if not is_unicode(params):
                raise _invalid_unicode()
            return cls("GET", params), b""
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            value = json.loads(body)  # as the GraphQL app reads it
        except (ValueError, RecursionError):
            return None, body
        if not is_unicode(value):
            raise _invalid_unicode()
        return (cls("POST", value) if isinstance(value, dict) else None), body

    @property
    def query(self) -> str | None:
        value = self.params.get("query")
        return value if isinstance(value, str) else None

    @property
    def operation_name(self) -> str | None:
        value = self.params.get("operationName")
        return value if isinstance(value, str) and value else None

    @property
    def persisted_hash(self) -> str | None:
        extensions = self.params.get("extensions")
        if not isinstance(extensions, dict):
            return None
        persisted = extensions.get("persistedQuery")
        if not isinstance(persisted, dict):
            return None
        value = persisted.get("sha256Hash")
        return value.lower() if isinstance(value, str) else ""

    def key(self, document: str) -> str:
        """An answer's key: the document's normal form, the operation, the variables."""
        parts = [document, self.operation_name, self.params.get("variables") or {}]
        try:
            text = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # integers beyond 64 bits
            text = json.dumps(parts, sort_keys=True).encode()
        return hashlib.sha256(text).hexdigest()

    def forward(self, scope: Scope, receive: Receive) -> tuple[Scope, Receive]:
        """The scope and body the GraphQL app sees (with the document filled in)."""
        if self.method == "GET":
            params = {k: v if isinstance(v, str) else json.dumps(v) for k, v in self.params.items()}
            return {**scope, "query_string": urlencode(params).encode()}, receive
        return scope, replay(json.dumps(self.params).encode(), receive)
