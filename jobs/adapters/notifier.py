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
        # Neither its owner nor its kind: a line pairing a user with a dataset's
        # reminder or deletion, at the end of a window that public dates predict, would
        # tell whoever reads the logs that the user had a private dataset.
        log.info("notification %s stored", notification.id)
