"""Opaque Relay global IDs: ``base64url("TypeName:pk")``.

Anything malformed, of the wrong type or out of range decodes to ``None``, which
every caller treats exactly like an id that does not exist.
"""

from __future__ import annotations

import base64
import binascii

MAX_PK = 2**63 - 1


def encode(type_name: str, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{pk}".encode()).decode().rstrip("=")


def decode_any(global_id: str) -> tuple[str, int] | None:
    if not global_id or len(global_id) > 100:
        return None
    try:
        raw = base64.urlsafe_b64decode(global_id + "=" * (-len(global_id) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    type_name, sep, pk = raw.partition(":")
    if not sep or not pk.isdigit() or not pk.isascii():
        return None
    value = int(pk)
    if not 0 < value <= MAX_PK:
        return None
    return type_name, value


def decode(global_id: str, type_name: str) -> int | None:
    decoded = decode_any(global_id)
    if decoded is None or decoded[0] != type_name:
        return None
    return decoded[1]


def decode_many(global_ids: list[str], type_name: str) -> list[int]:
    return [pk for gid in global_ids if (pk := decode(gid, type_name)) is not None]
