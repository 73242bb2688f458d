"""The per-request context: who is asking, the shared services, the DataLoaders."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

import strawberry
from starlette.requests import Request
from starlette.responses import Response
from strawberry.dataloader import DataLoader

from graph.ratelimit import RateLimiter
from jobs.scheduler import Scheduler
from storage import catalog, datasets, events
from storage.blobs import BlobStore
from storage.clock import Clock
from storage.config import Settings
from storage.models import (
    AuthToken,
    DatasetEvent,
    LoraModel,
    ModelVersion,
    TrainingDataset,
    User,
)
from storage.signing import Signer


@dataclass(frozen=True)
class Services:
    """Built once at start and shared by every request."""

    settings: Settings
    clock: Clock
    blobs: BlobStore
    signer: Signer
    scheduler: Scheduler
    limiter: RateLimiter


V = TypeVar("V")


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
    """Per-request batching: a page costs a constant number of queries."""

    viewer: int | None
    user: DataLoader[int, User | None] = field(init=False)
    model: DataLoader[int, LoraModel | None] = field(init=False)
    version: DataLoader[int, ModelVersion | None] = field(init=False)
    versions_of_model: DataLoader[int, list[ModelVersion]] = field(init=False)
    dataset: DataLoader[int, TrainingDataset | None] = field(init=False)
    dataset_of_version: DataLoader[int, TrainingDataset | None] = field(init=False)
    events_of_dataset: DataLoader[int, list[DatasetEvent]] = field(init=False)

    def __post_init__(self) -> None:
        viewer = self.viewer

        async def versions_of(ids: list[int]) -> dict[int, list[ModelVersion]]:
            return await catalog.versions_by_model_ids(ids, viewer=viewer)

        self.user = _loader(catalog.users_by_ids)
        self.model = _loader(catalog.models_by_ids)
        self.version = _loader(catalog.versions_by_ids)
        self.versions_of_model = _list_loader(versions_of)
        self.dataset = _loader(datasets.datasets_by_ids)
        self.dataset_of_version = _loader(datasets.datasets_by_version_ids)
        self.events_of_dataset = _list_loader(events.events_by_dataset_ids)


@dataclass
class Context:
    request: Request
    response: Response | None
    services: Services
    viewer: User | None
    token: AuthToken | None
    loaders: Loaders
    request_id: str

    @property
    def viewer_id(self) -> int | None:
        return self.viewer.id if self.viewer else None

    def now(self) -> datetime:
        return self.services.clock.now()

    @property
    def client_address(self) -> str:
        client = self.request.client
        return client.host if client else "unknown"


Info = strawberry.Info[Context, None]
