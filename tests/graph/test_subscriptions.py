"""Live notifications: GraphQL subscriptions over WebSocket (graphql-transport-ws).

In process: the real ASGI app with its lifespan (migrations, the embedded runner, no
Redis) behind Starlette's test client, on a real SQLite file. Windows are seconds
long, so the embedded runner writes the reminder and the deletion on its own; the
end-to-end test with Redis and separate processes is test_subscriptions_e2e.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from graph.http.app import create_app
from storage.config.settings import Settings
from tests.conftest import at, make_safetensors, make_zip, missing_id
from tests.live import DATASET_CHANGED, NOTIFICATION_ADDED, PROTOCOL, Live, codes, in_process

RETENTION = 3  # seconds a published private dataset is kept
REMINDER = 2  # seconds before deletion: the reminder falls due 1 s after publishing


@pytest.fixture
def site(settings: Settings) -> Iterator[Site]:
    with TestClient(create_app(settings)) as http:
        yield Site(http)


class Site:
    """GraphQL over HTTP and subscriptions over WebSocket against the same app."""

    def __init__(self, http: TestClient):
        self.http = http
        self._names = 0

    def gql(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> Any:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        response = self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        body = response.json()
        assert response.status_code == 200 and "errors" not in body, body
        return body["data"]

    def mutate(self, name: str, query: str, variables: dict[str, Any], token: str | None) -> Any:
        payload = self.gql(query, variables, token)[name]
        assert payload["userErrors"] == [], payload["userErrors"]
        return payload

    def sign_up(self) -> str:
        self._names += 1
        return str(
            self.mutate(
                "signUp",
                "mutation($i: SignUpInput!) { signUp(input: $i) { token userErrors { code } } }",
                {"i": {"username": f"live{self._names}", "password": "correct horse battery"}},
                None,
            )["token"]
        )

    def draft_with_dataset(self, token: str, visibility: str = "PRIVATE") -> tuple[str, str]:
        """Given a draft version with a weights file and a dataset: (version, dataset)."""
        model = self.mutate(
            "createModel",
            "mutation($i: CreateModelInput!) { createModel(input: $i) { model { id } userErrors { code } } }",
            {"i": {"name": "Cats", "description": "a LoRA"}},
            token,
        )["model"]["id"]
        version = self.mutate(
            "createModelVersion",
            "mutation($i: CreateModelVersionInput!) { createModelVersion(input: $i) "
            "{ version { id } userErrors { code } } }",
            {"i": {"modelId": model, "name": "v1", "baseModel": "SDXL_1_0"}},
            token,
        )["version"]["id"]
        weights = make_safetensors()
        started = self.mutate(
            "startModelFileUpload",
            "mutation($i: StartModelFileUploadInput!) { startModelFileUpload(input: $i) "
            "{ uploadUrl userErrors { code } } }",
            {
                "i": {
                    "versionId": version,
                    "filename": "lora.safetensors",
                    "sizeBytes": len(weights),
                }
            },
            token,
        )
        assert self.http.put(started["uploadUrl"], content=weights).status_code == 200
        body = make_zip()
        started = self.mutate(
            "startDatasetUpload",
            "mutation($i: StartDatasetUploadInput!) { startDatasetUpload(input: $i) "
            "{ dataset { id } uploadUrl userErrors { code } } }",
            {
                "i": {
                    "versionId": version,
                    "filename": "cats.zip",
                    "sizeBytes": len(body),
                    "visibility": visibility,
                    "ownsRights": visibility == "PUBLIC",
                }
            },
            token,
        )
        assert self.http.put(started["uploadUrl"], content=body).status_code == 200
        return version, started["dataset"]["id"]

    def publish(self, token: str, version: str) -> None:
        self.mutate(
            "publishModelVersion",
            "mutation($i: PublishModelVersionInput!) { publishModelVersion(input: $i) "
            "{ version { id } userErrors { code } } }",
            {"i": {"versionId": version}},
            token,
        )

    @contextmanager
    def live(self, payload: dict[str, Any] | None) -> Iterator[Live]:
        """A WebSocket to /graphql, initialised with ``payload`` (acknowledged)."""
        with self.http.websocket_connect("/graphql", subprotocols=[PROTOCOL]) as session:
            client = in_process(session)
            client.init(payload)
            yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.env(
    LORASHELF_PRIVATE_RETENTION=f"{RETENTION}s",
    LORASHELF_REMINDERS=f"{REMINDER}s",
    LORASHELF_SWEEP_INTERVAL="30s",  # the runner must wake at the due times, not sweep
)
def test_the_reminder_and_the_deletion_arrive_live_within_a_second(site: Site) -> None:
    # given an owner with a private dataset in a draft, subscribed to both streams
    token = site.sign_up()
    version, dataset = site.draft_with_dataset(token)
    with site.live(bearer(token)) as live:
        live.subscribe("notes", NOTIFICATION_ADDED)
        live.subscribe("dataset", DATASET_CHANGED, {"id": dataset})
        _, first = live.data("dataset", "datasetChanged")
        assert (first["id"], first["status"]) == (dataset, "AVAILABLE")

        # when the version is published (its window opens: RETENTION seconds)
        site.publish(token, version)

        # then the new expiry arrives on the dataset stream
        _, opened = live.data("dataset", "datasetChanged")
        assert opened["status"] == "AVAILABLE" and opened["expiresAt"] != first["expiresAt"]
        expires_at = at(opened["expiresAt"])

        # and the reminder arrives within a second of being written
        arrived, reminder = live.data("notes", "notificationAdded", timeout=RETENTION + 2)
        assert reminder["kind"] == "DATASET_EXPIRING"
        assert reminder["dataset"]["id"] == dataset
        assert arrived - at(reminder["createdAt"]) < timedelta(seconds=1)
        assert at(reminder["createdAt"]) < expires_at

        # and so does the deletion notice, and the tombstone on the dataset stream
        arrived, notice = live.data("notes", "notificationAdded", timeout=RETENTION + 2)
        assert notice["kind"] == "DATASET_DELETED"
        assert arrived - at(notice["createdAt"]) < timedelta(seconds=1)
        arrived, tombstone = live.data("dataset", "datasetChanged")
        assert (tombstone["status"], tombstone["deletionReason"]) == ("DELETED", "EXPIRED")
        assert arrived - at(tombstone["deletedAt"]) < timedelta(seconds=1)
        # (nothing else: one notice of each kind)
        live.nothing_for("notes", 0.5)


def test_a_dataset_that_is_not_yours_answers_like_one_that_does_not_exist(site: Site) -> None:
    # given an owner's private dataset and public dataset, and another signed-in user
    owner = site.sign_up()
    _, private = site.draft_with_dataset(owner)
    public_version, public = site.draft_with_dataset(owner, visibility="PUBLIC")
    site.publish(owner, public_version)  # visible to everyone now, still not theirs
    stranger = site.sign_up()
    with site.live(bearer(stranger)) as live:
        # when the stranger subscribes to them, and to an id nobody has
        answers = {}
        for name, dataset_id in (
            ("private", private),
            ("public", public),
            ("missing", missing_id("TrainingDataset")),
            ("malformed", "not-an-id"),
        ):
            live.subscribe(name, DATASET_CHANGED, {"id": dataset_id})
            answers[name] = live.errors(name)

    # then every answer is the same NOT_FOUND
    assert codes(answers["missing"]) == ["NOT_FOUND"]
    assert answers["private"] == answers["missing"]
    assert answers["public"] == answers["missing"]
    assert answers["malformed"] == answers["missing"]


def test_without_a_valid_token_subscriptions_are_refused(site: Site) -> None:
    # given a dataset and a user who signs out
    owner = site.sign_up()
    _, dataset = site.draft_with_dataset(owner)
    gone = site.sign_up()
    site.gql("mutation { logOut { ok } }", token=gone)

    for payload in ({}, bearer("not-a-token"), {"token": gone}):
        with site.live(payload) as live:
            # when a socket without a valid token subscribes
            live.subscribe("notes", NOTIFICATION_ADDED)
            live.subscribe("dataset", DATASET_CHANGED, {"id": dataset})
            # then both are refused as unauthenticated
            assert codes(live.errors("notes")) == ["UNAUTHENTICATED"]
            assert codes(live.errors("dataset")) == ["UNAUTHENTICATED"]


def test_signing_out_ends_the_stream_at_the_next_event(site: Site) -> None:
    # given an owner watching a dataset, signed in on the socket with the "token" form
    token = site.sign_up()
    version, dataset = site.draft_with_dataset(token)
    other = site.mutate(
        "logIn",
        "mutation($i: LogInInput!) { logIn(input: $i) { token userErrors { code } } }",
        {"i": {"username": "live1", "password": "correct horse battery"}},
        None,
    )["token"]
    with site.live({"token": token}) as live:
        live.subscribe("dataset", DATASET_CHANGED, {"id": dataset})
        live.data("dataset", "datasetChanged")

        # when that sign-in ends and the dataset then changes (through another sign-in)
        site.gql("mutation { logOut { ok } }", token=token)
        site.publish(other, version)

        # then the stream ends with UNAUTHENTICATED instead of the change
        assert codes(live.errors("dataset")) == ["UNAUTHENTICATED"]
        _, done = live.message("dataset")
        assert done["type"] == "complete"


@pytest.mark.env(LORASHELF_MAX_SUBSCRIPTIONS_PER_USER="2")
def test_a_user_holds_at_most_the_configured_number_of_subscriptions(site: Site) -> None:
    # given a user with two open subscriptions (the bound), on two sockets
    token = site.sign_up()
    _, dataset = site.draft_with_dataset(token)
    with site.live(bearer(token)) as first, site.live(bearer(token)) as second:
        first.subscribe("a", DATASET_CHANGED, {"id": dataset})
        first.data("a", "datasetChanged")
        second.subscribe("b", DATASET_CHANGED, {"id": dataset})
        second.data("b", "datasetChanged")

        # when a third is asked for, on either socket
        second.subscribe("c", NOTIFICATION_ADDED)
        # then it is refused
        errors = second.errors("c")
        assert codes(errors) == ["TOO_MANY_SUBSCRIPTIONS"]

        # and another user is not affected
        other = site.sign_up()
        with site.live(bearer(other)) as theirs:
            _, own = site.draft_with_dataset(other)
            theirs.subscribe("x", DATASET_CHANGED, {"id": own})
            theirs.data("x", "datasetChanged")

        # and when one is completed, a place is free again
        first.complete("a")
        for attempt in range(50):
            second.subscribe(f"d{attempt}", DATASET_CHANGED, {"id": dataset})
            _, message = second.message(f"d{attempt}")
            if message["type"] == "next" and "errors" not in message["payload"]:
                break
            assert codes(message["payload"]["errors"]) == ["TOO_MANY_SUBSCRIPTIONS"]
        else:
            raise AssertionError("the completed subscription's place was never freed")


@pytest.mark.env(LORASHELF_MAX_DEPTH="3", LORASHELF_MAX_COST="5")
def test_subscription_documents_obey_the_depth_and_cost_limits(site: Site) -> None:
    # given a signed-in user
    token = site.sign_up()
    _, dataset = site.draft_with_dataset(token)
    with site.live(bearer(token)) as live:
        # when a subscription is deeper than allowed
        live.subscribe(
            "deep", "subscription { notificationAdded { dataset { version { model { id } } } } }"
        )
        # then it is refused before it starts
        assert codes(live.errors("deep")) == ["TOO_DEEP"]

        # when one costs more than allowed (a dataset's history counts its full length)
        live.subscribe(
            "costly",
            "subscription($id: ID!) { datasetChanged(id: $id) { events { kind } } }",
            {"id": dataset},
        )
        assert codes(live.errors("costly")) == ["TOO_COSTLY"]

        # and one within both limits runs
        live.subscribe("fine", DATASET_CHANGED, {"id": dataset})
        live.data("fine", "datasetChanged")


def test_only_subscriptions_run_over_websocket_and_only_there(site: Site) -> None:
    # given a signed-in user
    token = site.sign_up()
    # when a query is sent over the socket
    with site.live(bearer(token)) as live:
        live.subscribe("q", "{ viewer { id } }")
        # then it is refused (it would run as whoever opened the socket, however long ago)
        assert codes(live.errors("q")) == ["WRONG_TRANSPORT"]

    # when a subscription is sent over HTTP
    response = site.http.post(
        "/graphql",
        json={"query": NOTIFICATION_ADDED},
        headers={"authorization": f"Bearer {token}"},
    )
    # then it is refused the same way
    assert codes(response.json()["errors"]) == ["WRONG_TRANSPORT"]
