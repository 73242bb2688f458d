"""Starting on a database, as an operator does: `lorashelf migrate --check` says what would
run and changes nothing; serve, worker and migrate refuse a database a newer lorashelf
migrated (exit 2, naming what they do not know); a start whose migration fails ends at
once with the error (never a process that lingers without serving); `--version`."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import postgres
from tests.conftest import migrate_to
from tests.processes import free_port, lorashelf

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = sorted(p.stem for p in (ROOT / "storage" / "migrations").glob("[0-9]*.py"))
# Far more than a start takes here: a process still there after this is lingering.
PROMPTLY = 60


@pytest.fixture
def empty(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The environment of a database nothing was ever applied to (SQLite: a data dir
    without a database yet; PostgreSQL: an empty database)."""
    env = {"LORASHELF_DATA_DIR": str(tmp_path / "var")}
    if request.config.getoption("--db") != "postgres":
        yield env
        return
    cluster: postgres.Cluster = request.getfixturevalue("postgres_cluster")
    name = cluster.empty_database()
    try:
        yield {**env, "LORASHELF_DATABASE_URL": cluster.url(name)}
    finally:
        cluster.drop_database(name)


def database_url(env: dict[str, str]) -> str:
    return (
        env.get("LORASHELF_DATABASE_URL")
        or f"sqlite://{env['LORASHELF_DATA_DIR']}/lorashelf.sqlite3"
    )


