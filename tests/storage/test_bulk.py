"""storage/db/bulk.py on the suite's database (SQLite, then PostgreSQL): rows written by
one plain statement hold what the ORM would have written, each row gets its own
values, rows that do not match are left alone, and a batch past the parameter limit
is split without losing a row."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from tortoise.transactions import in_transaction

from storage.db import bulk, reads
from storage.db.enums import DatasetStatus, EventKind, NotificationKind
from storage.db.models import DatasetEvent, Notification, TrainingDataset, new_public_id
from tests.conftest import Api, MutableClock


def notice_rows(owner_id: int, ids: list[int], at: datetime, message: str) -> list[dict[str, Any]]:
    """Deletion notices of these datasets, as rows to insert."""
    return [
        {
            "public_id": new_public_id(),
            "user_id": owner_id,
            "dataset_id": i,
            "kind": NotificationKind.DATASET_DELETED,
            "offset_seconds": 0,
            "window_end": at,
            "message": message.format(i),
            "created_at": at,
        }
        for i in ids
    ]


@pytest.mark.parametrize("limit", [bulk.MAX_PARAMETERS, 7])
async def test_rows_inserted_in_bulk_read_back_as_the_orm_wrote_them(
    api: Api, clock: MutableClock, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    # given datasets, and a parameter limit that may split the batch
    monkeypatch.setattr(bulk, "MAX_PARAMETERS", limit)
    ids = await api.private_datasets(5)
    dataset = await TrainingDataset.get(id=ids[0])
    at = clock.now() + timedelta(seconds=1.5)
    rows = notice_rows(dataset.owner_id, ids, at, "gone {} é")
    # when they are inserted in bulk, returning their ids
    async with in_transaction():
        written = await bulk.insert(Notification, rows, returning=("id", "dataset_id"))
        await bulk.insert(
            DatasetEvent,
            [{"dataset_id": i, "kind": EventKind.DELETED, "at": at, "detail": "X"} for i in ids],
        )
    # then every row is there once, under the id returned for it, as the ORM reads it
    assert sorted(int(r["dataset_id"]) for r in written) == sorted(ids)
    for returned in written:
        stored = await Notification.get(id=returned["id"])
        assert stored.dataset_id == returned["dataset_id"]
        assert stored.public_id == next(
            r["public_id"] for r in rows if r["dataset_id"] == stored.dataset_id
        )
        assert stored.kind is NotificationKind.DATASET_DELETED
        assert stored.window_end == at and stored.created_at == at
        assert stored.message == f"gone {stored.dataset_id} é"
        assert stored.read_at is None
    events = await DatasetEvent.filter(kind=EventKind.DELETED, dataset_id__in=ids)
    assert sorted(e.dataset_id for e in events) == sorted(ids)
    assert {e.at for e in events} == {at}
    # and a notice inserted in bulk is found by the ORM's own filters, like any other
    assert await Notification.filter(dataset_id=ids[0], window_end=at).count() == 1


async def test_rows_returned_whole_make_the_instances_the_orm_reads(
    api: Api, clock: MutableClock
) -> None:
    # given a notice to insert
    ids = await api.private_datasets(2)
    dataset = await TrainingDataset.get(id=ids[0])
    at = clock.now()
    rows = notice_rows(dataset.owner_id, ids, at, "gone")
    # when it is inserted returning every column, made into instances
    async with in_transaction():
        made = reads.instances(
            Notification, await bulk.insert(Notification, rows, returning=("*",))
        )
    # then each instance equals the one the ORM reads back, field by field
    for instance in made:
        stored = await Notification.get(id=instance.id)
        for name in Notification._meta.fields_db_projection:
            assert getattr(instance, name, None) == getattr(stored, name, None), name


@pytest.mark.parametrize("limit", [bulk.MAX_PARAMETERS, 9])
async def test_an_update_in_bulk_gives_each_row_its_values_where_it_still_matches(
    api: Api, clock: MutableClock, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    # given datasets, one of them no longer in the state the update expects
    monkeypatch.setattr(bulk, "MAX_PARAMETERS", limit)
    ids = await api.private_datasets(6)
    await TrainingDataset.filter(id__in=ids).update(status=DatasetStatus.DELETING)
    moved_on = ids[2]
    await TrainingDataset.filter(id=moved_on).update(status=DatasetStatus.DELETED)
    before = {d.id: d for d in await TrainingDataset.filter(id__in=ids)}
    at = clock.now()
    changes = {
        i: {
            "deleted_at": at + timedelta(seconds=n),
            "expires_at": None if n % 2 else at,
            "receipt_payload": f'{{"n":{n},"text":"it\'s é"}}',
            "receipt_signature": f"s{n}",
            "receipt_key_id": "k",
        }
        for n, i in enumerate(ids)
    }
    # when they are updated in bulk where still DELETING, clearing the blob key
    async with in_transaction():
        changed = await bulk.update(
            TrainingDataset,
            changes,
            same={"status": DatasetStatus.DELETED, "blob_key": None},
            where={"status": DatasetStatus.DELETING},
        )
    # then exactly the rows that matched changed, each with its own values
    assert sorted(changed) == sorted(i for i in ids if i != moved_on)
    after = {d.id: d for d in await TrainingDataset.filter(id__in=ids)}
    for i in changed:
        row, wanted = after[i], changes[i]
        assert row.status is DatasetStatus.DELETED and row.blob_key is None
        assert row.deleted_at == wanted["deleted_at"]
        assert row.expires_at == wanted["expires_at"]
        assert row.receipt_payload == wanted["receipt_payload"]
        assert row.receipt_signature == wanted["receipt_signature"]
    # and the row that did not match is as it was
    untouched = after[moved_on]
    assert untouched.receipt_payload is None
    assert untouched.blob_key == before[moved_on].blob_key
    assert untouched.expires_at == before[moved_on].expires_at
