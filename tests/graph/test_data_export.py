"""requestDataExport through a real `lorashelf serve` (local blobs, and an S3 bucket that
keeps versions): a job builds one zip of everything the caller owns and nothing of
anybody else's, sealed at rest; the owner is notified (the live subscription too);
downloadable by its link until its window ends, then shredded."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from storage.crypto import receipts
from tests.conftest import sql_behind_the_back
from tests.erasure import (
    MARKS,
    Deployment,
    marked_dataset,
    marked_weights,
    new_version,
    publish,
    start_dataset,
)
from tests.erasure import deployment as deployment  # noqa: F401 - the fixture
from tests.live import NOTIFICATION_ADDED, over_network
from tests.processes import Owner, parse_time, serve, wait_for, zip_bytes

WINDOW = 8  # seconds an export stays downloadable
REQUEST = (
    "mutation { requestDataExport(input: {}) { export { id status downloadUrl } "
    "userErrors { code message } } }"
)
EXPORTS = (
    "{ viewer { dataExports(first: 10) { edges { node { id status readyAt expiresAt "
    "downloadUrl sizeBytes } } } } }"
)
BOB_MARK = b"bob-" + hashlib.sha256(b"bob's own").hexdigest().encode()


def exports(owner: Owner) -> list[dict[str, Any]]:
    edges = owner.gql(EXPORTS)["viewer"]["dataExports"]["edges"]
    return [edge["node"] for edge in edges]


def ready(owner: Owner, export_id: str) -> dict[str, Any]:
    found: dict[str, Any] = wait_for(
        lambda: next(
            (e for e in exports(owner) if e["id"] == export_id and e["status"] == "READY"), None
        ),
        timeout=30,
        what=f"export {export_id} to be ready",
    )
    return found


def test_an_export_holds_everything_the_caller_owns_and_is_shredded_at_its_end(
    deployment: Deployment, tmp_path: Path
) -> None:
    deployment.env["LORASHELF_EXPORT_RETENTION"] = f"{WINDOW}s"
    deployment.env["LORASHELF_PRIVATE_RETENTION"] = "1h"
    with serve(deployment.env, cwd=tmp_path) as server:
        # given alice's published version (marked weights, a private marked dataset), a
        # dataset she deleted (its tombstone's receipt), and an earlier export's notice
        alice = Owner.sign_up(server.url)
        version_id = new_version(alice, "Alice's model")
        weights = marked_weights()
        file_id = alice.upload_weights(version_id, weights)
        body = marked_dataset()
        started = start_dataset(alice, version_id, len(body))
        assert httpx.put(started["uploadUrl"], content=body, timeout=30).status_code == 200
        publish(alice, version_id)
        gone = alice.publish_private_dataset(
            alice.create_model("Dropped"), body=zip_bytes({"x": b"y"})
        )
        alice.mutate(
            "deleteDataset",
            "mutation($i: DeleteDatasetInput!) { deleteDataset(input: $i) "
            "{ userErrors { code message } } }",
            {"i": {"datasetId": gone.dataset_id}},
        )
        first = alice.mutate("requestDataExport", REQUEST, {})["export"]
        ready(alice, first["id"])
        # and bob's own model and dataset
        bob = Owner.sign_up(server.url)
        bob.publish_private_dataset(
            bob.create_model("Bob's model"), body=zip_bytes({"b.txt": BOB_MARK * 10})
        )

        # when alice, subscribed to her notifications, asks for an export (twice)
        live, sock = over_network(server.url)
        try:
            live.init({"Authorization": f"Bearer {alice.token}"})
            live.subscribe("notes", NOTIFICATION_ADDED)
            export = alice.mutate("requestDataExport", REQUEST, {})["export"]
            assert export["status"] in ("PENDING", "READY") and export["downloadUrl"] is None
            again = alice.mutate("requestDataExport", REQUEST, {})["export"]
            # (the same one while it is on its way; a new one once it is ready)
            if again["id"] != export["id"]:
                assert {e["id"]: e["status"] for e in exports(alice)}[export["id"]] == "READY"
            # then the live subscription says when it is ready
            _, notice = live.data("notes", "notificationAdded", timeout=30)
            assert notice["kind"] == "EXPORT_READY" and notice["dataset"] is None
        finally:
            sock.close()
        shown = ready(alice, export["id"])
        assert bob.gql(EXPORTS)["viewer"]["dataExports"]["edges"] == []
        # and it is sealed at rest like any blob: no mark of alice's is there in plaintext
        assert deployment.holding(*MARKS) == []

        # and its zip holds everything she owns
        archive = httpx.get(shown["downloadUrl"], timeout=30)
        assert archive.status_code == 200 and len(archive.content) == shown["sizeBytes"]
        entries = read_zip(archive.content)
        root = "lorashelf-export/"
        assert json.loads(entries[root + "account.json"])["username"] == alice.username
        models = json.loads(entries[root + "models.json"])
        assert sorted(m["name"] for m in models) == ["Alice's model", "Dropped"]
        # (her versions with their files and datasets, each dataset's history as she sees it)
        [version] = next(m for m in models if m["name"] == "Alice's model")["versions"]
        assert [f["id"] for f in version["files"]] == [file_id]
        exported = version["trainingDataset"]
        assert exported["id"] == started["dataset"]["id"] and exported["status"] == "AVAILABLE"
        seen_history = alice.dataset(started["dataset"]["id"])["events"]
        assert sorted(e["kind"] for e in exported["events"]) == sorted(
            e["kind"] for e in seen_history
        )
        assert {"UPLOADED", "PUBLISHED"} <= {e["kind"] for e in exported["events"]}
        assert entries[f"{root}files/{file_id}/lora.safetensors"] == weights
        dataset_id = started["dataset"]["id"]
        assert entries[f"{root}datasets/{dataset_id}/secret.zip"] == body
        kept = json.loads(entries[f"{root}receipts/dataset-{gone.dataset_id}.json"])
        keys = httpx.get(f"{server.url}/.well-known/lorashelf-receipt-keys.json").json()["keys"]
        public = {k["keyId"]: k["publicKey"] for k in keys}
        assert receipts.verify(kept, public[kept["keyId"]])["reason"] == "OWNER_REQUEST"
        notes = json.loads(entries[root + "notifications.json"])
        assert notes and {n["kind"] for n in notes} == {"EXPORT_READY"}
        # and nothing of anybody else's
        everything = b"".join(entries.values())
        assert bob.username.encode() not in everything and BOB_MARK not in everything
        assert b"Bob's model" not in everything

        # when its window ends
        blob_key = blob_key_of(deployment, export["id"])
        # then it is shredded: no link, no key, not one version of its bytes
        shredded(deployment, alice, export["id"], blob_key, within=WINDOW + 15)
        assert httpx.get(shown["downloadUrl"], timeout=30).status_code == 404


def read_zip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        return {name: archive.read(name) for name in archive.namelist()}


def blob_key_of(deployment: Deployment, export_id: str) -> str:
    """Where a ready export's bytes are stored."""
    public_id = export_id.removeprefix("x_")
    [(blob_key,)] = sql_behind_the_back(
        deployment.settings, f"SELECT blob_key FROM data_exports WHERE public_id = '{public_id}'"
    )
    assert blob_key is not None
    return str(blob_key)


