"""What a report, a takedown or an audit entry is about: a subject, named by its kind
(the API's type name) and its row. The kinds anybody may report; whose a subject is
and what it is called, for the operators' views (which name a subject without opening
it) and the owner's."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from storage.db.models import LoraModel, ModelFile, ModelVersion, TrainingDataset, User
from storage.privacy import lookups
from storage.privacy.lookups import Kind

REPORTABLE: tuple[Kind[Any], ...] = (
    lookups.MODEL,
    lookups.VERSION,
    lookups.FILE,
    lookups.DATASET,
    lookups.USER,
)
"""What anybody may report (of what they can see): models, versions, weights files,
public datasets and accounts."""

TAKEABLE: tuple[Kind[Any], ...] = (lookups.MODEL, lookups.VERSION)
"""What an operator takes down (a file or a dataset goes with its version)."""


@dataclass(frozen=True)
class Subject:
    """An object by kind and key, with whose it is; ``row`` is None once it is gone for
    good (an entry or a report still names it)."""

    kind: Kind[Any]
    id: int
    public_id: str
    owner_id: int | None
    row: Any = None

    @classmethod
    def of(cls, kind: Kind[Any], row: Any) -> Subject:
        owner = getattr(row, kind.owner_key)
        return cls(kind, int(row.pk), str(row.public_id), int(owner), row)


def name_of(row: Any) -> str:
    """What a subject is called: a model's or version's name, a file's name, a username."""
    if isinstance(row, LoraModel | ModelVersion):
        return row.name
    if isinstance(row, ModelFile | TrainingDataset):
        return row.filename
    if isinstance(row, User):
        return row.username
    return ""


async def moderated(pairs: Iterable[tuple[str, int]]) -> dict[tuple[str, int], Subject]:
    """Of (kind name, key) pairs, those operators may act on (public, or hidden by
    moderation): one query per kind. Drafts, private datasets and deleted objects are
    left out: nobody's view of a report or an audit entry opens them."""
    wanted: dict[str, set[int]] = defaultdict(set)
    for kind_name, pk in pairs:
        if kind_name in lookups.BY_NAME:
            wanted[kind_name].add(pk)
    found: dict[tuple[str, int], Subject] = {}
    for kind_name, pks in wanted.items():
        kind = lookups.BY_NAME[kind_name]
        for pk, row in (await lookups.moderated_many(kind, pks)).items():
            found[(kind_name, pk)] = Subject.of(kind, row)
    return found


async def usernames(user_ids: Iterable[int]) -> dict[int, str]:
    """Owners' usernames, for the operators' views (one query)."""
    ids = list(set(user_ids))
    if not ids:
        return {}
    return {u.id: u.username for u in await User.filter(id__in=ids).only("id", "username")}
