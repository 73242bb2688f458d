"""A COMMIT whose answer is lost with its connection (PostgreSQL shutting down during
it, a connection cut): a real ``lorashelf serve`` reaches PostgreSQL through a proxy
that delivers the next ``COMMIT`` (or not) and closes the connection before the answer
gets back. The server cannot tell from the error whether the change committed; it
must not answer "nothing was changed" (``TRY_AGAIN``) for a change that was made, nor
claim one that was not. It asks the database (``txid_status``) and answers the truth;
while the database stays away it says the change may have been made
(``OUTCOME_UNKNOWN``), and a retry under the same ``Idempotency-Key`` never acts twice.
And with the database out of reach, the routes outside GraphQL answer 503 ``TRY_AGAIN``
as an expected state, never logged as an unexpected error."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests import processes
from tests.processes import Owner, Server, serve, wait_for
from tests.proxy import Proxy, proxy

pytestmark = pytest.mark.postgres_only(
    reason="a COMMIT whose answer is lost: SQLite has no connection to lose"
)

CREATE = (
    "mutation($i: CreateModelInput!) { createModel(input: $i) "
    "{ model { name } userErrors { code } } }"
)
MINE = "{ viewer { models(first: 100) { edges { node { name } } } } }"


def through(url: str, port: int) -> str:
    """The database URL with its port replaced by the proxy's."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{host}:{port}"))


