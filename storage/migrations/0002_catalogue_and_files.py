"""Weights files, the catalogue (type, tags, nsfw, base model, trained words, download
counts), download links, and catalogue search (FTS5 on SQLite, pg_trgm on PostgreSQL).

Self-contained: the enums and the JSON field below are frozen as they were when this
migration was written. The columns it adds to models and versions are NOT NULL with
a default: AddFieldKeepingRows adds them to tables that already have rows too (a
database of 673a58e), ending with exactly the schema a new database gets.
"""

from enum import StrEnum

from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index
from ._operations import AddFieldKeepingRows


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


class EventKind(StrEnum):
    UPLOAD_STARTED = "UPLOAD_STARTED"
    UPLOADED = "UPLOADED"
    PUBLISHED = "PUBLISHED"
    MADE_PRIVATE = "MADE_PRIVATE"
    MADE_PUBLIC = "MADE_PUBLIC"
    DOWNLOADED = "DOWNLOADED"
    REMINDED = "REMINDED"
    DELETED = "DELETED"
    HEADER_ERASED = "HEADER_ERASED"


class LoraType(StrEnum):
    LORA = "LORA"
    LOCON = "LOCON"
    DORA = "DORA"


class BaseModel(StrEnum):
    SD_1_5 = "SD_1_5"
    SD_2_1 = "SD_2_1"
    SDXL_1_0 = "SDXL_1_0"
    PONY = "PONY"
    ILLUSTRIOUS = "ILLUSTRIOUS"
    SD_3_5 = "SD_3_5"
    FLUX_1_D = "FLUX_1_D"
    FLUX_1_S = "FLUX_1_S"
    OTHER = "OTHER"


class OrderedJSONField(fields.JSONField):
    """JSON kept as written: ``json`` on PostgreSQL, not ``jsonb`` (keys re-sorted)."""

    class _db_postgres:
        SQL_TYPE = "JSON"


SQLITE_SEARCH = """
CREATE VIRTUAL TABLE IF NOT EXISTS model_search USING fts5(
    search_text, content='lora_models', content_rowid='id', tokenize='trigram'
);
CREATE TRIGGER IF NOT EXISTS model_search_insert AFTER INSERT ON lora_models BEGIN
    INSERT INTO model_search(rowid, search_text) VALUES (new.id, new.search_text);
END;
CREATE TRIGGER IF NOT EXISTS model_search_delete AFTER DELETE ON lora_models BEGIN
    INSERT INTO model_search(model_search, rowid, search_text)
        VALUES ('delete', old.id, old.search_text);
END;
CREATE TRIGGER IF NOT EXISTS model_search_update AFTER UPDATE OF search_text ON lora_models BEGIN
    INSERT INTO model_search(model_search, rowid, search_text)
        VALUES ('delete', old.id, old.search_text);
    INSERT INTO model_search(rowid, search_text) VALUES (new.id, new.search_text);
END;
"""

POSTGRES_SEARCH = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS model_search_trgm ON lora_models "
    "USING gin (search_text gin_trgm_ops)",
]

# Existing models get a search document: name, description and owner (no tags or
# trained words existed before this migration).
BACKFILL = (
    "UPDATE lora_models SET search_text = LOWER(name || ' ' || description || ' ' || "
    "(SELECT username FROM users WHERE users.id = lora_models.owner_id))"
)


def sqlite_statements(script):
    """A script's statements, each with its exact text (a trigger's body included)."""
    import sqlite3

    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements


async def search_index(apps, schema_editor):
    # The documents first, then the index: on SQLite the update trigger would "delete"
    # from the FTS index documents it never held (which corrupts it). One statement at
    # a time: a script would commit the migration's transaction half-way.
    client = schema_editor.client
    await client.execute_query(BACKFILL)
    if client.capabilities.dialect == "sqlite":
        for statement in sqlite_statements(SQLITE_SEARCH):
            await client.execute_query(statement)
        await client.execute_query("INSERT INTO model_search(model_search) VALUES ('rebuild')")
    else:
        for statement in POSTGRES_SEARCH:
            await client.execute_query(statement)


