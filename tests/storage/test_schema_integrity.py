"""A database migrated to the head has every index and unique constraint the models
declare: no migration may lose one (on SQLite an ``AlterField`` rebuilds the table and
drops them; see migration 0014's ``DescriptionOnly``)."""

from __future__ import annotations

from typing import Any

from tortoise import Tortoise

from storage.db import connection as db
from tests.conftest import sql_behind_the_back


def _declared() -> tuple[set[tuple[str, str]], set[tuple[str, frozenset[str]]]]:
    """(table, index name) of every named index, (table, columns) of every unique
    constraint, as the models declare them."""
    named, unique = set(), set()
    for model in Tortoise.apps["models"].values():
        meta = model._meta
        for index in getattr(meta, "indexes", ()) or ():
            named.add((meta.db_table, index.name))
        for group in meta.unique_together or ():
            columns = frozenset(meta.fields_db_projection.get(f, f"{f}_id") for f in group)
            unique.add((meta.db_table, columns))
    return named, unique


def _present(settings: Any) -> tuple[set[tuple[str, str]], set[tuple[str, frozenset[str]]]]:
    if not db.is_postgres(settings.database_url):
        rows = sql_behind_the_back(
            settings,
            'SELECT m.name, il.name, il."unique", ii.name FROM sqlite_master m, '
            "pragma_index_list(m.name) il, pragma_index_info(il.name) ii WHERE m.type = 'table'",
        )
    else:
        rows = sql_behind_the_back(
            settings,
            "SELECT t.relname, i.relname, ix.indisunique, a.attname FROM pg_index ix "
            "JOIN pg_class t ON t.oid = ix.indrelid JOIN pg_class i ON i.oid = ix.indexrelid "
            "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(ix.indkey) "
            "JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = current_schema()",
        )
    columns: dict[tuple[str, str, bool], set[str]] = {}
    for table, index, is_unique, column in rows:
        columns.setdefault((table, index, bool(is_unique)), set()).add(column)
    named = {(table, index) for table, index, _ in columns}
    unique = {(table, frozenset(cols)) for (table, _, u), cols in columns.items() if u}
    return named, unique


async def test_every_declared_index_and_unique_constraint_exists(
    database: None, settings: Any
) -> None:
    named, unique = _declared()
    present_named, present_unique = _present(settings)
    assert named and unique
    assert named - present_named == set()
    assert unique - present_unique == set()
