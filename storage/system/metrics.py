"""The numbers operations watch (Prometheus): retention work, counted in the process
that does it, and the counts read from the database when scraped.

Aggregates only: no label ever holds a user, a dataset, a filename or an id, so a
``/metrics`` exposed by mistake reveals totals and nothing about anybody.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from tortoise.functions import Count

from storage.db.enums import DatasetStatus, DeletionReason, MailKind, Visibility
from storage.db.models import TrainingDataset

# Seconds between a window's end and its dataset's deletion: on time is under a second.
LATENESS_BUCKETS = (0.1, 0.5, 1, 2, 5, 15, 60, 300, 900, 3600, 6 * 3600, 86400)
SWEEP_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    """One process's registry (never the global default: each app or worker owns its
    own), with the retention counters every process that runs jobs moves."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.deletions = Counter(
            "lorashelf_dataset_deletions",
            "Datasets deleted by this process (tombstones written), by reason.",
            ["reason"],
            registry=self.registry,
        )
        for reason in DeletionReason:
            self.deletions.labels(reason.value)
        self.deletion_lateness = Histogram(
            "lorashelf_deletion_lateness_seconds",
            "deletedAt - expiresAt of the expired datasets this process deleted.",
            buckets=LATENESS_BUCKETS,
            registry=self.registry,
        )
        self.reminders = Counter(
            "lorashelf_reminders_sent",
            "Reminders stored by this process; late: sent after their grace.",
            ["late"],
            registry=self.registry,
        )
        for late in ("false", "true"):
            self.reminders.labels(late)
        self.mails = Counter(
            "lorashelf_mail_sent",
            "E-mail this process handed to the SMTP server, by kind.",
            ["kind"],
            registry=self.registry,
        )
        for kind in MailKind:
            self.mails.labels(kind.value)
        self.mail_failures = Counter(
            "lorashelf_mail_failed_attempts",
            "Attempts to send e-mail that failed (each is retried with back-off).",
            registry=self.registry,
        )
        self.mail_dead_letters = Counter(
            "lorashelf_mail_dead_letters",
            "E-mail this process gave up on (refused for good, or its retry window ended).",
            registry=self.registry,
        )
        self.sweep_duration = Histogram(
            "lorashelf_sweep_duration_seconds",
            "How long this process's sweeps took.",
            buckets=SWEEP_BUCKETS,
            registry=self.registry,
        )

    def mail_sent(self, kind: MailKind) -> None:
        self.mails.labels(kind.value).inc()

    def mail_failed(self) -> None:
        self.mail_failures.inc()

    def mail_dead(self) -> None:
        self.mail_dead_letters.inc()

    def deleted(self, reason: DeletionReason, *, lateness: float | None) -> None:
        self.deletions.labels(reason.value).inc()
        if lateness is not None:
            self.deletion_lateness.observe(max(0.0, lateness))

    def reminded(self, *, late: bool) -> None:
        self.reminders.labels("true" if late else "false").inc()


@dataclass(frozen=True)
class Backlog:
    """Counts from the database, the truth whatever process did the work."""

    datasets: dict[str, int]  # by status
    overdue_expiries: int  # private, still available, window over: should be 0
    due_reminders: int  # reminders due and not sent yet


async def backlog(now: datetime) -> Backlog:
    rows = await (
        TrainingDataset.all().annotate(n=Count("id")).group_by("status").values_list("status", "n")
    )
    by_status = {status.value: 0 for status in DatasetStatus}
    for status, n in rows:
        by_status[DatasetStatus(status).value] = int(n)
    overdue = await TrainingDataset.filter(
        status=DatasetStatus.AVAILABLE, visibility=Visibility.PRIVATE, expires_at__lte=now
    ).count()
    reminders = await TrainingDataset.filter(
        status=DatasetStatus.AVAILABLE, next_reminder_at__lte=now
    ).count()
    return Backlog(datasets=by_status, overdue_expiries=overdue, due_reminders=reminders)
