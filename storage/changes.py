"""A change, as every service makes one: everything it says commits with it, and
nothing after the commit can turn its answer into a failure.

A service makes its change in :func:`transaction` (Tortoise's ``in_transaction``, plus
what commits with every change): the public generation moves on with it when
anonymous viewers could see the difference (so no cached anonymous answer outlives it,
storage/db/public_generation.py), and the request's idempotency claim records that it
acted (storage/idempotency.py). Both commit or roll back with the change itself: no
second write can fail afterwards.

After the commit, the service's follow-up work (telling the scheduler and the live
subscribers, finishing a deletion whose claim committed, re-reading what it returns)
runs through :func:`after_commit` and :func:`reread`: best effort, logged when it
fails, never an error answer. The change happened; what was not done now is done by
the sweep (stuck claims, due work) or at the next read.

:func:`watch` lets the API's mutation base know whether a change committed while it
ran: a failure after that is reported as such (``RESULT_UNAVAILABLE``), never as
"nothing was changed" (``TRY_AGAIN``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from tortoise.models import Model
from tortoise.transactions import in_transaction

from storage import idempotency
from storage.db import commit_outcome, public_generation
from storage.errors import ServiceError, retryable

log = logging.getLogger("lorashelf.changes")

T = TypeVar("T")
M = TypeVar("M", bound=Model)


@dataclass
class Watched:
    """What :func:`watch` saw: whether a change committed, and whether one that
    committed was public (moved the public generation)."""

    committed: bool = False
    public: bool = False
    depth: int = 0
    public_pending: bool = False  # a public change in the transaction not yet committed


_watched: ContextVar[Watched | None] = ContextVar("lorashelf_changes_watched", default=None)


@contextmanager
def watch() -> Iterator[Watched]:
    """Note whether a change commits within the block (in this task and the tasks it
    starts). Blocks nest: a commit seen by an inner block is seen by the outer one too
    (the edge watches the whole request, each mutation its own resolver)."""
    outer = _watched.get()
    watched = Watched()
    token = _watched.set(watched)
    try:
        yield watched
    finally:
        _watched.reset(token)
        if outer is not None and watched.committed:
            outer.committed = True
        if outer is not None and watched.public:
            outer.public = True


@dataclass
class Change:
    """The change being made in :func:`transaction`: ``public`` may be settled inside
    the block (a change that makes something visible is public once it is)."""

    public: bool


@asynccontextmanager
async def transaction(now: datetime, *, public: bool) -> AsyncIterator[Change]:
    """The transaction of a change made ``now``. ``public``: whether anonymous viewers
        could see it (their cached answers then end with it), found with
        ``storage.privacy.lookups.seen_by_anybody`` before the change and, where the change
        can make something visible, after it (``change.public`` set inside the block):
        private work never moves the generation, or a cache miss would tell an observer
        that someone did something private just now. The block's exceptions roll it back.

    A commit whose answer is lost with the connection (PostgreSQL shutting down during
    it) is looked up: if it committed, the block ends as after any commit; if that cannot
    be learnt in time, ``CommitOutcomeUnknown`` (``OUTCOME_UNKNOWN``: it may have been
    made), never "nothing was changed"."""
    watched = _watched.get()
    if watched is not None:
        watched.depth += 1
    change = Change(public)
    xid: str | None = None
    committing = False
    try:
        try:
            async with in_transaction() as connection:
                yield change
                if change.public:
                    await public_generation.advance()
                    if watched is not None:
                        watched.public_pending = True
                await idempotency.acted(now)
                xid = await commit_outcome.remember(connection)
                committing = True
        except Exception as exc:
            # A COMMIT whose answer was lost with the connection may have committed:
            # ask the database (storage/db/commit_outcome.py) rather than guess.
            if not (committing and commit_outcome.lost(xid, exc)):
                raise
            assert xid is not None
            if not await commit_outcome.learn(xid, exc):
                raise
        if watched is not None and watched.depth == 1:
            watched.committed = True
            watched.public = watched.public or watched.public_pending
    finally:
        if watched is not None:
            watched.depth -= 1
            if watched.depth == 0:
                watched.public_pending = False


class ResultUnavailable(ServiceError):
    """The change committed, then something failed: say so, never "nothing changed"."""

    code = "RESULT_UNAVAILABLE"

    def __init__(self) -> None:
        super().__init__(
            "The change was made, but its result could not be read back: query it to "
            "see it (do not send the change again)."
        )


async def after_commit(what: str, work: Awaitable[T]) -> T | None:
    """Follow-up work of a committed change: its result, or None (logged) if it failed.
    The change stands either way; the sweep finishes what this did not."""
    try:
        return await work
    except Exception as exc:  # noqa: BLE001 - after a commit, nothing is an error answer
        # a dependency busy or away is an expected state: one line; anything else with
        # its traceback
        log.warning(
            "after a committed change: %s failed%s; the sweep catches up",
            what,
            f" ({exc})" if retryable(exc) else "",
            exc_info=not retryable(exc),
        )
        return None


async def reread(row: M) -> M:
    """``row`` as the database has it now (what a mutation answers with); the row in
    hand if the read fails."""
    fresh = await after_commit(f"re-reading {type(row).__name__} {row.pk}", _fetch(row))
    return fresh if fresh is not None else row


async def _fetch(row: M) -> M:
    fresh = await type(row).get_or_none(pk=row.pk)
    return fresh if fresh is not None else row


# Work handed to a task of its own ------------------------------------------------

PATIENCE = 120.0  # seconds follow-up work that keeps failing is retried by its process
_tasks: set[asyncio.Future[None]] = set()


def in_background(what: str, work: Awaitable[object]) -> None:
    """Follow-up work no answer waits for (an answer must never wait on the object
    store, say): run in a task of its own, logged if it fails; the sweep finishes
    what it did not."""

    async def run() -> None:
        await after_commit(what, work)

    _spawn(run(), what)


def keep_trying(what: str, attempt: Callable[[], Awaitable[object]]) -> None:
    """Retry ``attempt`` in a task of its own, with a short back-off (0.1 s doubling to
    1 s), until it returns without raising or :data:`PATIENCE` has passed (then the
    sweep's rules take over): for releasing what a failed request held as soon as the
    database is back, rather than when the sweep judges it abandoned."""

    async def run() -> None:
        waited, pause = 0.0, 0.1
        while waited < PATIENCE:
            await asyncio.sleep(pause)
            waited += pause
            pause = min(pause * 2, 1.0)
            try:
                await attempt()
            except Exception:  # noqa: BLE001 - still failing: wait on
                continue
            log.info("%s: done after %.1f s", what, waited)
            return
        log.warning("%s: still failing after %.0f s; left to the sweep", what, PATIENCE)

    _spawn(run(), what)


def _spawn(work: Coroutine[object, object, None], what: str) -> None:
    hold(asyncio.get_running_loop().create_task(work, name=f"lorashelf: {what}"))


def hold(task: asyncio.Future[None]) -> None:
    """Keep a task alive until it is done (the event loop holds only weak references)."""
    if not task.done():
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)
