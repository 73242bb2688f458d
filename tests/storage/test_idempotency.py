"""Idempotency keys where time and crashes matter: a claim whose holder died is taken
over only if it had not acted, the mark stops a request whose claim was taken over, and
keys are forgotten after 24 hours. (The whole flow against a real server:
tests/graph/test_idempotency_e2e.py.)"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from jobs.tasks import sweep
from storage import changes, idempotency
from storage.db.models import IdempotencyKey, User
from tests.conftest import MutableClock

pytestmark = pytest.mark.usefixtures("database")


def request(user_id: int, key: str = "k-1", body: str = "createModel") -> idempotency.Request:
    keys = idempotency.Keys("a secret of sixteen characters or more")
    canonical = idempotency.canonical_request(body, {"i": {"name": "Cats"}}, None)
    return idempotency.Request(keys, f"user:{user_id}", user_id, key, canonical)


async def alice(clock: MutableClock) -> int:
    user = await User.create(username="alice", password_hash="x", created_at=clock.now())
    return int(user.id)


async def test_a_dead_holders_claim_is_taken_over_unless_it_acted(clock: MutableClock) -> None:
    user = await alice(clock)
    # given two requests that claimed their keys, one of which made its change
    idle = await idempotency.claim(request(user, "idle"), now=clock.now())
    acted = await idempotency.claim(request(user, "acted"), now=clock.now())
    assert isinstance(idle, idempotency.Claim) and isinstance(acted, idempotency.Claim)
    token = idempotency.current.set(acted)
    try:
        async with changes.transaction(clock.now(), public=False):
            pass
    finally:
        idempotency.current.reset(token)
    # then while their holder may still be at work, a retry is told to wait
    for key in ("idle", "acted"):
        assert isinstance(
            await idempotency.claim(request(user, key), now=clock.now()), idempotency.InUse
        )
    # when their holder stops answering for longer than the lease
    clock.advance(idempotency.LEASE.total_seconds() + 1)
    # then the claim that did nothing is taken over (running it again is safe)
    again = await idempotency.claim(request(user, "idle"), now=clock.now())
    assert isinstance(again, idempotency.Claim) and again.id == idle.id
    # and the one that acted is never run again: its answer is said to be lost
    assert isinstance(
        await idempotency.claim(request(user, "acted"), now=clock.now()), idempotency.Lost
    )
    # and the request whose claim was taken over cannot commit a change any more
    token = idempotency.current.set(idle)
    try:
        with pytest.raises(idempotency.KeyTakenOver):
            async with changes.transaction(clock.now(), public=False):
                await User.filter(id=user).update(username="mallory")
    finally:
        idempotency.current.reset(token)
    assert (await User.get(id=user)).username == "alice"  # rolled back with it


async def test_a_try_again_answer_releases_the_key_and_a_final_one_is_kept(
    clock: MutableClock,
) -> None:
    user = await alice(clock)
    # given a claimed key whose request changed nothing and was told to try again
    req = request(user)
    held = await idempotency.claim(req, now=clock.now())
    assert isinstance(held, idempotency.Claim)
    busy = b'{"data":{"createModel":{"userErrors":[{"code":"TRY_AGAIN"}]}}}'
    await idempotency.settle(req, held, status=200, body=busy)
    # then the key is free again: the retry runs
    retry = await idempotency.claim(req, now=clock.now())
    assert isinstance(retry, idempotency.Claim)
    # and a final answer is kept, sealed, and replayed byte for byte
    done = b'{"data":{"createModel":{"model":{"id":"x"},"userErrors":[]}}}'
    await idempotency.settle(req, retry, status=200, body=done)
    replay = await idempotency.claim(req, now=clock.now())
    assert replay == idempotency.Replay(200, done)
    row = await IdempotencyKey.get(id=retry.id)
    assert row.answer is not None and done not in bytes(row.answer)
    assert req.key not in row.lookup
    # and another request under the key is refused
    other = request(user, body="deleteModel")
    assert isinstance(await idempotency.claim(other, now=clock.now()), idempotency.Reused)


async def test_keys_are_forgotten_after_a_day(clock: MutableClock, ctx: dict[str, Any]) -> None:
    user = await alice(clock)
    req = request(user)
    held = await idempotency.claim(req, now=clock.now())
    assert isinstance(held, idempotency.Claim)
    await idempotency.settle(req, held, status=200, body=b'{"data":{}}')
    # when a day has passed, the sweep forgets the key
    clock.advance(timedelta(hours=24).total_seconds() + 1)
    counts = await sweep(ctx)
    assert counts.get("idempotency_keys_forgotten") == 1
    assert await IdempotencyKey.filter(id=held.id).count() == 0
    # and the same key acts anew
    assert isinstance(await idempotency.claim(req, now=clock.now()), idempotency.Claim)


async def test_the_edge_sees_a_commit_made_inside_a_mutations_own_watch(
    clock: MutableClock,
) -> None:
    user = await alice(clock)

    async def mutation(name: str) -> bool:  # as the mutation base watches its resolver
        with changes.watch() as own:
            async with changes.transaction(clock.now(), public=False):
                await User.filter(id=user).update(username=name)
        return own.committed

    # given a request watched at the edge, whose mutation runs in a task of its own
    # (as graphql-core runs sibling fields) and watches its own change
    with changes.watch() as edge:
        assert edge.committed is False
        # when the mutation commits
        assert await asyncio.create_task(mutation("alice2")) is True
        # then the edge knows a change of this request committed (a failure after it
        # must not say "nothing was changed")
        assert edge.committed is True
    # and a block in which nothing commits says so
    with changes.watch() as quiet:
        await User.filter(id=user).count()
    assert quiet.committed is False
