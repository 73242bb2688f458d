"""Reads prepared once per shape: the pages and batches every request reads.

A read is written as usual, as a Tortoise query built from the privacy rule's
filters (``storage/privacy/access.py``): :class:`Read` takes the function that builds
it from its arguments, which it must put into the query as they are. Building a
query (Tortoise's filters, pypika's SQL) costs more than running it, so a
:class:`Read` builds it once per *shape* (which arguments are null, how long each
list is), with stand-in values for the arguments, and keeps the SQL and where each
argument goes among its parameters; each call then only binds the values and runs
it. A query whose stand-ins cannot all be found among its parameters (a value the
builder or Tortoise changes) is built every time, as before.

The rows come back as the same model instances Tortoise makes (every column, the
same conversions: :func:`instances`), made without its per-row generic work.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from tortoise import connections, timezone
from tortoise.fields import data as tortoise_fields
from tortoise.fields.data import DatetimeField
from tortoise.models import Model
from tortoise.queryset import QuerySet

M = TypeVar("M", bound=Model)


class Fixed:
    """An argument that is part of the shape (e.g. a LIMIT): a query is prepared for
    each value it takes."""

    def __init__(self, value: Any):
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fixed) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


Arg = int | str | datetime | None | Sequence[int] | Sequence[str] | Fixed
Joined = Mapping[str, tuple[str, type[Model]]]  # a joined table's prefix: (attribute, model)
MAX_SHAPES = 64  # per read: lists of different lengths are different shapes

_STAND_IN = -7_316_000_000_000  # far below any id: never a real value
_STAND_IN_MOMENT = datetime(1901, 2, 3, 4, 5, 6, tzinfo=UTC)


class Read(Generic[M]):
    """A read of ``model`` rows; ``joined`` names the models it selects with them
    (``select_related``), by their columns' prefix."""

    def __init__(
        self, model: type[M], build: Callable[..., QuerySet[M]], *, joined: Joined | None = None
    ):
        self.model = model
        self.build = build
        self.joined = joined or {}
        self._shapes: OrderedDict[tuple[Any, ...], _Prepared | None] = OrderedDict()

    async def __call__(self, *args: Arg) -> list[M]:
        client = connections.get("default")
        shape = (client.capabilities.dialect, *map(_shape_of, args))
        prepared = self._shapes.get(shape, _UNKNOWN)
        if prepared is _UNKNOWN:
            prepared = _prepare(self.build, args)
            self._shapes[shape] = prepared
            while len(self._shapes) > MAX_SHAPES:
                self._shapes.popitem(last=False)
        if prepared is None:  # not preparable: built and run as usual
            values = [a.value if isinstance(a, Fixed) else a for a in args]
            return list(await self.build(*values))
        assert isinstance(prepared, _Prepared)
        _, rows = await client.execute_query(prepared.sql, prepared.bind(args))
        return instances(self.model, rows, self.joined)


def _shape_of(arg: Arg) -> Any:
    if arg is None or isinstance(arg, Fixed):
        return arg
    if isinstance(arg, int | str | datetime):
        return type(arg)
    return len(arg)


class _Prepared:
    def __init__(self, sql: str, slots: list[tuple[int, int] | None], constants: list[Any]):
        self.sql = sql
        self.slots = slots  # per parameter: (argument, item; -1 for a plain value) or None
        self.constants = constants

    def bind(self, args: Sequence[Arg]) -> list[Any]:
        values = []
        for slot, constant in zip(self.slots, self.constants, strict=True):
            if slot is None:
                values.append(constant)
            else:
                arg, item = slot
                value: Any = args[arg]
                values.append(value if item < 0 else value[item])
        return values


_UNKNOWN: Any = object()


def _prepare(build: Callable[..., QuerySet[Any]], args: Sequence[Arg]) -> _Prepared | None:
    """The SQL of ``build`` for arguments of this shape, and where each goes."""
    where: dict[Any, tuple[int, int]] = {}
    stand_ins: list[Arg] = []
    counter = 0

    def stand_in(position: tuple[int, int], text: bool) -> Any:
        nonlocal counter
        counter += 1
        # (mixed case, far below any id: a builder that changes an argument, e.g. to
        # lower case, changes its stand-in too, and then it is not found)
        value: Any = f"\x01Stand-In {counter}\x01" if text else _STAND_IN - counter
        where[value] = position
        return value

    for index, arg in enumerate(args):
        if arg is None:
            stand_ins.append(None)
        elif isinstance(arg, Fixed):
            stand_ins.append(arg.value)
        elif isinstance(arg, datetime):
            counter += 1
            moment = _STAND_IN_MOMENT + timedelta(microseconds=counter)
            where[moment] = (index, -1)
            stand_ins.append(moment)
        elif isinstance(arg, int | str):
            stand_ins.append(stand_in((index, -1), isinstance(arg, str)))
        else:
            stand_ins.append([stand_in((index, i), isinstance(v, str)) for i, v in enumerate(arg)])
    query = build(*stand_ins)
    query._make_query()
    sql, params = query.query.get_parameterized_sql()
    slots: list[tuple[int, int] | None] = []
    constants: list[Any] = []
    found = set()
    for param in params:
        slot = where.get(param) if isinstance(param, int | str | datetime) else None
        if slot is not None:
            found.add(param)
        slots.append(slot)
        constants.append(None if slot is not None else param)
    if found != set(where):
        return None
    return _Prepared(sql, slots, constants)


