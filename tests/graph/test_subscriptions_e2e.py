"""Live notifications across processes: real `redis-server`, two `lorashelf serve`
and a `lorashelf worker`, sharing one data directory. The subscriber is connected to
one server; the changes are written by the worker and by the other server, and reach
it through Redis pub/sub. Windows are seconds long.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from tests.live import DATASET_CHANGED, NOTIFICATION_ADDED, over_network
from tests.processes import Owner, RedisServer, parse_time, serve, worker

RETENTION = 6  # seconds (the subscriptions are open long before the reminder)
REMINDER = 2  # seconds before deletion


def test_changes_written_by_other_processes_arrive_through_redis(
    tmp_path: Path, redis: RedisServer
) -> None:
    env = {
        "LORASHELF_DATA_DIR": str(tmp_path / "var"),
        "LORASHELF_REDIS_URL": redis.url,
        "LORASHELF_PRIVATE_RETENTION": f"{RETENTION}s",
        "LORASHELF_REMINDERS": f"{REMINDER}s",
        "LORASHELF_SWEEP_INTERVAL": "30s",  # the deferred jobs must do it on time
    }
    with (
        serve(env, cwd=tmp_path) as writer,
        serve(env, cwd=tmp_path) as reader,
        worker(env, cwd=tmp_path),
    ):
        # given an owner (using one server) with a private dataset and another
        owner = Owner.sign_up(writer.url)
        model = owner.create_model()
        kept = owner.publish_private_dataset(model, version="v1")
        dropped = owner.publish_private_dataset(model, version="v2")
        # and subscribed, on the other server, to their notifications and both datasets
        live, sock = over_network(reader.url)
        try:
            live.init({"Authorization": f"Bearer {owner.token}"})
            live.subscribe("notes", NOTIFICATION_ADDED)
            live.subscribe("kept", DATASET_CHANGED, {"id": kept.dataset_id})
            live.subscribe("other", DATASET_CHANGED, {"id": dropped.dataset_id})
            _, now = live.data("other", "datasetChanged")
            assert now["status"] == "AVAILABLE"
            live.data("kept", "datasetChanged")

            # when the owner deletes one dataset through the first server
            payload = owner.mutate(
                "deleteDataset",
                "mutation($i: DeleteDatasetInput!) { deleteDataset(input: $i) "
                "{ userErrors { code message } } }",
                {"i": {"datasetId": dropped.dataset_id}},
            )
            assert payload["userErrors"] == []
            # then its tombstone arrives on the other server
            _, gone = live.data("other", "datasetChanged")
            assert (gone["status"], gone["deletionReason"]) == ("DELETED", "OWNER_REQUEST")

            # and the worker's reminder about the other arrives within a second of being written
            arrived, reminder = live.data("notes", "notificationAdded", timeout=RETENTION + 3)
            assert reminder["kind"] == "DATASET_EXPIRING"
            assert reminder["dataset"]["id"] == kept.dataset_id
            assert arrived - parse_time(reminder["createdAt"]) < timedelta(seconds=1)

            # and so does the deletion at the end of its window
            arrived, notice = live.data("notes", "notificationAdded", timeout=RETENTION + 3)
            assert (notice["kind"], notice["dataset"]["id"]) == ("DATASET_DELETED", kept.dataset_id)
            assert arrived - parse_time(notice["createdAt"]) < timedelta(seconds=1)
            arrived, tombstone = live.data("kept", "datasetChanged")
            assert (tombstone["status"], tombstone["deletionReason"]) == ("DELETED", "EXPIRED")
            assert arrived - parse_time(tombstone["deletedAt"]) < timedelta(seconds=1)
            live.nothing_for("notes", 0.5)
        finally:
            sock.close()
