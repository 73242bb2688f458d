"""``Idempotency-Key`` against a real server, by httpx over TCP: a retried mutation acts
once and gets its first answer byte for byte; another request under a used key is
refused; duplicates sent at the same moment act once; a busy database never answers
"nothing was changed" after a change committed."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from storage.config.settings import Settings
from tests.conftest import database_contents
from tests.processes import Owner, serve

CREATE = (
    "mutation($i: CreateModelInput!) { createModel(input: $i) "
    "{ model { id name } userErrors { code message } } }"
)
SIGN_UP = (
    "mutation($i: SignUpInput!) { signUp(input: $i) { token user { id } userErrors { code } } }"
)
MY_MODELS = "{ viewer { models(first: 100) { edges { node { id name } } } } }"


def post(
    url: str,
    query: str,
    variables: dict[str, Any],
    *,
    token: str | None = None,
    key: str | None = None,
) -> httpx.Response:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if key is not None:
        headers["Idempotency-Key"] = key
    return httpx.post(
        f"{url}/graphql",
        json={"query": query, "variables": variables},
        headers=headers,
        timeout=30,
    )


def model_names(owner: Owner) -> list[str]:
    edges = owner.gql(MY_MODELS)["viewer"]["models"]["edges"]
    return sorted(e["node"]["name"] for e in edges)


def test_a_retried_mutation_acts_once_and_gets_its_first_answer(tmp_path: Path) -> None:
    with serve({"LORASHELF_DATA_DIR": str(tmp_path / "var")}, cwd=tmp_path) as server:
        alice, bob = Owner.sign_up(server.url, "alice"), Owner.sign_up(server.url, "bob")
        key = str(uuid.uuid4())
        cats = {"i": {"name": "Cats", "description": "a LoRA"}}
        # when alice sends createModel twice with the same key
        first = post(server.url, CREATE, cats, token=alice.token, key=key)
        again = post(server.url, CREATE, cats, token=alice.token, key=key)
        # then one model is made, and the retry gets the first answer byte for byte
        assert first.status_code == again.status_code == 200
        assert first.json()["data"]["createModel"]["userErrors"] == []
        assert again.content == first.content
        assert again.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        assert model_names(alice) == ["Cats"]
        # and the same request with the variables' keys in another order is the same
        reordered = httpx.post(
            f"{server.url}/graphql",
            content=json.dumps(
                {"variables": {"i": {"description": "a LoRA", "name": "Cats"}}, "query": CREATE}
            ),
            headers={
                "Authorization": f"Bearer {alice.token}",
                "Idempotency-Key": key,
                "Content-Type": "application/json",
            },
        )
        assert reordered.content == first.content
        # and another request under the used key is refused, changing nothing
        dogs = post(server.url, CREATE, {"i": {"name": "Dogs"}}, token=alice.token, key=key)
        assert dogs.status_code == 422
        (error,) = dogs.json()["errors"]
        assert error["extensions"]["code"] == "IDEMPOTENCY_KEY_REUSED"
        assert model_names(alice) == ["Cats"]
        # and the key is alice's: bob's request with the same key acts for bob
        bobs = post(server.url, CREATE, cats, token=bob.token, key=key)
        assert bobs.json()["data"]["createModel"]["userErrors"] == []
        assert bobs.content != first.content
        assert model_names(bob) == ["Cats"]
        # and a query ignores the header (it changes nothing)
        viewer = {"query": "{ viewer { username } }"}
        for _ in range(2):
            read = httpx.post(
                f"{server.url}/graphql",
                json=viewer,
                headers={"Authorization": f"Bearer {alice.token}", "Idempotency-Key": key},
            )
            assert read.json() == {"data": {"viewer": {"username": "alice"}}}
            assert "idempotent-replayed" not in read.headers
        # and a key that is not 1-255 visible ASCII characters is refused before anything
        long = post(server.url, CREATE, cats, token=alice.token, key="x" * 256)
        assert long.status_code == 400
        assert long.json()["errors"][0]["extensions"]["code"] == "INVALID_IDEMPOTENCY_KEY"
        assert model_names(alice) == ["Cats"]


def test_an_anonymous_sign_up_is_keyed_by_address(tmp_path: Path, settings: Settings) -> None:
    with serve({"LORASHELF_DATA_DIR": str(tmp_path / "var")}, cwd=tmp_path) as server:
        key = str(uuid.uuid4())
        carol = {"i": {"username": "carol", "password": "correct horse battery"}}
        # when an anonymous client sends signUp twice with one key (the answer lost, say)
        first = post(server.url, SIGN_UP, carol, key=key)
        again = post(server.url, SIGN_UP, carol, key=key)
        # then the account is made once, and the retry gets the same token back
        signed = first.json()["data"]["signUp"]
        assert signed["userErrors"] == [] and signed["token"]
        assert again.content == first.content
        assert again.headers["idempotent-replayed"] == "true"
        me = post(server.url, "{ viewer { username } }", {}, token=signed["token"])
        assert me.json() == {"data": {"viewer": {"username": "carol"}}}
        # and another sign-up under that key is refused
        dave = {"i": {"username": "dave", "password": "correct horse battery"}}
        assert post(server.url, SIGN_UP, dave, key=key).status_code == 422
        # and the stored answer holds no readable token: nothing in the database does
        assert signed["token"].encode() not in database_contents(settings)


def test_duplicates_sent_together_act_once(tmp_path: Path) -> None:
    with serve({"LORASHELF_DATA_DIR": str(tmp_path / "var")}, cwd=tmp_path) as server:
        alice = Owner.sign_up(server.url, "alice")
        key = str(uuid.uuid4())
        cats = {"i": {"name": "Cats", "description": "a LoRA"}}
        answers: list[httpx.Response] = []
        start = threading.Barrier(8)

        def send() -> None:
            start.wait()
            answers.append(post(server.url, CREATE, cats, token=alice.token, key=key))

        # when eight copies of one request arrive at once
        threads = [threading.Thread(target=send) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        # then one acted; the others got its answer, or were told to retry in a moment
        statuses = Counter(a.status_code for a in answers)
        assert set(statuses) <= {200, 409}, statuses
        for answer in answers:
            if answer.status_code == 409:
                assert answer.json()["errors"][0]["extensions"]["code"] == (
                    "IDEMPOTENCY_KEY_IN_USE"
                )
                assert answer.headers["retry-after"] == "1"
        bodies = {a.content for a in answers if a.status_code == 200}
        assert len(bodies) == 1
        # and a retry after them all gets the one answer
        assert post(server.url, CREATE, cats, token=alice.token, key=key).content in bodies
        assert model_names(alice) == ["Cats"]


# A busy database ------------------------------------------------------------------

BUSY = "1s"  # LORASHELF_DATABASE_BUSY_TIMEOUT: a write waits this long, then TRY_AGAIN
# On PostgreSQL, what the lock holder takes: the tables a model's creation writes, in a
# mode that lets reads through (as SQLite's write lock does).
PG_TABLES = "users, lora_models, model_tags, public_generation, idempotency_keys"


class LockHolder:
    """Another process's writer: holds the database's write lock (SQLite: BEGIN
    IMMEDIATE; PostgreSQL: the tables locked EXCLUSIVE) for ``hold`` seconds, lets go for
    ``gap`` seconds, again and again until stopped (``hold=None``: until released)."""

    def __init__(self, database: str, *, hold: float | None, gap: float = 0.0):
        self.database, self.hold, self.gap = database, hold, gap
        self.stopped = threading.Event()
        self.holding = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LockHolder:
        self.thread.start()
        assert self.holding.wait(10), "the lock was not taken"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(30)

    def _run(self) -> None:
        if self.database.startswith("sqlite://"):
            self._sqlite(self.database.removeprefix("sqlite://"))
        else:
            asyncio.run(self._postgres())

    def _pause(self, seconds: float | None) -> None:
        self.stopped.wait(seconds)

    def _sqlite(self, path: str) -> None:
        connection = sqlite3.connect(path, timeout=60, isolation_level=None)
        try:
            while not self.stopped.is_set():
                connection.execute("BEGIN IMMEDIATE")
                self.holding.set()
                self._pause(self.hold)
                connection.execute("ROLLBACK")
                self._pause(self.gap)
        finally:
            connection.close()

    async def _postgres(self) -> None:
        import asyncpg

        connection = await asyncpg.connect(self.database)
        try:
            while not self.stopped.is_set():
                async with connection.transaction():
                    await connection.execute(f"LOCK TABLE {PG_TABLES} IN EXCLUSIVE MODE")
                    self.holding.set()
                    await asyncio.to_thread(self._pause, self.hold)
                await asyncio.to_thread(self._pause, self.gap)
        finally:
            await connection.close()


def try_again(answer: httpx.Response) -> bool:
    """Told that nothing was changed: by the key's claim (503) or by the mutation."""
    if answer.status_code == 503:
        return bool(answer.json()["errors"][0]["extensions"]["code"] == "TRY_AGAIN")
    errors = answer.json()["data"]["createModel"]["userErrors"]
    return [e["code"] for e in errors] == ["TRY_AGAIN"]