Converter = Callable[[Any], Any]
# per column: which instance it fills (0: the row's model, k: the k-th joined one), the
# attribute, how its value is converted (None: as it comes)
Plan = tuple[list[tuple[int, str, Converter | None]], list[tuple[str, type[Model]]]]
_PLANS: dict[tuple[type[Model], tuple[str, ...], tuple[Any, ...]], Plan] = {}


def _fields(model: type[Model]) -> dict[str, tuple[str, Converter | None]]:
    """Each column of ``model``: the attribute it sets and how its value is converted
    (as ``Model._init_from_db`` does)."""
    meta = model._meta
    by_column: dict[str, tuple[str, Converter | None]] = {}
    for column, attribute, _ in meta.db_native_fields:
        by_column[column] = (attribute, None)
    for column, attribute, field in meta.db_default_fields:
        by_column[column] = (attribute, _default(field.field_type))
    for column, attribute, field in meta.db_complex_fields:
        if isinstance(field, DatetimeField) and timezone.get_use_tz():
            by_column[column] = (attribute, _datetime(field))
        else:
            by_column[column] = (attribute, field.to_python_value)
    return by_column


def _plan(model: type[Model], columns: tuple[str, ...], joined: Joined) -> Plan:
    key = (model, columns, tuple(joined.items()))
    found = _PLANS.get(key)
    if found is None:
        targets = list(joined.items())
        own = _fields(model)
        others = [_fields(m) for _, (_, m) in targets]
        steps: list[tuple[int, str, Converter | None]] = []
        for column in columns:
            prefix, dot, name = column.rpartition(".")
            index = next((i for i, (p, _) in enumerate(targets) if dot and p == prefix), -1)
            if index >= 0:
                steps.append((index + 1, *others[index][name]))
            elif column in own:
                steps.append((0, *own[column]))
            else:  # an annotation: set as it comes, as Tortoise sets it
                steps.append((0, column, None))
        found = _PLANS[key] = (steps, [attribute_model for _, attribute_model in targets])
    return found


def _datetime(field: Any) -> Converter:
    """``DatetimeField.to_python_value`` with time zones on (lorashelf's configuration),
    its checks made once."""
    zone = timezone.get_default_timezone()
    parse_datetime = tortoise_fields.parse_datetime  # type: ignore[attr-defined]  # ciso8601's

    def convert(value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime):
            if not isinstance(value, str):
                return field.to_python_value(value)
            value = parse_datetime(value)
        return value.replace(tzinfo=zone) if value.utcoffset() is None else value.astimezone(zone)

    return convert


def _default(field_type: Callable[[Any], Any]) -> Converter:
    def convert(value: Any) -> Any:
        return None if value is None else field_type(value)

    return convert


def instances(model: type[M], rows: Sequence[Any], joined: Joined | None = None) -> list[M]:
    """Model instances from driver rows (SQLite's ``Row``, asyncpg's ``Record``, or
    dicts of column to value) of a query selecting every column of ``model`` (and of
    the ``joined`` ones, and annotations): what Tortoise's ``execute_select`` makes."""
    if not rows:
        return []
    steps, targets = _plan(model, tuple(rows[0].keys()), joined or {})
    if targets:
        return [_joined(model, targets, steps, row) for row in rows]
    generated = _generated(model)
    made: list[M] = []
    for row in rows:
        instance = model.__new__(model)
        state = instance.__dict__
        state["_partial"] = False
        state["_saved_in_db"] = True
        state["_custom_generated_pk"] = generated
        state["_await_when_save"] = {}
        values = row.values() if isinstance(row, dict) else row
        for (_, attribute, convert), value in zip(steps, values, strict=True):
            state[attribute] = value if convert is None else convert(value)
        made.append(instance)
    return made


def _generated(model: type[Model]) -> bool:
    return model._meta.db_pk_column not in model._meta.generated_db_fields


def _joined(
    model: type[M],
    targets: list[tuple[str, type[Model]]],
    steps: list[tuple[int, str, Converter | None]],
    row: Any,
) -> M:
    """One row of a query with joined models: each joined instance set on the row's
    (``_<attribute>``, as ``select_related`` sets it), None where the join found none."""
    kinds: list[type[Model]] = [model, *(kind for _, kind in targets)]
    objects: list[Any] = []
    for kind in kinds:
        instance = kind.__new__(kind)
        instance.__dict__.update(
            _partial=False, _saved_in_db=True, _custom_generated_pk=_generated(kind)
        )
        instance.__dict__["_await_when_save"] = {}
        objects.append(instance)
    present = [False] * len(kinds)
    for (index, attribute, convert), value in zip(steps, row, strict=True):
        objects[index].__dict__[attribute] = value if convert is None else convert(value)
        present[index] = present[index] or bool(value)
    main: M = objects[0]
    for k, (attribute, _) in enumerate(targets, start=1):
        object.__setattr__(main, f"_{attribute}", objects[k] if present[k] else None)
    return main
