"""The mutation base: one ``input`` argument each, a payload with ``userErrors``.

Every mutation is declared with :func:`payload_mutation`, the one error path: an
expected failure (a ``ServiceError`` raised anywhere below) becomes the payload's
``userErrors`` with a stable code, and the payload's other fields keep their defaults
(null, empty, false). A test checks that every mutation is declared so. The
mutations themselves live by noun beside this module; ``graph/schema/mutation.py``
lists them in the schema's order.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, get_type_hints

import strawberry

from graph.schema import ids
from graph.schema.context import Info
from storage import changes
from storage.db.connection import is_busy
from storage.errors import ServiceError, TryAgain
from storage.privacy import lookups


@strawberry.type(description="An expected failure of a mutation, with a stable code.")
class UserError:
    field: str | None = strawberry.field(
        description="The input field at fault, if one is; null for the whole input."
    )
    message: str = strawberry.field(description="What went wrong, for people.")
    code: str = strawberry.field(
        description="A stable machine-readable code, e.g. NOT_FOUND or RIGHTS_NOT_CONFIRMED."
    )

    @classmethod
    def of(cls, exc: ServiceError) -> list[UserError]:
        return [cls(field=exc.field, message=exc.message, code=exc.code)]


INPUT = strawberry.argument(description="The mutation's input.")


def user_errors_field() -> Any:
    """A payload's ``userErrors``: empty unless the mutation failed."""
    return strawberry.field(
        default_factory=list,
        description="Expected failures; empty when the mutation succeeded.",
    )


def null_field(description: str) -> Any:
    """A payload field that is null when the mutation failed."""
    return strawberry.field(default=None, description=description)


R = TypeVar("R")
PAYLOAD_MUTATION = "__lorashelf_payload_mutation__"
log = logging.getLogger("lorashelf.mutations")


def payload_mutation(description: str) -> Callable[[Callable[..., Awaitable[R]]], Any]:
    """Declare a mutation whose expected failures become its payload's ``userErrors``.

    A busy database before the change committed answers ``TRY_AGAIN`` ("nothing was
    changed"); a failure after it committed (rare: the services' follow-up work is best
    effort, storage/changes.py; an account deletion failing after its mark, which the
    sweep finishes) answers ``RESULT_UNAVAILABLE``, never ``TRY_AGAIN``. The services
    move the public generation in their own transactions; this process re-reads it at
    its next cached answer.
    Which mutation moves the generation for what is checked by
    tests/graph/test_public_generation.py, which enumerates them.
    """

    def decorate(resolver: Callable[..., Awaitable[R]]) -> Any:
        payload = get_type_hints(resolver)["return"]

        @functools.wraps(resolver)
        async def wrapper(*args: Any, **kwargs: Any) -> R:
            info: Info = kwargs["info"]
            with changes.watch() as watched:
                try:
                    result = await resolver(*args, **kwargs)
                except ServiceError as exc:
                    failed: R = payload(user_errors=UserError.of(exc))
                    return failed
                except Exception as exc:
                    if watched.committed:
                        log.error(
                            "request %s: a committed change failed afterwards",
                            info.context.request_id,
                            exc_info=exc,
                        )
                        unread: R = payload(user_errors=UserError.of(changes.ResultUnavailable()))
                        return unread
                    if not is_busy(exc):
                        raise
                    busy: R = payload(user_errors=UserError.of(TryAgain()))
                    return busy
                finally:
                    if watched.public:  # a private change must not cost the next
                        info.context.services.generation.changed()  # anonymous read
            return result

        setattr(wrapper, PAYLOAD_MUTATION, True)
        return strawberry.mutation(description=description)(wrapper)

    return decorate


def pk(kind: lookups.Kind[Any], global_id: strawberry.ID) -> str | None:
    """The public id in a global ID of this kind; None (then: not found) for anything else."""
    return ids.decode(str(global_id), kind.name)
