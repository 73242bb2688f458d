"""The public generation: one counter, in the database, that every write which can
change what anonymous viewers see moves on. Answers cached for anonymous viewers
(graph/http/cache.py) are tagged with the value they were computed under and are never
served under another, in any process: the database is the one place they all read.

Only a change anonymous viewers can see moves it (storage/changes.py: the service
says so, from ``storage.privacy.lookups.seen_by_anybody``), in that change's own
transaction; private work never does, or a cache miss would tell an observer that
someone did something private just now.

Where it is kept:

- SQLite: one row (``public_generation``), incremented in the change's transaction.
  SQLite has one writer at a time anyway, and readers see the row as committed.
- PostgreSQL: a sequence (``public_generation_seq``, migration 0015), so that public
  changes made at the same time never queue behind one row's lock: ``nextval`` never
  blocks. But a sequence is not transactional: its value moves when the change takes
  it, before the change commits (and changes commit in any order). So a change holds
  a *shared* advisory lock (shared with every other change: nobody waits) from before
  it takes its value until it commits or rolls back, and a reader reads the sequence
  first, then whether any such lock is held (one statement). If none is, every change
  that took a value up to the one read had ended before the reader looked, so an answer
  computed afterwards includes all of them: the value is settled. If one is, the value is not
  settled: the reader gets a number of its own (negative, never read again), under
  which no answer computed now is ever reused once the value is read again.
"""

from __future__ import annotations

import itertools

from tortoise import connections
from tortoise.expressions import F

from storage.db.models import PublicGeneration

ROW = 1
SEQUENCE = "public_generation_seq"
# The shared advisory lock a public change holds on PostgreSQL (two keys: "lora", 1;
# the migrations' lock is the single key "lora", another lock).
LOCK = (0x6C6F7261, 1)

_TAKE = (
    "WITH locked AS MATERIALIZED (SELECT pg_advisory_xact_lock_shared($1, $2)) "
    f"SELECT nextval('{SEQUENCE}') FROM locked"
)
# One statement, in this order: the sequence (a materialized CTE, read first), then
# the locks (a subquery correlated with its row, so evaluated only once the row is read).
_READ = (
    "WITH generation AS MATERIALIZED (SELECT CASE WHEN is_called THEN last_value "
    f"ELSE last_value - 1 END AS value FROM {SEQUENCE}) "
    "SELECT generation.value, EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 2 "
    "AND generation.value IS NOT NULL) FROM generation"
)
_unsettled = itertools.count(-2, -1)  # this process's numbers for unsettled reads


def _postgres() -> bool:
    dialect: str = connections.get("default").capabilities.dialect
    return dialect != "sqlite"


async def current() -> int:
    """The generation now (0 before the first public change), or, on PostgreSQL while a
    public change is being made, a number read nowhere else (see the module's text)."""
    if _postgres():
        _, rows = await connections.get("default").execute_query(_READ, list(LOCK))
        value, in_flight = rows[0]
        return next(_unsettled) if in_flight else int(value)
    row = await PublicGeneration.get_or_none(id=ROW)
    return row.value if row is not None else 0


async def advance() -> int:
    """Move the generation on (inside a public change's transaction); its new value."""
    if _postgres():
        _, rows = await connections.get("default").execute_query(_TAKE, list(LOCK))
        return int(rows[0][0])
    updated = await PublicGeneration.filter(id=ROW).update(value=F("value") + 1)
    if not updated:
        await PublicGeneration.get_or_create(id=ROW, defaults={"value": 0})
        await PublicGeneration.filter(id=ROW).update(value=F("value") + 1)
    return await current()
