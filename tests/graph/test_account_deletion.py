"""deleteAccount through a real `lorashelf serve`: the password checked again, a signed
receipt holding every dataset's, nothing of the account left in the database, the data
dir or the bucket (every object version), the username held back for a while, everyone
else's data untouched; and a serve killed half-way finishes the deletion at restart."""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

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
from tests.processes import Owner, gql, serve, wait_for, zip_bytes

DELETE = (
    "mutation($i: DeleteAccountInput!) { deleteAccount(input: $i) { receipt { payload "
    "signature keyId datasetReceipts { payload signature keyId } } "
    "userErrors { field code message } } }"
)
PASSWORD = "correct horse battery"


def sign_up(url: str, username: str) -> dict[str, Any]:
    answer: dict[str, Any] = gql(
        url,
        "mutation($i: SignUpInput!) { signUp(input: $i) { token userErrors { code } } }",
        {"i": {"username": username, "password": PASSWORD}},
    )["signUp"]
    return answer


def everything_of(owner: Owner, name: str) -> dict[str, Any]:
    """Given: a model named after ``name`` with a published version (marked weights, a
    private marked dataset, downloaded), and a data export."""
    version_id = new_version(owner, f"Model of {name}")
    owner.upload_weights(version_id, marked_weights())
    body = marked_dataset()
    started = start_dataset(owner, version_id, len(body))
    assert httpx.put(started["uploadUrl"], content=body, timeout=30).status_code == 200
    publish(owner, version_id)
    dataset = owner.dataset(started["dataset"]["id"])
    assert httpx.get(dataset["downloadUrl"], timeout=30).content == body
    owner.mutate(
        "requestDataExport",
        "mutation { requestDataExport(input: {}) { export { id } userErrors { code } } }",
        {},
    )
    wait_for(
        lambda: (
            owner.gql("{ viewer { dataExports { edges { node { status } } } } }")["viewer"][
                "dataExports"
            ]["edges"][0]["node"]["status"]
            == "READY"
        ),
        timeout=30,
        what="the export to be ready",
    )
    return {"dataset": started["dataset"]["id"]}


