"""The per-request context: who is asking, the shared services, the DataLoaders."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

import strawberry
from starlette.requests import HTTPConnection
from starlette.responses import Response
from strawberry.dataloader import DataLoader
from tortoise.models import Model

from graph.http.cache import Generation
from graph.http.metrics import ApiMetrics
from graph.http.ratelimit import RateLimiter
from jobs.adapters.bus import Hub, Subscribers
from jobs.adapters.scheduler import ArqScheduler
from storage import catalog, datasets, files, headers, operators, search
from storage.blobs.base import BlobStore
from storage.config.settings import Settings
from storage.db.models import (
    AuthToken,
    DatasetEvent,
    ModelFile,
    ModelVersion,
    TrainingDataset,
    User,
)
from storage.moderation import subjects
from storage.moderation.subjects import Subject
from storage.privacy import lookups
from storage.privacy.lookups import Kind
from storage.retention import history
from storage.runtime import Runtime
from storage.signing import Cursors, Signer


@dataclass(frozen=True)
class Services:
    """Built once at start and shared by every request."""

    runtime: Runtime
    signer: Signer
    limiter: RateLimiter
    cursors: Cursors
    generation: Generation  # what anonymous viewers see: moved on by public changes
    hub: Hub  # this process's live subscribers (graph.schema.subscriptions)
    subscribers: Subscribers
    metrics: ApiMetrics  # /metrics: this process's registry (graph.http.metrics)
    queue: ArqScheduler | None = None  # with LORASHELF_REDIS_URL: ARQ's Redis

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    def link(self, request: HTTPConnection, route: str, **params: str) -> str:
        """A link to one of our routes: absolute, from LORASHELF_PUBLIC_URL (which
        ``serve`` defaults to the address it listens on); never from the request's Host
        header, which the client controls. (An app built in-process without it, as some
        tests do, makes relative links.)"""
        path = str(request.app.url_path_for(route, **params))
        return self.settings.public_url + path


def services_of(request: HTTPConnection) -> Services:
    """The services of the app a request arrived at."""
    services: Services = request.app.state.services
    return services


V = TypeVar("V")
M = TypeVar("M", bound=Model)
P = ParamSpec("P")
R = TypeVar("R")


def _loader(fetch: Callable[[list[int]], Awaitable[Mapping[int, V]]]) -> DataLoader[int, V | None]:
    async def load(keys: list[int]) -> list[V | None]:
        found = await fetch(keys)
        return [found.get(k) for k in keys]

    return DataLoader(load_fn=load)


def _list_loader(
    fetch: Callable[[list[int]], Awaitable[Mapping[int, list[V]]]],
) -> DataLoader[int, list[V]]:
    async def load(keys: list[int]) -> list[list[V]]:
        found = await fetch(keys)
        return [found.get(k, []) for k in keys]

    return DataLoader(load_fn=load)


@dataclass
class Loaders:
    """Per-request batching: a page costs a constant number of queries.

    Every loader filters by the viewer, with the rule from ``storage.privacy.access``: a row
    the viewer may not see is never loaded, so a field can only ever hand out what
    its viewer may see. (A type object therefore exists only for a visible row.)
    """

    viewer: int | None
    blobs: BlobStore
    metadata_budget: headers.ReadBudget = field(default_factory=headers.ReadBudget)
    versions_of_model: DataLoader[int, list[ModelVersion]] = field(init=False)
    dataset_of_version: DataLoader[int, TrainingDataset | None] = field(init=False)
    events_of_dataset: DataLoader[int, list[DatasetEvent]] = field(init=False)
    files_of_version: DataLoader[int, list[ModelFile]] = field(init=False)
    tags_of_model: DataLoader[int, list[str]] = field(init=False)
    # The operators' views (and the owner's of an audit entry): subjects named without
    # being opened (public, or hidden by moderation; never a draft or a private dataset).
    moderated: DataLoader[tuple[str, int], Subject | None] = field(init=False)
    usernames: DataLoader[int, str | None] = field(init=False)
    public_metadata: DataLoader[int, headers.Metadata | None] = field(init=False)
    _owner_metadata: dict[int, asyncio.Future[headers.Metadata | None]] = field(
        init=False, default_factory=dict
    )
    _by_kind: dict[str, DataLoader[int, Any]] = field(init=False, default_factory=dict)
    _by_public: dict[str, DataLoader[str, Any]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        viewer = self.viewer

        async def versions_of(ids: list[int]) -> dict[int, list[ModelVersion]]:
            return await catalog.versions_by_model_ids(ids, viewer=viewer)

        async def dataset_of(ids: list[int]) -> dict[int, TrainingDataset]:
            return await datasets.datasets_by_version_ids(ids, viewer=viewer)

        async def events_of(ids: list[int]) -> dict[int, list[DatasetEvent]]:
            return await history.events_by_dataset_ids(ids, viewer=viewer)

        async def files_of(ids: list[int]) -> dict[int, list[ModelFile]]:
            return await files.files_by_version_ids(ids, viewer=viewer)

        self.versions_of_model = _list_loader(versions_of)
        self.dataset_of_version = _loader(dataset_of)
        self.events_of_dataset = _list_loader(events_of)
        self.files_of_version = _list_loader(files_of)
        self.tags_of_model = _list_loader(search.tags_by_model_ids)  # of visible models only

        async def moderated(pairs: list[tuple[str, int]]) -> list[Subject | None]:
            found = await subjects.moderated(pairs)
            return [found.get(pair) for pair in pairs]

        self.moderated = DataLoader(load_fn=moderated)
        self.usernames = _loader(subjects.usernames)

        async def metadata_of(ids: list[int]) -> list[headers.Metadata | None]:
            found = await headers.public_metadata(ids, self.metadata_budget)
            return [found.get(k) for k in ids]

        self.public_metadata = DataLoader(load_fn=metadata_of)

    async def file_metadata(self, file: ModelFile, *, withheld: bool) -> headers.Metadata:
        """A file's metadata, the withheld keys included or not (the caller decided who
        may see them): read once per request, however many fields and aliases ask."""
        found = None
        if withheld and file.owner_metadata_key is not None:
            read = self._owner_metadata.get(file.id)
            if read is None:
                coroutine = headers.owner_metadata(self.blobs, file, self.metadata_budget)
                read = self._owner_metadata[file.id] = asyncio.ensure_future(coroutine)
            found = await read
        if found is None:
            found = await self.public_metadata.load(file.id)
        if found is None:
            raise self.metadata_budget.exceeded()
        return found

    def public(self, kind: Kind[M]) -> DataLoader[str, M | None]:
        """The loader of objects of ``kind`` this viewer may see, by public id."""
        loader = self._by_public.get(kind.name)
        if loader is None:
            viewer = self.viewer

            async def load(public_ids: list[str]) -> list[M | None]:
                found = await lookups.visible_public(kind, viewer, public_ids)
                return [found.get(p) for p in public_ids]

            loader = self._by_public[kind.name] = DataLoader(load_fn=load)
        typed: DataLoader[str, M | None] = loader
        return typed

    def of(self, kind: Kind[M]) -> DataLoader[int, M | None]:
        """The loader of objects of ``kind`` this viewer may see, by id."""
        loader = self._by_kind.get(kind.name)
        if loader is None:
            viewer = self.viewer

            async def fetch(ids: list[int]) -> dict[int, M]:
                return await lookups.visible_many(kind, viewer, ids)

            loader = self._by_kind[kind.name] = _loader(fetch)
        typed: DataLoader[int, M | None] = loader
        return typed


@dataclass
class Context:
    request: HTTPConnection  # a Request, or the WebSocket of a subscription
    response: Response | None
    services: Services
    viewer: User | None
    token: AuthToken | None
    loaders: Loaders
    request_id: str
    connection_params: dict[str, object] | None = None  # a WebSocket's connection_init
    _operator_check: asyncio.Task[Any] | None = field(default=None, init=False, repr=False)

    @property
    def viewer_id(self) -> int | None:
        return self.viewer.id if self.viewer else None

    @property
    def operator(self) -> bool:
        """Whether the viewer is an operator, as signed in for this request (the
        operators' mutations and lists check it again in the database)."""
        user = self.viewer
        return user is not None and user.is_operator and user.suspended_at is None

    async def require_operator(self) -> None:
        """FORBIDDEN unless the viewer is an operator, checked in the database once per
        request: every operators' field of a document awaits the same check, so the
        answer is the same whatever order the database answers in (the first such field
        in the document reports it; two checks on two pooled connections once made that
        a race)."""
        if self._operator_check is None:
            self._operator_check = asyncio.ensure_future(operators.require_operator(self.viewer_id))
        # shielded: a sibling field's failure cancels this field, never the shared check
        await asyncio.shield(self._operator_check)

    @property
    def runtime(self) -> Runtime:
        return self.services.runtime

    def now(self) -> datetime:
        return self.services.runtime.clock.now()

    async def call(
        self,
        service: Callable[Concatenate[Runtime, int | None, P], Awaitable[R]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Call a storage service as this request's viewer: ``service(runtime, viewer, ...)``."""
        return await service(self.services.runtime, self.viewer_id, *args, **kwargs)

    @property
    def client_address(self) -> str:
        client = self.request.client
        return client.host if client else "unknown"


Info = strawberry.Info[Context, None]
