"""Migration operations of our own, for migrations that must work on tables with rows.

Not a migration (Tortoise skips modules whose name starts with ``_``). Frozen like the
migrations that use it: once released, this file never changes (the release guard,
tests/test_releases.py, checks it with them); a changed behaviour is a new operation
in a new module.
"""

from tortoise.migrations import operations as ops


async def table_exists(client, table):
    """Whether the database has a table of this name (in the current schema)."""
    if client.capabilities.dialect == "sqlite":
        query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    else:
        query = (
            "SELECT 1 FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_name = $1"
        )
    _, rows = await client.execute_query(query, [table])
    return bool(rows)


async def has_rows(client, table):
    """Whether ``table`` has at least one row."""
    _, rows = await client.execute_query(f'SELECT 1 FROM "{table}" LIMIT 1')
    return bool(rows)


class AddFieldKeepingRows(ops.AddField):
    """``AddField`` for a ``NOT NULL`` column with a (Python-side) default, also on a
    table that already has rows.

    Tortoise's ``AddField`` adds such a column without a database default, which both
    databases refuse on a table with rows (SQLite: "Cannot add a NOT NULL column with
    default value NULL"; PostgreSQL: "column ... contains null values"). On an empty
    table this operation runs exactly what ``AddField`` runs. On a table with rows it
    adds the column with the field's default as a database default (every existing
    row gets that value), then takes the database default away again, so the table
    ends exactly as ``AddField`` leaves an empty one: same column, same type, same
    constraints, no database default.

    - PostgreSQL: ``ADD COLUMN ... DEFAULT <value>`` (a constant: no table rewrite
      since PostgreSQL 11), then ``ALTER COLUMN ... DROP DEFAULT``.
    - SQLite: ``ADD COLUMN ... DEFAULT <value>``; every row is rewritten with the
      value stored in it (``UPDATE t SET c = c``), then the table's definition in
      ``sqlite_schema`` is set to the text SQLite itself writes for the plain
      ``ADD COLUMN`` (worked out on a scratch in-memory database), the documented
      procedure for removing a column default
      (https://www.sqlite.org/lang_altertable.html#otheralter). The stored values
      make the default unnecessary for the old rows.
    """

    async def database_forward(self, app_label, old_state, new_state, state_editor=None):
        if not state_editor:
            return
        model = new_state.apps.get_model(f"{app_label}.{self.model_name}")
        table = model._meta.db_table
        if state_editor.collect_sql or not await has_rows(state_editor.client, table):
            await super().database_forward(app_label, old_state, new_state, state_editor)
            return
        field = model._meta.fields_map[self.name]
        column = model._meta.fields_db_projection[self.name]
        default = field.default() if callable(field.default) else field.default
        if state_editor.DIALECT == "sqlite":
            target = await _sqlite_definition_after(state_editor, model, self.name)
        saved = field.db_default
        field.db_default = default
        try:
            await state_editor.add_field(model, self.name)
        finally:
            field.db_default = saved
        client = state_editor.client
        if state_editor.DIALECT == "sqlite":
            await client.execute_query(f'UPDATE "{table}" SET "{column}" = "{column}"')
            await _sqlite_set_definition(client, table, target)
        else:
            await client.execute_query(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" DROP DEFAULT')


async def _sqlite_definition_after(state_editor, model, name):
    """The text SQLite keeps for ``model``'s table after the plain ``AddField``: the
    same statements run on a scratch in-memory database holding only that table."""
    import sqlite3

    table = model._meta.db_table
    _, rows = await state_editor.client.execute_query(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", [table]
    )
    collector = type(state_editor)(state_editor.client, atomic=False, collect_sql=True)
    await collector.add_field(model, name)
    scratch = sqlite3.connect(":memory:")
    try:
        scratch.execute(rows[0]["sql"])
        for statement in collector.collected_sql:
            scratch.executescript(statement)
        (text,) = scratch.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
    finally:
        scratch.close()
    return text


async def _sqlite_set_definition(client, table, text):
    """Replace a table's definition text (only its column defaults differ). Statements
    one by one (never a script: that would commit the migration's transaction)."""
    _, rows = await client.execute_query("PRAGMA schema_version")
    version = rows[0]["schema_version"]
    await client.execute_query("PRAGMA writable_schema = ON")
    try:
        await client.execute_query(
            "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?", [text, table]
        )
        await client.execute_query(f"PRAGMA schema_version = {version + 1}")
    finally:
        await client.execute_query("PRAGMA writable_schema = OFF")
    _, check = await client.execute_query(f'PRAGMA integrity_check("{table}")')
    if [row["integrity_check"] for row in check] != ["ok"]:
        raise RuntimeError(f"{table}: integrity check failed after adding a column: {check}")
