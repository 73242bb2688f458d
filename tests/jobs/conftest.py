"""Shared fixtures for the retention jobs: the job context built from the same
settings and injected clock the ``api`` fixture uses, so data set up through
GraphQL is what the jobs act on."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from graph import ids
from jobs.notifier import InAppNotifier
from jobs.retention import Deps
from storage.blobs import LocalBlobStore, open_blob_store
from storage.config import Settings
from tests.conftest import Api, MutableClock, Person

DATASET = (
    "query($id: ID!) { node(id: $id) { ... on TrainingDataset { id status visibility "
    "filename expiresAt deletedAt deletionReason downloadUrl events { kind at detail } } } }"
)
NOTIFICATIONS = (
    "{ viewer { unreadNotificationCount notifications(first: 100) { edges { node "
    "{ id kind message createdAt readAt dataset { id status deletionReason } } } } } }"
)


@pytest.fixture
def store(settings: Settings) -> LocalBlobStore:
    return open_blob_store(settings.blob_url)


@pytest.fixture
def ctx(settings: Settings, clock: MutableClock, store: LocalBlobStore) -> dict[str, Any]:
    """What a runner passes to the job functions."""
    return {"deps": Deps(settings=settings, clock=clock, blobs=store, notifier=InAppNotifier())}


def raw_id(global_id: str) -> int:
    pk = ids.decode(global_id, "TrainingDataset")
    assert pk is not None
    return pk


def at(value: str | None) -> datetime:
    assert value is not None
    return datetime.fromisoformat(value)


def blob_files(settings: Settings) -> set[Path]:
    """Every committed blob on disk (temp files excluded)."""
    root = settings.blob_dir
    return {p for p in root.rglob("*") if p.is_file() and ".tmp" not in p.relative_to(root).parts}


async def owner_view(api: Api, owner: Person, dataset_id: str) -> dict[str, Any]:
    node: dict[str, Any] | None = (await api.gql(DATASET, {"id": dataset_id}, owner.token))["node"]
    assert node is not None
    return node


async def notifications_of(api: Api, person: Person) -> list[dict[str, Any]]:
    viewer = (await api.gql(NOTIFICATIONS, token=person.token))["viewer"]
    return [edge["node"] for edge in viewer["notifications"]["edges"]]
