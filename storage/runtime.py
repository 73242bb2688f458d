"""What the services need, built once per process and handed to every service call.

The services own their side effects: a change to a dataset tells the ``scheduler``
(so exact-time work is (re)planned), and a stored notification is handed to the
``notifier`` (so it reaches its owner on other channels). After either, the ``bus``
is told, by id only, so live subscriptions re-read what changed. All three are
interfaces declared here and implemented above this layer (``jobs``): the ARQ
scheduler, the embedded runner, the in-app notifier, the in-process or Redis bus.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from storage.blobs.base import BlobStore
from storage.config.settings import Settings
from storage.crypto.master import MasterKeys
from storage.db.models import Notification
from storage.retention.policy import RetentionPolicy
from storage.system.clock import Clock
from storage.system.disk import Reserve, check_room
from storage.system.metrics import Metrics


class Scheduler(Protocol):
    async def dataset_changed(self, dataset_id: int) -> None:
        """(Re)schedule the exact-time work for this dataset from its current row.

        Never raises: if scheduling fails, the periodic sweep does the work.
        """
        ...

    async def datasets_changed(self, dataset_ids: Sequence[int]) -> None:
        """:meth:`dataset_changed` for many datasets changed together (a sweep's batch),
        at a cost that need not grow a round trip per dataset."""
        ...

    async def file_changed(self, file_id: int) -> None:
        """(Re)schedule the erasure of this weights file's withheld header keys."""
        ...

    async def mail_queued(self) -> None:
        """E-mail was queued (committed): have it sent soon. Never raises, never waits
        long: if this fails, the sweep sends it."""
        ...

    async def export_changed(self, export_id: int) -> None:
        """(Re)schedule a data export's work: building it now, shredding it at its end."""
        ...


class Notifier(Protocol):
    async def deliver(self, notification: Notification) -> None:
        """Send a stored notification on this channel. Never raises for a bad address."""
        ...


class Bus(Protocol):
    """Tells live subscribers (in this process or, through Redis, in others) that
    something changed. It carries ids only: a subscriber re-reads through the
    lookups, as its viewer. Called after the change is committed; never raises."""

    async def notification_added(self, user_id: int) -> None: ...

    async def dataset_changed(self, dataset_id: int) -> None: ...

    async def signal(self, *, users: Sequence[int] = (), datasets: Sequence[int] = ()) -> None:
        """Many signals at once (a sweep's batch): :meth:`notification_added` for each of
        ``users`` and :meth:`dataset_changed` for each of ``datasets``."""
        ...


class NoBus:
    """Tells nobody (tools, and runtimes with no subscribers to reach)."""

    async def notification_added(self, user_id: int) -> None:
        return None

    async def dataset_changed(self, dataset_id: int) -> None:
        return None

    async def signal(self, *, users: Sequence[int] = (), datasets: Sequence[int] = ()) -> None:
        return None


class NoScheduler:
    """Schedules nothing: the sweep alone does the work (tools, jobs and some tests)."""

    async def dataset_changed(self, dataset_id: int) -> None:
        return None

    async def datasets_changed(self, dataset_ids: Sequence[int]) -> None:
        return None

    async def file_changed(self, file_id: int) -> None:
        return None

    async def mail_queued(self) -> None:
        return None

    async def export_changed(self, export_id: int) -> None:
        return None


class Fanout:
    """Tells several schedulers (the ARQ scheduler and serve's fallback runner)."""

    def __init__(self, *schedulers: Scheduler):
        self._schedulers = schedulers

    async def dataset_changed(self, dataset_id: int) -> None:
        for scheduler in self._schedulers:
            await scheduler.dataset_changed(dataset_id)

    async def datasets_changed(self, dataset_ids: Sequence[int]) -> None:
        for scheduler in self._schedulers:
            await scheduler.datasets_changed(dataset_ids)

    async def file_changed(self, file_id: int) -> None:
        for scheduler in self._schedulers:
            await scheduler.file_changed(file_id)

    async def mail_queued(self) -> None:
        for scheduler in self._schedulers:
            await scheduler.mail_queued()

    async def export_changed(self, export_id: int) -> None:
        for scheduler in self._schedulers:
            await scheduler.export_changed(export_id)


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    clock: Clock
    blobs: BlobStore  # sealed: plaintext in and out, ciphertext kept (storage.blobs.sealed)
    scheduler: Scheduler
    notifier: Notifier
    master: MasterKeys  # wraps data keys and receipt keys (storage.crypto.master)
    # Archive checks inflate every entry (up to LORASHELF_ZIP_MAX_RATIO times the upload):
    # one at a time per process, so they never take every worker thread from the rest.
    archive_checks: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))
    # A weights file's header larger than a few kilobytes is parsed in a child process
    # (storage.headers): one at a time per process.
    header_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))
    bus: Bus = field(default_factory=NoBus)
    metrics: Metrics = field(default_factory=Metrics)  # this process's own registry

    @property
    def policy(self) -> RetentionPolicy:
        return RetentionPolicy.of(self.settings)

    @property
    def reserve(self) -> Reserve:
        return Reserve(self.settings.data_dir)

    def check_room_for_an_upload(self) -> None:
        """Refuse a new upload unless the largest one allowed would fit. The answer never
        depends on the size asked for: sizes asked one after another would otherwise
        measure the free space, and through it other people's private uploads and
        deletions (only whether the disk is nearly full shows, as on ``/readyz``)."""
        self.check_room(max(self.settings.max_dataset_bytes, self.settings.max_model_file_bytes))

    def check_room(self, adding: int) -> None:
        """Refuse an upload of ``adding`` bytes that would leave the disk too full. While
        the reserve is given back (or could not be made), its size is kept free as well,
        so uploads never take the space the reserve must get back."""
        reserve = self.reserve
        held = reserve.path.exists() or reserve.ensure()
        min_free = self.settings.min_free_bytes + (0 if held else reserve.size)
        check_room(self.settings.data_dir, adding=adding, min_free=min_free)

    async def deliver(self, notification: Notification | None) -> None:
        """Deliver a stored (committed) notification, and tell its owner's live
        subscriptions."""
        if notification is not None:
            await self.deliver_all([notification])

    async def deliver_all(self, notifications: Sequence[Notification]) -> None:
        """Deliver stored (committed) notifications made together (a sweep's): each on
        the notifier, each owner's live subscriptions told once, and one e-mail pass
        for all of them."""
        if not notifications:
            return
        for notification in notifications:
            await self.notifier.deliver(notification)
        await self.bus.signal(users=[n.user_id for n in notifications])  # each user once
        if self.settings.smtp_url:  # their e-mail, if any, was queued with them
            await self.scheduler.mail_queued()

    async def dataset_changed(self, dataset_id: int) -> None:
        """After a committed change to a dataset: (re)plan its exact-time work and tell
        the live subscriptions watching it."""
        await self.scheduler.dataset_changed(dataset_id)
        await self.bus.dataset_changed(dataset_id)

    async def datasets_changed(self, dataset_ids: Sequence[int]) -> None:
        """:meth:`dataset_changed` for many datasets changed together (a sweep's batch)."""
        if not dataset_ids:
            return
        await self.scheduler.datasets_changed(dataset_ids)
        await self.bus.signal(datasets=dataset_ids)
