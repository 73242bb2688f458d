"""The models of running a site (reports, the audit trail, outgoing e-mail), beside
the catalogue's in :mod:`storage.db.models` (the same app, "models")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model

from storage.db.enums import AuditAction, MailKind, MailStatus, ReportReason, ReportStatus
from storage.db.models import new_public_id

if TYPE_CHECKING:
    from storage.db.models import User


class Report(Model):
    """Somebody's report of an object they could see (storage.reports). The subject is
    named by its kind (the API's type name) and key: it may be gone since."""

    id = fields.IntField(primary_key=True)
    public_id = fields.CharField(max_length=24, unique=True, default=new_public_id)
    reporter: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="reports", null=True, on_delete=fields.SET_NULL
    )
    subject_kind = fields.CharField(max_length=16)
    subject_id = fields.IntField()
    reason = fields.CharEnumField(ReportReason, max_length=16)
    details = fields.TextField(default="")
    status = fields.CharEnumField(ReportStatus, max_length=16, default=ReportStatus.OPEN)
    created_at = fields.DatetimeField()
    resolved_at = fields.DatetimeField(null=True)

    reporter_id: int | None

    class Meta:
        table = "reports"
        indexes = (
            Index(fields=("status", "id"), name="report_status"),
            Index(fields=("reporter_id", "id"), name="report_reporter"),
            Index(fields=("subject_kind", "subject_id", "status"), name="report_subject"),
        )


class AuditEntry(Model):
    """One operator action (storage.audit): append-only. No service updates or deletes
    a row, and the database refuses both (triggers, migration 0014). Who and whose are
    plain keys, not foreign keys: a row outlives the accounts it names."""

    id = fields.IntField(primary_key=True)
    public_id = fields.CharField(max_length=24, unique=True, default=new_public_id)
    at = fields.DatetimeField()
    actor_id = fields.IntField(null=True)  # null: the command line
    actor_name = fields.CharField(max_length=128)  # as it was then
    action = fields.CharEnumField(AuditAction, max_length=24)
    subject_kind = fields.CharField(max_length=16)
    subject_id = fields.IntField()
    subject_public_id = fields.CharField(max_length=24)  # its API id is kind + this
    subject_owner_id = fields.IntField(null=True)  # who sees the entry besides operators
    reason = fields.TextField(default="")
    details = fields.TextField(default="")
    destroy_private_data = fields.BooleanField(default=False)
    request_id = fields.CharField(max_length=64, default="")

    class Meta:
        table = "audit_entries"
        indexes = (
            Index(fields=("subject_owner_id", "id"), name="audit_owner"),
            Index(fields=("at", "id"), name="audit_at"),
        )


class OutgoingMail(Model):
    """An e-mail to send (storage.mail.outbox): written in the transaction of what it
    reports, sent by the jobs with retries, never by a request. The address and the
    text are cleared once the message is sent, dropped or given up."""

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="outgoing_mail", on_delete=fields.CASCADE
    )
    kind = fields.CharEnumField(MailKind, max_length=16)
    recipient = fields.CharField(max_length=254, null=True)
    subject = fields.TextField(default="")
    text_body = fields.TextField(default="")
    html_body = fields.TextField(default="")
    status = fields.CharEnumField(MailStatus, max_length=16, default=MailStatus.PENDING)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField()
    give_up_at = fields.DatetimeField()
    claimed_at = fields.DatetimeField(null=True)
    claimed_by = fields.CharField(max_length=128, null=True)
    last_error = fields.CharField(max_length=200, null=True)
    created_at = fields.DatetimeField()
    finished_at = fields.DatetimeField(null=True)

    user_id: int

    class Meta:
        table = "outgoing_mail"
        indexes = (
            Index(fields=("status", "next_attempt_at"), name="mail_status_due"),
            Index(fields=("user_id", "status"), name="mail_user"),
        )


__models__ = [Report, AuditEntry, OutgoingMail]  # what Tortoise discovers here
