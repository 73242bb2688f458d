"""Relay plumbing: the ``Node`` interface and the table of Node types, connections
(pages of rows with opaque cursors), and the paging arguments.

Every Node type registers itself with :func:`node_type`, naming the kind of object
behind it (its lookups): ``node(id)`` reads that table, and a type refers through it
(:func:`node_of`) to a type whose module imports its own (``ModelVersion.model``,
``Model.owner``...), so the type modules never import each other in a circle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Generic, TypeVar

import strawberry
from tortoise.models import Model

from graph.schema.context import Info
from graph.schema.relations import load_ahead
from storage.db.pages import Page
from storage.errors import ServiceError
from storage.privacy.lookups import Kind

T = TypeVar("T")
M = TypeVar("M", bound=Model)
C = TypeVar("C", bound=type)


@strawberry.interface(description="An object with a globally unique, opaque ID.")
class Node:
    id: strawberry.ID = strawberry.field(description="The opaque global ID of this object.")


NODE_TYPES: dict[str, tuple[Kind[Any], Any]] = {}
"""Every Node type by its API name, with the kind of object behind it (its lookups)."""


def node_type(kind: Kind[Any]) -> Callable[[C], C]:
    """Register a Node type as the API's type for rows of ``kind`` (its class has
    ``of(row)``)."""

    def register(cls: C) -> C:
        NODE_TYPES[kind.name] = (kind, cls)
        return cls

    return register


def node_of(kind: Kind[M], row: M) -> Any:
    """The API object for a row of ``kind``, made by its registered Node type."""
    return NODE_TYPES[kind.name][1].of(row)


@strawberry.type(description="Where a page of a connection ends.")
class PageInfo:
    has_next_page: bool = strawberry.field(description="Whether more items follow this page.")
    end_cursor: str | None = strawberry.field(
        description="The cursor of the last item on this page; pass it as `after`."
    )


def _sealed(root: Edge[Any]) -> str:
    # Sealing is randomised: seal once, so endCursor and the last edge's cursor agree.
    if root.sealed is None:
        root.sealed = root.sealer(root.position)
    return root.sealed


@strawberry.type(description="One item of a connection, with its cursor.")
class Edge(Generic[T]):
    # The cursor is sealed only when asked for (sealing is the costly part of a page).
    cursor: str = strawberry.field(resolver=_sealed, description="Opaque position of this item.")
    node: T = strawberry.field(description="The item.")
    position: strawberry.Private[Any] = None
    sealer: strawberry.Private[Callable[[Any], str]] = str
    sealed: strawberry.Private[str | None] = None


@strawberry.type(description="A page of items (Relay connection).")
class Connection(Generic[T]):
    edges: list[Edge[T]] = strawberry.field(description="The items on this page.")
    page_info: PageInfo = strawberry.field(description="Paging information.")


async def connection(info: Info, page: Page, wrap, of: str) -> Connection:  # type: ignore[no-untyped-def, type-arg]
    """A Relay connection of a page of ``of`` objects (an API type), each position
    sealed into an opaque cursor, with what the document asks of them loaded ahead."""
    await load_ahead(info, page.items, of, "edges", "node")
    seal = info.context.services.cursors.seal
    edges = [Edge(position=page.position(row), sealer=seal, node=wrap(row)) for row in page.items]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.has_next, end_cursor=_sealed(edges[-1]) if edges else None
        ),
    )


def bounded(first: int, most: int) -> int:
    """A plain list's ``first``, or INVALID_PAGE_SIZE."""
    if not 0 <= first <= most:
        raise ServiceError(
            f"first must be between 0 and {most}.", field="first", code="INVALID_PAGE_SIZE"
        )
    return first


def opened(info: Info, after: str | None) -> str | None:
    """The position in an ``after`` cursor (INVALID_CURSOR if it is not one of ours)."""
    return None if after is None else info.context.services.cursors.open(after)


FirstArg = Annotated[
    int | None,
    strawberry.argument(description="How many items to return (at most 100; default 20)."),
]
AfterArg = Annotated[str | None, strawberry.argument(description="Return items after this cursor.")]
IncludeNsfwArg = Annotated[
    bool,
    strawberry.argument(description="Also list models marked NSFW (your own are always listed)."),
]
