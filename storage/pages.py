"""Keyset pagination: one query per page, whatever the table's size."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from tortoise.models import Model
from tortoise.queryset import QuerySet

from storage.errors import ServiceError

M = TypeVar("M", bound=Model)

MAX_PAGE = 100
DEFAULT_PAGE = 20


@dataclass
class Page(Generic[M]):
    items: list[M]
    has_next: bool
    key: Callable[[M], str] = lambda item: str(item.pk)

    def cursor(self, item: M) -> str:
        return encode_cursor(self.key(item))


def encode_cursor(position: str) -> str:
    return base64.urlsafe_b64encode(f"cursor:{position}".encode()).decode().rstrip("=")


def decode_position(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.urlsafe_b64decode(padded).decode() if len(cursor) <= 200 else ""
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raw = ""
    prefix, _, value = raw.partition(":")
    if prefix != "cursor" or not value:
        raise ServiceError("Malformed cursor.", field="after", code="INVALID_CURSOR")
    return value


def cursor_number(value: str) -> int:
    """A whole number from a cursor: ASCII digits, at most 19 of them."""
    if not (value.isascii() and value.isdigit() and len(value) <= 19):
        raise ServiceError("Malformed cursor.", field="after", code="INVALID_CURSOR")
    return int(value)


def decode_cursor(cursor: str) -> int:
    return cursor_number(decode_position(cursor))


def page_size(first: int | None) -> int:
    if first is None:
        return DEFAULT_PAGE
    if first < 0 or first > MAX_PAGE:
        raise ServiceError(
            f"first must be between 0 and {MAX_PAGE}.", field="first", code="INVALID_PAGE_SIZE"
        )
    return first


async def newest_first(query: QuerySet[M], *, first: int | None, after: str | None) -> Page[M]:
    """Rows newest (highest id) first, ``first`` of them after the ``after`` cursor."""
    size = page_size(first)
    if after is not None:
        query = query.filter(id__lt=decode_cursor(after))
    if size == 0:
        return Page([], False)
    rows = await query.order_by("-id").limit(size + 1)
    return Page(rows[:size], len(rows) > size)