def create(owner: Owner, name: str, key: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {owner.token}"}
    if key is not None:
        headers["idempotency-key"] = key
    return httpx.post(
        f"{owner.url}/graphql",
        json={"query": CREATE, "variables": {"i": {"name": name, "description": "x"}}},
        headers=headers,
        timeout=60,
    )


def create_as_the_database_goes(
    owner: Owner, forwarder: Proxy, name: str, key: str, *, deliver: bool
) -> httpx.Response:
    """``create`` while the next COMMIT is cut with its connection (delivered to
    PostgreSQL or not) and the database is then out of reach (the proxy stopped)."""
    cut = forwarder.cut_next_commit(deliver=deliver)

    def away_once_cut() -> None:
        wait_for(cut.is_set, timeout=30)
        forwarder.stop()

    stopper = threading.Thread(target=away_once_cut)
    stopper.start()
    try:
        return create(owner, name, key)
    finally:
        stopper.join(30)


def codes(response: httpx.Response) -> list[Any]:
    body = response.json()
    payload = (body.get("data") or {}).get("createModel")
    if payload is None:
        return [(e.get("extensions") or {}).get("code") for e in body.get("errors") or []]
    return [error["code"] for error in payload["userErrors"]]


def names(owner: Owner) -> list[str]:
    edges = owner.gql(MINE)["viewer"]["models"]["edges"]
    return sorted(edge["node"]["name"] for edge in edges)


@pytest.fixture
def site(tmp_path: Path) -> Any:
    assert processes.test_database_url is not None
    database = processes.test_database_url()
    with proxy(urlsplit(database).port or 5432) as forwarder:
        env = {
            "LORASHELF_DATA_DIR": str(tmp_path / "var"),
            "LORASHELF_DATABASE_URL": through(database, forwarder.port),
        }
        with serve(env, cwd=tmp_path) as server:
            yield Owner.sign_up(server.url), forwarder, server


def test_a_commit_that_went_through_is_answered_as_made(site: tuple[Owner, Proxy, Server]) -> None:
    owner, forwarder, _ = site
    # given the next COMMIT reaches PostgreSQL and its answer is lost with the connection
    cut = forwarder.cut_next_commit(deliver=True)
    # when the owner creates a model
    response = create(owner, "Kept")
    # then the change was made once, and the answer says so (never "nothing was changed")
    assert cut.is_set(), response.text
    assert response.status_code == 200, response.text
    assert codes(response) == [], response.text
    assert response.json()["data"]["createModel"]["model"]["name"] == "Kept"
    assert names(owner) == ["Kept"]


def test_a_commit_that_never_arrived_is_answered_try_again(
    site: tuple[Owner, Proxy, Server],
) -> None:
    owner, forwarder, _ = site
    # given the next COMMIT is lost before it reaches PostgreSQL, with its connection
    cut = forwarder.cut_next_commit(deliver=False)
    # when the owner creates a model
    response = create(owner, "Dropped")
    # then TRY_AGAIN is the truth: nothing was made, and the retry makes it once
    assert cut.is_set(), "the request never committed through the proxy"
    assert codes(response) == ["TRY_AGAIN"], response.text
    assert names(owner) == []
    assert codes(create(owner, "Dropped")) == []
    assert names(owner) == ["Dropped"]


def test_a_commit_lost_while_the_database_stays_away_may_have_been_made(
    site: tuple[Owner, Proxy, Server],
) -> None:
    owner, forwarder, _ = site
    key = str(uuid.uuid4())
    # given the next COMMIT reaches PostgreSQL, then the database is out of reach
    # when the owner creates a model with an Idempotency-Key
    started = time.monotonic()
    response = create_as_the_database_goes(owner, forwarder, "Unknown", key, deliver=True)
    waited = time.monotonic() - started
    # then the answer says it may have been made: neither TRY_AGAIN nor a success
    assert codes(response) == ["OUTCOME_UNKNOWN"], response.text
    print(f"[lost commit] OUTCOME_UNKNOWN after {waited:.1f} s")
    # and once the database is back, the change is there once, and a retry under the
    # same key never makes it again (told the answer was lost, or still in use)
    forwarder.start()
    wait_for(lambda: names(owner) == ["Unknown"], timeout=30)
    retry = create(owner, "Unknown", key)
    assert retry.status_code == 409, retry.text
    assert codes(retry)[0] in ("IDEMPOTENCY_KEY_IN_USE", "IDEMPOTENCY_ANSWER_LOST")
    assert names(owner) == ["Unknown"]


def test_a_retry_soon_after_the_database_is_back_acts_once_when_nothing_was_made(
    site: tuple[Owner, Proxy, Server],
) -> None:
    owner, forwarder, _ = site
    key = str(uuid.uuid4())
    # given the next COMMIT is lost before it reaches PostgreSQL, and the database then
    # stays out of reach for longer than the server waits before answering
    first = create_as_the_database_goes(owner, forwarder, "Retried", key, deliver=False)
    assert codes(first) == ["OUTCOME_UNKNOWN"], first.text
    # when the database is back and the client retries under the same key
    forwarder.start()
    started = time.monotonic()
    retry = create(owner, "Retried", key)
    while codes(retry) == ["IDEMPOTENCY_KEY_IN_USE"] and time.monotonic() - started < 20:
        time.sleep(float(retry.headers.get("retry-after") or 1))
        retry = create(owner, "Retried", key)
    # then the retry acts within seconds (not after the key's 60 s lease), once
    assert retry.status_code == 200, retry.text
    assert codes(retry) == [], retry.text
    print(
        f"[lost commit] retry acted {time.monotonic() - started:.1f} s after the database was back"
    )
    assert names(owner) == ["Retried"]


def test_routes_with_the_database_away_answer_try_again_as_an_expected_state(
    site: tuple[Owner, Proxy, Server],
) -> None:
    owner, forwarder, server = site
    # given a private dataset's download link
    link = owner.publish_private_dataset().download_url
    # when the database is out of reach
    forwarder.stop()
    try:
        answers = [httpx.request(method, link, timeout=30) for method in ("GET", "HEAD")]
    finally:
        forwarder.start()
    # then the download answers 503 TRY_AGAIN with Retry-After (HEAD as GET)
    for response in answers:
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"]
    assert answers[0].json()["error"] == "TRY_AGAIN"
    # and the server logged it as a busy database, not as an unexpected error
    log = server.log.read_text()
    assert "busy or unreachable" in log
    assert "Exception in ASGI application" not in log, log[-3000:]
