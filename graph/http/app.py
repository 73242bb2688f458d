"""The ASGI application: GraphQL at /graphql, upload/download routes, /healthz, /readyz."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import orjson
from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from graph import graphiql
from graph.cache import AnonymousCache, Generation
from graph.context import Context, Loaders, Services
from graph.cors import Cors, NoCors
from graph.logs import RequestIds, current_request_id
from graph.metrics import ApiMetrics, metrics_route
from graph.ratelimit import RateLimiter
from graph.routes import download, healthz, home, readyz, upload
from graph.schema import build_schema
from graph.subscriptions import token_of
from graph.transport import GraphQLRequestGuard, RequestsPerAddress, SecurityHeaders
from jobs.bus import Hub, Subscribers, open_bus
from jobs.notifier import InAppNotifier
from jobs.runner import EmbeddedRunner
from jobs.scheduler import ArqScheduler
from jobs.watch import WorkerWatch
from storage import accounts, db, disk
from storage.blobs import BlobStore, open_blob_store
from storage.clock import Clock, SteadyClock, load_mark
from storage.config import Settings
from storage.models import AuthToken, User
from storage.runtime import Fanout, Runtime, Scheduler
from storage.signing import Cursors, Signer

log = logging.getLogger("lorashelf")


async def http_error(request: Request, exc: Exception) -> Response:
    """Every HTTP-level refusal (no such route, method not allowed) as coded JSON."""
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
    return JSONResponse(
        {"error": codes.get(exc.status_code, "HTTP_ERROR"), "message": exc.detail},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def unexpected_error(request: Request, exc: Exception) -> Response:
    """An unexpected failure outside GraphQL: coded JSON with a request id (the traceback
    is logged under it), never a plain-text 500."""
    request_id = current_request_id()
    log.error("request %s: unexpected error", request_id, exc_info=exc)
    if disk.is_full(exc):
        body = {"error": "STORAGE_FULL", "message": disk.StorageFull().message}
        return JSONResponse({**body, "requestId": request_id}, status_code=507)
    body = {"error": "INTERNAL_ERROR", "message": "Unexpected error.", "requestId": request_id}
    return JSONResponse(body, status_code=500)


class Unauthenticated(Exception):
    """A bearer token was sent that is unknown, expired or revoked."""


UNAUTHENTICATED_MESSAGE = (
    "The bearer token is not valid (unknown, expired or revoked): sign in again."
)


def unauthenticated_response() -> JSONResponse:
    """401 for a token that no longer works, so a client can ask its user to sign in
    again (RFC 6750's ``invalid_token``), in the shape of any other GraphQL error."""
    error = {"message": UNAUTHENTICATED_MESSAGE, "extensions": {"code": "UNAUTHENTICATED"}}
    return JSONResponse(
        {"errors": [error]},
        status_code=401,
        headers={"www-authenticate": 'Bearer error="invalid_token"'},
    )


class GraphQLApp(GraphQL[Context, None]):
    def __init__(self, services: Services):
        settings = services.settings
        super().__init__(
            build_schema(settings),
            graphql_ide="graphiql" if settings.graphiql else None,
            allow_queries_via_get=True,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=timedelta(seconds=settings.limits.body_timeout),
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
        request_id = current_request_id()  # made at the edge (graph.logs.RequestIds)
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


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    blobs: BlobStore | None = None,
    scheduler: Scheduler | None = None,
    manage_database: bool = True,
) -> Starlette:
    """Build the app. With ``manage_database`` its lifespan migrates and connects.

    Retention work: with ``LORASHELF_REDIS_URL`` the app only enqueues ARQ jobs for
    ``lorashelf worker``; without it an embedded runner does the work in-process.
    A ``scheduler`` passed in replaces both.
    """
    clock = clock or SteadyClock()
    blobs = blobs or open_blob_store(settings)
    runner: EmbeddedRunner | None = None
    arq: ArqScheduler | None = None
    watch: WorkerWatch | None = None
    if scheduler is None:
        if settings.redis_url:
            arq, watch = ArqScheduler(settings, clock), WorkerWatch(settings)
            scheduler = Fanout(arq, watch)
        else:
            scheduler = runner = EmbeddedRunner()
    hub = Hub()
    bus = open_bus(settings, hub)
    assert bus is not None
    runtime = Runtime(
        settings=settings,
        clock=clock,
        blobs=blobs,
        scheduler=scheduler,
        notifier=InAppNotifier(),
        bus=bus,
    )
    signer = Signer(settings.secret_key)
    services = Services(
        runtime=runtime,
        signer=signer,
        limiter=RateLimiter(settings),
        cursors=Cursors(signer.sealer),
        generation=Generation(),
        hub=hub,
        subscribers=Subscribers(settings.limits.max_subscriptions_per_user),
        metrics=ApiMetrics(runtime.metrics, queue_depth=arq.queue_depth if arq else None),
        queue=arq,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_database:
            await db.migrate(settings.database_url)
            await db.connect(settings.database_url, settings.database_pool_size)
            await load_mark(clock)
        await blobs.connect()  # an object store: its client, made in this loop, bucket checked
        bus.start()
        if runner is not None:
            runner.start(runtime)
        if watch is not None:
            watch.start(runtime)
        # Everything built at start-up (schema, modules, caches) lives as long as the
        # process: keep it out of the collector's reach, so collections stay cheap.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            if runner is not None:
                await runner.stop()
            if watch is not None:
                await watch.stop()
            if arq is not None:
                await arq.close()
            await bus.close()
            await blobs.close()
            if manage_database:
                await db.disconnect()

    graphql_app = GraphQLApp(services)
    routes: list[Any] = [
        Route("/graphql", graphql_app, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql_app),  # subscriptions (graphql-transport-ws)
        Route("/uploads/{token}", upload, methods=["PUT"], name="upload"),
        Route("/downloads/{token}", download, methods=["GET", "HEAD"], name="download"),
        Route("/", home, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_route, methods=["GET"]),  # keep internal (README)
    ]
    if settings.graphiql:
        routes.append(Mount(graphiql.URL_PREFIX, StaticFiles(directory=graphiql.STATIC_DIR)))
        if absent := graphiql.missing():
            log.warning(graphiql.missing_message(absent))
    # Outermost first: headers on every answer, CORS on refusals too, then the guard.
    middleware = [
        Middleware(RequestIds),  # the request id every log record of a request carries
        Middleware(SecurityHeaders, graphiql_path="/graphql" if settings.graphiql else None),
    ]
    if settings.cors_origins:
        middleware.append(Middleware(Cors, origins=settings.cors_origins))
    else:
        middleware.append(Middleware(NoCors))
    middleware.append(
        Middleware(RequestsPerAddress, limit=settings.limits.max_requests_per_address)
    )
    middleware.append(
        Middleware(
            GraphQLRequestGuard,
            path="/graphql",
            max_body_bytes=settings.limits.max_body_bytes,
            body_timeout=settings.limits.body_timeout,
        )
    )
    middleware.append(
        Middleware(
            AnonymousCache,
            path="/graphql",
            seconds=settings.public_cache,
            generation=services.generation,
            max_tokens=settings.limits.max_tokens,
        )
    )
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=middleware,
        exception_handlers={StarletteHTTPException: http_error, Exception: unexpected_error},
    )
    app.state.services = services
    return app
