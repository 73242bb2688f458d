"""Live updates: GraphQL subscriptions over WebSocket (``graphql-transport-ws``).

The client authenticates once, in ``connection_init`` (``{"Authorization": "Bearer
<token>"}`` or ``{"token": "<token>"}``; see ``graph.http.endpoint``). A subscription then:

- needs a viewer (``UNAUTHENTICATED`` otherwise), and a free place among the viewer's
  ``LORASHELF_MAX_SUBSCRIPTIONS_PER_USER`` on this process (``TOO_MANY_SUBSCRIPTIONS``);
- listens on the bus (``jobs.adapters.bus``) for signals that carry ids only, and on each one
  re-reads what it shows through the same owned lookups as every other path, as its
  viewer, with fresh DataLoaders;
- checks the viewer's sign-in at each signal: a token revoked or expired meanwhile
  ends the stream with ``UNAUTHENTICATED`` at the next signal at the latest.

Over WebSocket only subscriptions run (``WebSocketOperations``): queries and mutations
go over HTTP, where every request is authenticated again.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator
from typing import Annotated

import strawberry
from graphql import GraphQLError
from starlette.websockets import WebSocket
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from graph.schema import ids
from graph.schema.context import Context, Info, Loaders
from graph.schema.types.datasets import TrainingDatasetType
from graph.schema.types.notifications import NotificationType
from jobs.adapters.bus import DATASET, USER
from storage import accounts, notifications
from storage.errors import Unauthenticated
from storage.privacy import lookups

BATCH = 50  # notifications re-read at most per signal (the rest at the next one)


def _signed_in(ctx: Context) -> int:
    if ctx.viewer is None or ctx.token is None:
        if ctx.connection_params and _token_of(ctx.connection_params):
            raise Unauthenticated(
                "Your token is invalid, expired or revoked; sign in again and reconnect."
            )
        raise Unauthenticated(
            "Sign in first: send your token in connection_init "
            '({"Authorization": "Bearer <token>"}).'
        )
    return ctx.viewer.id


async def _still_signed_in(ctx: Context) -> None:
    """At every signal: the sign-in the connection was made with must still hold."""
    assert ctx.token is not None
    if not await accounts.session_alive(ctx.token.id, now=ctx.now()):
        raise Unauthenticated("Your session ended (signed out or expired); sign in again.")
    # fresh: nothing read before is reused
    ctx.loaders = Loaders(viewer=ctx.viewer_id, blobs=ctx.runtime.blobs)


def _token_of(params: dict[str, object]) -> str | None:
    """The bearer token of a ``connection_init`` payload, in either accepted shape."""
    for key, value in params.items():
        if not isinstance(value, str):
            continue
        if key.lower() == "authorization":
            scheme, _, credentials = value.partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
        elif key == "token" and value.strip():
            return value.strip()
    return None


def token_of(params: object) -> str | None:
    return _token_of(params) if isinstance(params, dict) else None


def _shown(dataset: TrainingDatasetType) -> tuple[object, ...]:
    """What a change to a dataset is: a change in what its owner sees of its life."""
    return (
        dataset.status,
        dataset.visibility,
        dataset.expires_at,
        dataset.deleted_at,
        dataset.deletion_reason,
        dataset.uploaded_at,
    )


@strawberry.type(
    description=(
        "Live updates, over WebSocket at /graphql with the graphql-transport-ws protocol. "
        'Authenticate in connection_init: {"Authorization": "Bearer <token>"} or '
        '{"token": "<token>"}. Each stream ends with UNAUTHENTICATED when the token '
        "is signed out or expires."
    )
)
class Subscription:
    @strawberry.subscription(
        description=(
            "Every notification stored for you from now on (reminders, deletion notices), "
            "as it is written."
        )
    )
    async def notification_added(self, info: Info) -> AsyncGenerator[NotificationType, None]:
        ctx = info.context
        viewer = _signed_in(ctx)
        services = ctx.services
        with services.subscribers.hold(viewer), services.hub.listen((USER, viewer)) as signal:
            seen = await notifications.newest_id(viewer)
            while True:
                await signal.wait()
                signal.clear()
                await _still_signed_in(ctx)
                added = await notifications.added_since(viewer, after=seen, limit=BATCH)
                if len(added) == BATCH:
                    signal.set()  # more to read: go round again at once
                for row in added:
                    seen = row.id
                    yield NotificationType.of(row)

    @strawberry.subscription(
        description=(
            "One of your training datasets: first as it is now, then after every change to "
            "its status, visibility, expiry or deletion. A dataset that is not yours "
            "answers NOT_FOUND, exactly as one that does not exist."
        )
    )
    async def dataset_changed(
        self,
        info: Info,
        id: Annotated[
            strawberry.ID, strawberry.argument(description="The training dataset's global ID.")
        ],
    ) -> AsyncGenerator[TrainingDatasetType, None]:
        ctx = info.context
        viewer = _signed_in(ctx)
        services = ctx.services
        public_id = ids.decode(str(id), lookups.DATASET.name)
        with services.subscribers.hold(viewer):
            row = await lookups.owned(lookups.DATASET, viewer, public_id)
            with services.hub.listen((DATASET, row.id)) as signal:
                shown = TrainingDatasetType.of(row)
                last = _shown(shown)
                yield shown
                signal.set()  # read once more: a change between the read and listening
                while True:
                    await signal.wait()
                    signal.clear()
                    await _still_signed_in(ctx)
                    row = await lookups.owned(lookups.DATASET, viewer, public_id)
                    shown = TrainingDatasetType.of(row)
                    if _shown(shown) != last:
                        last = _shown(shown)
                        yield shown


class WebSocketOperations(SchemaExtension):
    """Subscriptions only over WebSocket, and only there: a query or mutation sent on a
    socket would run as whoever opened it, however long ago."""

    def on_validate(self) -> Iterator[None]:
        # Before yielding: strawberry reads the errors before the hooks' second halves.
        # (Listed after GuardedValidation, whose validation errors are then already set.)
        context = self.execution_context
        if not context.pre_execution_errors:
            over_socket = isinstance(getattr(context.context, "request", None), WebSocket)
            subscription = context.operation_type == OperationType.SUBSCRIPTION
            message = None
            if over_socket and not subscription:
                message = (
                    "Over WebSocket only subscriptions run; send queries and mutations over HTTP."
                )
            elif subscription and not over_socket:
                message = "Subscriptions run over WebSocket (graphql-transport-ws) at /graphql."
            if message is not None:
                context.pre_execution_errors = [
                    GraphQLError(message, extensions={"code": "WRONG_TRANSPORT"})
                ]
        yield
