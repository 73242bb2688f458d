"""Blob removals owed: a failed upload's blobs whose removal from the object store
failed too (the store was away), retried by the sweep (storage/blobs/removals.py).
A new, empty table."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0015_public_generation_sequence')]

    initial = False

    operations = [
        ops.CreateModel(
            name='BlobRemoval',
            fields=[
                ('object_id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=32)),
                ('recorded_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'blob_removals', 'app': 'models', 'pk_attr': 'object_id', 'table_description': 'A blob written by an upload that failed, whose removal from the store failed too'},
            bases=['Model'],
        ),
    ]
