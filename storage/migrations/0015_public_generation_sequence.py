"""The public generation on PostgreSQL becomes a sequence, so that public changes made
at the same time no longer queue behind one row's lock (``nextval`` never blocks and
is not undone by a rollback). The sequence starts above the row's value, so a value
read before the upgrade is never read again after it. SQLite keeps the row (one writer
at a time there anyway). Self-contained: the names below are frozen here.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

SEQUENCE = "public_generation_seq"


async def public_generation_sequence(apps, schema_editor):
    client = schema_editor.client
    if client.capabilities.dialect == "sqlite":
        return
    # CACHE 1: ``last_value`` is then the last value handed out, which readers rely on.
    await client.execute_script(
        f'CREATE SEQUENCE IF NOT EXISTS "{SEQUENCE}" AS bigint MINVALUE 0 START 0 CACHE 1'
    )
    await client.execute_query(
        f"SELECT setval('\"{SEQUENCE}\"', "
        'GREATEST((SELECT COALESCE(MAX("value"), 0) FROM "public_generation"), '
        f"(SELECT last_value FROM \"{SEQUENCE}\")) + 1, true)"
    )


class Migration(migrations.Migration):
    dependencies = [('models', '0014_operators')]

    initial = False

    operations = [
        ops.RunPython(public_generation_sequence),
    ]
