"""The SQLite backend, with write transactions that wait their turn.

Tortoise's SQLite client begins transactions as ``BEGIN`` (deferred): a transaction
that reads and then writes asks for the write lock only at its first write, and when
another process wrote in between, SQLite refuses at once ("database is locked") rather
than wait, whatever the busy timeout. Here every transaction begins ``BEGIN IMMEDIATE``:
it takes the write lock first, waiting up to the busy timeout for another process's
write to finish, and then reads and writes without conflict. (Within one process the
client already serialises transactions on its single connection.)

Selected by ``storage.db.connection`` for ``sqlite://`` URLs (``engine: storage.db.sqlite``).
"""

from __future__ import annotations

import sqlite3

from tortoise.backends.base.client import TransactionContext
from tortoise.backends.sqlite.client import (
    SqliteClient,
    SqliteTransactionContext,
    SqliteTransactionWrapper,
)
from tortoise.exceptions import OperationalError

BUSY_TIMEOUT_MS = 15_000  # how long a write waits for another process's write


class ImmediateTransactionWrapper(SqliteTransactionWrapper):  # type: ignore[misc]
    async def begin(self) -> None:
        try:
            await self._connection.commit()
            await self._connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:  # busy past the timeout: try again later
            raise OperationalError(exc) from exc


class ImmediateSqliteClient(SqliteClient):  # type: ignore[misc]
    def __init__(self, file_path: str, **kwargs: object) -> None:
        kwargs.setdefault("busy_timeout", BUSY_TIMEOUT_MS)
        super().__init__(file_path, **kwargs)

    def _in_transaction(self) -> TransactionContext:
        return SqliteTransactionContext(ImmediateTransactionWrapper(self), self._lock)


client_class = ImmediateSqliteClient
