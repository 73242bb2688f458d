"""Statements over many rows at once, written as plain SQL: a multi-row ``INSERT`` and
an ``UPDATE ... FROM (VALUES ...)`` that gives each row its own values. No model
instance per row: the deletion sweep writes a tombstone, a history entry and a notice
per deleted dataset, and building, validating and reading back hundreds of model
instances cost more than the statements themselves (a ``CASE`` per column, the other
way to give rows their own values, grows with the square of the rows).

Values are converted by the model's own fields, so what is stored is what the ORM
would store; the caller gives every column that has no database default (a model
default such as a public id is the caller's to fill).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import Enum
from typing import Any

from tortoise.fields.base import Field
from tortoise.models import Model

MAX_PARAMETERS = 30_000  # per statement; SQLite and asyncpg both allow 32,766


def _value(model: type[Model], field: Field[Any], value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    return None if value is None else field.to_db_value(value, model)


def _postgres_type(field: Field[Any]) -> str:
    """The type a ``VALUES`` column is cast to on PostgreSQL (its parameters have none)."""
    kind = field.field_type
    if kind is not None and issubclass(kind, datetime):
        return "TIMESTAMPTZ"
    if kind is bool:
        return "BOOLEAN"
    if kind is int:
        return "BIGINT"
    return "TEXT"


def _column(field: Field[Any], name: str) -> str:
    return f'"{field.source_field or name}"'


async def insert(
    model: type[Model], rows: Sequence[dict[str, Any]], *, returning: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Insert ``rows`` (each a dict of field name to value, the same fields in each) in
    as few statements as the parameter limit allows, in the caller's transaction;
    the ``returning`` columns (``*``: all, for :func:`storage.db.reads.instances`) of
    the rows written, in no particular order."""
    if not rows:
        return []
    meta = model._meta
    names = list(rows[0])
    fields = [meta.fields_map[name] for name in names]
    columns = ", ".join(_column(field, name) for field, name in zip(fields, names, strict=True))
    client = meta.db  # the caller's transaction, as for the ORM's own statements
    postgres = client.capabilities.dialect != "sqlite"
    named = ", ".join(c if c == "*" else f'"{c}"' for c in returning)
    back = f" RETURNING {named}" if returning else ""
    out: list[dict[str, Any]] = []
    per_statement = max(1, MAX_PARAMETERS // len(names))
    for start in range(0, len(rows), per_statement):
        params: list[Any] = []
        groups = []
        for row in rows[start : start + per_statement]:
            marks = []
            for field, name in zip(fields, names, strict=True):
                params.append(_value(model, field, row[name]))
                marks.append(f"${len(params)}" if postgres else "?")
            groups.append(f"({', '.join(marks)})")
        sql = f'INSERT INTO "{meta.db_table}" ({columns}) VALUES {", ".join(groups)}{back}'
        if returning:  # (asyncpg's client reads no rows of an INSERT through execute_query)
            out += await client.execute_query_dict(sql, params)
        else:
            await client.execute_query(sql, params)
    return out


class _Params:
    """A statement's parameters, each marked as the dialect wants (cast on PostgreSQL,
    where a ``VALUES`` list's parameters have no type of their own)."""

    def __init__(self, postgres: bool):
        self.postgres = postgres
        self.values: list[Any] = []

    def mark(self, value: Any, cast: str) -> str:
        self.values.append(value)
        return f"CAST(${len(self.values)} AS {cast})" if self.postgres else "?"


async def update(
    model: type[Model],
    changes: dict[int, dict[str, Any]],
    *,
    same: dict[str, Any],
    where: dict[str, Any],
) -> list[int]:
    """Give each row (by primary key) its own values (``changes``, the same fields for
    each) and every row the ``same`` ones, where the rows also match ``where``
    (equality), in as few statements as the parameter limit allows, in the caller's
    transaction; the keys of the rows changed."""
    if not changes:
        return []
    meta = model._meta
    table = f'"{meta.db_table}"'
    key = f'{table}."{meta.db_pk_column}"'
    names = list(next(iter(changes.values())))
    fields = [meta.fields_map[name] for name in names]
    client = meta.db
    postgres = client.capabilities.dialect != "sqlite"
    done: list[int] = []
    items = list(changes.items())
    per_statement = max(1, (MAX_PARAMETERS - len(same) - len(where)) // (len(names) + 1))
    for start in range(0, len(items), per_statement):
        params = _Params(postgres)  # marked in the statement's order: SET, VALUES, WHERE
        sets = [
            f"{_column(field, name)} = v.column{i}"
            for i, (field, name) in enumerate(zip(fields, names, strict=True), start=2)
        ]
        for name, value in same.items():
            field = meta.fields_map[name]
            given = _value(model, field, value)
            mark = "NULL" if given is None else params.mark(given, _postgres_type(field))
            sets.append(f"{_column(field, name)} = {mark}")
        groups = []
        for pk, values in items[start : start + per_statement]:
            marks = [params.mark(pk, "BIGINT")]
            for field, name in zip(fields, names, strict=True):
                marks.append(params.mark(_value(model, field, values[name]), _postgres_type(field)))
            groups.append(f"({', '.join(marks)})")
        conditions = [f"{key} = v.column1"]
        for name, value in where.items():
            field = meta.fields_map[name]
            given = params.mark(_value(model, field, value), _postgres_type(field))
            conditions.append(f"{table}.{_column(field, name)} = {given}")
        sql = (
            f"UPDATE {table} SET {', '.join(sets)} FROM (VALUES {', '.join(groups)}) AS v "
            f"WHERE {' AND '.join(conditions)} RETURNING {key}"
        )
        rows = await client.execute_query_dict(sql, params.values)
        done += [int(next(iter(row.values()))) for row in rows]
    return done