def shredded(
    deployment: Deployment, owner: Owner, export_id: str, blob_key: str, *, within: float
) -> None:
    """Wait until the export is shredded: EXPIRED, no link, no key, no stored version."""
    expired = wait_for(
        lambda: next(
            (e for e in exports(owner) if e["id"] == export_id and e["status"] == "EXPIRED"), None
        ),
        timeout=within,
        what="the export to be shredded",
    )
    assert expired["downloadUrl"] is None
    assert not [name for name in deployment.objects() if blob_key in name]
    assert sql_behind_the_back(
        deployment.settings, f"SELECT count(*) FROM blob_keys WHERE object_id = '{blob_key}'"
    ) == [(0,)]


def test_an_export_ends_with_the_window_of_a_private_dataset_it_holds(
    deployment: Deployment, tmp_path: Path
) -> None:
    deployment.env["LORASHELF_PRIVATE_RETENTION"] = "20s"
    deployment.env["LORASHELF_EXPORT_RETENTION"] = "1h"
    with serve(deployment.env, cwd=tmp_path) as server:
        # given alice's private dataset, and an export of her account made in its window
        alice = Owner.sign_up(server.url)
        published = alice.publish_private_dataset(body=marked_dataset())
        export = ready(alice, alice.mutate("requestDataExport", REQUEST, {})["export"]["id"])
        blob_key = blob_key_of(deployment, export["id"])
        archive = httpx.get(export["downloadUrl"], timeout=30)
        assert archive.status_code == 200
        assert any(MARKS[0] in data for data in read_zip(archive.content).values())
        # then the export ends when the dataset's window ends, not an hour later
        assert parse_time(export["expiresAt"]) == published.expires_at
        # and when that instant passes, neither can be downloaded
        wait_for(
            lambda: datetime.now(UTC) > published.expires_at, timeout=30, what="the window's end"
        )
        assert httpx.get(export["downloadUrl"], timeout=30).status_code == 404
        assert httpx.get(published.download_url, timeout=30).status_code == 404
        # and the export is shredded with the dataset
        shredded(deployment, alice, export["id"], blob_key, within=15)


