"""Document limits: depth, aliases and cost as GraphQL validation rules, directives and
field copies counted before validation, and the errors an answer may carry.

The rule classes are built once per configuration (``limit_rules``), when the schema
is built, never per request; :func:`check` applies everything, and
graph.schema.documents keeps its result per document. Every refusal carries its limit
in ``extensions``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from graphql import (
    ASTValidationRule,
    DirectiveNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    Node,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
    VariableNode,
    validate,
)
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from storage.catalog import DEFAULT_VERSIONS, MAX_VERSIONS
from storage.config.settings import Limits
from storage.db.pages import DEFAULT_PAGE, MAX_PAGE
from storage.files import MAX_FILES_PER_VERSION
from storage.retention.history import HISTORY_LIMIT

DATASET_RECEIPTS = 200  # what deleteAccount's receipt is counted as holding
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
    "reports": (DEFAULT_PAGE, MAX_PAGE),
    "auditLog": (DEFAULT_PAGE, MAX_PAGE),
    "versions": (DEFAULT_VERSIONS, MAX_VERSIONS),
    "files": (MAX_FILES_PER_VERSION, MAX_FILES_PER_VERSION),
    "events": (HISTORY_LIMIT, HISTORY_LIMIT),
    "dataExports": (DEFAULT_PAGE, MAX_PAGE),
    # every receipt key ever used (one more per rotate-receipt-key: a handful)
    "receiptPublicKeys": (10, 100),
    # one per dataset the account held, tombstones included
    "datasetReceipts": (DATASET_RECEIPTS, DATASET_RECEIPTS),
}
# Fields that read a weights file's stored header metadata: each weighs as much as this
# many objects. Within a request a file's metadata is read once (one query for all the
# files a request names), whatever the fields and aliases; what the answer can carry is
# bounded in bytes by the request's metadata budget (storage.headers.ReadBudget), each
# headerMetadata counted.
HEADER_READS = {"headerMetadata": 8, "architecture": 8}


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
            if selection.name.value in HEADER_READS:
                total += HEADER_READS[selection.name.value]
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


def directives_error(document: DocumentNode, limit: int) -> GraphQLError | None:
    """Directive overloading: every directive written in the document, counted in one
    linear walk before validation (each unknown or repeated directive would otherwise
    cost a validation error of its own)."""
    count = 0
    stack: list[Any] = [document]
    while stack:
        node = stack.pop()
        for key in node.keys:
            value = getattr(node, key, None)
            if isinstance(value, tuple | list):
                for item in value:
                    if isinstance(item, DirectiveNode):
                        count += 1
                    if isinstance(item, Node):
                        stack.append(item)
            elif isinstance(value, Node):
                stack.append(value)
    if count > limit:
        return _error(
            f"The document has {count} directives; at most {limit} allowed.",
            None,
            "TOO_MANY_DIRECTIVES",
            limit,
            count,
        )
    return None


def too_many_errors(limit: int) -> GraphQLError:
    """What ends an answer's error list at the limit (the rest are not sent)."""
    return GraphQLError(
        f"More than {limit} errors; the rest are left out.",
        extensions={"code": "TOO_MANY_ERRORS", "limit": limit},
    )


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
    )


def check(
    schema: GraphQLSchema,
    document: DocumentNode,
    rules: tuple[type[ASTValidationRule], ...],
    limits: Limits,
) -> list[GraphQLError]:
    """Whether a document may run (empty: it may): the checks that run before
    validation, each linear in the document's size (graphql-core's overlap rule is
    quadratic in the copies of one field; each unknown directive would be an error of
    its own), then validation with strawberry's own rules added, stopped at
    ``limits.max_errors``. Cached per document by graph.schema.documents."""
    refused = directives_error(document, limits.max_directives) or repeated_fields_error(
        document, limits.max_field_repeats
    )
    if refused is not None:
        return [refused]
    errors = validate(
        schema,
        document,
        (*rules, MaybeNullValidationRule, OneOfInputValidationRule),
        max_errors=limits.max_errors,
    )
    if len(errors) > limits.max_errors:  # graphql-core's own "Validation aborted." replaced
        errors = [*errors[: limits.max_errors], too_many_errors(limits.max_errors)]
    return errors
