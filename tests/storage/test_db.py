"""storage/db/connection.py on PostgreSQL: migrations applied by many processes at once, the
connection pool's bound, and which database errors mean "try again"."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import pytest
from tortoise import connections
from tortoise.transactions import in_transaction

from storage.config.settings import Settings, load_settings
from storage.db import connection as db
from storage.db.models import User
from tests.conftest import Api, sql_behind_the_back
from tests.postgres import Cluster
from tests.processes import lorashelf

pytestmark = pytest.mark.postgres_only(
    reason="the migration lock, the asyncpg pool and PostgreSQL's error codes exist on "
    "PostgreSQL only"
)

MIGRATIONS = sorted(
    path.stem
    for path in (Path(__file__).resolve().parents[2] / "storage" / "migrations").glob("0*.py")
)


def test_two_processes_migrating_an_empty_database_at_once_apply_each_migration_once(
    tmp_path: Path, postgres_cluster: Cluster
) -> None:
    # given an empty PostgreSQL database
    name = postgres_cluster.empty_database()
    try:
        env = {
            "LORASHELF_DATA_DIR": str(tmp_path / "var"),
            "LORASHELF_DATABASE_URL": postgres_cluster.url(name),
        }
        # when two `lorashelf migrate` processes start at the same moment
        with ThreadPoolExecutor(2) as pool:
            runs = list(
                pool.map(lambda _: lorashelf("migrate", env=env, cwd=tmp_path, timeout=120), "ab")
            )
        # then both succeed
        assert [run.returncode for run in runs] == [0, 0], [run.stderr for run in runs]
        # and every migration was applied exactly once
        applied = sql_behind_the_back(
            load_settings(env), "SELECT name, count(*) FROM tortoise_migrations GROUP BY name"
        )
        assert sorted(applied) == [(migration, 1) for migration in MIGRATIONS]
    finally:
        postgres_cluster.drop_database(name)


async def test_two_transactions_in_a_deadlock_one_is_told_to_try_again(
    api: Api, settings: Settings
) -> None:
    # given two users
    await api.sign_up("alice")
    await api.sign_up("bob")
    alice, bob = await User.get(username="alice"), await User.get(username="bob")
    locked = {alice.id: asyncio.Event(), bob.id: asyncio.Event()}

    async def cross(mine: int, theirs: int) -> None:
        async with in_transaction():
            await User.filter(id=mine).update(password_hash="first")
            locked[mine].set()
            await locked[theirs].wait()
            await User.filter(id=theirs).update(password_hash="second")

    # when two transactions each lock one row and then want the other's
    outcomes = await asyncio.wait_for(
        asyncio.gather(cross(alice.id, bob.id), cross(bob.id, alice.id), return_exceptions=True),
        timeout=30,
    )
    # then PostgreSQL rolls one back, and that error means "try again"
    failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert len(failures) == 1, outcomes
    assert db.is_busy(failures[0]), repr(failures[0])
    # and an error that a retry cannot mend does not
    with pytest.raises(Exception) as broken:
        await connections.get("default").execute_query("SELECT * FROM no_such_table")
    assert not db.is_busy(broken.value)


@pytest.mark.env(LORASHELF_DATABASE_POOL_SIZE="2")
async def test_a_process_opens_at_most_its_pool_size_of_connections(
    settings: Settings, database: None
) -> None:
    # given a process whose pool holds at most two connections
    assert settings.database_pool_size == 2
    client = connections.get("default")

    async def sessions() -> int:
        watcher = await asyncpg.connect(settings.database_url)
        try:
            count: int = await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return count
        finally:
            await watcher.close()

    # when six slow queries are asked for at once
    loop = asyncio.get_running_loop()
    started = loop.time()
    queries = asyncio.gather(*(client.execute_query("SELECT pg_sleep(0.4)") for _ in range(6)))
    await asyncio.sleep(0.2)
    # then two run on two connections while the others wait their turn
    assert await sessions() == 2
    await queries
    assert loop.time() - started >= 3 * 0.4
