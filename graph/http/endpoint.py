"""``/graphql``: strawberry's ASGI app, with who is asking decided once, at the edge.

A request's bearer token signs it in here, before anything runs (401 for one that no
longer works, or a header that is not ``Bearer <token>``); a WebSocket signs in with its
``connection_init`` payload. A mutation sent with an ``Idempotency-Key`` runs at most
once (graph/http/idempotency.py). The context every resolver gets
(:class:`graph.schema.context.Context`) is made here, per request.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import orjson
from cross_web import HTTPException
from graphql import GraphQLSchema
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from starlette.websockets import WebSocketDisconnected as StarletteClosed
from strawberry.asgi import GraphQL
from strawberry.http.exceptions import WebSocketDisconnected as StrawberryClosed
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)

from graph.http import graphiql, idempotency
from graph.http.errors import (
    busy_graphql_response,
    committed_graphql_response,
    malformed_authorization_response,
    unauthenticated_response,
)
from graph.http.graphql_request import is_unicode
from graph.http.logs import current_request_id
from graph.schema.build import build_schema
from graph.schema.context import Context, Loaders, Services
from graph.schema.subscriptions import token_of
from storage import accounts, changes
from storage.db.connection import is_busy
from storage.db.models import AuthToken, User
from storage.errors import TryAgain

# A JSON escape of a UTF-16 surrogate: the only way text that is not Unicode gets in.
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class TransportWS(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws, quiet about a socket closed under it: when a client sends
    several operations and one closes the socket (4400, as the protocol says for a
    document that does not parse), the others find it closed; that is the client's
    doing, not an error of ours, and no traceback for anyone to flood the log with."""

    async def handle_task_exception(self, error: Exception) -> None:
        if isinstance(error, StarletteClosed | StrawberryClosed):
            return
        await super().handle_task_exception(error)


class Unauthenticated(Exception):
    """A bearer token was sent that is unknown, expired or revoked."""

    code = "UNAUTHENTICATED"

    def response(self) -> Response:
        return unauthenticated_response()


class MalformedAuthorization(Unauthenticated):
    """An ``Authorization`` header was sent that is not ``Bearer <token>``."""

    code = "INVALID_AUTHORIZATION"

    def response(self) -> Response:
        return malformed_authorization_response()


SIGN_IN = "lorashelf.sign_in"
"""The key, in a request's ``scope["state"]``, of who its ``Authorization`` header named
when the edge already signed it in (graph/http/sharing.py): a user and token, None
(anonymous), or the :class:`Unauthenticated` to raise. A request is signed in once."""


