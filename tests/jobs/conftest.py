"""Shared queries for the retention tests (the job context ``ctx`` is in tests/conftest.py)."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api, Person

DATASET = (
    "query($id: ID!) { node(id: $id) { ... on TrainingDataset { id status visibility "
    "filename expiresAt deletedAt deletionReason downloadUrl events { kind at detail } } } }"
)
NOTIFICATIONS = (
    "{ viewer { unreadNotificationCount notifications(first: 100) { edges { node "
    "{ id kind message createdAt readAt dataset { id status deletionReason } } } } } }"
)


async def owner_view(api: Api, owner: Person, dataset_id: str) -> dict[str, Any]:
    node: dict[str, Any] | None = (await api.gql(DATASET, {"id": dataset_id}, owner.token))["node"]
    assert node is not None
    return node


async def notifications_of(api: Api, person: Person) -> list[dict[str, Any]]:
    viewer = (await api.gql(NOTIFICATIONS, token=person.token))["viewer"]
    return [edge["node"] for edge in viewer["notifications"]["edges"]]
