"""Running a site, end to end: a real `lorashelf serve`, the `lorashelf` command line
beside it, and clients over HTTP. The operator role comes from the command line only;
a takedown hides, notifies (in the app and by e-mail, through a real SMTP server) and is
recorded; a suspension ends the account's sign-ins and hides its content while its
private data keeps its window; the trail is exported by `lorashelf audit`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.conftest import dataset_blobs, make_safetensors
from tests.graph.test_downloads_in_flight_e2e import (
    BOUND,
    RATE,
    SIZE,
    assert_stopped_within_the_bound,
    now,
    start_reading,
)
from tests.graph.test_moderation import RESTORE, SUSPEND, TAKE_DOWN, UNSUSPEND
from tests.jobs.test_email_e2e import confirm_address
from tests.mail import smtp_server
from tests.processes import Owner, gql, lorashelf, serve, wait_for, wait_for_deletion
from tests.reader import SlowReader

PUBLIC_MODEL = "query($id: ID!) { model(id: $id) { id name } }"


def publish_public_model(owner: Owner, weights: bytes | None = None) -> tuple[str, str]:
    """A published model with one version: (model, version)."""
    model_id = owner.create_model()
    version_id = owner.mutate(
        "createModelVersion",
        "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
        "{ version { id } userErrors { code } } }",
        {"i": {"modelId": model_id, "name": "v1", "baseModel": "SDXL_1_0"}},
    )["version"]["id"]
    owner.upload_weights(version_id, weights)
    owner.mutate(
        "publishModelVersion",
        "mutation($i: PublishModelVersionInput!) { publishModelVersion(input: $i) "
        "{ version { id } userErrors { code } } }",
        {"i": {"versionId": version_id}},
    )
    return model_id, version_id


def operator_call(person: Owner, document: str, variables: dict[str, Any]) -> Any:
    """An operator mutation's payload, with the answer's request id."""
    response = httpx.post(
        f"{person.url}/graphql",
        json={"query": document, "variables": variables},
        headers={"authorization": f"Bearer {person.token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    (payload,) = response.json()["data"].values()
    return payload, response.headers["x-request-id"]


def test_the_operator_role_comes_from_the_command_line_only(tmp_path: Path) -> None:
    env = {"LORASHELF_DATA_DIR": str(tmp_path / "var")}
    with smtp_server(tmp_path) as mail, serve({**env, **mail.env}, tmp_path) as server:
        # given Alice's published model, Alice's confirmed address, and Olga
        alice = Owner.sign_up(server.url, "alice")
        confirm_address(alice, mail, "alice@example.test")
        model_id, _ = publish_public_model(alice)
        olga = Owner.sign_up(server.url, "olga")
        take_down = {"i": {"subjectId": model_id, "reason": "Trademark."}}
        # then no mutation of the schema can make anybody an operator
        schema = gql(
            server.url,
            "{ __schema { mutationType { fields { name args { name type { name ofType "
            "{ name } } } } } types { name inputFields { name } } } }",
        )["__schema"]
        inputs = {t["name"]: t["inputFields"] for t in schema["types"] if t["inputFields"]}
        for mutation in schema["mutationType"]["fields"]:
            assert "operator" not in mutation["name"].lower()
            for arg in mutation["args"]:
                input_type = arg["type"]["name"] or arg["type"]["ofType"]["name"]
                names = [f["name"].lower() for f in inputs.get(input_type, [])]
                assert not [n for n in names if "operator" in n or "role" in n], mutation
        # and Olga, not an operator, is refused
        refused, _ = operator_call(olga, TAKE_DOWN, take_down)
        assert refused["userErrors"][0]["code"] == "FORBIDDEN"

        # when the command line grants her the role (an unknown name is refused)
        unknown = lorashelf("operator", "grant", "nobody", env=env, cwd=tmp_path)
        assert unknown.returncode == 1 and "nobody" in unknown.stderr
        granted = lorashelf("operator", "grant", "OLGA", env=env, cwd=tmp_path)
        assert granted.returncode == 0, granted.stderr
        assert "olga is an operator" in granted.stdout
        listed = lorashelf("operator", "list", env=env, cwd=tmp_path)
        assert listed.stdout.split() == ["olga"]
        assert olga.gql("{ viewer { isOperator } }")["viewer"]["isOperator"] is True
        # then she takes the model down, and everybody but Alice stops seeing it
        taken, request_id = operator_call(olga, TAKE_DOWN, take_down)
        assert taken["userErrors"] == []
        assert gql(server.url, PUBLIC_MODEL, {"id": model_id})["model"] is None
        assert olga.gql(PUBLIC_MODEL, {"id": model_id})["model"] is None
        assert alice.gql(PUBLIC_MODEL, {"id": model_id})["model"]["id"] == model_id
        # and Alice is told in the app and by e-mail (a notice nobody can switch off)
        kinds = [n["kind"] for n in alice.notifications()]
        assert kinds == ["CONTENT_TAKEN_DOWN"]
        notice = mail.wait_for(lambda ms: [m for m in ms if "taken down" in m.subject])[0]
        assert "Trademark." in notice.body() and "List-Unsubscribe" not in notice.message

        # when the role is revoked, it ends at her next request
        revoked = lorashelf("operator", "revoke", "olga", env=env, cwd=tmp_path)
        assert revoked.returncode == 0
        again, _ = operator_call(olga, RESTORE, {"i": {"subjectId": model_id, "reason": "x"}})
        assert again["userErrors"][0]["code"] == "FORBIDDEN"

        # then the trail holds all of it, exported by the command line, oldest first
        exported = lorashelf("audit", "--since", "1h", env=env, cwd=tmp_path)
        assert exported.returncode == 0, exported.stderr
        entries = [json.loads(line) for line in exported.stdout.splitlines()]
        assert [e["action"] for e in entries] == ["GRANT_OPERATOR", "TAKE_DOWN", "REVOKE_OPERATOR"]
        takedown = entries[1]
        assert takedown["actor"] == "olga" and takedown["subjectId"] == model_id
        assert takedown["reason"] == "Trademark." and takedown["requestId"] == request_id
        assert entries[0]["actor"].startswith("command line")
        future = lorashelf("audit", "--since", "2999-01-01", env=env, cwd=tmp_path)
        assert future.returncode == 0 and future.stdout == ""
        bad = lorashelf("audit", "--since", "yesterday", env=env, cwd=tmp_path)
        assert bad.returncode == 2 and "--since" in bad.stderr


def test_a_suspended_account_keeps_its_private_windows(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    env = {
        "LORASHELF_DATA_DIR": str(data_dir),
        "LORASHELF_PRIVATE_RETENTION": "6s",
        "LORASHELF_REMINDERS": "",
        "LORASHELF_SWEEP_INTERVAL": "30s",
    }
    with serve(env, tmp_path) as server:
        # given Alice's public model, her private dataset, and Olga, an operator
        alice = Owner.sign_up(server.url, "alice")
        model_id, _ = publish_public_model(alice)
        published = alice.publish_private_dataset(model_id, version="v2")
        olga = Owner.sign_up(server.url, "olga")
        assert lorashelf("operator", "grant", "olga", env=env, cwd=tmp_path).returncode == 0
        assert httpx.get(published.download_url, timeout=10).status_code == 200
        user_id = alice.gql("{ viewer { id } }")["viewer"]["id"]
        # when Olga suspends Alice
        done, _ = operator_call(olga, SUSPEND, {"i": {"userId": user_id, "reason": "Spam."}})
        assert done["userErrors"] == []
        # then every sign-in of hers has ended, and the links minted for them
        viewer = httpx.post(
            f"{server.url}/graphql",
            json={"query": "{ viewer { id } }"},
            headers={"authorization": f"Bearer {alice.token}"},
            timeout=10,
        )
        assert viewer.status_code == 401
        assert httpx.get(published.download_url, timeout=10).status_code == 404
        login = gql(
            server.url,
            'mutation { logIn(input: {username: "alice", password: "correct horse battery"}) '
            "{ token userErrors { code } } }",
        )["logIn"]
        assert login == {"token": None, "userErrors": [{"code": "ACCOUNT_SUSPENDED"}]}
        # and her public content is hidden
        assert gql(server.url, PUBLIC_MODEL, {"id": model_id})["model"] is None
        # and her private dataset is deleted at the end of its window all the same
        wait_for(
            lambda: not dataset_blobs(data_dir / "blobs"),
            timeout=15,
            what="the private dataset's bytes to be deleted",
        )
        # when she is reinstated, she signs in and finds the tombstone and its notice
        back, _ = operator_call(olga, UNSUSPEND, {"i": {"userId": user_id, "reason": "Ok."}})
        assert back["userErrors"] == []
        token = gql(
            server.url,
            'mutation { logIn(input: {username: "alice", password: "correct horse battery"}) '
            "{ token } }",
        )["logIn"]["token"]
        alice = Owner(server.url, "alice", token)
        tombstone = wait_for_deletion(alice, published.dataset_id)
        assert tombstone["deletionReason"] == "EXPIRED"
        kinds = {n["kind"] for n in alice.notifications()}
        assert {"ACCOUNT_SUSPENDED", "ACCOUNT_REINSTATED", "DATASET_DELETED"} <= kinds
        assert gql(server.url, PUBLIC_MODEL, {"id": model_id})["model"]["id"] == model_id


WEIGHTS_URL = (
    "query($id: ID!) { model(id: $id) { versions(first: 1) { files { downloadUrl sizeBytes } } } }"
)


def weights_url(person: Owner | None, url: str, model_id: str) -> tuple[str, int]:
    """The model's weights file as this person (None: anonymous) downloads it."""
    query = person.gql if person else lambda d, v: gql(url, d, v)
    model = query(WEIGHTS_URL, {"id": model_id})["model"]
    (file,) = model["versions"][0]["files"]
    return file["downloadUrl"], int(file["sizeBytes"])


