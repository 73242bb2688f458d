"""Indexes over foreign keys name the column (``owner_id``), not the field (``owner``).

Migrations 0001 and 0002 once named the field: PostgreSQL refuses that, and SQLite
took ``"owner"`` for a string constant, so those indexes covered a constant and were
never used. Both migrations now name the columns; this one rebuilds the six indexes of
a database migrated before that (on any other database it rebuilds them unchanged).
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

INDEXES = (
    ("dataset_owner", "training_datasets", "owner_id, id"),
    ("notification_user_read", "notifications", "user_id, read_at"),
    ("tag_models", "model_tags", "tag, model_id"),
    ("version_base_model", "model_versions", "model_id, base_model"),
    ("file_version", "model_files", "version_id, id"),
    ("file_owner", "model_files", "owner_id, status"),
)


async def rebuild(apps, schema_editor):
    client = schema_editor.client
    for name, table, columns in INDEXES:
        await client.execute_script(f'DROP INDEX IF EXISTS "{name}"')
        await client.execute_script(f'CREATE INDEX "{name}" ON "{table}" ({columns})')


class Migration(migrations.Migration):
    dependencies = [('models', '0005_public_generation')]

    initial = False

    operations = [
        ops.RunPython(rebuild),
    ]
