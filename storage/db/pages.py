"""Keyset pagination: one query per page, whatever the table's size."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Generic, TypeVar

from tortoise.expressions import Q
from tortoise.models import Model
from tortoise.queryset import QuerySet

from storage.db.reads import Fixed
from storage.errors import ServiceError

M = TypeVar("M", bound=Model)

MAX_PAGE = 100
DEFAULT_PAGE = 20


@dataclass
class Page(Generic[M]):
    """A page of rows and where each stands. A position is plain text for the listing
    that made it (e.g. ``n:123``); the API seals it into an opaque cursor
    (``storage.signing``) and opens the ``after`` cursor back into one."""

    items: list[M]
    has_next: bool
    key: Callable[[M], str]  # the position of a row on this listing

    def position(self, item: M) -> str:
        return self.key(item)


def malformed() -> ServiceError:
    return ServiceError("Malformed cursor.", field="after", code="INVALID_CURSOR")


def decode_position(after: str, tag: str) -> str:
    """The position in an ``after`` of this listing (its tag), else INVALID_CURSOR: a
    cursor of another listing or order is refused, never misread."""
    found, sep, value = after.partition(":")
    if found != tag or not sep or not value:
        raise malformed()
    return value


MAX_KEY = 2**63 - 1  # the largest key a database column holds


def cursor_number(value: str) -> int:
    """A whole number from a cursor: ASCII digits, within a 64-bit column's range."""
    if not (value.isascii() and value.isdigit() and len(value) <= 19) or int(value) > MAX_KEY:
        raise malformed()
    return int(value)


def page_size(first: int | None) -> int:
    if first is None:
        return DEFAULT_PAGE
    if first < 0 or first > MAX_PAGE:
        raise ServiceError(
            f"first must be between 0 and {MAX_PAGE}.", field="first", code="INVALID_PAGE_SIZE"
        )
    return first


async def newest_first(
    query: QuerySet[M], *, tag: str, first: int | None, after: str | None
) -> Page[M]:
    """Rows newest (highest id) first, ``first`` of them after the ``after`` cursor.
    ``tag`` names the listing, so that its cursors are refused by any other."""
    size = page_size(first)
    if after is not None:
        query = query.filter(id__lt=cursor_number(decode_position(after, tag)))
    position: Callable[[M], str] = lambda row: f"{tag}:{row.pk}"  # noqa: E731
    if size == 0:
        return Page([], False, position)
    rows = await query.order_by("-id").limit(size + 1)
    return Page(rows[:size], len(rows) > size, position)


def newest(query: QuerySet[M], before: int | None, limit: int) -> QuerySet[M]:
    """``query``'s rows newest (highest id) first, below ``before``, at most ``limit``."""
    if before is not None:
        query = query.filter(id__lt=before)
    return query.order_by("-id").limit(limit)


async def newest_first_read(
    read: Callable[..., Awaitable[list[M]]],
    *args: Any,
    tag: str,
    first: int | None,
    after: str | None,
) -> Page[M]:
    """:func:`newest_first` for a prepared read (storage/db/reads.py) of ``*args``,
    then the position below which (or None) and a fixed limit: see :func:`newest`."""
    size = page_size(first)
    before = cursor_number(decode_position(after, tag)) if after is not None else None
    position: Callable[[M], str] = lambda row: f"{tag}:{row.pk}"  # noqa: E731
    if size == 0:
        return Page([], False, position)
    rows = await read(*args, before, Fixed(size + 1))
    return Page(rows[:size], len(rows) > size, position)


async def largest_first(
    query: QuerySet[M], field: str, *, tag: str, first: int | None, after: str | None
) -> Page[M]:
    """Rows by a whole-number column, largest first, ties newest first: keyset-paged on
    (field, id), one query per page."""
    size = page_size(first)
    if after is not None:
        value_text, _, pk_text = decode_position(after, tag).partition(".")
        value, pk = cursor_number(value_text), cursor_number(pk_text)
        below: dict[str, Any] = {f"{field}__lt": value}
        tied: dict[str, Any] = {field: value, "id__lt": pk}
        query = query.filter(Q(**below) | Q(**tied))
    position: Callable[[M], str] = lambda row: f"{tag}:{getattr(row, field)}.{row.pk}"  # noqa: E731
    if size == 0:
        return Page([], False, position)
    rows = await query.order_by(f"-{field}", "-id").limit(size + 1)
    return Page(rows[:size], len(rows) > size, position)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def _expiry_position(live: Sequence[StrEnum]) -> Callable[[Any], str]:
    def position(row: Any) -> str:
        expires = row.expires_at if row.status in live else None
        return f"datasets:{(expires - EPOCH) // MICROSECOND if expires else '-'}.{row.id}"

    return position


async def soonest_expiry_first(
    query: QuerySet[M],
    *,
    live: Sequence[StrEnum],
    first: int | None,
    after: str | None,
) -> Page[M]:
    """Rows that are ``live`` and will expire, soonest first; then the rest (no expiry,
    or not live), newest first. Keyset-paged on (expires_at, id) in at most two queries.
    """
    size = page_size(first)
    position = _expiry_position(live)
    expiring = query.filter(expires_at__isnull=False, status__in=list(live))
    past_expiring = False
    open_ended = query.filter(Q(expires_at__isnull=True) | ~Q(status__in=list(live)))
    if after is not None:
        micros, _, pk_text = decode_position(after, "datasets").partition(".")
        pk = cursor_number(pk_text)
        if micros == "-":
            past_expiring = True
            open_ended = open_ended.filter(id__lt=pk)
        else:
            try:
                moment = EPOCH + cursor_number(micros) * MICROSECOND
            except OverflowError:
                raise malformed() from None
            expiring = expiring.filter(Q(expires_at__gt=moment) | Q(expires_at=moment, id__gt=pk))
    if size == 0:
        return Page([], False, position)
    rows = (
        [] if past_expiring else list(await expiring.order_by("expires_at", "id").limit(size + 1))
    )
    if len(rows) <= size:
        rows += await open_ended.order_by("-id").limit(size + 1 - len(rows))
    return Page(rows[:size], len(rows) > size, position)
