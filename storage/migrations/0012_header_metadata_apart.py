"""A weights file's public metadata moves to its own table (read only when asked for);
the columns derived from the metadata go: they were computed from every key, withheld
ones included, and are now computed when read, from what the reader may see. The
owner's copy of the metadata (owner_metadata_key, owner_metadata_size) and the withheld
list's fingerprint (withheld_list) start empty: `serve` fills them in at its next start,
before it serves anything (storage/retention/header_firewall.py: settle_stored_files).

On SQLite, removing a column remakes the table (a new table, the rows copied, the old
one dropped), and dropping a table deletes the rows that reference it ON DELETE CASCADE
(foreign keys are on): so the columns go before the new table exists, the metadata
waiting in a table of its own meanwhile. The remake also drops the partial index 0009
made on the table (the migration state does not know it) and the table's own indexes:
they are made again, as 0002, 0006 and 0009 wrote them.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

KEPT = "_lorashelf_0012_public_metadata"


async def keep_public_metadata(apps, schema_editor):
    client = schema_editor.client
    text = "public_metadata" if client.capabilities.dialect == "sqlite" else "public_metadata::text"
    await client.execute_script(
        f'CREATE TABLE "{KEPT}" AS SELECT id AS file_id, {text} AS entries '
        "FROM model_files WHERE public_header_key IS NOT NULL"
    )


async def move_public_metadata(apps, schema_editor):
    client = schema_editor.client
    if client.capabilities.dialect == "sqlite":
        size = "length(CAST(entries AS BLOB))"
    else:
        size = "octet_length(entries)"
    await client.execute_script(
        f"INSERT INTO model_file_metadata (file_id, entries, size) "
        f'SELECT file_id, entries, {size} FROM "{KEPT}"'
    )
    await client.execute_script(f'DROP TABLE "{KEPT}"')


async def index_again(apps, schema_editor):
    await schema_editor.client.execute_script(
        'CREATE INDEX IF NOT EXISTS "unshared_header_keys" ON "model_files" (owner_id) '
        "WHERE header_erased_at IS NULL AND withheld_keys <> '[]'"
    )
    # The table's own indexes (declared on the model) go with the remake too.
    for name, columns in (
        ("file_version", "version_id, id"),
        ("file_status_header", "status, header_expires_at"),
        ("file_owner", "owner_id, status"),
    ):
        await schema_editor.client.execute_script(
            f'CREATE INDEX IF NOT EXISTS "{name}" ON "model_files" ({columns})'
        )


class Migration(migrations.Migration):
    dependencies = [('models', '0011_download_link_spans')]

    initial = False

    operations = [
        ops.RunPython(keep_public_metadata),
        ops.RemoveField(model_name='ModelFile', name='algo'),
        ops.RemoveField(model_name='ModelFile', name='base_model_version'),
        ops.RemoveField(model_name='ModelFile', name='modelspec_architecture'),
        ops.RemoveField(model_name='ModelFile', name='network_alpha'),
        ops.RemoveField(model_name='ModelFile', name='network_dim'),
        ops.RemoveField(model_name='ModelFile', name='network_module'),
        ops.RemoveField(model_name='ModelFile', name='public_metadata'),
        ops.RemoveField(model_name='ModelFile', name='suggested_base_model'),
        ops.RemoveField(model_name='ModelFile', name='suggested_type'),
        ops.AddField(
            model_name='ModelFile',
            name='owner_metadata_key',
            field=fields.CharField(null=True, max_length=64),
        ),
        ops.AddField(
            model_name='ModelFile',
            name='owner_metadata_size',
            field=fields.BigIntField(null=True),
        ),
        ops.AddField(
            model_name='ModelFile',
            name='withheld_list',
            field=fields.CharField(null=True, max_length=16),
        ),
        ops.CreateModel(
            name='ModelFileMetadata',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('file', fields.OneToOneField('models.ModelFile', source_field='file_id', db_constraint=True, to_field='id', related_name='metadata', on_delete=OnDelete.CASCADE)),
                ('entries', fields.TextField(unique=False)),
                ('size', fields.BigIntField()),
            ],
            options={'table': 'model_file_metadata', 'app': 'models', 'pk_attr': 'id', 'table_description': "A weights file's header metadata as anybody may read it: without the withheld"},
            bases=['Model'],
        ),
        ops.RunPython(move_public_metadata),
        ops.RunPython(index_again),
    ]
