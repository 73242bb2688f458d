"""``/metrics``: the operations view of a ``serve`` process, in Prometheus's text format.

What this process did (GraphQL requests and latency by operation name, GraphQL errors
by code, bytes uploaded and downloaded by kind, and the retention work of its embedded
runner: :mod:`storage.system.metrics`), and what the database says when scraped (datasets
by status, the retention backlog) plus ARQ's queue depth. Aggregates only: no label
holds a user, a dataset, a filename or an id. Keep ``/metrics`` internal all the same.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime

from graphql import GraphQLError
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from storage import signing
from storage.system import metrics as stored
from storage.system.metrics import Metrics

log = logging.getLogger("lorashelf.metrics")

MAX_OPERATIONS = 50  # distinct operation names kept as labels; the rest are "other"
_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]{0,63}$")
_CODE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
KINDS = ("dataset", "file")


def kind_label(kind: signing.Kind) -> str:
    """A link's kind of object as a metrics label: ``dataset`` or ``file``."""
    return "file" if kind == signing.FILE else "dataset"


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
        self.uploaded = Counter(
            "lorashelf_upload_bytes",
            "Bytes received by completed uploads, by kind (dataset, file).",
            ["kind"],
            registry=registry,
        )
        self.downloaded = Counter(
            "lorashelf_download_bytes",
            "Bytes sent by downloads, by kind (dataset, file).",
            ["kind"],
            registry=registry,
        )
        for kind in KINDS:
            self.uploaded.labels(kind)
            self.downloaded.labels(kind)
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
