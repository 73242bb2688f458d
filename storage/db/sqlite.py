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

from tortoise.backends.base.client import TransactionalDBClient, TransactionContext
from tortoise.backends.sqlite.client import (
    SqliteClient,
    SqliteTransactionContext,
    SqliteTransactionWrapper,
)
from tortoise.connection import get_connections
from tortoise.exceptions import OperationalError

BUSY_TIMEOUT_MS = 15_000  # a write waits this long for another process's (by default)


class ImmediateTransactionWrapper(SqliteTransactionWrapper):  # type: ignore[misc]
    async def begin(self) -> None:
        try:
            await self._connection.commit()
            await self._connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:  # busy past the timeout: try again later
            raise OperationalError(exc) from exc


class ImmediateTransactionContext(SqliteTransactionContext):  # type: ignore[misc]
    """Tortoise's context, except that a ``BEGIN`` that fails (busy past the timeout)
    gives the connection back: Tortoise's keeps the connection's lock (and the
    transaction's connection in the context) when ``begin`` raises, and every later
    transaction of the process waits for ever."""

    async def __aenter__(self) -> TransactionalDBClient:
        await self._trxlock.acquire()
        try:
            await self.ensure_connection()
            self.token = get_connections().set(self.connection_name, self.connection)
            try:
                await self.connection.begin()
            except BaseException:
                get_connections().reset(self.token)
                raise
        except BaseException:
            self._trxlock.release()
            raise
        client: TransactionalDBClient = self.connection
        return client


class ImmediateSqliteClient(SqliteClient):  # type: ignore[misc]
    def __init__(self, file_path: str, **kwargs: object) -> None:
        kwargs.setdefault("busy_timeout", BUSY_TIMEOUT_MS)
        # Deleted rows are overwritten with zeros (a destroyed data key, a deleted account)
        kwargs.setdefault("secure_delete", "ON")
        super().__init__(file_path, **kwargs)

    def _in_transaction(self) -> TransactionContext:
        return ImmediateTransactionContext(ImmediateTransactionWrapper(self), self._lock)


client_class = ImmediateSqliteClient
