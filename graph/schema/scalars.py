"""Custom scalars (registered through ``StrawberryConfig.scalar_map``), and how a
DateTime is shown: in UTC, with its offset."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NewType

import strawberry
from graphql import GraphQLError
from strawberry.types.scalar import ScalarDefinition

MAX_SAFE = 2**53 - 1

BigInt = NewType("BigInt", int)


def _parse_bigint(value: object) -> int:
    # GraphQLError (not ValueError): a bad value is the client's mistake, reported
    # as a validation error, never masked as an unexpected one.
    if isinstance(value, bool) or not isinstance(value, int):
        raise GraphQLError("BigInt must be a whole number")
    if not -MAX_SAFE <= value <= MAX_SAFE:
        raise GraphQLError("BigInt must be between -(2^53 - 1) and 2^53 - 1")
    return value


SCALARS: dict[object, ScalarDefinition] = {
    BigInt: strawberry.scalar(
        name="BigInt",
        description=(
            "A whole number up to 2^53 - 1 in magnitude, sent as a JSON number; used for "
            "byte counts, which can pass the 32-bit range of Int."
        ),
        serialize=int,
        parse_value=_parse_bigint,
    )
}


def as_utc(value: datetime | None) -> datetime | None:
    """A stored instant as the API shows it: in UTC, with its offset."""
    return value.astimezone(UTC) if value is not None else None
