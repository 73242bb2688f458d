"""The shape the code promises: every mutation through the one error path, every Node
type reachable through ``node(id)``, API enums that mirror the storage enums."""

from __future__ import annotations

from enum import StrEnum

import pytest

from graph.schema import enums
from graph.schema.mutation import Mutation
from graph.schema.mutations.payload import PAYLOAD_MUTATION
from graph.schema.types import datasets, files, models, notifications, relay, users, versions
from graph.schema.types.relay import NODE_TYPES
from storage.db import enums as db

pytestmark = pytest.mark.backend_independent(reason="declarations in the schema's source")


def test_every_mutation_turns_expected_failures_into_user_errors() -> None:
    fields = Mutation.__strawberry_definition__.fields  # type: ignore[attr-defined]
    assert fields
    for field in fields:
        resolver = field.base_resolver.wrapped_func
        assert getattr(resolver, PAYLOAD_MUTATION, False), (
            f"{field.name} is not declared with payload_mutation"
        )


def test_every_node_type_is_in_the_node_table() -> None:
    modules = (users, models, versions, files, datasets, notifications)
    node_types = {
        cls
        for types in modules
        for cls in vars(types).values()
        if isinstance(cls, type) and issubclass(cls, relay.Node) and cls is not relay.Node
    }
    assert node_types == {node_type for _, node_type in NODE_TYPES.values()}


def test_api_enums_take_their_values_from_the_storage_enums() -> None:
    pairs: list[tuple[type[StrEnum], type[StrEnum]]] = [
        (enums.VersionStatus, db.VersionStatus),
        (enums.Visibility, db.Visibility),
        (enums.NotificationKind, db.NotificationKind),
        (enums.DatasetEventKind, db.EventKind),
    ]
    for api, source in pairs:
        assert [m.value for m in api] == [m.value for m in source]
    # internal states are shown as the public state they stand for
    assert [m.value for m in enums.DatasetStatus] == ["PENDING_UPLOAD", "AVAILABLE", "DELETED"]
    assert {enums.shown_status(s) for s in db.DatasetStatus} == {
        db.DatasetStatus(m.value) for m in enums.DatasetStatus
    }
    # a dataset deleted with its account is shown (to nobody: the owner is gone) as the
    # owner's request; an export being built is pending
    assert [m.value for m in enums.DeletionReason] == [
        "EXPIRED",
        "OWNER_REQUEST",
        "MODEL_DELETED",
        "TAKEN_DOWN",
    ]
    assert {enums.shown_reason(r) for r in db.DeletionReason} == {
        db.DeletionReason(m.value) for m in enums.DeletionReason
    }
    assert [m.value for m in enums.DataExportStatus] == ["PENDING", "READY", "EXPIRED"]
