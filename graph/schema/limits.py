"""Document limits: depth, aliases, directives and cost, as GraphQL validation rules.

The rule classes are built once per configuration (``limit_rules``), when the schema
is built, never per request: the validation cache keys on the rule objects, so the
same document validates once. Every refusal carries its limit in ``extensions``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any, TypeVar

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    VariableNode,
)
from graphql.language import Visitor
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

from storage.catalog import DEFAULT_VERSIONS, MAX_VERSIONS
from storage.config.settings import Limits
from storage.db.pages import DEFAULT_PAGE, MAX_PAGE
from storage.files import MAX_FILES_PER_VERSION
from storage.retention.history import HISTORY_LIMIT

INTROSPECTION_DEPTH = 15  # enough for GraphiQL's introspection query, bounded all the same


def _error(message: str, node: Any, code: str, limit: int, actual: int) -> GraphQLError:
    return GraphQLError(
        message,
        node,
        extensions={"code": code, "limit": limit, "actual": actual},
    )


T = TypeVar("T")


class _Walker:
    """Follows fragment spreads, computing each fragment's value once (so a document
    that spreads fragments exponentially costs linear time) and cutting cycles."""

    def __init__(self, fragments: Callable[[str], FragmentDefinitionNode | None]):
        self.fragments = fragments
        self.memo: dict[tuple[str, str], Any] = {}
        self.active: set[tuple[str, str]] = set()

    def through(
        self,
        kind: str,
        spread: FragmentSpreadNode,
        compute: Callable[[SelectionSetNode], T],
        empty: T,
    ) -> T:
        key = (kind, spread.name.value)
        if key in self.memo:
            value: T = self.memo[key]
            return value
        fragment = self.fragments(key[1])
        if fragment is None or key in self.active:
            return empty  # unknown or cyclic: other rules report those
        self.active.add(key)
        try:
            value = compute(fragment.selection_set)
        finally:
            self.active.discard(key)
        self.memo[key] = value
        return value


def _depth(walker: _Walker, selection_set: SelectionSetNode | None) -> tuple[int, int]:
    """(depth of ordinary fields, depth inside introspection fields)."""
    if selection_set is None:
        return 0, 0
    deepest = introspection = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            name = selection.name.value
            inner, inner_intro = _depth(walker, selection.selection_set)
            if name.startswith("__"):
                introspection = max(introspection, 1 + max(inner, inner_intro))
            else:
                deepest = max(deepest, 1 + inner)
                introspection = max(introspection, inner_intro)
        else:
            if isinstance(selection, InlineFragmentNode):
                inner, inner_intro = _depth(walker, selection.selection_set)
            else:
                assert isinstance(selection, FragmentSpreadNode)
                inner, inner_intro = walker.through(
                    "depth", selection, lambda sel: _depth(walker, sel), (0, 0)
                )
            deepest, introspection = max(deepest, inner), max(introspection, inner_intro)
    return deepest, introspection


def _first(field: FieldNode, bound: int) -> int | None:
    """The ``first`` a list field asks for, within ``bound``; None when not given."""
    for argument in field.arguments or ():
        if argument.name.value == "first":
            if isinstance(argument.value, IntValueNode):
                return max(0, min(int(argument.value.value), bound))
            if isinstance(argument.value, VariableNode):
                return bound  # unknown at validation time: assume the most
    return None


# The lists of objects, by field name: (how many come back when ``first`` is not given,
# the most that can). Connections are paged (``first`` up to 100); the plain lists are
# bounded by what a parent can hold.
LISTS = {
    "models": (DEFAULT_PAGE, MAX_PAGE),
    "trainingDatasets": (DEFAULT_PAGE, MAX_PAGE),
    "notifications": (DEFAULT_PAGE, MAX_PAGE),
    "versions": (DEFAULT_VERSIONS, MAX_VERSIONS),
    "files": (MAX_FILES_PER_VERSION, MAX_FILES_PER_VERSION),
    "events": (HISTORY_LIMIT, HISTORY_LIMIT),
}
# Lists that are one stored map shown as key/value pairs: the map comes back whole, from
# one column, with no work per entry; the list counts as one object, like a scalar would.
MAPS = frozenset({"headerMetadata"})


def _cost(walker: _Walker, selection_set: SelectionSetNode | None) -> int:
    """What can really come back: each object counts 1 (a scalar field nothing more:
    the token, alias and repetition limits bound those), and a list of objects counts
    each item it can hold: ``first`` as asked, else its default size."""
    if selection_set is None:
        return 0
    total = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            if selection.selection_set is None:
                continue  # a scalar (or a list of scalars, all bounded and small)
            if selection.name.value in MAPS:
                total += 1
                continue
            default, bound = LISTS.get(selection.name.value, (1, 1))
            asked = _first(selection, bound)
            size = default if asked is None else asked
            total += size * (1 + _cost(walker, selection.selection_set))
        elif isinstance(selection, InlineFragmentNode):
            total += _cost(walker, selection.selection_set)
        elif isinstance(selection, FragmentSpreadNode):
            total += walker.through("cost", selection, lambda sel: _cost(walker, sel), 0)
    return total


def _count_aliases(walker: _Walker, selection_set: SelectionSetNode | None) -> int:
    if selection_set is None:
        return 0
    count = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            count += 1 if selection.alias else 0
            count += _count_aliases(walker, selection.selection_set)
        elif isinstance(selection, InlineFragmentNode):
            count += _count_aliases(walker, selection.selection_set)
        elif isinstance(selection, FragmentSpreadNode):
            count += walker.through(
                "aliases", selection, lambda sel: _count_aliases(walker, sel), 0
            )
    return count


def _keys(walker: _Walker, selection_set: SelectionSetNode | None) -> Counter[str]:
    """How often each response key occurs in one selection set, fragments merged in."""
    keys: Counter[str] = Counter()
    if selection_set is None:
        return keys
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            keys[(selection.alias or selection.name).value] += 1
        elif isinstance(selection, InlineFragmentNode):
            keys.update(_keys(walker, selection.selection_set))
        elif isinstance(selection, FragmentSpreadNode):
            none: Counter[str] = Counter()
            keys.update(walker.through("keys", selection, lambda sel: _keys(walker, sel), none))
    return keys


def _repeats(walker: _Walker, selection_set: SelectionSetNode | None) -> int:
    """The most times one response key is selected in any one selection set."""
    if selection_set is None:
        return 0
    keys = _keys(walker, selection_set)
    most = max(keys.values(), default=0)
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode | InlineFragmentNode):
            most = max(most, _repeats(walker, selection.selection_set))
        elif isinstance(selection, FragmentSpreadNode):
            most = max(
                most, walker.through("repeats", selection, lambda sel: _repeats(walker, sel), 0)
            )
    return most


def repeated_fields_error(document: DocumentNode, limit: int) -> GraphQLError | None:
    """Field duplication: checked before validation, whose overlap rule takes time
    quadratic in the copies of one field."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    walker = _Walker(fragments.get)
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode | FragmentDefinitionNode):
            repeats = _repeats(walker, definition.selection_set)
            if repeats > limit:
                return _error(
                    f"A field is selected {repeats} times in one place; at most {limit} allowed.",
                    definition,
                    "TOO_MANY_REPEATS",
                    limit,
                    repeats,
                )
    return None