def applied(env: dict[str, str]) -> list[str]:
    """The migrations the database records, straight from its table."""
    url = database_url(env)
    if url.startswith("sqlite://"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite://")) as connection:
            rows = connection.execute("SELECT name FROM tortoise_migrations ORDER BY id").fetchall()
    else:
        rows = postgres.query(url, "SELECT name FROM tortoise_migrations ORDER BY id")
    return [str(row[0]) for row in rows]


def record(env: dict[str, str], name: str) -> None:
    """What a newer lorashelf leaves: a migration this code does not have, recorded."""
    url = database_url(env)
    statement = (
        "INSERT INTO tortoise_migrations (app, name, applied_at) "
        "VALUES ('models', ?, '2031-01-01 00:00:00+00:00')"
    )
    if url.startswith("sqlite://"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite://")) as connection:
            connection.execute(statement, (name,))
    else:
        postgres.query(url, statement.replace("'2031-01-01 00:00:00+00:00'", "now()"), (name,))


def test_migrate_check_says_what_would_run_and_changes_nothing(
    empty: dict[str, str], tmp_path: Path
) -> None:
    # given a database nothing was applied to yet
    # when an operator asks what migrate would do
    checked = lorashelf("migrate", "--check", env=empty, cwd=tmp_path)
    # then every migration is listed, in order, and the exit code says "something to do"
    assert checked.returncode == 1, checked.stderr
    listed = re.findall(r"^  (\d{4}_\w+)  ", checked.stdout, re.M)
    assert listed == MIGRATIONS
    assert f"{len(MIGRATIONS)} migrations would run" in checked.stdout
    # and nothing was created: no SQLite file, no migration table
    if "LORASHELF_DATABASE_URL" not in empty:
        assert not (tmp_path / "var").exists()
    else:
        tables = postgres.query(
            empty["LORASHELF_DATABASE_URL"],
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
        )
        assert tables == []
    # when the migrations run, then --check finds nothing left to do
    migrated = lorashelf("migrate", env=empty, cwd=tmp_path, timeout=PROMPTLY)
    assert migrated.returncode == 0, migrated.stderr
    assert f"({len(MIGRATIONS)} migrations applied)" in migrated.stdout
    again = lorashelf("migrate", "--check", env=empty, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "is up to date" in again.stdout
    assert applied(empty) == MIGRATIONS


def test_a_half_migrated_database_lists_only_what_is_left(
    empty: dict[str, str], tmp_path: Path
) -> None:
    # given a database migrated by an earlier lorashelf, up to its first migration
    migrate_to(database_url(empty), MIGRATIONS[0])
    # when an operator asks what migrate would do
    checked = lorashelf("migrate", "--check", env=empty, cwd=tmp_path)
    # then the others are listed, and only they
    assert checked.returncode == 1, checked.stderr
    assert re.findall(r"^  (\d{4}_\w+)  ", checked.stdout, re.M) == MIGRATIONS[1:]
    assert applied(empty) == MIGRATIONS[:1]


@pytest.mark.parametrize(
    "command",
    [("serve", "--port", "0"), ("worker",), ("migrate",), ("migrate", "--check")],
    ids=["serve", "worker", "migrate", "migrate-check"],
)
def test_a_database_a_newer_lorashelf_migrated_is_refused(
    command: tuple[str, ...], empty: dict[str, str], tmp_path: Path
) -> None:
    # given a database a newer lorashelf migrated: a migration this code does not know
    assert lorashelf("migrate", env=empty, cwd=tmp_path, timeout=PROMPTLY).returncode == 0
    record(empty, "0999_from_a_newer_lorashelf")
    # (the worker needs a Redis URL to start at all; it never gets to use it)
    env = {**empty, "LORASHELF_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    if command[0] == "serve":
        command = ("serve", "--port", str(free_port()))
    # when it is started on it
    result = lorashelf(*command, env=env, cwd=tmp_path, timeout=PROMPTLY)
    # then it refuses at once, with exit code 2, naming what it does not know
    assert result.returncode == 2, result.stderr
    assert "lorashelf: the database was migrated by a newer lorashelf" in result.stderr
    assert "migration 0999_from_a_newer_lorashelf is unknown to lorashelf " in result.stderr
    # and changes nothing
    assert applied(empty) == [*MIGRATIONS, "0999_from_a_newer_lorashelf"]


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_start_whose_migration_fails_ends_at_once_with_the_error(
    command: str, empty: dict[str, str], tmp_path: Path
) -> None:
    # given a database where the second migration cannot run (a table of its is there)
    migrate_to(database_url(empty), MIGRATIONS[0])
    url = database_url(empty)
    blocker = 'CREATE TABLE "download_links" ("link" VARCHAR(32) PRIMARY KEY)'
    if url.startswith("sqlite://"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite://")) as connection:
            connection.execute(blocker)
    else:
        postgres.query(url, blocker)
    env = {**empty, "LORASHELF_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    args = ("serve", "--port", str(free_port())) if command == "serve" else ("worker",)
    # when serve or worker starts on it
    result = lorashelf(*args, env=env, cwd=tmp_path, timeout=PROMPTLY)
    # then it exits at once, non-zero, saying why (it never lingers without serving)
    assert result.returncode == 1, result.stderr
    assert "the database could not be migrated; nothing was started" in result.stderr
    assert "download_links" in result.stderr and "already exists" in result.stderr
    # and the failed migration left nothing behind: the next start can try again
    assert applied(empty) == MIGRATIONS[:1]


def test_version_is_the_one_in_pyproject(tmp_path: Path) -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = lorashelf("--version", env={}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"lorashelf {declared}"


def test_serve_that_cannot_listen_exits_at_once(empty: dict[str, str], tmp_path: Path) -> None:
    # given the port serve is told to use is taken
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # when serve starts
        result = lorashelf("serve", "--port", str(port), env=empty, cwd=tmp_path, timeout=PROMPTLY)
    # then it exits at once, non-zero
    assert result.returncode != 0
    assert "address already in use" in result.stderr.lower()


def test_migrate_check_on_a_database_it_cannot_reach_says_so(tmp_path: Path) -> None:
    # given a database URL nothing answers at
    url = f"postgres://lorashelf@127.0.0.1:{free_port()}/lorashelf"
    env = {"LORASHELF_DATA_DIR": str(tmp_path / "var"), "LORASHELF_DATABASE_URL": url}
    # when an operator asks what migrate would do
    result = lorashelf("migrate", "--check", env=env, cwd=tmp_path, timeout=PROMPTLY)
    # then it says it cannot tell (exit 3), never that every migration would run
    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stderr.startswith(f"lorashelf: cannot read the migrations of {url}: ")
    assert "would run" not in result.stdout
