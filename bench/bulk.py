"""Bulk rows through SQL, for the sections that need more rows than an API can make
in the time budget (sweep scaling, the 100,000-model catalogue).

The schema is always the app's own: a fresh data dir is migrated by ``lorashelf
migrate`` (its migrations, triggers and FTS5 table included) before any row is
written; then plain ``sqlite3`` ``executemany`` in one transaction per table. Values
are written the way the app writes them: timestamps as Python's sqlite3 adapter
stores an aware UTC datetime (``datetime.isoformat(" ")``, what Tortoise hands it),
enums as their names, JSON lists as compact JSON, public ids from
``storage.db.models.new_public_id``'s alphabet (22 URL-safe characters).
"""

from __future__ import annotations

import base64
import json
import os
import random
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import BASE_ENV, PYTHON, ROOT, child_env

from storage.db.enums import BaseModel

SHARDS = 256


def ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(sep=" ")


def public_ids(n: int) -> Iterator[str]:
    """``n`` random public ids (what ``secrets.token_urlsafe(16)`` gives), in bulk."""
    raw = os.urandom(16 * n)
    for i in range(n):
        yield base64.urlsafe_b64encode(raw[16 * i : 16 * i + 16]).rstrip(b"=").decode()


def migrate(data_dir: Path) -> Path:
    """A fresh database with the app's schema: ``lorashelf migrate``."""
    env = child_env({**BASE_ENV, "LORASHELF_DATA_DIR": str(data_dir)})
    subprocess.run(
        [PYTHON, "-m", "graph.cli", "migrate"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return data_dir / "lorashelf.sqlite3"


def connect(database: Path) -> sqlite3.Connection:
    """A connection for a bulk build: no journal, no fsync, a big page cache (the app
    turns WAL back on when it connects)."""
    connection = sqlite3.connect(database, isolation_level=None)
    connection.execute("PRAGMA journal_mode=OFF")
    connection.execute("PRAGMA synchronous=OFF")
    connection.execute("PRAGMA cache_size=-1048576")
    connection.execute("PRAGMA foreign_keys=OFF")
    return connection


class Deferred:
    """Indexes and triggers of some tables dropped for a bulk insert and made again
    after it (a sorted index build instead of a million random inserts; one FTS5
    rebuild instead of a trigger per row): the same schema as the migrations made."""

    def __init__(self, connection: sqlite3.Connection, tables: tuple[str, ...]):
        self.connection = connection
        marks = ",".join("?" * len(tables))
        self.saved = connection.execute(
            f"SELECT type, name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') "
            f"AND sql IS NOT NULL AND tbl_name IN ({marks})",
            tables,
        ).fetchall()

    def __enter__(self) -> Deferred:
        for kind, name, _ in self.saved:
            self.connection.execute(f'DROP {kind.upper()} "{name}"')
        return self

    def __exit__(self, *exc: object) -> None:
        for kind, _, sql in self.saved:
            if kind == "index":
                self.connection.execute(sql)
        for kind, _, sql in self.saved:
            if kind == "trigger":
                self.connection.execute(sql)


def users(connection: sqlite3.Connection, n: int, *, created: datetime) -> None:
    at = ts(created)
    rows = (
        (i + 1, f"user{i:06d}", "$argon2id$bulk-seeded-no-login", at, pid)
        for i, pid in enumerate(public_ids(n))
    )
    # columns added since this was written that the app fills with its defaults
    given = {"id", "username", "password_hash", "created_at", "public_id"}
    extra = {
        row[1]: 1 if row[1].startswith("email_") else 0
        for row in connection.execute("PRAGMA table_info(users)")
        if row[3]
        and row[4] is None
        and row[1] not in given
        and "INT" in row[2].upper()
        or row[3]
        and row[4] is None
        and row[1] not in given
        and "BOOL" in row[2].upper()
    }
    columns = ", ".join(["id", "username", "password_hash", "created_at", "public_id", *extra])
    marks = ", ".join("?" * (5 + len(extra)))
    connection.executemany(
        f"INSERT INTO users ({columns}) VALUES ({marks})",
        (row + tuple(extra.values()) for row in rows),
    )


# Sweep scaling ---------------------------------------------------------------


def blob_key(i: int) -> str:
    return f"{i:032x}"


def blob_path(root: Path, key: str) -> Path:
    return root / key[:2] / key


SEQ = "WITH RECURSIVE seq(i) AS (SELECT :lo UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < :hi) "


def sql_ts(micros: str) -> str:
    """SQL for the text the app stores for an instant given in microseconds since the
    epoch (``datetime.isoformat(" ")`` of an aware UTC datetime)."""
    return (
        f"(strftime('%Y-%m-%d %H:%M:%S', ({micros}) / 1000000, 'unixepoch') "
        f"|| printf('.%06d', ({micros}) % 1000000) || '+00:00')"
    )


def sweep_table(data_dir: Path, rows: int, *, due_fraction: float = 0.1) -> dict[str, object]:
    """``rows`` training datasets, ``due_fraction`` of them due for deletion now
    (PRIVATE, AVAILABLE, ``expires_at`` within the last day, a blob file on disk each);
    the rest a mix of private ones expiring later (40%, with a reminder pending), public
    ones (35%) and tombstones (15%). Each dataset has its own published version (the
    relation is one-to-one); ten versions per model, a hundred models per user.

    Rows are generated by SQLite itself (``INSERT ... SELECT`` over a recursive
    sequence: a million rows in seconds), with the values the app would write."""
    database = migrate(data_dir)
    now = datetime.now(UTC)
    now_us = int(now.timestamp() * 1_000_000)
    day_us = 86_400_000_000
    created = ts(now - timedelta(days=40))
    published = ts(now - timedelta(days=39))
    n_models = max(1, rows // 10)
    n_users = max(1, n_models // 100)
    due = int(rows * due_fraction)
    later = due + int(rows * 0.4)
    public = due + int(rows * 0.75)
    connection = connect(database)
    tables = ("users", "lora_models", "model_versions", "training_datasets")
    rand = "(abs(random()) % :span)"
    spread = "((i * 2654435761) % :span)"  # the same for a row's expiry and its reminder
    dataset = (
        "INSERT INTO training_datasets (id, filename, size_bytes, sha256, visibility, status, "
        "blob_key, expires_at, next_reminder_at, deleted_at, deletion_reason, created_at, "
        "uploaded_at, owner_id, version_id, public_id) "
        "SELECT i + 1, 'data' || i || '.zip', 1234, :sha, {visibility}, {status}, {blob}, "
        "{expires}, {reminder}, {deleted}, {reason}, :created, :created, "
        "(i / 10) % :users + 1, i + 1, 'd' || printf('%021d', i) FROM seq"
    )
    parts = [
        # due: expired at some instant of the last day
        (0, due, dict(visibility="'PRIVATE'", status="'AVAILABLE'", blob="printf('%032x', i)",
                      expires=sql_ts(f":now - 1000000 - {rand}"), reminder="NULL",
                      deleted="NULL", reason="NULL"), day_us),
        # private, expiring within 30 days, a reminder a day before
        (due, later, dict(visibility="'PRIVATE'", status="'AVAILABLE'", blob="printf('%032x', i)",
                          expires=sql_ts(f":now + 7200000000 + {spread}"),
                          reminder=sql_ts(f":now + 3600000000 + {spread}"),
                          deleted="NULL", reason="NULL"), 29 * day_us),
        (later, public, dict(visibility="'PUBLIC'", status="'AVAILABLE'", blob="printf('%032x', i)",
                             expires="NULL", reminder="NULL", deleted="NULL", reason="NULL"), 1),
        (public, rows, dict(visibility="'PRIVATE'", status="'DELETED'", blob="NULL",
                            expires=":published", reminder="NULL", deleted=":published",
                            reason="'EXPIRED'"), 1),
    ]  # fmt: skip
    with connection, Deferred(connection, tables):
        connection.execute("BEGIN")
        users(connection, n_users, created=now - timedelta(days=40))
        connection.execute(
            SEQ + "INSERT INTO lora_models (id, name, description, created_at, published_at, "
            "owner_id, download_count, nsfw, search_text, type, public_id) "
            "SELECT i + 1, 'model ' || i, '', :created, :published, i % :users + 1, 0, 0, "
            "'model ' || i, 'LORA', 'm' || printf('%021d', i) FROM seq",
            {"lo": 0, "hi": n_models, "created": created, "published": published, "users": n_users},
        )
        connection.execute(
            SEQ + "INSERT INTO model_versions (id, name, status, published_at, created_at, "
            "model_id, owner_id, base_model, download_count, trained_words, public_id) "
            "SELECT i + 1, 'v1', 'PUBLISHED', :published, :created, i / 10 + 1, "
            "(i / 10) % :users + 1, 'OTHER', 0, '[]', 'v' || printf('%021d', i) FROM seq",
            {"lo": 0, "hi": rows, "created": created, "published": published, "users": n_users},
        )
        for lo, hi, values, span in parts:
            if hi <= lo:
                continue
            connection.execute(
                SEQ + dataset.format(**values),
                {
                    "lo": lo,
                    "hi": hi,
                    "sha": "0" * 64,
                    "created": created,
                    "published": published,
                    "users": n_users,
                    "now": now_us,
                    "span": span,
                },
            )
        connection.execute("COMMIT")
    connection.close()
    write_blobs(data_dir / "blobs", range(due))
    return {"rows": rows, "due": due, "models": n_models, "users": n_users}


def write_blobs(root: Path, indexes: range | list[int]) -> int:
    """A small file per dataset index, where the blob store keeps it."""
    for shard in range(SHARDS):
        (root / f"{shard:02x}").mkdir(parents=True, exist_ok=True)
    count = 0
    payload = b"PK\x05\x06" + b"\0" * 18  # an empty zip: the bytes do not matter here
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    for i in indexes:
        key = blob_key(i)
        fd = os.open(f"{root}/{key[:2]}/{key}", flags, 0o644)
        try:
            os.write(fd, payload)
        finally:
            os.close(fd)
        count += 1
    return count


# The catalogue ------------------------------------------------------------------

WORDS = [
    "cat",
    "dog",
    "fox",
    "owl",
    "anime",
    "portrait",
    "landscape",
    "castle",
    "forest",
    "neon",
    "cyberpunk",
    "watercolor",
    "sketch",
    "pixel",
    "retro",
    "vintage",
    "robot",
    "dragon",
    "knight",
    "wizard",
    "ocean",
    "desert",
    "mountain",
    "city",
    "flower",
    "garden",
    "winter",
    "summer",
    "autumn",
    "spring",
    "sunset",
    "night",
    "glow",
    "shadow",
    "marble",
    "bronze",
    "glass",
    "paper",
    "origami",
    "chibi",
    "realistic",
    "cinematic",
    "moody",
    "pastel",
    "vivid",
    "noir",
    "gothic",
    "baroque",
]
TAGS = [
    "style",
    "character",
    "concept",
    "clothing",
    "background",
    "anime",
    "realistic",
    "photo",
    "animals",
    "buildings",
    "vehicles",
    "objects",
    "poses",
    "celebrity",
    "tool",
]
BASE_MODELS = tuple(m.value for m in BaseModel)  # the app's own list, in its order


def catalogue(data_dir: Path, models: int) -> dict[str, object]:
    """``models`` published models with 1-3 tags, one published version each (base model
    and trained words), Zipf-ish download counts, and the search document the app would
    write (``storage.search.refresh``: name, description, tags, trained words, owner's
    name, lower-case, one per line), indexed by the migration's FTS5 triggers."""
    database = migrate(data_dir)
    now = datetime.now(UTC)
    rng = random.Random(models)
    n_users = max(1, models // 50)
    connection = connect(database)
    with connection, Deferred(connection, ("users", "lora_models", "model_tags", "model_versions")):
        connection.execute("BEGIN")
        users(connection, n_users, created=now - timedelta(days=400))
        model_rows = []
        tag_rows = []
        version_rows = []
        pids = public_ids(models)
        vpids = public_ids(models)
        tag_id = 0
        for i in range(models):
            created = now - timedelta(seconds=(models - i) * 60)
            words = rng.sample(WORDS, 4)
            name = f"{words[0]} {words[1]} {i}"
            description = f"A LoRA for {words[2]} and {words[3]} images, model {i}."
            tags = rng.sample(TAGS, rng.randint(1, 3))
            base = BASE_MODELS[min(int(rng.expovariate(0.5)), len(BASE_MODELS) - 1)]
            trained = [f"{words[0]}style"]
            owner = i % n_users + 1
            text = "\n".join([name, description, *tags, *trained, f"user{owner - 1:06d}"]).lower()
            downloads = int(rng.paretovariate(1.1)) - 1  # mostly 0, a long tail
            model_rows.append(
                (i + 1, name, description, ts(created), ts(created), owner, downloads, 0, text,
                 "LORA", next(pids))
            )  # fmt: skip
            for position, tag in enumerate(tags):
                tag_id += 1
                tag_rows.append((tag_id, i + 1, tag, position))
            version_rows.append(
                (i + 1, ts(created), ts(created), i + 1, owner, base, downloads,
                 json.dumps(trained, separators=(",", ":")), next(vpids))
            )  # fmt: skip
        connection.executemany(
            "INSERT INTO lora_models (id, name, description, created_at, published_at, "
            "owner_id, download_count, nsfw, search_text, type, public_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            model_rows,
        )
        connection.executemany(
            "INSERT INTO model_tags (id, model_id, tag, position) VALUES (?, ?, ?, ?)", tag_rows
        )
        connection.executemany(
            "INSERT INTO model_versions (id, name, status, published_at, created_at, model_id, "
            "owner_id, base_model, download_count, trained_words, public_id) "
            "VALUES (?, 'v1', 'PUBLISHED', ?, ?, ?, ?, ?, ?, ?, ?)",
            version_rows,
        )
        connection.execute("COMMIT")
    # the search documents into the FTS5 table, as migration 0002 does after its backfill
    connection.execute("INSERT INTO model_search(model_search) VALUES ('rebuild')")
    connection.close()
    return {"models": models, "users": n_users, "tags": len(tag_rows)}
