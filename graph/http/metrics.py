"""``/metrics``: the operations view of a ``serve`` process, in Prometheus's text format.

What this process did (GraphQL requests and latency by operation name, GraphQL errors
by code, uploads and downloads by kind, and the retention work of its embedded runner:
:mod:`storage.system.metrics`), and what the database says when scraped (datasets by
status, the retention backlog) plus ARQ's queue depth. Aggregates only: no label holds
a user, a dataset, a filename or an id.

It is never served on the API's port: ``serve --metrics-port P`` serves it on a port of
its own, on loopback unless ``--metrics-host`` says otherwise (:class:`MetricsServer`),
for operators only. Even they learn no private object's size from it: uploads are
counted, not their bytes (every upload goes to a draft, which is private), and bytes
sent are counted only for downloads anybody could make (a public object, its public
bytes); a download of private bytes (a private dataset, a draft's file, a header's
withheld keys) is counted as one, without its size.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING

import uvicorn
from graphql import GraphQLError
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from storage import signing
from storage.mail import outbox
from storage.system import metrics as stored
from storage.system.metrics import Metrics

if TYPE_CHECKING:
    from graph.schema.context import Services

log = logging.getLogger("lorashelf.metrics")

MAX_OPERATIONS = 50  # distinct operation names kept as labels; the rest are "other"
_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]{0,63}$")
_CODE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
KINDS = ("dataset", "file")
CACHE_OUTCOMES = ("hit", "computed", "coalesced", "uncacheable")
SIGNED_IN_PATHS = ("shared", "per_viewer", "owner")


def kind_label(kind: signing.Kind) -> str:
    """A link's kind of object as a metrics label: ``dataset``, ``file`` or ``export``."""
    return {signing.FILE: "file", signing.EXPORT: "export"}.get(kind, "dataset")


class ApiMetrics:
    """The API's own metrics, in the registry of the process's :class:`Metrics`."""

    def __init__(
        self, metrics: Metrics, *, queue_depth: Callable[[], Awaitable[int]] | None = None
    ):
        registry = metrics.registry
        self.retention = metrics
        self.queue_depth = queue_depth
        self._names: set[str] = set()
        self.requests = Counter(
            "lorashelf_graphql_requests",
            f"GraphQL operations, by operation name (the first {MAX_OPERATIONS} names seen; "
            'then "other"; "anonymous" when unnamed).',
            ["operation"],
            registry=registry,
        )
        self.latency = Histogram(
            "lorashelf_graphql_request_duration_seconds",
            "GraphQL queries and mutations: parse to result, by operation name.",
            ["operation"],
            registry=registry,
        )
        self.errors = Counter(
            "lorashelf_graphql_errors",
            'GraphQL errors, by extensions.code ("NONE": validation and syntax errors).',
            ["code"],
            registry=registry,
        )
        self.uploads = Counter(
            "lorashelf_uploads",
            "Completed uploads, by kind (dataset, file); their sizes are not counted (an "
            "upload goes to a draft: private).",
            ["kind"],
            registry=registry,
        )
        self.downloaded = Counter(
            "lorashelf_download_bytes",
            "Bytes sent by downloads anybody may make (public objects, public bytes), by "
            "kind (dataset, file).",
            ["kind"],
            registry=registry,
        )
        self.private_downloads = Counter(
            "lorashelf_private_downloads",
            "Download requests for private bytes (private datasets, drafts' files, headers "
            "with withheld keys), by kind; their bytes are not counted.",
            ["kind"],
            registry=registry,
        )
        for kind in KINDS:
            self.uploads.labels(kind)
            self.downloaded.labels(kind)
            self.private_downloads.labels(kind)
        self.cached = Counter(
            "lorashelf_response_cache_answers",
            "Queries the response cache could answer (graph/http/cache.py), by outcome: "
            '"hit" (a stored answer), "computed" (a miss that ran the query: the '
            'recomputations), "coalesced" (a miss that waited for another request\'s '
            'computation of the same answer), "uncacheable" (ran, not kept: errors or '
            "too large).",
            ["outcome"],
            registry=registry,
        )
        self.signed_in_queries = Counter(
            "lorashelf_signed_in_queries",
            "Signed-in queries the response cache could serve, by path "
            '(graph/http/sharing.py): "shared" (the anonymous answer), "per_viewer" (the '
            'document selects a field that depends on who asks), "owner" (the viewer owns '
            "something only they see).",
            ["path"],
            registry=registry,
        )
        for outcome in CACHE_OUTCOMES:
            self.cached.labels(outcome)
        for path in SIGNED_IN_PATHS:
            self.signed_in_queries.labels(path)
        self.datasets = Gauge(
            "lorashelf_datasets",
            "Datasets by status (from the database, when scraped).",
            ["status"],
            registry=registry,
        )
        self.overdue = Gauge(
            "lorashelf_retention_overdue_datasets",
            "Private datasets still available after their expiresAt (should be 0).",
            registry=registry,
        )
        self.due_reminders = Gauge(
            "lorashelf_retention_due_reminders",
            "Reminders due and not sent yet.",
            registry=registry,
        )
        self.mail = Gauge(
            "lorashelf_mail_messages",
            "E-mail by state (from the database, when scraped): PENDING waits for an attempt, "
            "DEAD are dead letters (given up after LORASHELF_MAIL_RETRY_FOR).",
            ["status"],
            registry=registry,
        )
        self.queue = (
            Gauge(
                "lorashelf_queue_depth",
                "Jobs in ARQ's queue, due or deferred (-1: Redis did not answer).",
                registry=registry,
            )
            if queue_depth is not None
            else None
        )

    def operation(self, name: str | None) -> str:
        """The label for a client-chosen operation name, bounded in number and form."""
        if not name:
            return "anonymous"
        if not _NAME.match(name):
            return "other"
        if name not in self._names:
            if len(self._names) >= MAX_OPERATIONS:
                return "other"
            self._names.add(name)
        return name

    def cache(self, outcome: str) -> None:
        self.cached.labels(outcome).inc()

    def signed_in(self, path: str) -> None:
        self.signed_in_queries.labels(path).inc()

    def error(self, code: object) -> None:
        label = code if isinstance(code, str) and _CODE.match(code) else "NONE"
        self.errors.labels(label).inc()

    async def render(self, now: datetime) -> bytes:
        """The text exposition, the database's gauges read now."""
        backlog = await stored.backlog(now)
        for status, count in backlog.datasets.items():
            self.datasets.labels(status).set(count)
        self.overdue.set(backlog.overdue_expiries)
        self.due_reminders.set(backlog.due_reminders)
        for status, count in (await outbox.counts()).items():
            self.mail.labels(status).set(count)
        if self.queue_depth is not None and self.queue is not None:
            try:
                self.queue.set(await self.queue_depth())
            except Exception as exc:  # noqa: BLE001 - Redis down: say so, scrape anyway
                log.warning("metrics: queue depth unavailable (%s)", exc)
                self.queue.set(-1)
        return generate_latest(self.retention.registry)


