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
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, get_type_hints

import strawberry

from graph.schema import ids
from graph.schema.context import Info
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


def payload_mutation(
    description: str, *, public: bool = True
) -> Callable[[Callable[..., Awaitable[R]]], Any]:
    """Declare a mutation whose expected failures become its payload's ``userErrors``.

    ``public``: whether it can change what anonymous viewers see; when it succeeds, the
    answers cached for them (graph/http/cache.py) are not reused. Only mutations that touch
    nothing but the caller's own account and inbox say ``public=False``.
    """

    def decorate(resolver: Callable[..., Awaitable[R]]) -> Any:
        payload = get_type_hints(resolver)["return"]

        @functools.wraps(resolver)
        async def wrapper(*args: Any, **kwargs: Any) -> R:
            try:
                result = await resolver(*args, **kwargs)
                if public:
                    info: Info = kwargs["info"]
                    await info.context.services.generation.advance()
                return result
            except ServiceError as exc:
                failed: R = payload(user_errors=UserError.of(exc))
                return failed
            except Exception as exc:
                if not is_busy(exc):
                    raise
                busy: R = payload(user_errors=UserError.of(TryAgain()))
                return busy

        setattr(wrapper, PAYLOAD_MUTATION, True)
        return strawberry.mutation(description=description)(wrapper)

    return decorate


def pk(kind: lookups.Kind[Any], global_id: strawberry.ID) -> str | None:
    """The public id in a global ID of this kind; None (then: not found) for anything else."""
    return ids.decode(str(global_id), kind.name)
