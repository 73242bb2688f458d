"""Erasure: sealed blobs (a key store of their own), deletion receipts, data exports,
account deletion.

- ``blob_keys``: one wrapped data key per sealed blob, nothing else.
- ``plaintext_blobs``: every blob this database refers to when the migration runs
  (written before blobs were sealed), so they are read as they are until
  ``lorashelf encrypt-existing`` (or the sweep) has sealed each one.
- ``receipt_keys``, ``data_exports``, ``username_holds``; columns for key destruction
  and receipts on ``training_datasets`` and ``model_files``; ``users.deleting_at``.

Self-contained: the enum and the id generator it needs are declared here. The new enum
members (``ACCOUNT_DELETED``, ``EXPORT_READY``) need no change to their ``VARCHAR``
columns, so the column comments that list them are left as they were (altering them
rebuilds the whole table on SQLite).
"""

import secrets
from enum import StrEnum

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index


def new_public_id():
    return secrets.token_urlsafe(16)


class ExportStatus(StrEnum):
    PENDING = "PENDING"
    BUILDING = "BUILDING"
    READY = "READY"
    EXPIRED = "EXPIRED"


REFERENCES = (
    ("training_datasets", "blob_key"),
    ("model_files", "header_key"),
    ("model_files", "public_header_key"),
    ("model_files", "data_key"),
)


async def list_plaintext_blobs(apps, schema_editor):
    """Every blob referred to now was written in plaintext: list it for encrypt-existing
    (one statement, whatever the number of rows)."""
    selects = " UNION ".join(
        f'SELECT "{column}" FROM "{table}" WHERE "{column}" IS NOT NULL'
        for table, column in REFERENCES
    )
    await schema_editor.client.execute_query(
        f'INSERT INTO "plaintext_blobs" ("object_id") {selects}'
    )


class Migration(migrations.Migration):
    dependencies = [('models', '0009_unshared_indexes')]

    initial = False

    operations = [
        ops.CreateModel(
            name='BlobKey',
            fields=[
                ('object_id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=32)),
                ('master_key_id', fields.CharField(db_index=True, max_length=16)),
                ('wrapped', fields.BinaryField()),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'blob_keys', 'app': 'models', 'pk_attr': 'object_id', 'table_description': "A sealed blob's data key, wrapped by a master key."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='DataExport',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('public_id', fields.CharField(null=True, default=new_public_id, unique=True, max_length=24)),
                ('owner', fields.ForeignKeyField('models.User', source_field='owner_id', db_constraint=True, to_field='id', related_name='data_exports', on_delete=OnDelete.CASCADE)),
                ('status', fields.CharEnumField(description='PENDING: PENDING\nBUILDING: BUILDING\nREADY: READY\nEXPIRED: EXPIRED', enum_type=ExportStatus, max_length=16)),
                ('blob_key', fields.CharField(null=True, max_length=64)),
                ('size_bytes', fields.BigIntField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('claimed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('claimed_by', fields.CharField(null=True, max_length=128)),
                ('ready_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('shredded_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'data_exports', 'app': 'models', 'indexes': [Index(fields=['owner_id', 'id'], name='export_owner'), Index(fields=['status', 'expires_at'], name='export_status_expires')], 'pk_attr': 'id', 'table_description': 'A zip of everything a user owns (storage.exports): built by a job, sealed like any'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PlaintextBlob',
            fields=[
                ('object_id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=32)),
            ],
            options={'table': 'plaintext_blobs', 'app': 'models', 'pk_attr': 'object_id', 'table_description': 'A blob written before blobs were sealed: read as it is until it is sealed.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ReceiptKey',
            fields=[
                ('key_id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=32)),
                ('public_key', fields.CharField(max_length=64)),
                ('master_key_id', fields.CharField(max_length=16)),
                ('wrapped_private', fields.BinaryField()),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('retired_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'receipt_keys', 'app': 'models', 'pk_attr': 'key_id', 'table_description': 'An Ed25519 key that signs deletion receipts, its public half published for good.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='UsernameHold',
            fields=[
                ('name_hash', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64)),
                ('until', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'username_holds', 'app': 'models', 'pk_attr': 'name_hash', 'table_description': "A deleted account's username, held back from sign-up until ``until``: kept as a"},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='ModelFile',
            name='header_key_destroyed_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='ModelFile',
            name='header_receipt_key_id',
            field=fields.CharField(null=True, max_length=32),
        ),
        ops.AddField(
            model_name='ModelFile',
            name='header_receipt_payload',
            field=fields.TextField(null=True, unique=False),
        ),
        ops.AddField(
            model_name='ModelFile',
            name='header_receipt_signature',
            field=fields.CharField(null=True, max_length=128),
        ),
        ops.AddField(
            model_name='TrainingDataset',
            name='key_destroyed_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='TrainingDataset',
            name='receipt_key_id',
            field=fields.CharField(null=True, max_length=32),
        ),
        ops.AddField(
            model_name='TrainingDataset',
            name='receipt_payload',
            field=fields.TextField(null=True, unique=False),
        ),
        ops.AddField(
            model_name='TrainingDataset',
            name='receipt_signature',
            field=fields.CharField(null=True, max_length=128),
        ),
        ops.AddField(
            model_name='User',
            name='deleting_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.RunPython(list_plaintext_blobs),
    ]
