"""How a document runs: graphql-core's executor, with the common fields taken
straight.

graphql-core runs every field the same generic way (a path, a resolve info, the
resolver behind strawberry's wrappers, which convert its arguments each time, then
several levels of value completion). A page of 50 models is about a thousand
fields, most of them simple, so :class:`Executor` plans each selection set once per
request and takes its fields straight:

- a plain field (an attribute of the object its type wraps: ``Model.name``,
  ``TrainingDataset.sha256``...) holding a scalar, an enum or a list of them is read
  and serialized in one step, with the type's own serializer;
- ``__typename`` is the object's type name;
- a plain field holding an object or a list of objects (``edges``, ``node``), and a
  field with a resolver (``owner``, ``versions``...), are completed directly: the
  resolver is called as strawberry calls it (the object, the resolve info, its
  arguments by their Python names), its arguments read once per field node;
- anything else (abstract types, arguments that are not scalars, values that are
  not simply serialized, errors) goes through graphql-core as before.

Errors are handled exactly as graphql-core handles them (``handle_field_error`` at the
field and list item where they happen), so answers and errors are the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import strawberry
from graphql import (
    GraphQLField,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    get_named_type,
    is_leaf_type,
)
from graphql.execution.collect_fields import FieldDetails, GroupedFieldSet
from graphql.execution.values import get_argument_values
from graphql.pyutils import AwaitableOrValue, Path, Undefined, gather_with_cancel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter

BACKREF = GraphQLCoreConverter.DEFINITION_BACKREF
Details = list[FieldDetails]
Serialize = Callable[[Any], Any]

LEAF, TYPENAME, OBJECT, RESOLVER, GENERIC = range(5)


class _Field:
    """How one response field of a selection set is taken."""

    __slots__ = ("name", "kind", "details", "definition", "attribute", "serialize",
                 "nullable", "item", "call")  # fmt: skip

    def __init__(self, name: str, kind: int, details: Details, definition: GraphQLField | None):
        self.name = name
        self.kind = kind
        self.details = details
        self.definition = definition
        self.attribute = ""
        self.serialize: Serialize | None = None
        self.nullable = True
        self.item: Serialize | None = None
        self.call: _Call | None = None


class _Call:
    """A resolver called as strawberry calls it, without its per-call wrappers."""

    __slots__ = ("function", "self_", "root", "info", "names", "strawberry_field")

    def __init__(self, strawberry_field: Any, names: Any):
        resolver = strawberry_field.base_resolver
        self.strawberry_field = strawberry_field
        self.function = resolver.wrapped_func
        self.self_ = resolver.self_parameter is not None
        root = resolver.root_parameter or resolver.parent_parameter
        self.root = root.name if root is not None else None
        info = resolver.info_parameter
        self.info = info.name if info is not None else None
        # GraphQL's name of each argument (as the schema converted it), to Python's
        self.names = {names.from_argument(a): a.python_name for a in resolver.arguments}


def _leaf(gql_type: GraphQLOutputType) -> tuple[Serialize | None, bool]:
    """A leaf type's serializer and whether it is nullable (None: not a leaf)."""
    nullable = not isinstance(gql_type, GraphQLNonNull)
    inner = gql_type.of_type if isinstance(gql_type, GraphQLNonNull) else gql_type
    if is_leaf_type(inner):
        leaf: GraphQLLeafType = inner  # type: ignore[assignment]
        return leaf.coerce_output_value, nullable
    return None, nullable


def _plan_field(parent_type: GraphQLObjectType, name: str, details: Details, names: Any) -> _Field:
    node = details[0].node
    field_name = node.name.value
    if field_name == "__typename":
        return _Field(name, TYPENAME, details, None)
    definition = parent_type.fields.get(field_name)
    if definition is None:
        return _Field(name, GENERIC, details, None)
    strawberry_field = (definition.extensions or {}).get(BACKREF)
    if strawberry_field is None or strawberry_field.extensions:
        return _Field(name, GENERIC, details, definition)
    if strawberry_field.is_basic_field and getattr(definition.resolve, "_is_default", False):
        if definition.args:
            return _Field(name, GENERIC, details, definition)
        field = _Field(name, OBJECT, details, definition)
        field.attribute = strawberry_field.python_name
        serialize, nullable = _leaf(definition.type)
        inner = definition.type.of_type if not nullable else definition.type  # type: ignore[union-attr]
        if serialize is not None:
            field.kind, field.serialize, field.nullable = LEAF, serialize, nullable
        elif isinstance(inner, GraphQLList):
            item, item_nullable = _leaf(inner.of_type)
            if item is not None and not item_nullable:
                field.kind, field.nullable, field.item = LEAF, nullable, item
        return field
    resolver = strawberry_field.base_resolver
    scalars = all(
        isinstance(get_named_type(argument.type), GraphQLScalarType)
        for argument in definition.args.values()
    )
    if resolver is None or resolver.is_async or not scalars:
        return _Field(name, GENERIC, details, definition)
    field = _Field(name, RESOLVER, details, definition)
    field.call = _Call(strawberry_field, names)
    return field


