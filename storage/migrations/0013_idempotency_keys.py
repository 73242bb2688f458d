"""Idempotency keys: mutation requests sent with an ``Idempotency-Key``, their claims
and sealed answers, kept 24 hours (storage/idempotency.py). A new, empty table."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0012_header_metadata_apart')]

    initial = False

    operations = [
        ops.CreateModel(
            name='IdempotencyKey',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('lookup', fields.CharField(unique=True, max_length=64)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', null=True, db_constraint=True, to_field='id', related_name='idempotency_keys', on_delete=OnDelete.CASCADE)),
                ('request_mac', fields.CharField(max_length=64)),
                ('created_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('claim_token', fields.CharField(max_length=32)),
                ('claimed_by', fields.CharField(max_length=80)),
                ('claimed_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('acted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('status', fields.SmallIntField(null=True)),
                ('answer', fields.BinaryField(null=True)),
            ],
            options={'table': 'idempotency_keys', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A mutation request sent with an ``Idempotency-Key`` (storage/idempotency.py): claimed'},
            bases=['Model'],
        ),
    ]
