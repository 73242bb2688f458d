"""Partial indexes for the question asked with every signed-in request: does this
account own anything only it sees? (``storage.privacy.access.UNSHARED``: draft and
NSFW models, draft versions, datasets and weights files that are not public, withheld
header keys.) Each index holds only such rows, by owner, so the question is one probe
per table whatever the account's catalogue. (Weights files that are not available are
found by the index ``file_owner`` on owner and status.)

The conditions are frozen here as they were written (a migration never follows later
code); both SQLite and PostgreSQL take them as they are. Cheap: the rows indexed are
the few that are not public.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

INDEXES = (
    ("unshared_models", "lora_models", "deleted_at IS NULL AND (published_at IS NULL OR nsfw)"),
    ("unshared_versions", "model_versions", "deleted_at IS NULL AND status = 'DRAFT'"),
    ("unshared_datasets", "training_datasets", "visibility <> 'PUBLIC' OR status <> 'AVAILABLE'"),
    ("unshared_header_keys", "model_files", "header_erased_at IS NULL AND withheld_keys <> '[]'"),
)


async def create(apps, schema_editor):
    client = schema_editor.client
    for name, table, condition in INDEXES:
        await client.execute_script(
            f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" (owner_id) WHERE {condition}'
        )


class Migration(migrations.Migration):
    dependencies = [('models', '0008_repair_earlier_mains')]

    initial = False

    operations = [
        ops.RunPython(create),
    ]
