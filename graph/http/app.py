"""The ASGI application: GraphQL at /graphql, upload/download routes, /healthz, /readyz,
assembled in a few named steps (:func:`create_app`)."""

from __future__ import annotations

import contextlib
import gc
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from graph.http import email, graphiql, logs, webapp
from graph.http.cache import AnonymousCache, Generation
from graph.http.cors import Cors, NoCors
from graph.http.downloads import download
from graph.http.endpoint import GraphQLApp
from graph.http.errors import BusyAnswers, http_error, unexpected_error
from graph.http.health import healthz, home, readyz
from graph.http.logs import RequestIds
from graph.http.metrics import ApiMetrics, MetricsServer
from graph.http.ratelimit import RateLimiter
from graph.http.receipt_keys import PATH as RECEIPT_KEYS_PATH
from graph.http.receipt_keys import receipt_keys
from graph.http.sharing import Sharing
from graph.http.transport import GraphQLRequestGuard, RequestsPerAddress, SecurityHeaders
from graph.http.uploads import upload
from graph.schema.context import Services
from graph.schema.sharing import Classifier
from jobs.adapters.bus import Hub, Subscribers
from jobs.assembly import Assembly, assemble
from storage.blobs.base import RawStore
from storage.config.settings import Settings
from storage.db import connection
from storage.mail import links
from storage.runtime import Scheduler
from storage.signing import Cursors, Signer
from storage.system.clock import Clock

log = logging.getLogger("lorashelf")


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    blobs: RawStore | None = None,
    scheduler: Scheduler | None = None,
    manage_database: bool = True,
    metrics_socket: socket.socket | None = None,
) -> Starlette:
    """Build the app: the runtime (:func:`jobs.assembly.assemble`; ``clock``, ``blobs``
    and ``scheduler`` replace its defaults), the services every request shares, the
    routes, the middleware, and a lifespan that starts and stops them (with
    ``manage_database`` it also migrates and connects the database; with
    ``metrics_socket`` it serves ``/metrics`` there, never on the API's port)."""
    hub = Hub()
    assembly = assemble(settings, clock=clock, blobs=blobs, scheduler=scheduler, hub=hub)
    services = shared_services(assembly, hub)
    graphql_app = GraphQLApp(services)
    app = Starlette(
        routes=routes(settings, graphql_app),
        lifespan=lifespan(
            assembly,
            manage_database=manage_database,
            metrics=MetricsServer(services, metrics_socket) if metrics_socket else None,
        ),
        middleware=middleware(settings, services, graphql_app),
        exception_handlers={StarletteHTTPException: http_error, Exception: unexpected_error},
    )
    app.state.services = services
    return app


def shared_services(assembly: Assembly, hub: Hub) -> Services:
    """What every request shares: the runtime, the token sealers, the rate limiter, this
    process's view of the public generation, its live subscribers and its metrics."""
    runtime, settings, arq = assembly.runtime, assembly.runtime.settings, assembly.arq
    signer = Signer(settings.secret_key)
    return Services(
        runtime=runtime,
        signer=signer,
        limiter=RateLimiter(settings),
        cursors=Cursors(signer.sealer),
        generation=Generation(runtime.clock),
        hub=hub,
        subscribers=Subscribers(settings.limits.max_subscriptions_per_user),
        metrics=ApiMetrics(runtime.metrics, queue_depth=arq.queue_depth if arq else None),
        queue=arq,
    )


def routes(settings: Settings, graphql_app: GraphQLApp) -> list[Any]:
    """The routes: GraphQL (queries over HTTP, subscriptions over a WebSocket), the
    upload and download links, health, the web app, and GraphiQL's files (``/metrics``
    has a port of its own: :class:`graph.http.metrics.MetricsServer`)."""
    found: list[Any] = [
        Route("/graphql", graphql_app, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql_app),  # subscriptions (graphql-transport-ws)
        Route("/uploads/{token}", upload, methods=["PUT"], name="upload"),
        Route("/downloads/{token}", download, methods=["GET", "HEAD"], name="download"),
        Route(links.VERIFY_PATH, email.verify, methods=["GET", "POST"]),  # links in e-mail
        Route(links.UNSUBSCRIBE_PATH, email.unsubscribe, methods=["GET", "POST"]),
        Route("/", home, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route(RECEIPT_KEYS_PATH, receipt_keys, methods=["GET"]),
        Mount(webapp.URL_PREFIX, webapp.WebApp()),  # the web app, if built (web/)
    ]
    if settings.graphiql:
        found.append(Mount(graphiql.URL_PREFIX, StaticFiles(directory=graphiql.STATIC_DIR)))
        if absent := graphiql.missing():
            log.warning(graphiql.missing_message(absent))
    return found


def middleware(settings: Settings, services: Services, graphql_app: GraphQLApp) -> list[Middleware]:
    """Outermost first: the request id, 503 TRY_AGAIN for a dependency busy or away
    (every route), headers on every answer, CORS (on refusals too), the per-address
    bound, the GraphQL request guard, the anonymous cache (which reads documents
    through the schema's ``documents``, as the GraphQL app does; and the signed-in
    queries it may answer: graph/http/sharing.py)."""
    limits = settings.limits
    documents = graphql_app.documents
    classifier = Classifier(graphql_app.core_schema, documents=documents)
    return [
        Middleware(RequestIds),  # the request id every log record of a request carries
        Middleware(BusyAnswers),  # a dependency busy or away: 503 TRY_AGAIN, every route
        Middleware(SecurityHeaders, graphiql_path="/graphql" if settings.graphiql else None),
        Middleware(Cors, origins=settings.cors_origins)
        if settings.cors_origins
        else Middleware(NoCors),
        Middleware(RequestsPerAddress, limit=limits.max_requests_per_address),
        Middleware(
            GraphQLRequestGuard,
            path="/graphql",
            max_body_bytes=limits.max_body_bytes,
            body_timeout=limits.body_timeout,
        ),
        Middleware(
            AnonymousCache,
            path="/graphql",
            seconds=settings.public_cache,
            generation=services.generation,
            clock=services.runtime.clock,
            documents=documents,
            classifier=classifier,
            answers_bytes=limits.public_cache_bytes,
            persisted_bytes=limits.persisted_queries_bytes,
            sharing=Sharing(graphql_app, services.metrics),
            metrics=services.metrics,
        ),
    ]


def lifespan(
    assembly: Assembly, *, manage_database: bool, metrics: MetricsServer | None = None
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """Start: (migrate and connect the database,) start the runtime's parts (and the
    metrics port), freeze what start-up built. Stop: the parts, then the database."""
    settings = assembly.runtime.settings

    @contextlib.asynccontextmanager
    async def running(app: Starlette) -> AsyncIterator[None]:
        if manage_database:
            await connection.migrate(settings.database_url)
            await connection.connect(
                settings.database_url,
                settings.database_pool_size,
                settings.database_busy_timeout,
            )
        await assembly.start()
        if metrics is not None:
            await metrics.start()
        logs.redact_signed_links()  # after uvicorn configured its loggers
        # Everything built at start-up (schema, modules, caches) lives as long as the
        # process: keep it out of the collector's reach, so collections stay cheap.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            if metrics is not None:
                await metrics.stop()
            await assembly.stop()
            if manage_database:
                await connection.disconnect()

    return running
