"""Running a site: operators and suspensions (users), takedowns (models, versions),
reports, the append-only audit trail, e-mail addresses and outgoing e-mail.

Self-contained: the enums and the public-id default below are frozen as they were when
this migration was written. The NOT NULL columns added to ``users`` have a default:
AddFieldKeepingRows adds them to a table with rows too. New enum members change only
the migration state (DescriptionOnly). ``audit_entries`` refuses
UPDATE and DELETE in the database itself (triggers): the trail is append-only whatever
code runs against it. Two partial indexes join those of 0009 for the question asked
with every signed-in request (does this account own anything only it sees?): the
taken-down models and versions, by owner; their conditions are frozen here.
"""

import secrets
from enum import StrEnum

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

from ._operations import AddFieldKeepingRows


def new_public_id():
    return secrets.token_urlsafe(16)


class AuditAction(StrEnum):
    TAKE_DOWN = "TAKE_DOWN"
    RESTORE = "RESTORE"
    SUSPEND_USER = "SUSPEND_USER"
    UNSUSPEND_USER = "UNSUSPEND_USER"
    DISMISS_REPORT = "DISMISS_REPORT"
    GRANT_OPERATOR = "GRANT_OPERATOR"
    REVOKE_OPERATOR = "REVOKE_OPERATOR"


class DeletionReason(StrEnum):
    EXPIRED = "EXPIRED"
    OWNER_REQUEST = "OWNER_REQUEST"
    MODEL_DELETED = "MODEL_DELETED"
    TAKEN_DOWN = "TAKEN_DOWN"
    ACCOUNT_DELETED = "ACCOUNT_DELETED"


class MailKind(StrEnum):
    VERIFY_ADDRESS = "VERIFY_ADDRESS"
    REMINDER = "REMINDER"
    DELETION = "DELETION"
    MODERATION = "MODERATION"


class MailStatus(StrEnum):
    PENDING = "PENDING"
    SENDING = "SENDING"
    SENT = "SENT"
    DEAD = "DEAD"
    DROPPED = "DROPPED"


class NotificationKind(StrEnum):
    DATASET_EXPIRING = "DATASET_EXPIRING"
    DATASET_DELETED = "DATASET_DELETED"
    CONTENT_TAKEN_DOWN = "CONTENT_TAKEN_DOWN"
    CONTENT_RESTORED = "CONTENT_RESTORED"
    ACCOUNT_SUSPENDED = "ACCOUNT_SUSPENDED"
    ACCOUNT_REINSTATED = "ACCOUNT_REINSTATED"
    EXPORT_READY = "EXPORT_READY"


class ReportReason(StrEnum):
    COPYRIGHT = "COPYRIGHT"
    PRIVACY = "PRIVACY"
    ILLEGAL = "ILLEGAL"
    SPAM = "SPAM"
    IMPERSONATION = "IMPERSONATION"
    OTHER = "OTHER"


class ReportStatus(StrEnum):
    OPEN = "OPEN"
    ACTIONED = "ACTIONED"
    DISMISSED = "DISMISSED"


class DescriptionOnly(ops.AlterField):
    """An ``AlterField`` that changes only the migration state: the enum's members (in
    the field's description). A ``CharEnumField`` column holds any string, so the
    database has nothing to change, and on SQLite ``AlterField`` would rebuild the whole
    table, dropping its indexes and unique constraints."""

    async def database_forward(self, app_label, old_state, new_state, state_editor=None):
        return None


SQLITE_APPEND_ONLY = [
    "CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries "
    "BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END",
    "CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries "
    "BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END",
]
POSTGRES_APPEND_ONLY = [
    "CREATE FUNCTION audit_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'audit entries are append-only'; END $$",
    "CREATE TRIGGER audit_entries_no_change BEFORE UPDATE OR DELETE ON audit_entries "
    "FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only()",
    "CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_entries_append_only()",
]


