"""The ASGI application: GraphQL at /graphql, upload/download routes, /healthz, /readyz."""

from __future__ import annotations

import contextlib
import gc
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from graph import graphiql
from graph.cache import AnonymousCache, Generation
from graph.context import Context, Loaders, Services
from graph.ratelimit import RateLimiter
from graph.routes import download, healthz, readyz, upload
from graph.schema import build_schema
from graph.transport import GraphQLRequestGuard, RequestsPerAddress, SecurityHeaders
from jobs.notifier import InAppNotifier
from jobs.runner import EmbeddedRunner
from jobs.scheduler import ArqScheduler
from jobs.watch import WorkerWatch
from storage import accounts, db, disk
from storage.blobs import BlobStore, open_blob_store
from storage.clock import Clock, SteadyClock, load_mark
from storage.config import Settings
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
    request_id = uuid.uuid4().hex
    log.error("request %s: unexpected error", request_id, exc_info=exc)
    if disk.is_full(exc):
        body = {"error": "STORAGE_FULL", "message": disk.StorageFull().message}
        return JSONResponse({**body, "requestId": request_id}, status_code=507)
    body = {"error": "INTERNAL_ERROR", "message": "Unexpected error.", "requestId": request_id}
    return JSONResponse(body, status_code=500)


class GraphQLApp(GraphQL[Context, None]):
    def __init__(self, services: Services):
        settings = services.settings
        super().__init__(
            build_schema(settings),
            graphql_ide="graphiql" if settings.graphiql else None,
            allow_queries_via_get=True,
        )
        self.services = services

    async def render_graphql_ide(self, request: Request) -> Response:
        """Our own GraphiQL page (same-origin assets only), not strawberry's CDN one."""
        return graphiql.page_response()

    def encode_json(self, data: object) -> str | bytes:
        try:
            return orjson.dumps(data)
        except TypeError:  # e.g. an integer beyond 64 bits: the standard encoder takes it
            return super().encode_json(data)

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
        assert isinstance(request, Request)
        viewer = token = None
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            now = self.services.runtime.clock.now()
            found = await accounts.authenticate(credentials.strip(), now=now)
            if found is not None:
                viewer, token = found
        request_id = uuid.uuid4().hex
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
    blobs = blobs or open_blob_store(settings.blob_url)
    runner: EmbeddedRunner | None = None
    arq: ArqScheduler | None = None
    watch: WorkerWatch | None = None
    if scheduler is None:
        if settings.redis_url:
            arq, watch = ArqScheduler(settings, clock), WorkerWatch(settings)
            scheduler = Fanout(arq, watch)
        else:
            scheduler = runner = EmbeddedRunner()
    runtime = Runtime(
        settings=settings,
        clock=clock,
        blobs=blobs,
        scheduler=scheduler,
        notifier=InAppNotifier(),
    )
    signer = Signer(settings.secret_key)
    services = Services(
        runtime=runtime,
        signer=signer,
        limiter=RateLimiter(settings),
        cursors=Cursors(signer.sealer),
        generation=Generation(),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_database:
            await db.migrate(settings.database_url)
            await db.connect(settings.database_url, settings.database_pool_size)
            await load_mark(clock)
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
            if manage_database:
                await db.disconnect()

    graphql_app = GraphQLApp(services)
    routes: list[Any] = [
        Route("/graphql", graphql_app, methods=["GET", "POST"]),
        Route("/uploads/{token}", upload, methods=["PUT"], name="upload"),
        Route("/downloads/{token}", download, methods=["GET", "HEAD"], name="download"),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    if settings.graphiql:
        routes.append(Mount(graphiql.URL_PREFIX, StaticFiles(directory=graphiql.STATIC_DIR)))
        if absent := graphiql.missing():
            log.warning(graphiql.missing_message(absent))
    # Outermost first: headers on every answer, CORS on refusals too, then the guard.
    middleware = [
        Middleware(SecurityHeaders, graphiql_path="/graphql" if settings.graphiql else None)
    ]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST", "PUT"],
                allow_headers=["authorization", "content-type", "range"],
                max_age=600,
            )
        )
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