def test_wrong_password_changes_nothing_and_the_right_one_leaves_nothing(
    deployment: Deployment, tmp_path: Path
) -> None:
    deployment.env["LORASHELF_USERNAME_QUARANTINE"] = "4s"
    name = f"alice{secrets.token_hex(4)}"
    with serve(deployment.env, cwd=tmp_path) as server:
        # given alice with everything an account can hold, and bob with his own
        alice = Owner.sign_up(server.url, name)
        everything_of(alice, name)
        bob = Owner.sign_up(server.url)
        bobs = bob.publish_private_dataset(body=zip_bytes({"b.txt": b"bob's own" * 100}))
        objects = set(deployment.objects())

        # when she asks to delete the account with a wrong password
        wrong = alice.gql(DELETE, {"i": {"password": PASSWORD + "!"}})["deleteAccount"]
        # then that is a userError and nothing changed
        assert wrong["receipt"] is None
        assert [e["code"] for e in wrong["userErrors"]] == ["INVALID_PASSWORD"]
        assert alice.gql("{ viewer { username } }")["viewer"]["username"] == name
        assert set(deployment.objects()) == objects

        # when she gives the right one
        answer = alice.gql(DELETE, {"i": {"password": PASSWORD}})["deleteAccount"]
        assert answer["userErrors"] == []
        # then she gets a receipt holding both datasets' receipts, all signed
        receipt = answer["receipt"]
        keys = httpx.get(f"{server.url}/.well-known/lorashelf-receipt-keys.json").json()["keys"]
        public = {k["keyId"]: k["publicKey"] for k in keys}
        payload = receipts.verify(receipt, public[receipt["keyId"]])
        assert payload["kind"] == "ACCOUNT_DELETED"
        assert payload["account"]["username"] == name
        assert payload["removed"]["trainingDatasets"] == 1
        assert payload["removed"]["models"] == 1 and payload["removed"]["dataExports"] == 1
        inner = receipt["datasetReceipts"]
        assert [json.loads(r["payload"])["reason"] for r in inner] == ["ACCOUNT_DELETED"]
        for each in inner:
            receipts.verify(each, public[each["keyId"]])
        assert payload["datasetReceipts"] == inner
        # and her token no longer works, nor does logging in
        gone = httpx.post(
            f"{server.url}/graphql",
            json={"query": "{ viewer { username } }"},
            headers={"authorization": f"Bearer {alice.token}"},
        )
        assert gone.status_code == 401
        log_in = gql(
            server.url,
            "mutation($i: LogInInput!) { logIn(input: $i) { token userErrors { code } } }",
            {"i": {"username": name, "password": PASSWORD}},
        )["logIn"]
        assert [e["code"] for e in log_in["userErrors"]] == ["INVALID_CREDENTIALS"]

        # and nothing of her is left anywhere: database, data dir, every object version
        settings = deployment.settings
        wait_for(
            lambda: (
                deployment.holding(
                    name.encode(), f"Model of {name}".encode(), *MARKS, alice.token.encode()
                )
                == []
            ),
            timeout=10,
            what="nothing of alice at rest",
        )
        assert sql_behind_the_back(settings, "SELECT count(*) FROM users") == [(1,)]
        for table in ("lora_models", "model_versions", "model_files", "training_datasets"):
            rows = sql_behind_the_back(settings, f"SELECT count(*) FROM {table}")
            assert rows == [(1,)], (table, rows)
        for table in ("data_exports", "download_links"):
            assert sql_behind_the_back(settings, f"SELECT count(*) FROM {table}") == [(0,)]
        assert bob_only(deployment, settings) == set(deployment.objects())
        # (her keys too, the owner's copies of her weights' metadata included)
        in_store = {
            row[0] for row in sql_behind_the_back(settings, "SELECT object_id FROM blob_keys")
        }
        assert in_store == referenced(settings)
        # and bob's dataset is as it was
        url = bob.dataset(bobs.dataset_id)["downloadUrl"]
        assert httpx.get(url, timeout=30).content == bobs.body

        # and her name cannot be signed up again for a while, then it can
        assert [e["code"] for e in sign_up(server.url, name)["userErrors"]] == ["USERNAME_TAKEN"]
        time.sleep(4.5)
        assert sign_up(server.url, name)["userErrors"] == []


def referenced(settings: Any) -> set[str]:
    """The blob keys the database's rows refer to."""
    return {
        str(k)
        for row in sql_behind_the_back(
            settings,
            "SELECT blob_key FROM training_datasets UNION SELECT header_key FROM model_files "
            "UNION SELECT public_header_key FROM model_files UNION SELECT owner_metadata_key "
            "FROM model_files UNION SELECT data_key FROM model_files",
        )
        for k in row
        if k
    }


def bob_only(deployment: Deployment, settings: Any) -> set[str]:
    """The objects bob's rows refer to (each of them, every version)."""
    keys = referenced(settings)
    return {name for name in deployment.objects() if any(k in name for k in keys)}


