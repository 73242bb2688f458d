"""``/graphql``: strawberry's ASGI app, with who is asking decided once, at the edge.

A request's bearer token signs it in here (401 for one that no longer works); a
WebSocket signs in with its ``connection_init`` payload. The context every resolver
gets (:class:`graph.schema.context.Context`) is made here, per request.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import orjson
from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from graph.http import graphiql
from graph.http.errors import unauthenticated_response
from graph.http.logs import current_request_id
from graph.schema.build import build_schema
from graph.schema.context import Context, Loaders, Services
from graph.schema.subscriptions import token_of
from storage import accounts
from storage.db.models import AuthToken, User


class Unauthenticated(Exception):
    """A bearer token was sent that is unknown, expired or revoked."""


class GraphQLApp(GraphQL[Context, None]):
    def __init__(self, services: Services):
        settings = services.settings
        super().__init__(
            build_schema(settings),
            graphql_ide="graphiql" if settings.graphiql else None,
            allow_queries_via_get=True,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=timedelta(seconds=settings.limits.body_timeout),
            # The web app's origins may open the subscriptions' WebSocket too, as they
            # may call /graphql (strawberry refuses other cross-origin handshakes: 403).
            allowed_origins=settings.cors_origins,
        )
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except Unauthenticated:
            # Raised by get_context, before anything was sent.
            if scope["type"] != "http":
                raise
            self.services.metrics.error("UNAUTHENTICATED")
            await unauthenticated_response()(scope, receive, send)

    async def sign_in(self, authorization: str) -> tuple[User, AuthToken] | None:
        """Who an ``Authorization`` header names: nobody without a bearer token; raises
        :class:`Unauthenticated` for a token that is unknown, expired or revoked."""
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return None
        now = self.services.runtime.clock.now()
        found = await accounts.authenticate(credentials.strip(), now=now)
        if found is None:
            raise Unauthenticated
        return found

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
            found = await self.sign_in(request.headers.get("authorization", ""))
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
            loaders=Loaders(viewer=viewer.id if viewer else None),
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
                context.loaders = Loaders(viewer=context.viewer.id)
        return None