def api_metrics(request: Request) -> ApiMetrics:
    services = request.app.state.services
    found: ApiMetrics = services.metrics
    return found


async def metrics_route(request: Request) -> Response:
    services = request.app.state.services
    body = await api_metrics(request).render(services.runtime.clock.now())
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"cache-control": "no-store"})


def metrics_app(services: Services) -> Starlette:
    """The app on the metrics port: ``/metrics`` and nothing else (404)."""
    app = Starlette(routes=[Route("/metrics", metrics_route, methods=["GET"])])
    app.state.services = services
    return app


def listen(host: str, port: int) -> socket.socket:
    """The metrics port's socket, bound now (so that a port in use stops ``serve`` at
    start, with one line); raises OSError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class _QuietServer(uvicorn.Server):
    """A second server in ``serve``'s loop: the API's server handles the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class MetricsServer:
    """``/metrics`` on its own socket, in the API process's event loop (the backlog is
    read from the database through the same connections)."""

    def __init__(self, services: Services, sock: socket.socket):
        config = uvicorn.Config(
            metrics_app(services),
            lifespan="off",
            log_config=None,  # leave the process's logging as serve configured it
            log_level=None,
            access_log=True,  # False would silence uvicorn's access logger process-wide
        )
        self.server = _QuietServer(config)
        self.sock = sock
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # The socket listens already: connections wait in its backlog until it accepts.
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        host, port = self.sock.getsockname()[:2]
        log.info("metrics on http://%s:%s/metrics", host, port)

    async def stop(self) -> None:
        if self.task is None:
            return
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            await self.task
        self.sock.close()


class Measured(SchemaExtension):
    """Counts every operation by name, times queries and mutations, counts errors by code
    (after :class:`graph.schema.error_masking.MaskUnexpected` gave them theirs: listed
    before it)."""

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        ec = self.execution_context
        services = getattr(ec.context, "services", None)
        metrics = getattr(services, "metrics", None)
        if not isinstance(metrics, ApiMetrics):
            return
        label = metrics.operation(ec.operation_name)
        metrics.requests.labels(label).inc()
        try:
            kind = ec.operation_type
        except Exception:  # noqa: BLE001 - no document (a syntax error)
            kind = None
        if kind != OperationType.SUBSCRIPTION:  # a subscription lasts as long as it is open
            metrics.latency.labels(label).observe(time.perf_counter() - started)
        errors: list[GraphQLError] = list(getattr(ec.result, "errors", None) or [])
        if not errors:
            errors = list(ec.pre_execution_errors or [])
        for error in errors:
            metrics.error((error.extensions or {}).get("code"))