async def append_only(apps, schema_editor):
    client = schema_editor.client
    sqlite = client.capabilities.dialect == "sqlite"
    for statement in SQLITE_APPEND_ONLY if sqlite else POSTGRES_APPEND_ONLY:
        await client.execute_query(statement)


UNSHARED_INDEXES = (
    ("unshared_taken_down_models", "lora_models", "taken_down_at IS NOT NULL"),
    ("unshared_taken_down_versions", "model_versions", "taken_down_at IS NOT NULL"),
)


async def unshared_indexes(apps, schema_editor):
    client = schema_editor.client
    for name, table, condition in UNSHARED_INDEXES:
        await client.execute_script(
            f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" (owner_id) WHERE {condition}'
        )


class Migration(migrations.Migration):
    dependencies = [('models', '0013_idempotency_keys')]

    initial = False

    operations = [
        ops.CreateModel(
            name='AuditEntry',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('public_id', fields.CharField(default=new_public_id, unique=True, max_length=24)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('actor_id', fields.IntField(null=True)),
                ('actor_name', fields.CharField(max_length=128)),
                ('action', fields.CharEnumField(description='TAKE_DOWN: TAKE_DOWN\nRESTORE: RESTORE\nSUSPEND_USER: SUSPEND_USER\nUNSUSPEND_USER: UNSUSPEND_USER\nDISMISS_REPORT: DISMISS_REPORT\nGRANT_OPERATOR: GRANT_OPERATOR\nREVOKE_OPERATOR: REVOKE_OPERATOR', enum_type=AuditAction, max_length=24)),
                ('subject_kind', fields.CharField(max_length=16)),
                ('subject_id', fields.IntField()),
                ('subject_public_id', fields.CharField(max_length=24)),
                ('subject_owner_id', fields.IntField(null=True)),
                ('reason', fields.TextField(default='', unique=False)),
                ('details', fields.TextField(default='', unique=False)),
                ('destroy_private_data', fields.BooleanField(default=False)),
                ('request_id', fields.CharField(default='', max_length=64)),
            ],
            options={'table': 'audit_entries', 'app': 'models', 'indexes': [Index(fields=['subject_owner_id', 'id'], name='audit_owner'), Index(fields=['at', 'id'], name='audit_at')], 'pk_attr': 'id', 'table_description': 'One operator action (storage.audit): append-only. No service updates or deletes'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='OutgoingMail',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='outgoing_mail', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharEnumField(description='VERIFY_ADDRESS: VERIFY_ADDRESS\nREMINDER: REMINDER\nDELETION: DELETION\nMODERATION: MODERATION', enum_type=MailKind, max_length=16)),
                ('recipient', fields.CharField(null=True, max_length=254)),
                ('subject', fields.TextField(default='', unique=False)),
                ('text_body', fields.TextField(default='', unique=False)),
                ('html_body', fields.TextField(default='', unique=False)),
                ('status', fields.CharEnumField(default=MailStatus.PENDING, description='PENDING: PENDING\nSENDING: SENDING\nSENT: SENT\nDEAD: DEAD\nDROPPED: DROPPED', enum_type=MailStatus, max_length=16)),
                ('attempts', fields.IntField(default=0)),
                ('next_attempt_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('give_up_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('claimed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('claimed_by', fields.CharField(null=True, max_length=128)),
                ('last_error', fields.CharField(null=True, max_length=200)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'outgoing_mail', 'app': 'models', 'indexes': [Index(fields=['status', 'next_attempt_at'], name='mail_status_due'), Index(fields=['user_id', 'status'], name='mail_user')], 'pk_attr': 'id', 'table_description': 'An e-mail to send (storage.mail.outbox): written in the transaction of what it'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Report',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('public_id', fields.CharField(default=new_public_id, unique=True, max_length=24)),
                ('reporter', fields.ForeignKeyField('models.User', source_field='reporter_id', null=True, db_constraint=True, to_field='id', related_name='reports', on_delete=OnDelete.SET_NULL)),
                ('subject_kind', fields.CharField(max_length=16)),
                ('subject_id', fields.IntField()),
                ('reason', fields.CharEnumField(description='COPYRIGHT: COPYRIGHT\nPRIVACY: PRIVACY\nILLEGAL: ILLEGAL\nSPAM: SPAM\nIMPERSONATION: IMPERSONATION\nOTHER: OTHER', enum_type=ReportReason, max_length=16)),
                ('details', fields.TextField(default='', unique=False)),
                ('status', fields.CharEnumField(default=ReportStatus.OPEN, description='OPEN: OPEN\nACTIONED: ACTIONED\nDISMISSED: DISMISSED', enum_type=ReportStatus, max_length=16)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('resolved_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'reports', 'app': 'models', 'indexes': [Index(fields=['status', 'id'], name='report_status'), Index(fields=['reporter_id', 'id'], name='report_reporter'), Index(fields=['subject_kind', 'subject_id', 'status'], name='report_subject')], 'pk_attr': 'id', 'table_description': "Somebody's report of an object they could see (storage.reports). The subject is"},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='LoraModel',
            name='taken_down_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='LoraModel',
            name='taken_down_reason',
            field=fields.TextField(null=True, unique=False),
        ),
        DescriptionOnly(
            model_name='ModelFile',
            name='deletion_reason',
            field=fields.CharEnumField(null=True, description='EXPIRED: EXPIRED\nOWNER_REQUEST: OWNER_REQUEST\nMODEL_DELETED: MODEL_DELETED\nTAKEN_DOWN: TAKEN_DOWN\nACCOUNT_DELETED: ACCOUNT_DELETED', enum_type=DeletionReason, max_length=16),
        ),
        ops.AddField(
            model_name='ModelVersion',
            name='taken_down_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='ModelVersion',
            name='taken_down_reason',
            field=fields.TextField(null=True, unique=False),
        ),
        DescriptionOnly(
            model_name='Notification',
            name='kind',
            field=fields.CharEnumField(description='DATASET_EXPIRING: DATASET_EXPIRING\nDATASET_DELETED: DATASET_DELETED\nCONTENT_TAKEN_DOWN: CONTENT_TAKEN_DOWN\nCONTENT_RESTORED: CONTENT_RESTORED\nACCOUNT_SUSPENDED: ACCOUNT_SUSPENDED\nACCOUNT_REINSTATED: ACCOUNT_REINSTATED\nEXPORT_READY: EXPORT_READY', enum_type=NotificationKind, max_length=32),
        ),
        DescriptionOnly(
            model_name='TrainingDataset',
            name='deletion_reason',
            field=fields.CharEnumField(null=True, description='EXPIRED: EXPIRED\nOWNER_REQUEST: OWNER_REQUEST\nMODEL_DELETED: MODEL_DELETED\nTAKEN_DOWN: TAKEN_DOWN\nACCOUNT_DELETED: ACCOUNT_DELETED', enum_type=DeletionReason, max_length=16),
        ),
        ops.AddField(
            model_name='User',
            name='email',
            field=fields.CharField(null=True, max_length=254),
        ),
        AddFieldKeepingRows(
            model_name='User',
            name='email_deletions',
            field=fields.BooleanField(default=True),
        ),
        ops.AddField(
            model_name='User',
            name='email_nonce',
            field=fields.CharField(null=True, max_length=32),
        ),
        AddFieldKeepingRows(
            model_name='User',
            name='email_reminders',
            field=fields.BooleanField(default=True),
        ),
        ops.AddField(
            model_name='User',
            name='email_verified_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        AddFieldKeepingRows(
            model_name='User',
            name='is_operator',
            field=fields.BooleanField(default=False),
        ),
        ops.AddField(
            model_name='User',
            name='suspended_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='User',
            name='suspension_reason',
            field=fields.TextField(null=True, unique=False),
        ),
        ops.RunPython(append_only),
        ops.RunPython(unshared_indexes),
    ]