class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='DownloadLink',
            fields=[
                ('link', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=32)),
                ('kind', fields.CharField(max_length=1)),
                ('object_id', fields.IntField()),
                ('first_used_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('from_start', fields.BooleanField(default=False)),
                ('counted', fields.BooleanField(default=False)),
            ],
            options={'table': 'download_links', 'app': 'models', 'pk_attr': 'link', 'table_description': 'A download link that was used: one history entry (datasets) and at most one'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ModelFile',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('version', fields.ForeignKeyField('models.ModelVersion', source_field='version_id', db_constraint=True, to_field='id', related_name='files', on_delete=OnDelete.CASCADE)),
                ('owner', fields.ForeignKeyField('models.User', source_field='owner_id', db_constraint=True, to_field='id', related_name='model_files', on_delete=OnDelete.CASCADE)),
                ('filename', fields.CharField(max_length=255)),
                ('size_bytes', fields.BigIntField()),
                ('status', fields.CharEnumField(description='PENDING_UPLOAD: PENDING_UPLOAD\nUPLOADING: UPLOADING\nAVAILABLE: AVAILABLE\nDELETING: DELETING\nDELETED: DELETED', enum_type=DatasetStatus, max_length=16)),
                ('primary', fields.BooleanField(default=False)),
                ('upload_nonce', fields.CharField(null=True, max_length=64)),
                ('upload_expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('claimed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('header_key', fields.CharField(null=True, max_length=64)),
                ('public_header_key', fields.CharField(null=True, max_length=64)),
                ('data_key', fields.CharField(null=True, max_length=64)),
                ('header_size', fields.BigIntField(null=True)),
                ('public_header_size', fields.BigIntField(null=True)),
                ('sha256', fields.CharField(null=True, db_index=True, max_length=64)),
                ('auto_v2', fields.CharField(null=True, db_index=True, max_length=10)),
                ('public_sha256', fields.CharField(null=True, db_index=True, max_length=64)),
                ('public_auto_v2', fields.CharField(null=True, db_index=True, max_length=10)),
                ('auto_v3', fields.CharField(null=True, db_index=True, max_length=64)),
                ('public_metadata', OrderedJSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('withheld_keys', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('header_expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('header_erased_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('network_module', fields.CharField(null=True, max_length=256)),
                ('network_dim', fields.IntField(null=True)),
                ('network_alpha', fields.FloatField(null=True)),
                ('base_model_version', fields.CharField(null=True, max_length=256)),
                ('modelspec_architecture', fields.CharField(null=True, max_length=256)),
                ('algo', fields.CharField(null=True, max_length=256)),
                ('suggested_base_model', fields.CharEnumField(null=True, description='SD_1_5: SD_1_5\nSD_2_1: SD_2_1\nSDXL_1_0: SDXL_1_0\nPONY: PONY\nILLUSTRIOUS: ILLUSTRIOUS\nSD_3_5: SD_3_5\nFLUX_1_D: FLUX_1_D\nFLUX_1_S: FLUX_1_S\nOTHER: OTHER', enum_type=BaseModel, max_length=16)),
                ('suggested_type', fields.CharEnumField(null=True, description='LORA: LORA\nLOCON: LOCON\nDORA: DORA', enum_type=LoraType, max_length=16)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('uploaded_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('deleted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('deletion_reason', fields.CharEnumField(null=True, description='EXPIRED: EXPIRED\nOWNER_REQUEST: OWNER_REQUEST\nMODEL_DELETED: MODEL_DELETED', enum_type=DeletionReason, max_length=16)),
            ],
            options={'table': 'model_files', 'app': 'models', 'indexes': [Index(fields=['version_id', 'id'], name='file_version'), Index(fields=['status', 'header_expires_at'], name='file_status_header'), Index(fields=['owner_id', 'status'], name='file_owner')], 'pk_attr': 'id', 'table_description': 'A weights file (safetensors) of a model version.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ModelTag',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('model', fields.ForeignKeyField('models.LoraModel', source_field='model_id', db_constraint=True, to_field='id', related_name='tag_rows', on_delete=OnDelete.CASCADE)),
                ('tag', fields.CharField(max_length=32)),
                ('position', fields.SmallIntField(default=0)),
            ],
            options={'table': 'model_tags', 'app': 'models', 'unique_together': (('model', 'tag'),), 'indexes': [Index(fields=['tag', 'model_id'], name='tag_models')], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.AlterField(
            model_name='DatasetEvent',
            name='kind',
            field=fields.CharEnumField(description='UPLOAD_STARTED: UPLOAD_STARTED\nUPLOADED: UPLOADED\nPUBLISHED: PUBLISHED\nMADE_PRIVATE: MADE_PRIVATE\nMADE_PUBLIC: MADE_PUBLIC\nDOWNLOADED: DOWNLOADED\nREMINDED: REMINDED\nDELETED: DELETED\nHEADER_ERASED: HEADER_ERASED', enum_type=EventKind, max_length=32),
        ),
        AddFieldKeepingRows(
            model_name='LoraModel',
            name='download_count',
            field=fields.BigIntField(default=0),
        ),
        AddFieldKeepingRows(
            model_name='LoraModel',
            name='nsfw',
            field=fields.BooleanField(default=False),
        ),
        AddFieldKeepingRows(
            model_name='LoraModel',
            name='search_text',
            field=fields.TextField(default='', unique=False),
        ),
        AddFieldKeepingRows(
            model_name='LoraModel',
            name='type',
            field=fields.CharEnumField(default=LoraType.LORA, description='LORA: LORA\nLOCON: LOCON\nDORA: DORA', enum_type=LoraType, max_length=16),
        ),
        ops.AddIndex(
            model_name='LoraModel',
            index=Index(fields=['download_count', 'id'], name='model_downloads'),
        ),
        AddFieldKeepingRows(
            model_name='ModelVersion',
            name='base_model',
            field=fields.CharEnumField(default=BaseModel.OTHER, description='SD_1_5: SD_1_5\nSD_2_1: SD_2_1\nSDXL_1_0: SDXL_1_0\nPONY: PONY\nILLUSTRIOUS: ILLUSTRIOUS\nSD_3_5: SD_3_5\nFLUX_1_D: FLUX_1_D\nFLUX_1_S: FLUX_1_S\nOTHER: OTHER', enum_type=BaseModel, max_length=16),
        ),
        AddFieldKeepingRows(
            model_name='ModelVersion',
            name='download_count',
            field=fields.BigIntField(default=0),
        ),
        AddFieldKeepingRows(
            model_name='ModelVersion',
            name='trained_words',
            field=fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.AddIndex(
            model_name='ModelVersion',
            index=Index(fields=['model_id', 'base_model'], name='version_base_model'),
        ),
        ops.RunPython(search_index),
    ]
