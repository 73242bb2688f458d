"""End to end, real clock: a real `lorashelf serve` (embedded runner, no Redis) reminds
the owner of a private dataset on a draft that is never published, then deletes it when
its draft lifetime ends. Windows are seconds long; the sweep runs only once a minute,
so only the exact-time runner can be on time. That nothing happens again in the runner's
later passes is shown on a driven clock (tests/jobs/test_embedded_runner.py)."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import httpx

from tests.conftest import dataset_blobs
from tests.processes import (
    Owner,
    now_utc,
    parse_time,
    serve,
    wait_for_deletion,
    wait_for_reminder,
    zip_bytes,
)

DRAFT = 4  # seconds a private draft dataset lives after its upload
REMINDER = 2  # seconds before deletion

DATASET = (
    "query($id: ID!) { node(id: $id) { ... on TrainingDataset { id status sha256 "
    "uploadedAt expiresAt downloadUrl } } }"
)


def config(data_dir: Path) -> dict[str, str]:
    return {
        "LORASHELF_DATA_DIR": str(data_dir),
        "LORASHELF_DRAFT_RETENTION": f"{DRAFT}s",
        "LORASHELF_REMINDERS": f"{REMINDER}s",
        "LORASHELF_SWEEP_INTERVAL": "60s",
    }


def given_draft(owner: Owner) -> str:
    """A model with one draft version, never published; the version's ID."""
    model_id = owner.create_model("Otters")
    version_id: str = owner.mutate(
        "createModelVersion",
        "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
        "{ version { id } userErrors { code message } } }",
        {"i": {"modelId": model_id, "name": "draft-3", "baseModel": "SDXL_1_0"}},
    )["version"]["id"]
    return version_id


def upload_private(owner: Owner, version_id: str, body: bytes) -> str:
    started = owner.mutate(
        "startDatasetUpload",
        "mutation($i: StartDatasetUploadInput!) { startDatasetUpload(input: $i) "
        "{ dataset { id } uploadUrl userErrors { code message } } }",
        {
            "i": {
                "versionId": version_id,
                "filename": "otters.zip",
                "sizeBytes": len(body),
                "visibility": "PRIVATE",
                "ownsRights": False,
            }
        },
    )
    put = httpx.put(started["uploadUrl"], content=body, timeout=10)
    assert put.status_code == 200, put.text
    dataset_id: str = started["dataset"]["id"]
    return dataset_id


def test_serve_reminds_then_deletes_a_private_draft_dataset_at_the_end_of_its_draft_lifetime(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "var"
    with serve(config(data_dir), cwd=tmp_path) as server:
        # given a private dataset uploaded to a draft that is never published
        owner = Owner.sign_up(server.url)
        version_id = given_draft(owner)
        body = zip_bytes({"otters/1.txt": b"otter" * 500})
        dataset_id = upload_private(owner, version_id, body)
        dataset = owner.gql(DATASET, {"id": dataset_id})["node"]
        assert dataset["status"] == "AVAILABLE"
        assert dataset["sha256"] == hashlib.sha256(body).hexdigest()
        uploaded = parse_time(dataset["uploadedAt"])
        expires = parse_time(dataset["expiresAt"])
        assert expires - uploaded == timedelta(seconds=DRAFT)
        assert len(dataset_blobs(data_dir / "blobs")) == 1
        download_url = dataset["downloadUrl"]
        assert httpx.get(download_url, timeout=10).content == body

        # then the owner is reminded about REMINDER seconds after the upload, before deletion
        reminder = wait_for_reminder(owner, dataset_id, timeout=DRAFT + 2)
        assert now_utc() < expires, "the reminder arrived only after the deletion"
        sent = parse_time(reminder["createdAt"])
        assert expires - timedelta(seconds=REMINDER) <= sent < expires
        after_upload = (sent - uploaded).total_seconds()
        assert DRAFT - REMINDER <= after_upload < DRAFT - REMINDER + 1, after_upload
        assert '"otters.zip"' in reminder["message"] and "draft-3" in reminder["message"]

        # and the dataset is a finished tombstone within about a second of expiresAt
        tombstone = wait_for_deletion(owner, dataset_id, timeout=REMINDER + 3)
        assert tombstone["deletionReason"] == "EXPIRED"
        assert tombstone["downloadUrl"] is None
        assert parse_time(tombstone["expiresAt"]) == expires
        late = (parse_time(tombstone["deletedAt"]) - expires).total_seconds()
        assert 0 <= late < 1.5, f"deleted {late:.3f}s after expiresAt"
        # its bytes are gone, and so is the old download URL
        assert dataset_blobs(data_dir / "blobs") == set()
        assert httpx.get(download_url, timeout=10).status_code == 404

        # and the owner got exactly one deletion notice and one reminder
        assert len(owner.notifications_about(dataset_id, "DATASET_DELETED")) == 1
        assert len(owner.notifications_about(dataset_id, "DATASET_EXPIRING")) == 1
        kinds = [e["kind"] for e in owner.dataset(dataset_id)["events"]]
        assert kinds.count("DELETED") == 1 and kinds[-1] == "DELETED"