def test_a_busy_database_never_answers_try_again_after_a_commit(
    tmp_path: Path, settings: Settings
) -> None:
    env = {
        "LORASHELF_DATA_DIR": str(tmp_path / "var"),
        "LORASHELF_DATABASE_BUSY_TIMEOUT": BUSY,
        # she writes for as long as the lock comes and goes: as many models as the
        # machine's speed allows, not the 100 an account may keep by default
        "LORASHELF_MAX_MODELS_PER_USER": "100000",
    }
    with serve(env, cwd=tmp_path) as server:
        alice = Owner.sign_up(server.url, "alice")
        database = settings.database_url
        key = str(uuid.uuid4())
        cats = {"i": {"name": "keyed-cats", "description": "a LoRA"}}

        # given another process holding the write lock past the busy timeout
        with LockHolder(database, hold=None):
            # when alice creates a model with a key
            refused = post(server.url, CREATE, cats, token=alice.token, key=key)
            # then she is told to try again, and nothing was made
            assert try_again(refused), refused.text
            assert model_names(alice) == []
        # when she retries with the same key once the lock is gone
        made = post(server.url, CREATE, cats, token=alice.token, key=key)
        again = post(server.url, CREATE, cats, token=alice.token, key=key)
        # then the model is made once, and the retry gets that answer
        assert made.json()["data"]["createModel"]["userErrors"] == []
        assert again.content == made.content
        assert model_names(alice) == ["keyed-cats"]

        # given the lock taken and given back again and again, writers queueing for it
        made_without_key: list[str] = []
        refused_without_key = 0
        keyed: dict[str, bytes] = {}
        deadline = time.monotonic() + 12
        failures: list[str] = []
        lock = threading.Lock()

        def without_key(worker: int) -> None:
            nonlocal refused_without_key
            n = 0
            while time.monotonic() < deadline:
                n += 1
                name = f"free-{worker}-{n}"
                answer = post(server.url, CREATE, {"i": {"name": name}}, token=alice.token)
                with lock:
                    if try_again(answer):
                        refused_without_key += 1
                    elif answer.json()["data"]["createModel"]["userErrors"] == []:
                        made_without_key.append(name)
                    else:
                        failures.append(answer.text)

        def with_keys() -> None:
            n = 0
            while time.monotonic() < deadline:
                n += 1
                key, name = str(uuid.uuid4()), f"keyed-{n}"
                for _ in range(100):  # retried with its key until it is not "try again"
                    answer = post(
                        server.url, CREATE, {"i": {"name": name}}, token=alice.token, key=key
                    )
                    if answer.status_code == 409 or try_again(answer):
                        continue
                    if answer.json()["data"]["createModel"]["userErrors"] != []:
                        failures.append(answer.text)
                    keyed[name] = answer.content
                    break

        with LockHolder(database, hold=1.2, gap=0.2):
            # when alice creates models, some with keys retried until done, some without
            threads = [threading.Thread(target=without_key, args=(w,)) for w in range(3)]
            threads.append(threading.Thread(target=with_keys))
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)

        # then every answer was a model made, or "try again" with nothing made: the
        # models are exactly those answered as made (none behind a "try again")
        assert failures == []
        assert refused_without_key > 0, "the database was never busy"
        names = model_names(alice)
        assert sorted(n for n in names if n.startswith("free-")) == sorted(made_without_key)
        # and each key made its model once, whatever its retries met
        assert sorted(n for n in names if n.startswith("keyed-")) == sorted(["keyed-cats", *keyed])
        print(
            f"[busy] made {len(made_without_key)}, told to try again {refused_without_key}, "
            f"keyed {len(keyed)}"
        )