def test_a_serve_killed_half_way_through_finishes_the_deletion_at_restart(
    deployment: Deployment, tmp_path: Path
) -> None:
    env = deployment.env
    settings = deployment.settings
    with serve(env, cwd=tmp_path) as first:
        # given an account with twenty datasets (drafts)
        owner = Owner.sign_up(first.url)
        model_id = owner.create_model()
        for number in range(20):
            version_id = owner.mutate(
                "createModelVersion",
                "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
                "{ version { id } userErrors { code } } }",
                {"i": {"modelId": model_id, "name": f"v{number}", "baseModel": "OTHER"}},
            )["version"]["id"]
            body = zip_bytes({"data.txt": secrets.token_bytes(200_000)})
            started = start_dataset(owner, version_id, len(body))
            assert httpx.put(started["uploadUrl"], content=body, timeout=30).status_code == 200
        assert len(deployment.objects()) == 20
        # when it asks for its deletion and serve is killed once the keys are destroyed
        # (while the bytes and the rows are going)
        sent = threaded_post(httpx.Client(timeout=30), first.url, owner.token)
        wait_for(
            lambda: (
                sql_behind_the_back(
                    settings,
                    "SELECT count(*) FROM training_datasets WHERE key_destroyed_at IS NOT NULL",
                )
                != [(0,)]
            ),
            timeout=20,
            interval=0.005,
            what="the keys to be destroyed",
        )
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        sent.join(30)
    states = sql_behind_the_back(
        settings, "SELECT status, count(*) FROM training_datasets GROUP BY status"
    )
    blobs = len(deployment.objects())
    print(f"[account deletion] serve killed with datasets {dict(states)}, {blobs} blobs left")
    # (every key went at once, in one transaction: none is left, all have the instant)
    assert sql_behind_the_back(settings, "SELECT count(*) FROM blob_keys") == [(0,)]
    assert sql_behind_the_back(
        settings,
        "SELECT count(DISTINCT key_destroyed_at), count(*) - count(key_destroyed_at) "
        "FROM training_datasets",
    ) == [(1, 0)]

    # then serve restarted on the same data dir finishes it: nothing of the account left
    with serve(env, cwd=tmp_path):
        wait_for(
            lambda: sql_behind_the_back(settings, "SELECT count(*) FROM users") == [(0,)],
            timeout=20,
            what="the account to be gone",
        )
        for table in ("lora_models", "model_versions", "training_datasets", "blob_keys"):
            assert sql_behind_the_back(settings, f"SELECT count(*) FROM {table}") == [(0,)]
        assert deployment.objects() == {}
        if deployment.s3 is not None:  # not a version, not a delete marker
            assert deployment.s3.everything_in(deployment.bucket or "") == []


def threaded_post(client: httpx.Client, url: str, token: str) -> Any:
    """deleteAccount sent from a thread (its answer never comes: serve is killed)."""

    def send() -> None:
        with contextlib.suppress(httpx.HTTPError):
            client.post(
                f"{url}/graphql",
                json={"query": DELETE, "variables": {"i": {"password": PASSWORD}}},
                headers={"authorization": f"Bearer {token}"},
            )

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


SET_EMAIL = (
    "mutation($i: SetEmailInput!) { setEmail(input: $i) { user { email } userErrors { code } } }"
)


@pytest.mark.parametrize("deployment", ["local"], indirect=True)
def test_the_e_mail_address_and_the_mail_waiting_to_go_are_deleted_with_the_account(
    deployment: Deployment, tmp_path: Path
) -> None:
    # given a site whose SMTP server does not answer (the mail waits in the queue)
    deployment.env["LORASHELF_SMTP_URL"] = "smtp://mailer:secret@127.0.0.1:1"
    deployment.env["LORASHELF_MAIL_FROM"] = "lorashelf <noreply@example.test>"
    deployment.env["LORASHELF_PUBLIC_URL"] = "https://shelf.example.test"
    address = f"carol-{secrets.token_hex(8)}@example.test"
    with serve(deployment.env, cwd=tmp_path) as server:
        # and carol, who set her address (its verification e-mail is queued), and bob
        carol = Owner.sign_up(server.url)
        answer = carol.gql(SET_EMAIL, {"i": {"email": address}})["setEmail"]
        assert answer == {"user": {"email": address}, "userErrors": []}
        bob = Owner.sign_up(server.url)
        assert bob.gql(SET_EMAIL, {"i": {"email": "bob@example.test"}})["setEmail"]["user"]
        settings = deployment.settings
        queued = "SELECT count(*) FROM outgoing_mail WHERE recipient = '{}'"
        assert sql_behind_the_back(settings, queued.format(address)) == [(1,)]
        assert deployment.holding(address.encode()) != []

        # when she deletes her account
        deleted = carol.gql(DELETE, {"i": {"password": PASSWORD}})["deleteAccount"]
        assert deleted["userErrors"] == []

        # then her address is nowhere at rest: not on an account, not in the queue
        wait_for(
            lambda: deployment.holding(address.encode()) == [],
            timeout=10,
            what="nothing of carol's address at rest",
        )
        assert sql_behind_the_back(settings, queued.format(address)) == [(0,)]
        # and bob's address and his mail are as they were
        assert sql_behind_the_back(settings, queued.format("bob@example.test")) == [(1,)]
        assert bob.gql("{ viewer { email } }")["viewer"]["email"] == "bob@example.test"