def _operation_rule(
    check: Callable[[_Walker, OperationDefinitionNode], GraphQLError | None],
) -> type[ValidationRule]:
    class OperationRule(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_args: Any) -> None:
            error = check(_Walker(self.context.get_fragment), node)
            if error is not None:
                self.report_error(error)

    return OperationRule


def _directives_rule(limit: int) -> type[ValidationRule]:
    class DirectiveCount(ValidationRule):
        """Directives anywhere in the document (no built-in rule counts them)."""

        def __init__(self, context: ValidationContext):
            super().__init__(context)
            self.count = 0
            self.reported = False

        def enter_directive(self, node: Any, *_args: Any) -> Any:
            self.count += 1
            if self.count > limit and not self.reported:
                self.reported = True
                self.report_error(
                    _error(
                        f"The document has more than {limit} directives.",
                        node,
                        "TOO_MANY_DIRECTIVES",
                        limit,
                        self.count,
                    )
                )
                return Visitor.BREAK
            return None

    return DirectiveCount


def limit_rules(limits: Limits) -> tuple[type[ValidationRule], ...]:
    """The validation rules for one configuration; build once, reuse for every request."""

    def depth(walker: _Walker, operation: OperationDefinitionNode) -> GraphQLError | None:
        deepest, introspection = _depth(walker, operation.selection_set)
        if deepest > limits.max_depth:
            return _error(
                f"The operation is {deepest} levels deep; at most {limits.max_depth} allowed.",
                operation,
                "TOO_DEEP",
                limits.max_depth,
                deepest,
            )
        if introspection > INTROSPECTION_DEPTH:
            return _error(
                f"The introspection query is {introspection} levels deep; "
                f"at most {INTROSPECTION_DEPTH} allowed.",
                operation,
                "TOO_DEEP",
                INTROSPECTION_DEPTH,
                introspection,
            )
        return None

    def aliases(walker: _Walker, operation: OperationDefinitionNode) -> GraphQLError | None:
        count = _count_aliases(walker, operation.selection_set)
        if count > limits.max_aliases:
            return _error(
                f"The operation uses {count} aliases; at most {limits.max_aliases} allowed.",
                operation,
                "TOO_MANY_ALIASES",
                limits.max_aliases,
                count,
            )
        return None

    def cost(walker: _Walker, operation: OperationDefinitionNode) -> GraphQLError | None:
        total = _cost(walker, operation.selection_set)
        if total > limits.max_cost:
            return _error(
                f"The operation would cost {total}; at most {limits.max_cost} allowed (each "
                "object that can come back costs 1: a list counts `first` items, or its "
                "default).",
                operation,
                "TOO_COSTLY",
                limits.max_cost,
                total,
            )
        return None

    return (
        _operation_rule(depth),
        _operation_rule(aliases),
        _operation_rule(cost),
        _directives_rule(limits.max_directives),
    )


_validate = lru_cache(maxsize=256)(validate_document)


class GuardedValidation(SchemaExtension):
    """Validation, cached per document (the parser cache hands back the same document
    object for the same text), behind a linear check for field duplication that
    must run before graphql-core's quadratic overlap rule."""

    def __init__(self, *, max_repeats: int):
        super().__init__()
        self.max_repeats = max_repeats

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        assert document is not None
        refused = repeated_fields_error(document, self.max_repeats)
        if refused is not None:
            context.pre_execution_errors = [refused]
        else:
            context.pre_execution_errors = _validate(
                context.schema._schema, document, context.validation_rules
            )
        yield
