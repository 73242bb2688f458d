"""PostgreSQL restarting under a running ``lorashelf serve``: every request made while the
server shuts down, is away and starts up again answers ``TRY_AGAIN`` (GraphQL) or 503
``TRY_AGAIN`` with ``Retry-After`` (signing in before anything ran), never a 500 or
``INTERNAL_ERROR``; an acknowledged write is kept and a ``TRY_AGAIN`` changed nothing (a
change that committed but could not be read back answers ``RESULT_UNAVAILABLE``)."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import postgres
from tests.processes import Owner, serve, wait_for

pytestmark = pytest.mark.postgres_only(
    reason="restarts the PostgreSQL server under a running serve (SQLite has no server)"
)

CLIENTS = 6
CREATE = (
    "mutation($i: CreateModelInput!) { createModel(input: $i) "
    "{ model { id name } userErrors { code } } }"
)
VIEWER = "{ viewer { username } }"
CATALOGUE = "{ models(first: 5) { edges { node { id name } } } }"
MINE = (
    "query($after: String) { viewer { models(first: 100, after: $after) "
    "{ edges { node { name } } pageInfo { hasNextPage endCursor } } } }"
)


@dataclass
class Answers:
    statuses: Counter[int] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    created: dict[str, set[str]] = field(default_factory=dict)  # token -> names acknowledged
    refused: dict[str, set[str]] = field(default_factory=dict)  # token -> names TRY_AGAIN
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, what: str, response: httpx.Response) -> dict[str, Any] | None:
        try:
            body = response.json()
        except ValueError:
            body = None
        with self.lock:
            self.statuses[response.status_code] += 1
            if response.status_code >= 500 and response.status_code != 503:
                self.failures.append(f"{what}: HTTP {response.status_code} {response.text[:300]}")
            if not isinstance(body, dict):
                self.failures.append(f"{what}: not JSON: {response.text[:300]}")
                return None
            if response.status_code == 503 and response.headers.get("retry-after") is None:
                self.failures.append(f"{what}: 503 without Retry-After")
            for error in body.get("errors") or []:
                code = (error.get("extensions") or {}).get("code", "GRAPHQL_ERROR")
                self.codes[code] += 1
                if code not in ("TRY_AGAIN", "RESULT_UNAVAILABLE"):
                    self.failures.append(f"{what}: {error}")
        return body


def client(url: str, token: str, answers: Answers, stop: threading.Event, seed: int) -> None:
    names = (f"Restart {seed}-{n}" for n in itertools.count())
    with httpx.Client(timeout=30) as http:
        signed_in = {"authorization": f"Bearer {token}"}
        while not stop.is_set():
            for query, headers in ((VIEWER, signed_in), (CATALOGUE, {})):
                response = http.post(f"{url}/graphql", json={"query": query}, headers=headers)
                answers.record(query, response)
            name = next(names)
            response = http.post(
                f"{url}/graphql",
                json={"query": CREATE, "variables": {"i": {"name": name, "description": "x"}}},
                headers=signed_in,
            )
            body = answers.record("createModel", response)
            payload = ((body or {}).get("data") or {}).get("createModel")
            if payload is None:  # answered at the edge (signing in, say): counted above
                edge = [
                    (e.get("extensions") or {}).get("code")
                    for e in (body or {}).get("errors") or []
                ]
                if edge == ["TRY_AGAIN"]:  # "nothing was changed", so it must not exist
                    with answers.lock:
                        answers.refused.setdefault(token, set()).add(name)
                continue
            codes = [error["code"] for error in payload["userErrors"]]
            with answers.lock:
                answers.codes.update(codes)
                if not codes and payload["model"]["name"] == name:
                    answers.created.setdefault(token, set()).add(name)
                elif codes == ["TRY_AGAIN"]:
                    answers.refused.setdefault(token, set()).add(name)
                elif codes != ["RESULT_UNAVAILABLE"]:  # committed, not read back: allowed
                    answers.failures.append(f"createModel: {payload}")


def names_of(owner: Owner) -> set[str]:
    """Every model the owner has, page by page."""
    names: set[str] = set()
    after = None
    while True:
        page = owner.gql(MINE, {"after": after})["viewer"]["models"]
        names.update(edge["node"]["name"] for edge in page["edges"])
        if not page["pageInfo"]["hasNextPage"]:
            return names
        after = page["pageInfo"]["endCursor"]


def test_requests_during_postgresql_restarts_answer_try_again_and_lose_nothing(
    tmp_path: Path,
) -> None:
    with postgres.cluster() as cluster:
        env = {
            "LORASHELF_DATA_DIR": str(tmp_path / "var"),
            "LORASHELF_DATABASE_URL": cluster.url(cluster.new_database()),
            "LORASHELF_MAX_MODELS_PER_USER": "100000",  # every client writes all the time
        }
        with serve(env, cwd=tmp_path) as server:
            owners = [Owner.sign_up(server.url) for _ in range(CLIENTS)]
            answers = Answers()
            stop = threading.Event()
            threads = [
                threading.Thread(target=client, args=(server.url, o.token, answers, stop, i))
                for i, o in enumerate(owners)
            ]
            # given clients signing in, reading and writing all the time
            for thread in threads:
                thread.start()
            time.sleep(1.5)
            # when PostgreSQL shuts down fast (sessions end with admin_shutdown), stays away,
            # comes back, and then once more with hardly a pause
            cluster.restart(down_for=3)
            time.sleep(2)
            cluster.restart(down_for=0.2)
            time.sleep(2)
            stop.set()
            for thread in threads:
                thread.join(60)
            assert not any(thread.is_alive() for thread in threads), "a client hung"
            print(f"[restart] statuses {dict(answers.statuses)}, codes {dict(answers.codes)}")

            # then nothing answered 500 or INTERNAL_ERROR, and the outage was seen as TRY_AGAIN
            assert answers.failures == [], answers.failures[:10]
            assert answers.codes["TRY_AGAIN"] > 0, "no request met the restart"
            # and the server works again for everybody
            wait_for(lambda: owners[0].gql(VIEWER)["viewer"] is not None, timeout=15)
            # and every acknowledged model is there, and none refused with TRY_AGAIN (by the
            # mutation or at the edge) was made after all
            for owner in owners:
                have = names_of(owner)
                assert answers.created.get(owner.token, set()) <= have
                assert not answers.refused.get(owner.token, set()) & have
            assert sum(len(names) for names in answers.created.values()) > CLIENTS
