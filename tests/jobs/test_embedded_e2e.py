"""End to end without Redis: a real `lorashelf serve` does the retention work itself
(the embedded runner), on a real SQLite file and local blobs. Windows are seconds long.
That nothing happens again in the runner's later passes is shown on a driven clock
(tests/jobs/test_embedded_runner.py).
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx

from tests.conftest import dataset_blobs
from tests.processes import (
    Owner,
    now_utc,
    parse_time,
    serve,
    sleep_until,
    wait_for_deletion,
    wait_for_reminder,
)

REMINDER = 2  # seconds before deletion


def config(data_dir: Path, retention: int, reminders: str = f"{REMINDER}s") -> dict[str, str]:
    # A sweep every 30 s cannot do it on time: the runner must wake at the due times.
    return {
        "LORASHELF_DATA_DIR": str(data_dir),
        "LORASHELF_PRIVATE_RETENTION": f"{retention}s",
        "LORASHELF_REMINDERS": reminders,
        "LORASHELF_SWEEP_INTERVAL": "30s",
    }


def deleted_events(dataset: dict[str, object]) -> int:
    events = dataset["events"]
    assert isinstance(events, list)
    return Counter(event["kind"] for event in events)["DELETED"]


def test_serve_alone_reminds_then_deletes_when_the_window_ends(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    with serve(config(data_dir, retention=4), cwd=tmp_path) as server:
        # given a private dataset published now
        owner = Owner.sign_up(server.url)
        published = owner.publish_private_dataset()
        assert published.expires_at - published.published_at == timedelta(seconds=4)
        assert len(dataset_blobs(data_dir / "blobs")) == 1
        assert httpx.get(published.download_url, timeout=10).status_code == 200

        # then the owner is reminded before the deletion, not before the reminder is due
        reminder = wait_for_reminder(owner, published.dataset_id, timeout=6)
        assert now_utc() < published.expires_at, "the reminder arrived only after the deletion"
        sent = parse_time(reminder["createdAt"])
        assert published.expires_at - timedelta(seconds=REMINDER) <= sent < published.expires_at

        # and the dataset is deleted within about a second of expiresAt
        tombstone = wait_for_deletion(owner, published.dataset_id, timeout=7)
        assert tombstone["deletionReason"] == "EXPIRED"
        assert tombstone["downloadUrl"] is None
        late = (parse_time(tombstone["deletedAt"]) - published.expires_at).total_seconds()
        assert 0 <= late < 1.5, f"deleted {late:.3f}s after expiresAt"
        # the bytes are gone, and so is the old download URL
        assert dataset_blobs(data_dir / "blobs") == set()
        assert httpx.get(published.download_url, timeout=10).status_code == 404

        # and the owner got exactly one deletion notice and one reminder
        assert len(owner.notifications_about(published.dataset_id, "DATASET_DELETED")) == 1
        assert len(owner.notifications_about(published.dataset_id, "DATASET_EXPIRING")) == 1
        assert deleted_events(owner.dataset(published.dataset_id)) == 1


def test_a_restarted_server_deletes_what_expired_while_it_was_down(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    env = config(data_dir, retention=5)
    with serve(env, cwd=tmp_path) as first:
        # given a private dataset published now
        owner = Owner.sign_up(first.url)
        published = owner.publish_private_dataset()
        old_download = published.download_url.removeprefix(first.url)
        # when the server dies (SIGKILL: no shutdown code runs) before the window ends
        first.kill()
        assert now_utc() < published.expires_at
    assert len(dataset_blobs(data_dir / "blobs")) == 1

    # and it stays down until the window has ended
    sleep_until(published.expires_at, extra=0.3)

    # then a new server on the same data dir deletes it right at start
    with serve(env, cwd=tmp_path) as second:
        healthy = now_utc()
        owner.url = second.url
        tombstone = wait_for_deletion(owner, published.dataset_id, timeout=3)
        assert tombstone["deletionReason"] == "EXPIRED"
        assert tombstone["downloadUrl"] is None
        deleted_at = parse_time(tombstone["deletedAt"])
        assert published.expires_at < deleted_at
        assert (deleted_at - healthy).total_seconds() < 3
        assert dataset_blobs(data_dir / "blobs") == set()
        assert httpx.get(f"{second.url}{old_download}", timeout=10).status_code == 404
        assert len(owner.notifications_about(published.dataset_id, "DATASET_DELETED")) == 1
        # the reminder fell due while the server was down: too late to send now
        assert owner.notifications_about(published.dataset_id, "DATASET_EXPIRING") == []
        assert deleted_events(owner.dataset(published.dataset_id)) == 1


def test_a_deletion_that_cannot_finish_never_shows_a_half_tombstone(tmp_path: Path) -> None:
    """While a deletion is claimed but not finished (row DELETING: here the blob store
    keeps failing; normally for a few milliseconds), the owner's view must still be one
    consistent state: DELETED with deletedAt and a reason, or not deleted at all."""
    data_dir = tmp_path / "var"
    with serve(config(data_dir, retention=2, reminders=""), cwd=tmp_path) as server:
        # given a private dataset whose bytes the blob store cannot delete
        # (its file is replaced by a directory: unlink fails, even for root)
        owner = Owner.sign_up(server.url)
        published = owner.publish_private_dataset()
        [blob] = dataset_blobs(data_dir / "blobs")
        blob.unlink()
        blob.mkdir()
        (blob / "stuck").write_bytes(b"x")

        # when the window ends and the runner claims the deletion but cannot finish it
        sleep_until(published.expires_at, extra=1.0)
        view = owner.dataset(published.dataset_id)

        # then access has ended at expiresAt anyway
        assert view["downloadUrl"] is None
        assert httpx.get(published.download_url, timeout=10).status_code == 404
        # and the view is consistent: a DELETED tombstone says when, or it is not DELETED
        shown = (
            f"status={view['status']} deletedAt={view['deletedAt']} "
            f"deletionReason={view['deletionReason']}"
        )
        deleted = view["status"] == "DELETED"
        assert deleted == (view["deletedAt"] is not None), shown
        assert deleted == (view["deletionReason"] is not None), shown
