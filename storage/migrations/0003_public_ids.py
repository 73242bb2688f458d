"""Random public ids for every object the API shows (users, models, versions, datasets,
files, notifications): a nullable unique column, backfilled row by row."""

import secrets

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields


def new_public_id():
    """A row's public id as this migration made them: 128 random bits, 22 URL-safe
    characters (frozen here; the application makes new rows' ids)."""
    return secrets.token_urlsafe(16)


TABLES = (
    "users",
    "lora_models",
    "model_versions",
    "training_datasets",
    "model_files",
    "notifications",
)


async def backfill(apps, schema_editor):
    """Give every existing row a random public id."""
    client = schema_editor.client
    placeholder = "?" if client.capabilities.dialect == "sqlite" else "$1"
    second = "?" if client.capabilities.dialect == "sqlite" else "$2"
    for table in TABLES:
        _, rows = await client.execute_query(f"SELECT id FROM {table} WHERE public_id IS NULL")
        for row in rows:
            await client.execute_query(
                f"UPDATE {table} SET public_id = {placeholder} WHERE id = {second}",
                [new_public_id(), row["id"]],
            )


class Migration(migrations.Migration):
    dependencies = [('models', '0002_catalogue_and_files')]

    initial = False

    operations = [
        ops.AddField(
            model_name='LoraModel',
            name='public_id',
            field=fields.CharField(null=True, default=new_public_id, unique=True, max_length=24),
        ),
        ops.AddField(
            model_name='ModelFile',
            name='public_id',
            field=fields.CharField(null=True, default=new_public_id, unique=True, max_length=24),
        ),
        ops.AddField(
            model_name='ModelVersion',
            name='public_id',
            field=fields.CharField(null=True, default=new_public_id, unique=True, max_length=24),
        ),
        ops.AddField(
            model_name='Notification',
            name='public_id',
            field=fields.CharField(null=True, default=new_public_id, unique=True, max_length=24),
        ),
        ops.AddField(
            model_name='TrainingDataset',
            name='public_id',
            field=fields.CharField(null=True, default=new_public_id, unique=True, max_length=24),
        ),
        ops.AddField(
            model_name='User',
            name='public_id',
            field=fields.CharField(null=True, default=new_public_id, unique=True, max_length=24),
        ),
        ops.RunPython(backfill),
    ]