class GraphQLApp(GraphQL[Context, None]):
    graphql_transport_ws_handler_class = TransportWS

    def __init__(self, services: Services):
        settings = services.settings
        schema = build_schema(settings)
        self.documents = schema.documents  # parsed once, for the anonymous cache too
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.graphiql else None,
            allow_queries_via_get=True,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=timedelta(seconds=settings.limits.body_timeout),
            # The web app's origins may open the subscriptions' WebSocket too, as they
            # may call /graphql (strawberry refuses other cross-origin handshakes: 403).
            allowed_origins=settings.cors_origins,
        )
        self.services = services
        self.idempotent = idempotency.Idempotent(
            secret=settings.secret_key,
            clock=services.runtime.clock,
            max_tokens=settings.limits.max_tokens,
        )

    @property
    def core_schema(self) -> GraphQLSchema:
        """graphql-core's schema, under strawberry's."""
        schema: GraphQLSchema = self.schema._schema  # type: ignore[attr-defined]
        return schema

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with changes.watch() as watched:
            await self._answer(scope, receive, send, watched)

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, watched: changes.Watched
    ) -> None:
        try:
            if scope["type"] != "http":
                await super().__call__(scope, receive, send)
                return
            # Who is asking, once, before anything runs (get_context reads it).
            found = await self.signed_in_scope(scope)
            scope.setdefault("state", {})[SIGN_IN] = found
            key = idempotency.key_of(scope)
            if key is None:
                await super().__call__(scope, receive, send)
                return
            user_id = found[0].id if found is not None else None
            await self.idempotent(super().__call__, scope, receive, send, key=key, user_id=user_id)
        except Unauthenticated as refused:
            # Raised by sign_in, before anything ran or was sent.
            if scope["type"] != "http":
                raise
            self.services.metrics.error(refused.code)
            await refused.response()(scope, receive, send)
        except Exception as exc:
            # The database busy or restarting outside a mutation's own error path (signing
            # in, the idempotency claim, the response cache): TRY_AGAIN like any other
            # request, never a 500; but once a change of this request committed, never
            # "nothing was changed": RESULT_UNAVAILABLE, as a mutation answers then.
            if scope["type"] != "http" or not is_busy(exc):
                raise
            if watched.committed:
                self.services.metrics.error(changes.ResultUnavailable.code)
                await committed_graphql_response()(scope, receive, send)
                return
            self.services.metrics.error(TryAgain.code)
            await busy_graphql_response()(scope, receive, send)

    async def sign_in(self, authorization: str | None) -> tuple[User, AuthToken] | None:
        """Who an ``Authorization`` header names: nobody without one; raises
        :class:`MalformedAuthorization` for a header that is not ``Bearer <token>`` and
        :class:`Unauthenticated` for a token that is unknown, expired or revoked."""
        if authorization is None:
            return None
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise MalformedAuthorization
        now = self.services.runtime.clock.now()
        found = await accounts.authenticate(credentials.strip(), now=now)
        if found is None:
            raise Unauthenticated
        return found

    async def signed_in_scope(self, scope: Scope) -> tuple[User, AuthToken] | None:
        """:meth:`sign_in` for this request, unless the edge already did it."""
        state = scope.get("state")
        if isinstance(state, dict) and SIGN_IN in state:
            outcome = state[SIGN_IN]
            if isinstance(outcome, Unauthenticated):
                raise outcome
            found: tuple[User, AuthToken] | None = outcome
            return found
        return await self.sign_in(Headers(scope=scope).get("authorization"))

    async def render_graphql_ide(self, request: Request) -> Response:
        """Our own GraphiQL page (same-origin assets only), not strawberry's CDN one."""
        return graphiql.page_response()

    def encode_json(self, data: object) -> str:
        # Text, not bytes: strawberry sends bytes as binary WebSocket frames, which
        # graphql-transport-ws clients do not read.
        try:
            return orjson.dumps(data).decode()
        except TypeError:  # e.g. an integer beyond 64 bits: the standard encoder takes it
            return json.dumps(data, separators=(",", ":"))

    def decode_json(self, data: str | bytes) -> object:
        """JSON, of Unicode text only: a WebSocket message holding an unpaired UTF-16
        surrogate (``\\ud800``) is not valid JSON for us, so graphql-transport-ws
        closes the socket with 4400 before anything looks at it (over HTTP,
        graph/http/graphql_request.py refused it earlier with 400 INVALID_UNICODE)."""
        value = json.loads(data)
        text = data if isinstance(data, str) else data.decode(errors="replace")
        if SURROGATE_ESCAPE.search(text) and not is_unicode(value):
            raise json.JSONDecodeError("unpaired UTF-16 surrogate", text, 0)
        return value

    def parse_json(self, data: str | bytes) -> Any:
        """Only a JSON object (or an array, refused later as a batch) is a request;
        anything else is the client's mistake: 400, never a server error."""
        try:
            value = self.decode_json(data)
        except (ValueError, RecursionError):  # bad JSON, bad UTF-8, absurd nesting
            raise HTTPException(400, "The request body is not valid JSON.") from None
        if not isinstance(value, dict | list):
            raise HTTPException(400, "The request body must be a JSON object.")
        return value

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket | None
    ) -> Context:
        viewer = token = None
        if isinstance(request, Request):  # a WebSocket authenticates in connection_init
            found = await self.signed_in_scope(request.scope)
            if found is not None:
                viewer, token = found
        request_id = current_request_id()  # made at the edge (graph.http.logs.RequestIds)
        if isinstance(response, Response):
            response.headers["x-request-id"] = request_id
        return Context(
            request=request,
            response=response if isinstance(response, Response) else None,
            services=self.services,
            viewer=viewer,
            token=token,
            loaders=Loaders(
                viewer=viewer.id if viewer else None, blobs=self.services.runtime.blobs
            ),
            request_id=request_id,
        )

    async def on_ws_connect(self, context: Context) -> None:
        """``connection_init``: the token in its payload (``{"Authorization": "Bearer …"}``
        or ``{"token": …}``) signs the connection in. Without a valid one the connection
        is still acknowledged, and every subscription answers ``UNAUTHENTICATED``."""
        token = token_of(context.connection_params)
        if token is not None:
            found = await accounts.authenticate(token, now=context.now())
            if found is not None:
                context.viewer, context.token = found
                context.loaders = Loaders(viewer=context.viewer.id, blobs=context.runtime.blobs)
        return None