def windows_of_an_hour(tmp_path: Path, *, sweep: str) -> tuple[dict[str, str], Deployment]:
    """A serve's configuration where datasets and exports last an hour, sweeping every
    ``sweep``, and where it keeps things."""
    data_dir = tmp_path / "var"
    env = {
        "LORASHELF_DATA_DIR": str(data_dir),
        "LORASHELF_PRIVATE_RETENTION": "1h",
        "LORASHELF_EXPORT_RETENTION": "1h",
        "LORASHELF_SWEEP_INTERVAL": sweep,
    }
    return env, Deployment(env, data_dir)


def delete_dataset(owner: Owner, dataset_id: str) -> dict[str, Any]:
    deleted: dict[str, Any] = owner.mutate(
        "deleteDataset",
        "mutation($i: DeleteDatasetInput!) { deleteDataset(input: $i) "
        "{ userErrors { code message } } }",
        {"i": {"datasetId": dataset_id}},
    )
    return deleted


def test_an_export_ends_when_a_dataset_it_holds_is_deleted(tmp_path: Path) -> None:
    env, deployment = windows_of_an_hour(tmp_path, sweep="1s")
    with serve(env, cwd=tmp_path) as server:
        # given alice's private dataset, and an export of her account that holds it
        alice = Owner.sign_up(server.url)
        published = alice.publish_private_dataset(body=marked_dataset())
        export = ready(alice, alice.mutate("requestDataExport", REQUEST, {})["export"]["id"])
        blob_key = blob_key_of(deployment, export["id"])
        assert httpx.get(export["downloadUrl"], timeout=30).status_code == 200
        # when she deletes the dataset
        assert delete_dataset(alice, published.dataset_id)["userErrors"] == []
        # then the export can no longer be downloaded either, at once
        assert httpx.get(export["downloadUrl"], timeout=30).status_code == 404
        # and it is shredded (its bytes go like the dataset's)
        shredded(deployment, alice, export["id"], blob_key, within=15)


def test_an_export_holding_a_deleted_dataset_is_unreadable_before_the_answer(
    tmp_path: Path,
) -> None:
    env, deployment = windows_of_an_hour(tmp_path, sweep="1h")  # no sweep shreds it meanwhile
    with serve(env, cwd=tmp_path) as server:
        # given alice's private dataset, and an export of her account that holds it
        alice = Owner.sign_up(server.url)
        published = alice.publish_private_dataset(body=marked_dataset())
        export = ready(alice, alice.mutate("requestDataExport", REQUEST, {})["export"]["id"])
        blob_key = blob_key_of(deployment, export["id"])
        key_rows = f"SELECT count(*) FROM blob_keys WHERE object_id = '{blob_key}'"
        assert sql_behind_the_back(deployment.settings, key_rows) == [(1,)]
        # when she deletes the dataset
        assert delete_dataset(alice, published.dataset_id)["userErrors"] == []
        # then by the time she has the answer, the export's key is destroyed: what is
        # left of its bytes until the sweep deletes them opens with no key anybody holds
        assert sql_behind_the_back(deployment.settings, key_rows) == [(0,)]
        assert httpx.get(export["downloadUrl"], timeout=30).status_code == 404
