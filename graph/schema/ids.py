"""Opaque Relay global IDs: a type prefix and the row's random public id.

``d_Q3pT...`` is the training dataset whose ``public_id`` is ``Q3pT...`` (128 random
bits, see ``storage.db.models.new_public_id``): nothing about row order, count or
creation time can be read from an id. Anything malformed or of the wrong type decodes
to ``None``, which every caller treats exactly like an id that does not exist.
"""

from __future__ import annotations

import re

from storage.db.global_ids import PREFIX, encode

__all__ = ["PREFIX", "decode", "decode_any", "decode_many", "encode"]

TYPE_OF = {prefix: type_name for type_name, prefix in PREFIX.items()}
_PUBLIC_ID = re.compile(r"[A-Za-z0-9_-]{22}")


def decode_any(global_id: str) -> tuple[str, str] | None:
    """(type name, public id) of a well-formed global ID, else None."""
    prefix, sep, public_id = global_id.partition("_")
    type_name = TYPE_OF.get(prefix)
    if not sep or type_name is None or not _PUBLIC_ID.fullmatch(public_id):
        return None
    return type_name, public_id


def decode(global_id: str, type_name: str) -> str | None:
    decoded = decode_any(global_id)
    if decoded is None or decoded[0] != type_name:
        return None
    return decoded[1]


def decode_many(global_ids: list[str], type_name: str) -> list[str]:
    return [pid for gid in global_ids if (pid := decode(gid, type_name)) is not None]
