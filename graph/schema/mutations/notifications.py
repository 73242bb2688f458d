"""Notification mutations: mark notifications read."""

from __future__ import annotations

from typing import Annotated

import strawberry

from graph.schema import ids
from graph.schema.context import Info
from graph.schema.mutations.payload import (
    INPUT,
    UserError,
    payload_mutation,
    user_errors_field,
)
from graph.schema.types.notifications import NotificationType
from storage import notifications
from storage.privacy import lookups


@strawberry.input(description="Mark some of your notifications read.")
class MarkNotificationsReadInput:
    ids: list[strawberry.ID] = strawberry.field(description="The notifications' IDs.")


@strawberry.type(description="The result of markNotificationsRead.")
class MarkNotificationsReadPayload:
    notifications: list[NotificationType] = strawberry.field(
        default_factory=list, description="The notifications now marked read."
    )
    user_errors: list[UserError] = user_errors_field()


@payload_mutation("Mark some of your notifications read.")
async def mark_notifications_read(
    info: Info, input: Annotated[MarkNotificationsReadInput, INPUT]
) -> MarkNotificationsReadPayload:
    ctx = info.context
    rows = await notifications.mark_read(
        user_id=lookups.require_viewer(ctx.viewer_id),
        ids=ids.decode_many([str(i) for i in input.ids], lookups.NOTIFICATION.name),
        now=ctx.now(),
    )
    return MarkNotificationsReadPayload(notifications=[NotificationType.of(r) for r in rows])
