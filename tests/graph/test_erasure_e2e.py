"""Erasure you can prove, end to end: a real `lorashelf serve` on the test's database
(SQLite, or PostgreSQL with --db=postgres), on local blobs and on an S3 bucket that keeps
versions (moto's server).

Nothing of an upload is at rest in plaintext at any time (data dir, database, every
object version); at expiry the key is destroyed first, so a copy of the blob store taken
before cannot be decrypted with anything the server holds afterwards; the tombstone's
receipt verifies with a plain Ed25519 implementation and fails after any byte changes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from storage.config.settings import Settings
from storage.crypto import keystore
from storage.crypto.chunks import CHUNK, SEALED_CHUNK, ChunkCipher, TamperedBlob
from storage.crypto.master import MasterKeys
from storage.db import connection as db
from tests import ed25519_reference
from tests.conftest import sql_behind_the_back
from tests.erasure import (
    MARKS,
    RECEIPT_FIELDS,
    RETENTION,
    Deployment,
    configured,
    marked_dataset,
    marked_weights,
    new_version,
    publish,
    start_dataset,
    wait_for_receipt,
)
from tests.erasure import deployment as deployment  # noqa: F401 - the fixture
from tests.processes import (
    Owner,
    lorashelf,
    now_utc,
    parse_time,
    serve,
    wait_for,
)


class Paused:
    """A request body sent in pieces that stops half-way until released."""

    def __init__(self, body: bytes, pause_after: int):
        self.body, self.pause_after = body, pause_after
        self.half_sent, self.release = threading.Event(), threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self.body), 64 * 1024):
            if start >= self.pause_after and not self.half_sent.is_set():
                self.half_sent.set()
                assert self.release.wait(30)
            yield self.body[start : start + 64 * 1024]


def test_nothing_of_an_upload_is_at_rest_in_plaintext_at_any_time(
    deployment: Deployment, tmp_path: Path
) -> None:
    with serve(deployment.env, cwd=tmp_path) as server:
        owner = Owner.sign_up(server.url)
        version_id = new_version(owner)
        owner.upload_weights(version_id, marked_weights())
        # given a dataset upload stopped half-way (two chunks' worth of its bytes sent)
        body = marked_dataset()
        started = start_dataset(owner, version_id, len(body))
        paused = Paused(body, pause_after=2 * SEALED_CHUNK + 100_000)
        answer: list[httpx.Response] = []
        sender = threading.Thread(
            target=lambda: answer.append(
                httpx.put(started["uploadUrl"], content=iter(paused), timeout=60)
            )
        )
        sender.start()
        try:
            assert paused.half_sent.wait(30)
            wait_for(
                lambda: any(
                    p.stat().st_size >= 2 * SEALED_CHUNK
                    for p in deployment.data_dir.rglob("*.part")
                ),
                timeout=10,
                what="the spool file to hold two chunks",
            )
            # then nothing at rest holds a mark: not the spool file, not the database
            assert deployment.holding(*MARKS) == []
        finally:
            paused.release.set()
            sender.join(60)
        assert answer and answer[0].status_code == 200, answer
        publish(owner, version_id)
        # and once stored, downloaded and published, still nothing holds one
        dataset = owner.dataset(started["dataset"]["id"])
        assert httpx.get(dataset["downloadUrl"], timeout=30).content == body
        assert deployment.holding(*MARKS) == []
        # and ranged downloads are byte-exact at the chunk edges
        url = owner.dataset(started["dataset"]["id"])["downloadUrl"]
        for first, last in (
            (0, CHUNK - 1),
            (CHUNK - 1, CHUNK),
            (CHUNK, 2 * CHUNK + 5),
            (2 * CHUNK - 3, len(body) - 1),
        ):
            ranged = httpx.get(url, headers={"Range": f"bytes={first}-{last}"}, timeout=30)
            assert ranged.status_code == 206 and ranged.content == body[first : last + 1]


def test_expiry_destroys_the_key_so_a_copy_taken_before_is_unreadable(
    deployment: Deployment, tmp_path: Path
) -> None:
    with serve(deployment.env, cwd=tmp_path) as server:
        # given a private dataset, and a copy of the whole blob store taken before expiry
        # (every object version) with the dataset's wrapped key as the database had it
        owner = Owner.sign_up(server.url)
        published = owner.publish_private_dataset(body=marked_dataset())
        settings = deployment.settings
        copy = deployment.objects()
        [(object_id, master_id, wrapped)] = [
            (row[0], row[1], bytes(row[2]))
            for row in sql_behind_the_back(
                settings,
                "SELECT b.object_id, b.master_key_id, b.wrapped FROM blob_keys b "
                "JOIN training_datasets d ON d.blob_key = b.object_id",
            )
        ]
        sealed_copy = next(v for k, v in copy.items() if object_id in k)

        # when its window ends
        seen = wait_for_receipt(owner, published.dataset_id, timeout=RETENTION + 10)
        assert seen["deletionReason"] == "EXPIRED" and seen["deletedAt"] is not None
        assert seen["keyDestroyedAt"] is not None and seen["deletionReceipt"] is not None

        # then not one version of its object is left
        assert not [k for k in deployment.objects() if object_id in k]
        # and the wrapped key is nowhere the server keeps anything (the database file and
        # its log, PostgreSQL's key table as stored, once vacuumed by the sweep)
        wait_for(
            lambda: (
                not [w for w, data in deployment.at_rest().items() if wrapped in data]
                and wrapped not in postgres_key_table(settings)
            ),
            timeout=10,
            what="the destroyed key to leave every stored page",
        )
        # and no key the server holds now decrypts the copy: not one of its master keys
        # unwraps the destroyed key (gone), and no data key it still keeps opens a chunk
        master = MasterKeys(settings)
        assert master.load()
        remaining = sql_behind_the_back(
            settings, "SELECT object_id, master_key_id, wrapped FROM blob_keys"
        )
        for other, kid, wrapped_other in remaining:
            data_key = master.unwrap(kid, bytes(wrapped_other), purpose=keystore.purpose(other))
            for final in (False, True):
                with pytest.raises(TamperedBlob):
                    ChunkCipher(data_key, object_id).open(
                        0, sealed_copy[:SEALED_CHUNK], final=final
                    )
        assert master_id in master.ids() and len(remaining) >= 1

        # and the receipt says what happened, and verifies against the published key
        receipt = seen["deletionReceipt"]
        keys = httpx.get(f"{server.url}/.well-known/lorashelf-receipt-keys.json").json()
        listed = owner.gql("{ receiptPublicKeys { keyId publicKey createdAt } }")
        assert [k["keyId"] for k in keys["keys"]] == [
            k["keyId"] for k in listed["receiptPublicKeys"]
        ]
        public = next(k["publicKey"] for k in keys["keys"] if k["keyId"] == receipt["keyId"])
        payload = json.loads(receipt["payload"])
        assert payload["dataset"] == {
            "id": published.dataset_id,
            "filename": "cats.zip",
            "sha256": hashlib.sha256(published.body).hexdigest(),
            "sizeBytes": len(published.body),
            "visibility": "PRIVATE",
        }
        assert payload["reason"] == "EXPIRED"
        assert payload["windowEndedAt"] == published.expires_at.isoformat()
        assert payload["keyDestroyedAt"] == seen["keyDestroyedAt"]
        assert payload["windowEndedAt"] <= payload["keyDestroyedAt"] <= payload["lastCopyRemovedAt"]
        assert_verifies_and_breaks(receipt, public)
        # (and with the OpenSSL recipe the docs give)
        assert openssl_verifies(receipt, public, tmp_path)
        changed = {**receipt, "payload": receipt["payload"].replace("EXPIRED", "EXPIREE")}
        assert not openssl_verifies(changed, public, tmp_path)

        # and `lorashelf verify-receipt` checks it offline, from the saved key list
        (tmp_path / "receipt.json").write_text(json.dumps(receipt))
        (tmp_path / "keys.json").write_text(json.dumps(keys))
        checked = lorashelf(
            "verify-receipt", "receipt.json", "--keys", "keys.json", env={}, cwd=tmp_path
        )
        assert checked.returncode == 0, checked.stderr
        assert json.loads(checked.stdout)["dataset"]["id"] == published.dataset_id
        receipt["payload"] = receipt["payload"].replace("EXPIRED", "EXPIREE")
        (tmp_path / "receipt.json").write_text(json.dumps(receipt))
        refused = lorashelf(
            "verify-receipt", "receipt.json", "--keys", "keys.json", env={}, cwd=tmp_path
        )
        assert refused.returncode == 1 and "does NOT verify" in refused.stderr


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def assert_verifies_and_breaks(receipt: dict[str, str], public_key: str) -> None:
    """The receipt verifies with RFC 8032's own code and with OpenSSL's, and with either
    not after any one byte of its payload or signature is changed."""
    public, payload = b64url(public_key), receipt["payload"].encode()
    signature = b64url(receipt["signature"])
    assert len(public) == 32 and len(signature) == 64
    assert ed25519_reference.verify(public, payload, signature)
    key = Ed25519PublicKey.from_public_bytes(public)
    key.verify(signature, payload)
    for i in range(len(payload)):
        changed = payload[:i] + bytes([payload[i] ^ 0x01]) + payload[i + 1 :]
        with pytest.raises(InvalidSignature):
            key.verify(signature, changed)
    for i in range(len(signature)):
        changed = signature[:i] + bytes([signature[i] ^ 0x80]) + signature[i + 1 :]
        with pytest.raises(InvalidSignature):
            key.verify(changed, payload)
    # (the reference implementation is slow: a sample of changed bytes)
    for i in range(0, len(payload), max(1, len(payload) // 8)):
        changed = payload[:i] + bytes([payload[i] ^ 0x01]) + payload[i + 1 :]
        assert not ed25519_reference.verify(public, changed, signature)


def openssl_verifies(receipt: dict[str, str], public_key: str, workdir: Path) -> bool:
    """Run docs/erasure.md's OpenSSL recipe, exactly as written there, on a receipt."""
    doc = (Path(__file__).parents[2] / "docs" / "erasure.md").read_text()
    recipe = doc.split("or OpenSSL 3 in bash", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", recipe],
        cwd=workdir,
        env={
            "PATH": "/usr/bin:/bin",
            "PAYLOAD": receipt["payload"],
            "SIGNATURE": receipt["signature"],
            "PUBLIC_KEY": public_key,
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert ("Signature Verified Successfully" in done.stdout) == (done.returncode == 0), done
    return done.returncode == 0


def postgres_key_table(settings: Settings) -> bytes:
    """PostgreSQL: the key table's file as stored (after the sweep's VACUUM FULL, the
    only copy of it); SQLite: nothing (its file is part of the data dir)."""
    if not db.is_postgres(settings.database_url):
        return b""
    [(directory, relative)] = sql_behind_the_back(
        settings,
        "SELECT current_setting('data_directory'), pg_relation_filepath('blob_keys')",
    )
    path = Path(directory) / relative
    return path.read_bytes() if path.exists() else b""


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[bytes, bool]:
    """What a download gives before it ends, and whether it was cut short."""
    received = bytearray()
    try:
        with httpx.stream("GET", url, headers=headers or {}, timeout=30) as response:
            for piece in response.iter_bytes():
                received += piece
    except httpx.HTTPError:
        return bytes(received), True
    return bytes(received), False


def test_a_tampered_chunk_stops_the_download_and_the_log_names_the_object(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "var"
    with serve({"LORASHELF_DATA_DIR": str(data_dir)}, cwd=tmp_path) as server:
        # given a private dataset of more than two chunks, whose second chunk was changed
        # in the store (one bit)
        owner = Owner.sign_up(server.url)
        body = marked_dataset()
        published = owner.publish_private_dataset(body=body)
        settings = configured({"LORASHELF_DATA_DIR": str(data_dir)})
        [(object_id,)] = sql_behind_the_back(
            settings, "SELECT blob_key FROM training_datasets WHERE blob_key IS NOT NULL"
        )
        path = data_dir / "blobs" / object_id[:2] / object_id
        stored = bytearray(path.read_bytes())
        stored[SEALED_CHUNK + 1000] ^= 0x04
        path.write_bytes(bytes(stored))

        # when it is downloaded, the answer stops short: what came is the first chunk only
        received, cut = fetch(owner.dataset(published.dataset_id)["downloadUrl"])
        assert cut and len(received) < len(body) and body.startswith(received)
        # and a ranged download that starts in the damaged chunk gives nothing of it: it
        # is found damaged before the status is sent, and answered as such
        ranged = httpx.get(
            owner.dataset(published.dataset_id)["downloadUrl"],
            headers={"Range": f"bytes={SEALED_CHUNK}-{SEALED_CHUNK + 10}"},
            timeout=30,
        )
        assert ranged.status_code == 500, ranged.text
        assert ranged.json()["error"] == "DAMAGED"
        assert body[SEALED_CHUNK : SEALED_CHUNK + 11] not in ranged.content
        # and the log says which object
        dataset_key = sql_behind_the_back(
            settings, f"SELECT id FROM training_datasets WHERE blob_key = '{object_id}'"
        )[0][0]
        log = server.log.read_text()
        assert f"download of dataset {dataset_key} stopped: blob {object_id}, chunk 1" in log


def test_a_lost_master_key_file_refuses_to_start_and_rotation_rewraps_in_place(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "var"
    env = {"LORASHELF_DATA_DIR": str(data_dir)}
    key_file = data_dir / "master_key"
    with serve(env, cwd=tmp_path) as server:
        owner = Owner.sign_up(server.url)
        published = owner.publish_private_dataset()
        assert key_file.stat().st_mode & 0o777 == 0o600
        before = {p: p.read_bytes() for p in (data_dir / "blobs").rglob("*") if p.is_file()}
        old_key = key_file.read_text()

        # when the master key is rotated while serve runs
        rotated = lorashelf("rotate-master-key", env=env, cwd=tmp_path)
        assert rotated.returncode == 0, rotated.stderr
        assert "no blob was touched" in rotated.stdout

        # then every blob is exactly as it was, the key file holds one new key, and the
        # running server (which reads the file again) still serves the dataset
        after = {p: p.read_bytes() for p in (data_dir / "blobs").rglob("*") if p.is_file()}
        assert after == before
        assert key_file.read_text() != old_key and len(key_file.read_text().split()) == 1
        url = owner.dataset(published.dataset_id)["downloadUrl"]
        assert httpx.get(url, timeout=30).content == published.body

    # when the key file is lost
    saved = key_file.read_bytes()
    key_file.unlink()
    # then serve refuses to start, saying why, and makes no new key over the data
    refused = lorashelf("serve", "--port", "1", env=env, cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "master key file" in refused.stderr and "missing" in refused.stderr
    assert not key_file.exists()
    # and with the file restored, it starts and serves again
    key_file.write_bytes(saved)
    key_file.chmod(0o600)
    with serve(env, cwd=tmp_path) as server:
        again = Owner(server.url, owner.username, owner.token)
        url = again.dataset(published.dataset_id)["downloadUrl"]
        assert httpx.get(url, timeout=30).content == published.body


@pytest.mark.parametrize("deployment", ["s3-versioned"], indirect=True)
def test_a_serve_killed_between_the_key_and_the_bytes_finishes_at_restart(
    deployment: Deployment, tmp_path: Path
) -> None:
    assert deployment.s3 is not None
    bucket_process = deployment.s3.proc
    settings = deployment.settings
    with serve(deployment.env, cwd=tmp_path) as first:
        # (a bucket that keeps versions is accepted, with a note at start-up)
        note = "the bucket's object versioning is Enabled; it only ever holds ciphertext"
        assert note in first.log.read_text()
        # given a private dataset on a bucket that keeps versions
        owner = Owner.sign_up(first.url)
        published = owner.publish_private_dataset(body=marked_dataset())
        [(object_id,)] = sql_behind_the_back(
            settings, "SELECT blob_key FROM training_datasets WHERE blob_key IS NOT NULL"
        )
        assert [k for k in deployment.objects() if object_id in k]
        # when its window ends while the bucket answers nothing (so the deletion stops
        # after destroying the key, waiting on the bucket), and serve is killed there
        bucket_process.send_signal(signal.SIGSTOP)
        try:
            wait_for(
                lambda: (
                    sql_behind_the_back(
                        settings,
                        "SELECT count(*) FROM training_datasets "
                        "WHERE status = 'DELETING' AND key_destroyed_at IS NOT NULL",
                    )
                    == [(1,)]
                ),
                timeout=RETENTION + 20,
                interval=0.05,
                what="the key to be destroyed",
            )
            half_way = owner.gql(
                f"query($id: ID!) {{ node(id: $id) {{ ... on TrainingDataset {{ status "
                f"deletedAt {RECEIPT_FIELDS} }} }} }}",
                {"id": published.dataset_id},
            )["node"]
            first.kill()
        finally:
            bucket_process.send_signal(signal.SIGCONT)
    # (access ended at the claim; the key's instant is shown; no receipt yet)
    assert half_way["status"] == "DELETED" and half_way["deletedAt"] is not None
    assert half_way["keyDestroyedAt"] is not None and half_way["deletionReceipt"] is None
    # then the key is gone while every stored version of the bytes is still there
    assert sql_behind_the_back(
        settings, f"SELECT count(*) FROM blob_keys WHERE object_id = '{object_id}'"
    ) == [(0,)]
    assert [k for k in deployment.objects() if object_id in k]

    # when serve starts again on the same data, its sweep finishes the deletion
    with serve(deployment.env, cwd=tmp_path) as second:
        again = Owner(second.url, owner.username, owner.token)
        seen = wait_for_receipt(again, published.dataset_id, timeout=30)
        public_keys = httpx.get(f"{second.url}/.well-known/lorashelf-receipt-keys.json").json()

    # then not one version or delete marker of the object is left
    assert not [k for k in deployment.s3.everything_in(deployment.bucket or "") if object_id in k]
    # and the receipt is complete: the key's real instant (before the kill), the last
    # copy removed after the restart, signed by a published key
    assert seen["keyDestroyedAt"] == half_way["keyDestroyedAt"]
    receipt = seen["deletionReceipt"]
    payload = json.loads(receipt["payload"])
    assert payload["reason"] == "EXPIRED" and payload["sealed"] is True
    assert payload["keyDestroyedAt"] == half_way["keyDestroyedAt"]
    assert payload["windowEndedAt"] <= payload["keyDestroyedAt"] < payload["lastCopyRemovedAt"]
    public = next(k["publicKey"] for k in public_keys["keys"] if k["keyId"] == receipt["keyId"])
    assert_verifies_and_breaks(receipt, public)


def stored_keys(settings: Settings, model_name: str) -> tuple[str, set[str]]:
    """A model's dataset's object, and its weights files' objects (header, public header,
    the owner's copy of the metadata, tensors), as the database has them."""
    [(dataset_object,)] = sql_behind_the_back(
        settings,
        "SELECT d.blob_key FROM training_datasets d JOIN model_versions v ON v.id = d.version_id "
        f"JOIN lora_models m ON m.id = v.model_id WHERE m.name = '{model_name}'",
    )
    files = sql_behind_the_back(
        settings,
        "SELECT f.header_key, f.public_header_key, f.owner_metadata_key, f.data_key "
        "FROM model_files f "
        "JOIN model_versions v ON v.id = f.version_id "
        f"JOIN lora_models m ON m.id = v.model_id WHERE m.name = '{model_name}'",
    )
    return dataset_object, {key for row in files for key in row if key}


def test_owner_and_model_deletion_destroy_the_keys_first_and_sign_a_receipt(
    deployment: Deployment, tmp_path: Path
) -> None:
    settings = deployment.settings
    with serve(deployment.env, cwd=tmp_path) as server:
        # given two models, each with a published version, its weights file and a private
        # dataset, and a third that stays
        owner = Owner.sign_up(server.url)
        models = {name: owner.create_model(name) for name in ("Deleted", "Kept", "Other")}
        published = {
            name: owner.publish_private_dataset(model_id=model_id, body=marked_dataset())
            for name, model_id in models.items()
        }
        stored = {name: stored_keys(settings, name) for name in models}
        for dataset_object, file_objects in stored.values():
            assert len(file_objects) >= 2
            assert all(
                [k for k in deployment.objects() if key in k]
                for key in {dataset_object, *file_objects}
            )

        # when the owner deletes one dataset, and another whole model
        owner.mutate(
            "deleteDataset",
            "mutation($i: DeleteDatasetInput!) { deleteDataset(input: $i) "
            "{ dataset { id } userErrors { code message } } }",
            {"i": {"datasetId": published["Kept"].dataset_id}},
        )
        owner.mutate(
            "deleteModel",
            "mutation($i: DeleteModelInput!) { deleteModel(input: $i) "
            "{ model { id } userErrors { code message } } }",
            {"i": {"modelId": models["Deleted"]}},
        )
        seen = {
            name: wait_for_receipt(owner, published[name].dataset_id, timeout=30)
            for name in ("Kept", "Deleted")
        }
        keys = httpx.get(f"{server.url}/.well-known/lorashelf-receipt-keys.json").json()
        public = {k["keyId"]: k["publicKey"] for k in keys["keys"]}

        # then each tombstone carries a receipt that says why, with the key destroyed
        # before the last copy went, signed by a published key
        for name, reason in (("Kept", "OWNER_REQUEST"), ("Deleted", "MODEL_DELETED")):
            receipt = seen[name]["deletionReceipt"]
            payload = json.loads(receipt["payload"])
            assert payload["reason"] == reason and payload["sealed"] is True
            assert payload["dataset"]["id"] == published[name].dataset_id
            assert payload["dataset"]["sha256"] == hashlib.sha256(published[name].body).hexdigest()
            assert payload["keyDestroyedAt"] == seen[name]["keyDestroyedAt"]
            assert payload["keyDestroyedAt"] <= payload["lastCopyRemovedAt"]
            assert_verifies_and_breaks(receipt, public[receipt["keyId"]])

    # and the deleted objects' keys are gone from the key store, and not one stored
    # version of their bytes is left (the deleted model's weights files too)
    gone = {stored["Kept"][0], stored["Deleted"][0], *stored["Deleted"][1]}
    kept = stored["Kept"][1] | stored["Other"][1] | {stored["Other"][0]}
    in_store = {row[0] for row in sql_behind_the_back(settings, "SELECT object_id FROM blob_keys")}
    assert not gone & in_store and kept <= in_store
    objects = deployment.objects()
    assert not [name for name in objects if any(key in name for key in gone)]
    assert all([name for name in objects if key in name] for key in kept)


def test_withheld_header_keys_are_shredded_at_the_end_of_their_window_with_a_receipt(
    deployment: Deployment, tmp_path: Path
) -> None:
    settings = deployment.settings
    weights = marked_weights()
    with serve(deployment.env, cwd=tmp_path) as server:
        # given a published version whose weights' header holds training data (withheld
        # from everybody else) and whose dataset is private
        owner = Owner.sign_up(server.url)
        version_id = new_version(owner)
        file_id = owner.upload_weights(version_id, weights)
        body = marked_dataset()
        started = start_dataset(owner, version_id, len(body))
        assert httpx.put(started["uploadUrl"], content=body, timeout=30).status_code == 200
        publish(owner, version_id)
        [(original, public_header, owner_copy)] = sql_behind_the_back(
            settings, "SELECT header_key, public_header_key, owner_metadata_key FROM model_files"
        )
        assert original != public_header and owner_copy not in (None, original, public_header)
        assert [k for k in deployment.objects() if original in k]
        assert [k for k in deployment.objects() if owner_copy in k]

        # when the window ends, the owner is shown the erasure's receipt
        query = (
            "query($id: ID!) { node(id: $id) { ... on ModelFile { sha256 headerErasedAt "
            "withheldKeys headerErasureReceipt { payload signature keyId } } } }"
        )
        seen = wait_for(
            lambda: (
                (node := owner.gql(query, {"id": file_id})["node"])["headerErasureReceipt"] and node
            ),
            timeout=RETENTION + 20,
            what="the header erasure's receipt",
        )
        keys = httpx.get(f"{server.url}/.well-known/lorashelf-receipt-keys.json").json()
        # and nobody else is
        stranger = Owner.sign_up(server.url)
        assert stranger.gql(query, {"id": file_id})["node"]["headerErasureReceipt"] is None

    # then its receipt says what was erased from which file, and when, and verifies
    receipt = seen["headerErasureReceipt"]
    payload = json.loads(receipt["payload"])
    assert payload["kind"] == "WEIGHTS_HEADER_KEYS_ERASED"
    assert payload["file"]["id"] == file_id
    assert payload["file"]["sha256"] == hashlib.sha256(weights).hexdigest()
    assert payload["file"]["publicSha256"] == seen["sha256"] != payload["file"]["sha256"]
    assert payload["file"]["erasedKeys"] == seen["withheldKeys"] == ["ss_tag_frequency"]
    assert payload["erasedCopies"] == ["ORIGINAL_HEADER", "OWNER_METADATA"]
    assert payload["windowEndedAt"] <= payload["keyDestroyedAt"] <= payload["lastCopyRemovedAt"]
    assert payload["sealed"] is True and seen["headerErasedAt"] is not None
    public = {k["keyId"]: k["publicKey"] for k in keys["keys"]}
    assert_verifies_and_breaks(receipt, public[receipt["keyId"]])
    # and the keys of the original header and of the owner's copy of the metadata are
    # gone, and not one stored version of either is left
    for copy in (original, owner_copy):
        assert sql_behind_the_back(
            settings, f"SELECT count(*) FROM blob_keys WHERE object_id = '{copy}'"
        ) == [(0,)]
        assert not [k for k in deployment.objects() if copy in k]
    assert [k for k in deployment.objects() if public_header in k]


def test_the_receipt_key_dates_from_the_first_start_not_the_first_deletion(
    deployment: Deployment, tmp_path: Path
) -> None:
    with serve(deployment.env, cwd=tmp_path) as server:
        started = now_utc()
        # given a site just started, where nothing was ever deleted
        keys = httpx.get(f"{server.url}/.well-known/lorashelf-receipt-keys.json").json()["keys"]
        assert len(keys) == 1 and parse_time(keys[0]["createdAt"]) <= started
        time.sleep(1.5)  # so that a key made at the deletion would be dated apart
        # when its first deletion is an owner's private draft dataset
        owner = Owner.sign_up(server.url)
        version_id = new_version(owner)
        body = marked_dataset()
        started_upload = start_dataset(owner, version_id, len(body))
        assert owner.put(started_upload["uploadUrl"], body).status_code == 200
        asked = now_utc()
        owner.mutate(
            "deleteDataset",
            "mutation($i: DeleteDatasetInput!) { deleteDataset(input: $i) "
            "{ dataset { id } userErrors { code message } } }",
            {"i": {"datasetId": started_upload["dataset"]["id"]}},
        )
        wait_for_receipt(owner, started_upload["dataset"]["id"], timeout=30)
        # then what anybody reads of the receipt keys says nothing of when it happened
        after = httpx.get(f"{server.url}/.well-known/lorashelf-receipt-keys.json").json()["keys"]
        assert after == keys
        assert parse_time(after[0]["createdAt"]) < asked