def test_a_takedown_cuts_the_downloads_in_flight_but_the_owners(tmp_path: Path) -> None:
    env = {"LORASHELF_DATA_DIR": str(tmp_path / "var"), "LORASHELF_LOG_FORMAT": "json"}
    weights = make_safetensors(tensors={"w": np.zeros(SIZE // 4, dtype=np.float32)})
    with serve(env, tmp_path) as server:
        # given Alice's published model with 40 MB of weights, and Olga, an operator
        alice = Owner.sign_up(server.url, "alice")
        model_id, _ = publish_public_model(alice, weights)
        olga = Owner.sign_up(server.url, "olga")
        assert lorashelf("operator", "grant", "olga", env=env, cwd=tmp_path).returncode == 0
        # and Bob (anonymous) reading it slowly, and Alice, whose reader has paused
        anonymous_url, _ = weights_url(None, server.url, model_id)
        owners_url, owners_size = weights_url(alice, server.url, model_id)
        owners = SlowReader(owners_url, rate=RATE, stall_after=1_000_000)
        owners.start()
        wait_for(lambda: owners.received >= 1_000_000, timeout=30, what="1 MB for alice")
        bobs = start_reading(anonymous_url)
        # when Olga takes the model down while both are in flight
        taken, _ = operator_call(
            olga, TAKE_DOWN, {"i": {"subjectId": model_id, "reason": "Unlawful."}}
        )
        assert taken["userErrors"] == []
        ended, ended_wall = now()
        # then Bob's download stops short, within a second: the rest is never sent
        assert_stopped_within_the_bound(server, bobs, ended, ended_wall)
        # and Alice, who still sees her model, gets every byte once she reads on (her
        # stream was re-checked meanwhile, and allowed)
        time.sleep(BOUND)
        owners.resume()
        owners.join(60)
        assert owners.error is None, owners.error
        assert owners.received == owners.content_length == owners_size
        # and a new request for Bob's link is refused as for a missing file
        refused = httpx.get(anonymous_url, timeout=10)
        assert refused.status_code == 404


def answer(person: Owner, document: str, variables: dict[str, Any]) -> Any:
    """The whole answer (data and errors) to this person's request."""
    response = httpx.post(
        f"{person.url}/graphql",
        json={"query": document, "variables": variables},
        headers={"authorization": f"Bearer {person.token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


# Every path that takes a dataset's id, and what it is asked (the operator's own included)
BY_ID = {
    "node": "query($id: ID!) { node(id: $id) { id ... on TrainingDataset { status "
    "filename downloadUrl expiresAt } } }",
    "deleteDataset": "mutation($id: ID!) { deleteDataset(input: {datasetId: $id}) "
    "{ dataset { id } userErrors { field message code } } }",
    "setDatasetVisibility": "mutation($id: ID!) { setDatasetVisibility(input: "
    "{datasetId: $id, visibility: PUBLIC, ownsRights: true}) { dataset { id } "
    "userErrors { field message code } } }",
    "reportContent": "mutation($id: ID!) { reportContent(input: {subjectId: $id, "
    "reason: PRIVACY}) { report { id } userErrors { field message code } } }",
    "takeDown": 'mutation($id: ID!) { takeDown(input: {subjectId: $id, reason: "x", '
    "destroyPrivateData: true}) { subject { id name } userErrors { field message code } } }",
    "restore": 'mutation($id: ID!) { restore(input: {subjectId: $id, reason: "x"}) '
    "{ subject { id name } userErrors { field message code } } }",
}
# ... and the paths that reach it through what contains it
AROUND = {
    "version": "query($v: ID!) { node(id: $v) { ... on ModelVersion { id trainingDataset "
    "{ id status } } } }",
    "owner's datasets": "query($u: ID!) { node(id: $u) { ... on User { username "
    "trainingDatasets { edges { node { id } } } models { edges { node { versions "
    "{ trainingDataset { id } } } } } } } }",
    "catalogue": "{ models { edges { node { id versions { trainingDataset { id } } } } } }",
    "queue": "{ reports { edges { node { id subject { id } about { id name } } } } }",
    "trail": "{ auditLog { edges { node { action subject { id kind name node { id } } } } } }",
}


def test_an_operator_finds_a_private_dataset_nowhere(tmp_path: Path) -> None:
    from tests.conftest import missing_id
    from tests.live import DATASET_CHANGED, over_network

    env = {"LORASHELF_DATA_DIR": str(tmp_path / "var")}
    with serve(env, tmp_path) as server:
        # given Alice's published version with a private dataset, Bob (signed in), and
        # Olga, an operator granted by the command line
        alice = Owner.sign_up(server.url, "alice")
        published = alice.publish_private_dataset()
        bob = Owner.sign_up(server.url, "bob")
        olga = Owner.sign_up(server.url, "olga")
        assert lorashelf("operator", "grant", "olga", env=env, cwd=tmp_path).returncode == 0
        alice_id = alice.gql("{ viewer { id } }")["viewer"]["id"]
        private, missing = published.dataset_id, missing_id("TrainingDataset")
        # and a dataset of hers that Bob reported while it was public, private again since
        again = alice.publish_private_dataset(version="v2").dataset_id
        visibility = (
            "mutation($i: SetDatasetVisibilityInput!) { setDatasetVisibility(input: $i) "
            "{ dataset { visibility } userErrors { code } } }"
        )
        made_public = {"datasetId": again, "visibility": "PUBLIC", "ownsRights": True}
        alice.mutate("setDatasetVisibility", visibility, {"i": made_public})
        reported = answer(bob, BY_ID["reportContent"], {"id": again})["data"]["reportContent"]
        assert reported["userErrors"] == []
        made_private = {"datasetId": again, "visibility": "PRIVATE"}
        alice.mutate("setDatasetVisibility", visibility, {"i": made_private})

        # when Olga asks for it by its id on every path, and for a missing id
        for name, document in BY_ID.items():
            seen = answer(olga, document, {"id": private})
            unseen = answer(olga, document, {"id": missing})
            # then each answer is the missing id's, word for word
            assert json.dumps(seen).replace(private, missing) == json.dumps(unseen), name
        # and through what contains it she sees exactly what Bob sees: nothing of it
        around = {"v": published.version_id, "u": alice_id}
        for name, document in AROUND.items():
            bobs = answer(bob, document, around)
            olgas = answer(olga, document, around)
            assert private not in json.dumps(olgas), name
            assert "cats.zip" not in json.dumps(olgas), name  # nor their names
            if name in ("queue", "trail"):  # operators only: Bob is refused
                assert bobs["errors"][0]["extensions"]["code"] == "FORBIDDEN", bobs
                assert "errors" not in olgas, olgas
            else:
                assert olgas == bobs, name
        # (the report is queued, about something gone as far as she can tell: not even
        # the id she was shown when it was public, as for a deleted one)
        queued = answer(olga, AROUND["queue"], {})["data"]["reports"]["edges"]
        assert [e["node"]["subject"] for e in queued] == [None]
        assert [e["node"]["about"]["name"] for e in queued] == [None]
        assert again not in json.dumps(queued)
        # and a live view of it ends as for a missing id
        live, sock = over_network(server.url)
        try:
            live.init({"Authorization": f"Bearer {olga.token}"})
            live.subscribe("private", DATASET_CHANGED, {"id": private})
            live.subscribe("missing", DATASET_CHANGED, {"id": missing})
            ended = [live.errors("private"), live.errors("missing")]
        finally:
            sock.close()
        assert json.dumps(ended[0]).replace(private, missing) == json.dumps(ended[1])
        assert ended[0][0]["extensions"]["code"] == "NOT_FOUND"

        # when she takes the version down destroying private data, and a version without any
        other_model, other_version = publish_public_model(bob)
        answers = []
        for version in (published.version_id, other_version):
            taken, _ = operator_call(
                olga,
                "mutation($i: TakeDownInput!) { takeDown(input: $i) { subject { kind "
                "takenDown { reason } } userErrors { code } } }",
                {"i": {"subjectId": version, "reason": "Court order.", "destroyPrivateData": True}},
            )
            answers.append(taken)
        # then the two answers are the same, and the trail tells her nothing more
        assert answers[0] == answers[1] and answers[0]["userErrors"] == []
        trail = answer(olga, AROUND["trail"], {})
        assert private not in json.dumps(trail)
        # and Alice's dataset is deleted for the takedown, her bytes gone
        tombstone = wait_for_deletion(alice, published.dataset_id)
        assert tombstone["deletionReason"] == "TAKEN_DOWN"
        assert httpx.get(published.download_url, timeout=10).status_code == 404
        wait_for(
            lambda: len(dataset_blobs(tmp_path / "var" / "blobs")) == 1,  # the other's kept
            timeout=15,
            what="the private dataset's bytes to be deleted",
        )


def test_reports_are_queued_limited_and_their_outcome_told(tmp_path: Path) -> None:
    from tests.conftest import missing_id

    env = {"LORASHELF_DATA_DIR": str(tmp_path / "var"), "LORASHELF_REPORT_RATE_PER_USER": "4/hour"}
    with serve(env, tmp_path) as server:
        # given Alice's public model and her private dataset; Bob, Carol, and Olga, an operator
        alice = Owner.sign_up(server.url, "alice")
        model_id, version_id = publish_public_model(alice)
        private = alice.publish_private_dataset(model_id, version="v2").dataset_id
        bob, carol = Owner.sign_up(server.url, "bob"), Owner.sign_up(server.url, "carol")
        olga = Owner.sign_up(server.url, "olga")
        assert lorashelf("operator", "grant", "olga", env=env, cwd=tmp_path).returncode == 0
        alice_id = alice.gql("{ viewer { id } }")["viewer"]["id"]
        report = (
            "mutation($id: ID!, $r: ReportReason!) { reportContent(input: {subjectId: $id, "
            'reason: $r, details: "see the README"}) { report { id reason status } '
            "userErrors { field message code } } }"
        )

        def reported(person: Owner, subject: str, reason: str = "COPYRIGHT") -> Any:
            return answer(person, report, {"id": subject, "r": reason})["data"]["reportContent"]

        # when Bob reports the model, the private dataset, a missing id, and Alice herself
        model_report = reported(bob, model_id)
        hidden = reported(bob, private)
        missing = reported(bob, missing_id("TrainingDataset"))
        user_report = reported(bob, alice_id, "IMPERSONATION")
        # then what he can see is reported; the private dataset answers as a missing id
        assert model_report["userErrors"] == [] and model_report["report"]["status"] == "OPEN"
        assert user_report["userErrors"] == []
        assert hidden == missing and hidden["userErrors"][0]["code"] == "NOT_FOUND"
        # and his fifth report within the hour is refused (each attempt counted alike),
        # while Carol's is taken
        refused = reported(bob, version_id)
        assert refused["report"] is None
        assert refused["userErrors"][0]["code"] == "RATE_LIMITED", refused
        assert reported(carol, version_id, "SPAM")["userErrors"] == []

        # when Olga works through the queue: the model taken down, the account report dismissed
        queue = (
            "query($s: ReportStatus) { reports(status: $s) { edges { node { id reason "
            "details status reporterUsername about { kind name ownerUsername } } } } }"
        )
        open_reports = olga.gql(queue, {"s": "OPEN"})["reports"]["edges"]
        assert sorted((e["node"]["about"]["kind"], e["node"]["reason"]) for e in open_reports) == [
            ("Model", "COPYRIGHT"),
            ("ModelVersion", "SPAM"),
            ("User", "IMPERSONATION"),
        ]
        taken, _ = operator_call(olga, TAKE_DOWN, {"i": {"subjectId": model_id, "reason": "DMCA."}})
        assert taken["userErrors"] == []
        dismissed, _ = operator_call(
            olga,
            "mutation($i: DismissReportInput!) { dismissReport(input: $i) "
            "{ report { status } userErrors { code } } }",
            {"i": {"reportId": user_report["report"]["id"], "reason": "Not her."}},
        )
        assert dismissed == {"report": {"status": "DISMISSED"}, "userErrors": []}
        # then Bob sees the outcome of each of his reports, and only his
        mine = bob.gql("{ viewer { reports { edges { node { id status resolvedAt } } } } }")
        outcome = {e["node"]["id"]: e["node"]["status"] for e in mine["viewer"]["reports"]["edges"]}
        assert outcome == {
            model_report["report"]["id"]: "ACTIONED",
            user_report["report"]["id"]: "DISMISSED",
        }
        assert all(e["node"]["resolvedAt"] for e in mine["viewer"]["reports"]["edges"])
        # and the queue's open report is Carol's, about a version now hidden with its model
        left = olga.gql(queue, {"s": "OPEN"})["reports"]["edges"]
        assert [e["node"]["reporterUsername"] for e in left] == ["carol"]
