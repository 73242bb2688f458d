"""The first schema: users and their tokens, models, versions, training datasets, their
history and notifications.

Self-contained: the enums below are frozen as they were when this migration was
written (the application's may change; what this migration does may not).
"""

from enum import StrEnum

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index


class VersionStatus(StrEnum):
    DRAFT = "DRAFT"
    PUBLISHED = "PUBLISHED"


class Visibility(StrEnum):
    PUBLIC = "PUBLIC"
    PRIVATE = "PRIVATE"


class DatasetStatus(StrEnum):
    PENDING_UPLOAD = "PENDING_UPLOAD"
    UPLOADING = "UPLOADING"
    AVAILABLE = "AVAILABLE"
    DELETING = "DELETING"
    DELETED = "DELETED"


class DeletionReason(StrEnum):
    EXPIRED = "EXPIRED"
    OWNER_REQUEST = "OWNER_REQUEST"
    MODEL_DELETED = "MODEL_DELETED"


class NotificationKind(StrEnum):
    DATASET_EXPIRING = "DATASET_EXPIRING"
    DATASET_DELETED = "DATASET_DELETED"


class EventKind(StrEnum):
    UPLOAD_STARTED = "UPLOAD_STARTED"
    UPLOADED = "UPLOADED"
    PUBLISHED = "PUBLISHED"
    MADE_PRIVATE = "MADE_PRIVATE"
    MADE_PUBLIC = "MADE_PUBLIC"
    DOWNLOADED = "DOWNLOADED"
    REMINDED = "REMINDED"
    DELETED = "DELETED"


class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='User',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('username', fields.CharField(unique=True, max_length=32)),
                ('password_hash', fields.CharField(max_length=255)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'users', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='AuthToken',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='tokens', on_delete=OnDelete.CASCADE)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'auth_tokens', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='LoraModel',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('owner', fields.ForeignKeyField('models.User', source_field='owner_id', db_constraint=True, to_field='id', related_name='lora_models', on_delete=OnDelete.CASCADE)),
                ('name', fields.CharField(max_length=200)),
                ('description', fields.TextField(unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('published_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('deleted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'lora_models', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ModelVersion',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('model', fields.ForeignKeyField('models.LoraModel', source_field='model_id', db_constraint=True, to_field='id', related_name='versions', on_delete=OnDelete.CASCADE)),
                ('owner', fields.ForeignKeyField('models.User', source_field='owner_id', db_constraint=True, to_field='id', related_name='model_versions', on_delete=OnDelete.CASCADE)),
                ('name', fields.CharField(max_length=200)),
                ('status', fields.CharEnumField(default=VersionStatus.DRAFT, description='DRAFT: DRAFT\nPUBLISHED: PUBLISHED', enum_type=VersionStatus, max_length=16)),
                ('published_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('deleted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'model_versions', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='TrainingDataset',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('version', fields.OneToOneField('models.ModelVersion', source_field='version_id', db_constraint=True, to_field='id', related_name='training_dataset', on_delete=OnDelete.CASCADE)),
                ('owner', fields.ForeignKeyField('models.User', source_field='owner_id', db_constraint=True, to_field='id', related_name='training_datasets', on_delete=OnDelete.CASCADE)),
                ('filename', fields.CharField(max_length=255)),
                ('size_bytes', fields.BigIntField()),
                ('sha256', fields.CharField(null=True, max_length=64)),
                ('visibility', fields.CharEnumField(description='PUBLIC: PUBLIC\nPRIVATE: PRIVATE', enum_type=Visibility, max_length=16)),
                ('status', fields.CharEnumField(description='PENDING_UPLOAD: PENDING_UPLOAD\nUPLOADING: UPLOADING\nAVAILABLE: AVAILABLE\nDELETING: DELETING\nDELETED: DELETED', enum_type=DatasetStatus, max_length=16)),
                ('blob_key', fields.CharField(null=True, max_length=64)),
                ('upload_nonce', fields.CharField(null=True, max_length=64)),
                ('upload_expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('next_reminder_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('claimed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('deleted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('deletion_reason', fields.CharEnumField(null=True, description='EXPIRED: EXPIRED\nOWNER_REQUEST: OWNER_REQUEST\nMODEL_DELETED: MODEL_DELETED', enum_type=DeletionReason, max_length=16)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('uploaded_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'training_datasets', 'app': 'models', 'indexes': [Index(fields=['status', 'expires_at'], name='dataset_status_expires'), Index(fields=['status', 'next_reminder_at'], name='dataset_status_reminder'), Index(fields=['owner_id', 'id'], name='dataset_owner')], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='DatasetEvent',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('dataset', fields.ForeignKeyField('models.TrainingDataset', source_field='dataset_id', db_constraint=True, to_field='id', related_name='events', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharEnumField(description='UPLOAD_STARTED: UPLOAD_STARTED\nUPLOADED: UPLOADED\nPUBLISHED: PUBLISHED\nMADE_PRIVATE: MADE_PRIVATE\nMADE_PUBLIC: MADE_PUBLIC\nDOWNLOADED: DOWNLOADED\nREMINDED: REMINDED\nDELETED: DELETED', enum_type=EventKind, max_length=32)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('detail', fields.TextField(default='', unique=False)),
            ],
            options={'table': 'dataset_events', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Notification',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='notifications', on_delete=OnDelete.CASCADE)),
                ('dataset', fields.ForeignKeyField('models.TrainingDataset', source_field='dataset_id', null=True, db_constraint=True, to_field='id', related_name='notifications', on_delete=OnDelete.SET_NULL)),
                ('kind', fields.CharEnumField(description='DATASET_EXPIRING: DATASET_EXPIRING\nDATASET_DELETED: DATASET_DELETED', enum_type=NotificationKind, max_length=32)),
                ('offset_seconds', fields.IntField(default=0)),
                ('window_end', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('message', fields.TextField(unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('read_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'notifications', 'app': 'models', 'unique_together': (('dataset', 'kind', 'offset_seconds', 'window_end'),), 'indexes': [Index(fields=['user_id', 'read_at'], name='notification_user_read')], 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