class Executor(StrawberryGraphQLCoreExecutionContext):
    _plans: dict[int, tuple[GroupedFieldSet, list[_Field]]]
    _arguments: dict[int, tuple[Any, dict[str, Any]]]

    def _plan(self, parent_type: GraphQLObjectType, fields: GroupedFieldSet) -> list[_Field]:
        """The plan of a selection set, made once per request (graphql-core collects
        a selection set once for all the objects of a list)."""
        try:
            plans = self._plans
        except AttributeError:
            plans = self._plans = {}
            self._arguments = {}
        found = plans.get(id(fields))
        if found is None or found[0] is not fields:
            names = self.schema._strawberry_schema.config.name_converter  # type: ignore[attr-defined]
            plan = [_plan_field(parent_type, n, d, names) for n, d in fields.items()]
            found = plans[id(fields)] = (fields, plan)
        return found[1]

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> AwaitableOrValue[dict[str, Any]]:
        manager = self.middleware_manager
        if manager is not None and manager._middleware_resolvers:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        results: dict[str, Any] = {}
        pending: list[str] = []
        is_awaitable = self.is_awaitable
        try:
            for field in self._plan(parent_type, grouped_field_set):
                kind = field.kind
                if kind == LEAF:
                    value = _read(source_value, field)
                    if value is not Undefined:
                        results[field.name] = value
                        continue
                elif kind == TYPENAME:
                    results[field.name] = parent_type.name
                    continue
                field_path = Path(path, field.name, parent_type.name)
                if kind in (OBJECT, RESOLVER):
                    result = self._take(parent_type, source_value, field, field_path)
                else:
                    result = self.execute_field(
                        parent_type, source_value, field.details, field_path, position_context
                    )
                if result is not Undefined:
                    results[field.name] = result
                    if is_awaitable(result):
                        pending.append(field.name)
        except Exception:
            if pending:
                self.settle_in_background([results[name] for name in pending])
            raise
        if not pending:
            return results

        async def gathered() -> dict[str, Any]:
            if len(pending) == 1:
                results[pending[0]] = await results[pending[0]]
            else:
                done = await gather_with_cancel(*(results[name] for name in pending))
                results.update(zip(pending, done, strict=True))
            return results

        return gathered()

    def _info(self, parent_type: GraphQLObjectType, field: _Field, path: Path) -> Any:
        assert field.definition is not None
        return self.build_resolve_info(
            field.definition, [d.node for d in field.details], parent_type, path
        )

    def _take(self, parent_type: GraphQLObjectType, source: Any, field: _Field, path: Path) -> Any:
        """A field's completed value, as ``execute_field`` makes it."""
        definition = field.definition
        assert definition is not None
        return_type = definition.type
        try:
            if field.kind == OBJECT:
                value = getattr(source, field.attribute)
            else:
                value = self._resolve(parent_type, source, field, path)
                if self.is_awaitable(value):
                    info = self._info(parent_type, field, path)
                    return self.complete_awaitable_value(
                        return_type, field.details, info, path, value, None
                    )
            completed = self._complete(return_type, parent_type, field, path, value)
            if self.is_awaitable(completed):

                async def await_completed() -> Any:
                    try:
                        return await completed
                    except Exception as raw_error:
                        self.handle_field_error(raw_error, return_type, field.details, path)
                        return None

                return await_completed()
            return completed
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, field.details, path)
            return None

    def _resolve(
        self, parent_type: GraphQLObjectType, source: Any, field: _Field, path: Path
    ) -> Any:
        call = field.call
        assert call is not None and field.definition is not None
        node = field.details[0].node
        known = self._arguments.get(id(node))
        if known is None or known[0] is not node:
            raw = (
                get_argument_values(
                    field.definition,
                    node,
                    self.variable_values,
                    field.details[0].fragment_variable_values,
                    self.hide_suggestions,
                )
                if field.definition.args or node.arguments
                else {}
            )
            known = self._arguments[id(node)] = (node, {call.names[k]: v for k, v in raw.items()})
        arguments = dict(known[1])
        if call.root is not None:
            arguments[call.root] = source
        if call.info is not None:
            info = strawberry.Info(
                _raw_info=self._info(parent_type, field, path), _field=call.strawberry_field
            )
            arguments[call.info] = info
        if call.self_:
            return call.function(source, **arguments)
        return call.function(**arguments)

    def _complete(
        self,
        return_type: GraphQLOutputType,
        parent_type: GraphQLObjectType,
        field: _Field,
        path: Path,
        value: Any,
    ) -> Any:
        """``complete_value`` for the usual shapes; graphql-core's for the rest."""
        if isinstance(return_type, GraphQLNonNull):
            completed = self._complete(return_type.of_type, parent_type, field, path, value)
            if completed is None:
                info = self._info(parent_type, field, path)
                return self.complete_value(return_type, field.details, info, path, None, None)
            return completed
        if value is None or value is Undefined:
            return None
        if isinstance(return_type, GraphQLObjectType) and not isinstance(value, Exception):
            if return_type.is_type_of and not return_type.is_type_of(value, None):  # type: ignore[arg-type]
                info = self._info(parent_type, field, path)
                return self.complete_value(return_type, field.details, info, path, value, None)
            grouped, defer_usages, _ = self.collect_subfields(return_type, field.details)
            if defer_usages:
                return self.collect_and_execute_subfields(
                    return_type, field.details, path, value, None
                )
            return self.execute_fields(return_type, value, path, grouped, None)
        if isinstance(return_type, GraphQLList) and isinstance(value, list | tuple):
            return self._complete_list(return_type, parent_type, field, path, value)
        if is_leaf_type(return_type) and not isinstance(value, Exception):
            return self.complete_leaf_value(return_type, value)  # type: ignore[arg-type]
        info = self._info(parent_type, field, path)
        return self.complete_value(return_type, field.details, info, path, value, None)

    def _complete_list(
        self,
        return_type: GraphQLList[Any],
        parent_type: GraphQLObjectType,
        field: _Field,
        path: Path,
        items: list[Any] | tuple[Any, ...],
    ) -> Any:
        item_type = return_type.of_type
        completed: list[Any] = []
        pending = False
        for index, item in enumerate(items):
            item_path = Path(path, index, None)
            try:
                value = self._complete(item_type, parent_type, field, item_path, item)
                if self.is_awaitable(value):
                    value = self._item_later(value, item_type, field, item_path)
                    pending = True
            except Exception as raw_error:
                self.handle_field_error(raw_error, item_type, field.details, item_path)
                value = None
            completed.append(value)
        if not pending:
            return completed

        async def gathered() -> list[Any]:
            return list(await gather_with_cancel(*(
                value if self.is_awaitable(value) else _done(value) for value in completed
            )))  # fmt: skip

        return gathered()

    async def _item_later(
        self, value: Any, item_type: GraphQLOutputType, field: _Field, item_path: Path
    ) -> Any:
        try:
            return await value
        except Exception as raw_error:
            self.handle_field_error(raw_error, item_type, field.details, item_path)
            return None


async def _done(value: Any) -> Any:
    return value


def _read(source: Any, field: _Field) -> Any:
    """A plain leaf field's value, serialized; Undefined when graphql-core should say
    what is wrong (a missing attribute, a null where none is allowed, a refused
    value)."""
    value = getattr(source, field.attribute, Undefined)
    if value is None:
        return None if field.nullable else Undefined
    if value is Undefined or isinstance(value, Exception):
        return Undefined
    try:
        serialize = field.serialize
        if serialize is not None:
            coerced = serialize(value)
            return Undefined if coerced is None else coerced
        if not isinstance(value, list | tuple):
            return Undefined
        item = field.item
        assert item is not None
        items = [item(v) for v in value]
    except Exception:  # noqa: BLE001 - graphql-core completes it again and reports it
        return Undefined
    return Undefined if any(v is None or v is Undefined for v in items) else items
