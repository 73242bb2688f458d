"""Custom scalars."""

from __future__ import annotations

from typing import NewType

import strawberry

MAX_SAFE = 2**53 - 1


def _parse_bigint(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("BigInt must be a whole number")
    number = int(value)
    if not -MAX_SAFE <= number <= MAX_SAFE:
        raise ValueError("BigInt must be between -(2^53 - 1) and 2^53 - 1")
    return number


BigInt = strawberry.scalar(
    NewType("BigInt", int),
    description=(
        "A whole number up to 2^53 - 1 in magnitude, sent as a JSON number; used for byte "
        "counts, which can pass the 32-bit range of Int."
    ),
    serialize=int,
    parse_value=_parse_bigint,
)
