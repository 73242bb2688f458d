"""storage/db/postgresql.py: a transaction gives back the connection it took and the task's
own client on every exit, when PostgreSQL closes the connection just after a ``COMMIT``
(shutting down during it) and when a ``BEGIN`` never ends (the request is cancelled)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from asyncpg.transaction import Transaction
from tortoise import connections

from storage import changes
from storage.db.models import User
from tests.conftest import Api, MutableClock

pytestmark = pytest.mark.postgres_only(
    reason="the asyncpg pool and its transactions exist on PostgreSQL only"
)


async def test_a_commit_whose_connection_closes_on_its_way_back_is_learnt_and_the_task_goes_on(
    api: Api, clock: MutableClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a user
    await api.sign_up("alice")
    alice = await User.get(username="alice")
    # and PostgreSQL closing the connection of a change just after its COMMIT (a fast
    # shutdown during the commit): asyncpg's reset, as the connection goes back to the
    # pool, finds it closed
    real_reset = asyncpg.Connection.reset
    closed: list[object] = []

    async def reset(self: asyncpg.Connection, *, timeout: float | None = None) -> None:
        if not closed:
            closed.append(self)
            raise asyncpg.exceptions.ConnectionDoesNotExistError(
                "connection was closed in the middle of operation: terminating connection "
                "due to administrator command"
            )
        await real_reset(self, timeout=timeout)

    monkeypatch.setattr(asyncpg.Connection, "reset", reset)

    # when the change commits
    async with changes.transaction(clock.now(), public=False):
        await User.filter(id=alice.id).update(password_hash="changed")

    # then it ended as a committed change (its outcome learnt, not OUTCOME_UNKNOWN)
    assert closed, "the connection was never given back"
    # and the task has its own client again: its next reads and changes work
    assert type(connections.get("default")).__name__ == "RestoringAsyncpgClient"
    assert (await User.get(id=alice.id)).password_hash == "changed"
    async with changes.transaction(clock.now(), public=False):
        await User.filter(id=alice.id).update(password_hash="again")
    assert (await User.get(id=alice.id)).password_hash == "again"


async def test_begins_cancelled_one_after_another_never_empty_the_pool(
    api: Api, clock: MutableClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a user
    await api.sign_up("bob")
    bob = await User.get(username="bob")
    pool_size = connections.get("default")._pool.get_max_size()
    # and a server that does not answer BEGIN while it is stalled (asyncpg marks the
    # connection's transaction, then waits for the answer)
    stalled = True
    real_start = Transaction.start
    started = asyncio.Event()

    async def start(self: Transaction) -> Any:
        if stalled:
            self._connection._top_xact = self
            started.set()
            await asyncio.Event().wait()  # never answered
        return await real_start(self)

    monkeypatch.setattr(Transaction, "start", start)
    # and what the event loop is told of (asyncpg reports a connection reset with a
    # transaction nobody closed there, logged at ERROR)
    reported: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: reported.append(context))

    async def change() -> None:
        async with changes.transaction(clock.now(), public=False):
            await User.filter(id=bob.id).update(password_hash="changed")

    # when more requests than the pool holds are cancelled while their BEGIN waits
    for _ in range(pool_size + 2):
        started.clear()
        request = asyncio.create_task(change())
        await asyncio.wait_for(started.wait(), timeout=10)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
    # then the server answering again, a change gets a connection and commits
    stalled = False
    await asyncio.wait_for(change(), timeout=10)
    assert (await User.get(id=bob.id)).password_hash == "changed"
    # and no connection is left taken
    pool = connections.get("default")._pool
    assert pool.get_idle_size() == pool.get_size(), "a connection was never given back"
    # and nothing was reported as an error: a cancelled request is no fault
    loop.set_exception_handler(None)
    assert reported == [], [c.get("message") for c in reported]
