"""Delivering notifications to their owners.

Every notification is first stored (``storage.notifications``) in the same
transaction as the change it reports: the stored row *is* the in-app notification,
and the record that it was sent. A notifier (the ``storage.runtime.Notifier``
interface) then delivers it on further channels; an e-mail or webhook sender
implements the same one-method interface.
"""

from __future__ import annotations

import logging

from storage.db.models import Notification

log = logging.getLogger("lorashelf.notify")


class InAppNotifier:
    """The built-in channel: in-app notifications are the stored rows, so delivering
    only logs. ``viewer.notifications`` and ``unreadNotificationCount`` read them."""

    async def deliver(self, notification: Notification) -> None:
        log.info(
            "notification %s (%s) for user %s",
            notification.id,
            notification.kind.value,
            notification.user_id,
        )
