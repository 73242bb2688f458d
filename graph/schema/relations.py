"""Relations: the fields that lead from one object to others, each with its loader,
declared once. Resolvers read through them (:func:`related`); a resolver that returns
rows loads ahead what the document will ask of them (:func:`load_ahead`), one query
per relation and level, so the fields below it answer at once, with no task, future
or wait per object.

Every relation goes through the per-request DataLoaders (graph/schema/context.py),
which filter by the viewer with the privacy rule: loading ahead asks exactly what the
resolvers would have asked, in the same batches, and fills the same caches. A value
not loaded ahead (a shape this does not foresee) is loaded as before, batched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from graphql import (
    BooleanValueNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    SelectionSetNode,
    VariableNode,
)
from strawberry.dataloader import DataLoader

from graph.schema.context import Info, Loaders
from storage.privacy import lookups

R = TypeVar("R")


@dataclass(frozen=True)
class Relation:
    loader: Callable[[Loaders], DataLoader[Any, Any]]
    key: Callable[[Any], Any]  # the loader's key, from the row the field belongs to
    target: str | None  # the API type it leads to (None: plain values, e.g. tags)
    many: bool = False  # a list of them


OWNER = Relation(lambda ld: ld.of(lookups.USER), lambda row: row.owner_id, "User")
VERSIONS = Relation(lambda ld: ld.versions_of_model, lambda row: row.id, "ModelVersion", True)
TAGS = Relation(lambda ld: ld.tags_of_model, lambda row: row.id, None, True)
MODEL = Relation(lambda ld: ld.of(lookups.MODEL), lambda row: row.model_id, "Model")
DATASET = Relation(lambda ld: ld.dataset_of_version, lambda row: row.id, "TrainingDataset")
FILES = Relation(lambda ld: ld.files_of_version, lambda row: row.id, "ModelFile", True)
VERSION = Relation(lambda ld: ld.of(lookups.VERSION), lambda row: row.version_id, "ModelVersion")
EVENTS = Relation(lambda ld: ld.events_of_dataset, lambda row: row.id, None, True)
# A weights file's version's dataset: whether the public gets its withheld keys.
FILE_DATASET = Relation(lambda ld: ld.dataset_of_version, lambda row: row.version_id, None)
NOTICE_DATASET = Relation(
    lambda ld: ld.of(lookups.DATASET), lambda row: row.dataset_id, "TrainingDataset"
)

RELATIONS: dict[str, Relation] = {
    "Model.owner": OWNER,
    "Model.versions": VERSIONS,
    "Model.tags": TAGS,
    "ModelVersion.model": MODEL,
    "ModelVersion.trainingDataset": DATASET,
    "ModelVersion.files": FILES,
    "ModelFile.version": VERSION,
    "ModelFile.sizeBytes": FILE_DATASET,
    "ModelFile.sha256": FILE_DATASET,
    "ModelFile.autoV2": FILE_DATASET,
    "ModelFile.headerMetadata": FILE_DATASET,
    "ModelFile.architecture": FILE_DATASET,
    "ModelFile.originalSha256": FILE_DATASET,
    "TrainingDataset.version": VERSION,
    "TrainingDataset.events": EVENTS,
    "Notification.dataset": NOTICE_DATASET,
}
"""What each field that needs more than its row's own columns reads, by
``Type.field``."""


class _Missing:
    pass


MISSING = _Missing()


@dataclass(frozen=True)
class Pending:
    """A relation's value still to be loaded (the DataLoader's future). Rows cannot be
    told from awaitables by type: a Tortoise model is awaitable itself."""

    future: Awaitable[Any]


def related(info: Info, relation: Relation, row: Any) -> Any:
    """What ``relation`` leads to from ``row``: the value itself when it is loaded
    already, else :class:`Pending` (the DataLoader's load, batched as before)."""
    loader = relation.loader(info.context.loaders)
    key = relation.key(row)
    found = _loaded(loader, key)
    return Pending(loader.load(key)) if found is MISSING else found


def then(value: Any, wrap: Callable[[Any], R]) -> R:
    """``wrap(value)``, now if ``value`` is here, else once it is: a coroutine in its
    place (typed as what it gives: graphql-core awaits whatever a resolver returns)."""
    if not isinstance(value, Pending):
        return wrap(value)
    future = value.future

    async def later() -> R:
        return wrap(await future)

    pending: R = later()  # type: ignore[assignment]
    return pending


async def awaited(value: Any) -> Any:
    """``value``, loaded if it has to be (in a resolver that awaits anyway)."""
    return await value.future if isinstance(value, Pending) else value


def _loaded(loader: DataLoader[Any, Any], key: Any) -> Any:
    future = loader.cache_map.get(key)
    if future is None or not future.done() or future.cancelled() or future.exception():
        return MISSING
    return future.result()


async def load_ahead(info: Info, rows: Sequence[Any], type_name: str, *path: str) -> None:
    """Load what the document asks of ``rows`` (objects of ``type_name``, found at
    ``path`` below the current field: e.g. ``"edges", "node"`` for a connection), and
    of what those lead to, level by level: one query per relation and level."""
    raw = info._raw_info
    nodes: list[FieldNode] = list(raw.field_nodes)
    fragments: dict[str, FragmentDefinitionNode] = raw.fragments
    values: Any = raw.variable_values  # strawberry's: the coerced values, as a dict
    variables: dict[str, Any] = getattr(values, "coerced", values)
    for name in path:
        nodes = _selected(nodes, fragments, variables, None).get(name, [])
    await _load_level(info.context.loaders, rows, type_name, nodes, fragments, variables)


async def _load_level(
    loaders: Loaders,
    rows: Sequence[Any],
    type_name: str,
    nodes: list[FieldNode],
    fragments: dict[str, FragmentDefinitionNode],
    variables: dict[str, Any],
) -> None:
    if not rows or not nodes:
        return
    wanted: dict[Relation, list[FieldNode]] = {}
    for name, field_nodes in _selected(nodes, fragments, variables, type_name).items():
        relation = RELATIONS.get(f"{type_name}.{name}")
        if relation is not None:
            wanted.setdefault(relation, []).extend(field_nodes)
    for relation, field_nodes in wanted.items():
        loader = relation.loader(loaders)
        keys = list(dict.fromkeys(k for k in map(relation.key, rows) if k is not None))
        values = await loader.load_many(keys)
        if relation.target is None:
            continue
        below: list[Any] = []
        for value in values:
            if relation.many:
                below.extend(value)
            elif value is not None:
                below.append(value)
        await _load_level(loaders, below, relation.target, field_nodes, fragments, variables)


def _selected(
    nodes: Iterable[FieldNode],
    fragments: dict[str, FragmentDefinitionNode],
    variables: dict[str, Any],
    type_name: str | None,
) -> dict[str, list[FieldNode]]:
    """The fields selected below ``nodes``, by name, through fragments (those on
    another type than ``type_name`` are skipped when it is known; an interface's are
    kept: loading a little more is harmless, loading less only slower)."""
    found: dict[str, list[FieldNode]] = {}

    def walk(selection_set: SelectionSetNode | None, seen: frozenset[str]) -> None:
        if selection_set is None:
            return
        for selection in selection_set.selections:
            if _skipped(selection, variables):
                continue
            if isinstance(selection, FieldNode):
                found.setdefault(selection.name.value, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                if _applies(selection.type_condition, type_name):
                    walk(selection.selection_set, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                if (
                    fragment is not None
                    and name not in seen
                    and _applies(fragment.type_condition, type_name)
                ):
                    walk(fragment.selection_set, seen | {name})

    for node in nodes:
        walk(node.selection_set, frozenset())
    return found


def _applies(condition: Any, type_name: str | None) -> bool:
    return condition is None or type_name is None or condition.name.value in (type_name, "Node")


def _skipped(selection: Any, variables: dict[str, Any]) -> bool:
    """``@skip(if: true)`` or ``@include(if: false)`` (a variable read as given)."""
    for directive in selection.directives or ():
        name = directive.name.value
        if name not in ("skip", "include"):
            continue
        for argument in directive.arguments:
            value = argument.value
            if isinstance(value, VariableNode):
                flag = bool(variables.get(value.name.value))
            elif isinstance(value, BooleanValueNode):
                flag = value.value
            else:
                continue
            if (name == "skip") == flag:
                return True
    return False
