"""The public generation: one counter, in the database, that every write which can
change what anonymous viewers see moves on. Answers cached for anonymous viewers
(graph/http/cache.py) are tagged with the value they were computed under and are never
served under another, in any process: the database is the one place they all read.
"""

from __future__ import annotations

from tortoise.expressions import F

from storage.db.models import PublicGeneration

ROW = 1


async def current() -> int:
    """The generation now (0 before the first public change)."""
    row = await PublicGeneration.get_or_none(id=ROW)
    return row.value if row is not None else 0


async def advance() -> int:
    """Move the generation on (after a public change has committed); its new value."""
    updated = await PublicGeneration.filter(id=ROW).update(value=F("value") + 1)
    if not updated:
        await PublicGeneration.get_or_create(id=ROW, defaults={"value": 0})
        await PublicGeneration.filter(id=ROW).update(value=F("value") + 1)
    return await current()
