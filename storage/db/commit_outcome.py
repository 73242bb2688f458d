"""A commit whose answer was lost: whether it committed, asked of the database.

When PostgreSQL shuts down (or the connection breaks) while a ``COMMIT`` is on its way,
the client cannot tell from the error whether the change committed: a backend told to
stop during its commit finishes the commit and then ends the session, so the client
sees "terminating connection due to administrator command" for a change that was made.
Answering "nothing was changed" then is a lie a client acts on (it repeats the change).

So every change on PostgreSQL learns its transaction id before committing (one
``SELECT txid_current()`` in the transaction: :func:`remember`), and when the commit
fails because the connection went (``connection_lost``), :func:`learn` asks the
database, on another connection, what became of that transaction
(``txid_status``, made for this): committed, the change stands and its caller goes on
as after any commit; rolled back, the error stands ("nothing was changed" is true).
While the database is away :func:`learn` waits for it, a bounded while
(:data:`PATIENCE`); past that, :class:`CommitOutcomeUnknown`: the answer says the
change may have been made.

On SQLite a failed ``COMMIT`` never committed (the file is local; a busy ``COMMIT``
leaves the transaction open and it is rolled back), so there is nothing to learn.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tortoise import connections

from storage.db.connection import connection_lost, is_busy, replace_pooled_connections
from storage.errors import ServiceError

log = logging.getLogger("lorashelf.changes")

# Pauses between questions while the database is away: about 10 s in all (a restart
# takes a second or two; a client waits this long for the truth rather than a guess).
PAUSES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
PATIENCE = sum(PAUSES)


class CommitOutcomeUnknown(ServiceError):
    """The database went away while the change was being committed, and did not come
    back in time to say whether it was: it may have been made."""

    code = "OUTCOME_UNKNOWN"

    def __init__(self) -> None:
        super().__init__(
            "The database went away while this change was being committed: it may have "
            "been made. Query to see, or send the same request again with the same "
            "Idempotency-Key (it is never carried out twice)."
        )


async def remember(connection: Any) -> str | None:
    """Inside a change's transaction, just before it commits: its transaction id on
    PostgreSQL (assigning one if the change wrote nothing yet), None on SQLite."""
    if connection.capabilities.dialect == "sqlite":
        return None
    _, rows = await connection.execute_query("SELECT txid_current()::text AS xid")
    return str(rows[0]["xid"])


def lost(xid: str | None, exc: BaseException) -> bool:
    """Whether a failed ``COMMIT`` of transaction ``xid`` may have committed: on
    PostgreSQL, when the connection went rather than the server refusing the commit (a
    serialization failure, a deferred constraint: those roll back)."""
    return xid is not None and connection_lost(exc)


async def learn(xid: str, exc: BaseException) -> bool:
    """Whether transaction ``xid`` committed (True) or rolled back (False), asked on a
    fresh connection, waiting for the database while it is away (at most about
    :data:`PATIENCE` seconds); :class:`CommitOutcomeUnknown` after that."""
    replace_pooled_connections()  # broken by the same loss
    for pause in PAUSES:
        await asyncio.sleep(pause)
        try:
            _, rows = await connections.get("default").execute_query(
                "SELECT txid_status($1::bigint) AS status", [int(xid)]
            )
        except Exception as error:  # noqa: BLE001 - still away: ask again
            if not is_busy(error):
                log.warning("transaction %s: its outcome could not be read", xid, exc_info=error)
                break
            continue
        status = rows[0]["status"]
        if status == "in progress":  # the server has not yet seen the connection go
            continue
        log.warning(
            "transaction %s: the connection went during its commit; it %s",
            xid,
            "committed" if status == "committed" else f"did not commit ({status})",
        )
        return bool(status == "committed")
    log.error("transaction %s: the connection went during its commit; outcome unknown", xid)
    raise CommitOutcomeUnknown() from exc
