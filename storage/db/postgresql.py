"""The PostgreSQL backend (asyncpg), with transactions that always give back what they took.

Tortoise's pooled transaction takes a connection from the pool, hands the task a
transaction client through a context variable, and at the end commits or rolls back,
gives the connection back and restores the task's client. Two exits skip part of that:

- a ``BEGIN`` that fails (the server shutting down, a cancelled request) keeps the
  connection out of the pool and the transaction client in the task;
- giving the connection back can fail after the ``COMMIT`` (asyncpg resets the
  connection, and a server that shut down during the commit has closed it): the task
  keeps a client whose connection the pool has taken back, so every later query of the
  task fails ("connection has been released back to the pool"). A change whose commit
  answer was lost could then not ask what became of it, and answered ``OUTCOME_UNKNOWN``
  for a change that had committed.

Here both exits restore the task's client, and a failed ``BEGIN`` gives its connection
back. Selected by ``storage.db.connection`` for ``postgres://`` URLs (``engine:
storage.db.postgresql``), as ``storage.db.sqlite`` is for SQLite.
"""

from __future__ import annotations

import contextlib
from typing import Any

from tortoise.backends.asyncpg.client import AsyncpgDBClient, TransactionWrapper
from tortoise.backends.base.client import (
    TransactionalDBClient,
    TransactionContext,
    TransactionContextPooled,
)
from tortoise.connection import get_connections
from tortoise.exceptions import TransactionManagementError


class RestoringTransactionContext(TransactionContextPooled):  # type: ignore[misc]
    """Tortoise's pooled transaction, except that every exit gives the connection back
    and the task its own client again."""

    async def __aenter__(self) -> TransactionalDBClient:
        await self.ensure_connection()
        # the pool the connection goes back to (Tortoise's shutdown may drop the
        # client's reference to it while this transaction is open)
        self.pool = pool = self.client._parent._pool
        self.client._connection = await pool.acquire()
        self.token = get_connections().set(self.connection_name, self.client)
        try:
            await self.client.begin()
        except BaseException:
            get_connections().reset(self.token)
            # asyncpg marked the connection's transaction before sending BEGIN: its
            # reset on release would log "Resetting connection with an active
            # transaction" at ERROR for every cancelled request. Said to be managed, it
            # is rolled back there without a word (a broken connection is closed).
            begun = getattr(self.client, "transaction", None)
            if begun is not None:
                begun._managed = True
            with contextlib.suppress(Exception):
                await pool.release(self.client._connection)
            raise
        client: TransactionalDBClient = self.client
        return client

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        try:
            if not self.client._finalized:
                if exc_type:
                    if exc_type is not TransactionManagementError:  # already failed
                        await self.client.rollback()
                else:
                    await self.client.commit()
        finally:
            try:
                await self.pool.release(self.client._connection)
            finally:
                get_connections().reset(self.token)


class RestoringAsyncpgClient(AsyncpgDBClient):  # type: ignore[misc]
    def _in_transaction(self) -> TransactionContext:
        return RestoringTransactionContext(TransactionWrapper(self), self._pool_init_lock)


client_class = RestoringAsyncpgClient
