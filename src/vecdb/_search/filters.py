r"""Compile a ``where=`` filter, a MongoDB-like dict, into an SQL boolean expression.

The language::

    {"year": 2020}                           equality: same as {"year": {"$eq": 2020}}
    {"year": {"$gte": 2020, "$lt": 2025}}    several operators on one field: all must hold
    {"doc_id": "a", "year": 2020}            several keys in one dict: all must hold
    {"$and": [f1, f2]}, {"$or": [f1, f2]}    non-empty lists of non-empty filters
    {"$not": f}                              the rows that ``f`` does not match
    {"tags": {"$not": {"$contains": "x"}}}   ``$not`` over one field's operators

Semantics, precisely:

* A row matches when the expression is TRUE. ``$not`` matches exactly the rows
  its operand does not match, rows with NULLs included: it compiles to
  ``(...) IS NOT TRUE``, so SQL's three-valued logic never leaks into results.
* NULL: ``$eq: None`` is ``IS NULL`` and ``$ne: None`` is ``IS NOT NULL``.
  ``$ne: v`` matches rows whose value is NULL (``IS DISTINCT FROM``, as in
  MongoDB), and ``$nin`` is likewise the exact complement of ``$in``. A
  ``$in``/``$nin`` list may hold ``None``, which stands for NULL.
  ``$lt $lte $gt $gte $contains`` never match NULL. ``$exists: True/False`` is
  ``IS NOT NULL`` / ``IS NULL``.
* ``$in``/``$nin`` bind the whole list as one array parameter (``col = ANY($n)``).
* ``$lt $lte $gt $gte`` apply to text, bigint, double precision, timestamptz,
  date and uuid. Text compares under the column's collation.
* ``$contains``: on an array column, a value or a list of values that must all
  be present (``@>``); on a text column, a substring (``strpos(col, $n) > 0``:
  the value is bound and is no LIKE pattern, so ``%``, ``_`` and ``\`` are
  literal); on a jsonb column, JSON containment (``@>``) with the value
  JSON-encoded. jsonb also takes ``$eq``/``$ne`` (a plain dict value on a jsonb
  field is an equality), but not ``$in``/``$nin``; arrays neither (use
  ``$contains``).
* Values are checked and converted per column type before any SQL runs:
  bigint takes ``int`` (not ``bool``, not ``float``, not ``str``); double
  precision takes ``int`` or ``float`` but not NaN or ``bool``; boolean takes
  ``bool``; timestamptz takes a timezone-aware ``datetime`` (naive ones are
  refused: their meaning depends on the server's TimeZone); date takes a
  ``date`` that is not a ``datetime``; uuid takes a ``UUID`` or a valid UUID
  string; text takes ``str`` without NUL characters.

Field names reach SQL only through `quote_ident`, after being found among the
declared fields; values only ever travel as bound parameters.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import numbers
import reprlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .._config import check_int
from .._errors import FilterError
from .._identifiers import quote_ident
from .._schema.columns import ColumnType

__all__ = ["FIELD_OPERATORS", "LOGICAL_OPERATORS", "CompiledFilter", "compile_filter"]

LOGICAL_OPERATORS = ("$and", "$or", "$not")
FIELD_OPERATORS = (
    "$eq", "$ne", "$lt", "$lte", "$gt", "$gte", "$in", "$nin", "$exists", "$contains", "$not"
)  # fmt: skip
MAX_DEPTH = 32  # deep enough for any hand-written filter, shallow enough to stop recursion bombs

_COMPARISONS = {"$lt": "<", "$lte": "<=", "$gt": ">", "$gte": ">="}
_BIGINT_RANGE = range(-(2**63), 2**63)
_ELEMENT = {ColumnType.TEXT_ARRAY: ColumnType.TEXT, ColumnType.BIGINT_ARRAY: ColumnType.BIGINT}

# Messages quote the user's input, but bounded: a 10 MB value or a 5,000-deep list
# must not turn into a 10 MB message or a RecursionError while reporting it.
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_show = _REPR.repr


@dataclass(frozen=True, slots=True)
class CompiledFilter:
    """A filter as SQL text plus its bound values.

    Attributes:
        sql: A boolean expression, e.g. ``("year" >= $1 AND "doc_id" = $2)``;
            ``TRUE`` for an empty filter.
        params: The values for the placeholders, in order, ready for asyncpg.
        matches_all: Whether the filter was ``None`` or ``{}``, so that callers
            can refuse to delete everything by accident.
    """

    sql: str
    params: list[Any]
    matches_all: bool


def compile_filter(
    where: Mapping[str, Any] | None,
    fields: Mapping[str, ColumnType],
    *,
    first_param: int = 1,
    alias: str | None = None,
) -> CompiledFilter:
    """Compile a ``where=`` dict into SQL with every value bound.

    Example:
        >>> f = compile_filter({"year": {"$gte": 2020}, "doc_id": "a"},
        ...                    {"year": ColumnType.BIGINT, "doc_id": ColumnType.TEXT})
        >>> f.sql, f.params
        ('("year" >= $1 AND "doc_id" = $2)', [2020, 'a'])

    Args:
        where: The filter (see the module docstring), or ``None`` for all rows.
        fields: The filterable columns: declared field name to column type.
        first_param: The number of the first ``$n`` placeholder, for filters
            appended to a query that already binds parameters.
        alias: A table alias to qualify the columns with (``"t"."year"``).

    Returns:
        The SQL expression, its parameters, and whether it matches every row.

    Raises:
        FilterError: The filter is malformed, names an unknown or vector field
            or an unknown operator, or holds a value of the wrong type.
    """
    check_int(first_param, 1, name="first_param", error=FilterError)
    if where is None or (isinstance(where, Mapping) and not where):
        return CompiledFilter(sql="TRUE", params=[], matches_all=True)
    compiler = _Compiler(fields, first_param, alias)
    sql = compiler.document(where, depth=0)
    return CompiledFilter(sql=sql, params=compiler.params, matches_all=False)


def _operators_for(ctype: ColumnType) -> tuple[str, ...]:
    """The field operators that apply to a column type, in the documented order."""
    ok = {"$eq", "$ne", "$exists", "$not"}
    if not ctype.is_array and ctype is not ColumnType.JSONB:
        ok |= {"$in", "$nin"}
    if ctype.is_ordered:
        ok |= set(_COMPARISONS)
    if ctype.is_array or ctype in (ColumnType.TEXT, ColumnType.JSONB):
        ok.add("$contains")
    return tuple(op for op in FIELD_OPERATORS if op in ok)


def _join(parts: list[str], glue: str) -> str:
    return parts[0] if len(parts) == 1 else "(" + f" {glue} ".join(parts) + ")"


@dataclass(frozen=True, slots=True)
class _Field:
    """A declared field as the operators see it."""

    name: str
    column: str  # quoted, with the alias if any
    ctype: ColumnType

    def convert(self, value: Any, op: str) -> Any:
        return _convert(value, self.ctype, self.name, op)


class _Compiler:
    """One compilation: collects parameters while walking the filter."""

    def __init__(
        self, fields: Mapping[str, ColumnType], first_param: int, alias: str | None
    ) -> None:
        self.fields = fields
        self.params: list[Any] = []
        self.first_param = first_param
        self.prefix = quote_ident(alias) + "." if alias else ""

    def bind(self, value: Any) -> str:
        self.params.append(value)
        return f"${self.first_param + len(self.params) - 1}"

    def _valid_keys(self) -> str:
        names = sorted(n for n, t in self.fields.items() if not t.is_vector)
        return f"fields {names} or the operators {list(LOGICAL_OPERATORS)}"

    def document(self, where: Any, depth: int) -> str:
        """Compile a filter dict: its keys are field names or logical operators, ANDed."""
        if depth > MAX_DEPTH:
            raise FilterError(
                f"the filter is nested more than {MAX_DEPTH} levels deep; flatten it "
                f"(several keys in one dict are already ANDed)."
            )
        if not isinstance(where, Mapping):
            raise FilterError(
                f"a filter must be a dict of {self._valid_keys()}, got "
                f"{type(where).__name__}; write e.g. {{'field': value}}."
            )
        if not where:
            raise FilterError(
                "an empty filter {} inside $and/$or/$not is ambiguous; remove it "
                "(pass where=None to match every row)."
            )
        parts: list[str] = []
        for key, value in where.items():
            if not isinstance(key, str):
                raise FilterError(
                    f"filter keys must be strings, got {type(key).__name__} {_show(key)}; "
                    f"use {self._valid_keys()}."
                )
            if key in ("$and", "$or"):
                parts.append(self._logical(key, value, depth))
            elif key == "$not":
                parts.append(f"({self.document(value, depth + 1)}) IS NOT TRUE")
            elif key.startswith("$"):
                raise FilterError(
                    f"unknown operator {_show(key)} at filter level; valid here: "
                    f"{self._valid_keys()}. Field operators such as $eq go inside a "
                    f"field: {{'field': {{'$eq': value}}}}."
                )
            else:
                parts.append(self._field(key, value, depth))
        return _join(parts, "AND")

    def _logical(self, op: str, value: Any, depth: int) -> str:
        if not isinstance(value, list | tuple) or not value:
            raise FilterError(
                f"{op} needs a non-empty list of filter dicts, got {_show(value)}; "
                f"write {{'{op}': [{{...}}, {{...}}]}}."
            )
        return _join([self.document(item, depth + 1) for item in value], op[1:].upper())

    def _field(self, name: str, spec: Any, depth: int) -> str:
        ctype = self.fields.get(name)
        if ctype is None or ctype.is_vector:
            why = "is a vector field and cannot be filtered" if ctype else "is not a declared field"
            raise FilterError(
                f"{_show(name)} {why}; valid keys are {self._valid_keys()}. Filter on a "
                f"declared field, or search by vector with search()."
            )
        field = _Field(name, self.prefix + quote_ident(name), ctype)
        # A plain dict on a jsonb field is a JSON value to compare with, not operators.
        if isinstance(spec, Mapping) and (
            ctype is not ColumnType.JSONB or any(str(k).startswith("$") for k in spec)
        ):
            return self._operators(field, spec, depth)
        return self._eq(field, "$eq", spec)

    def _operators(self, field: _Field, spec: Mapping[Any, Any], depth: int) -> str:
        valid = _operators_for(field.ctype)
        if not spec:
            raise FilterError(
                f"field {field.name!r} has an empty operator dict; give one of "
                f"{list(valid)}, e.g. {{'{field.name}': {{'$eq': value}}}}."
            )
        parts: list[str] = []
        for op, value in spec.items():
            if op not in FIELD_OPERATORS:
                raise FilterError(
                    f"unknown operator {_show(op)} on field {field.name!r}; valid operators are "
                    f"{list(FIELD_OPERATORS)}. A jsonb field may instead take a plain "
                    f"dict (no '$' keys) for equality."
                )
            if op not in valid:
                raise FilterError(
                    f"operator {op} does not apply to field {field.name!r} of type "
                    f"{field.ctype.value}; use one of {list(valid)}."
                )
            if op == "$not":
                parts.append(self._not(field, value, depth))
            elif op == "$exists":
                parts.append(_exists(field, value))
            elif op in ("$eq", "$ne"):
                parts.append(self._eq(field, op, value))
            elif op in ("$in", "$nin"):
                parts.append(self._in(field, op, value))
            elif op in _COMPARISONS:
                parts.append(self._compare(field, op, value))
            else:
                parts.append(self._contains(field, value))
        return _join(parts, "AND")

    def _not(self, field: _Field, value: Any, depth: int) -> str:
        if depth >= MAX_DEPTH:
            raise FilterError(f"the filter is nested more than {MAX_DEPTH} levels; flatten it.")
        if not isinstance(value, Mapping):
            raise FilterError(
                f"$not on field {field.name!r} needs a dict of operators, got {_show(value)}; "
                f"write {{'{field.name}': {{'$not': {{'$eq': value}}}}}}."
            )
        return f"({self._operators(field, value, depth + 1)}) IS NOT TRUE"

    def _eq(self, field: _Field, op: str, value: Any) -> str:
        if value is None:
            return f"{field.column} IS {'NOT ' if op == '$ne' else ''}NULL"
        param = self.bind(field.convert(value, op)) + _cast(field)
        return f"{field.column} {'=' if op == '$eq' else 'IS DISTINCT FROM'} {param}"

    def _in(self, field: _Field, op: str, value: Any) -> str:
        items = _as_list(value, field.name, op)
        present = [field.convert(v, op) for v in items if v is not None]
        parts = [f"{field.column} = ANY({self.bind(present)})"] if present else []
        if len(present) < len(items):
            parts.append(f"{field.column} IS NULL")
        matched = _join(parts, "OR")
        # $nin is the complement of $in, so it matches NULL rows just as $ne does.
        return matched if op == "$in" else f"({matched}) IS NOT TRUE"

    def _compare(self, field: _Field, op: str, value: Any) -> str:
        if value is None:
            raise FilterError(
                f"{op} on {field.name!r} cannot compare with None; use "
                f"{{'$exists': False}} or {{'$eq': None}} for NULL."
            )
        return f"{field.column} {_COMPARISONS[op]} {self.bind(field.convert(value, op))}"

    def _contains(self, field: _Field, value: Any) -> str:
        if value is None:
            raise FilterError(
                f"$contains on {field.name!r} cannot look for None; to find rows where "
                f"it is NULL use {{'{field.name}': {{'$exists': False}}}}."
            )
        if field.ctype.is_array:
            many = isinstance(value, list | tuple | set | frozenset)
            items = _as_list(value, field.name, "$contains") if many else [value]
            element = _ELEMENT[field.ctype]
            converted = [_convert(v, element, field.name, "$contains") for v in items]
            return f"{field.column} @> {self.bind(converted)}"
        param = self.bind(field.convert(value, "$contains")) + _cast(field)
        if field.ctype is ColumnType.TEXT:
            # strpos() takes the needle as a value, so %, _ and \ need no escaping.
            return f"strpos({field.column}, {param}) > 0"
        return f"{field.column} @> {param}"


def _cast(field: _Field) -> str:
    # jsonb values travel as text and are cast on the server, so the result does
    # not depend on whether a jsonb codec is registered on the connection.
    return "::text::jsonb" if field.ctype is ColumnType.JSONB else ""


def _exists(field: _Field, value: Any) -> str:
    if not isinstance(value, bool):
        raise FilterError(
            f"$exists on {field.name!r} needs True or False, got {_show(value)}; "
            f"write {{'{field.name}': {{'$exists': True}}}}."
        )
    return f"{field.column} IS {'NOT ' if value else ''}NULL"


def _as_list(value: Any, name: str, op: str) -> list[Any]:
    if not isinstance(value, list | tuple | set | frozenset) or not value:
        raise FilterError(
            f"{op} on {name!r} needs a non-empty list, tuple or set, got {_show(value)}; "
            f"write {{'{name}': {{'{op}': [a, b]}}}}."
        )
    return list(value)


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def _bigint(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None  # True == 1 in Python, but a flag is not a count
    number = int(value)
    return number if number in _BIGINT_RANGE else None


def _double(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond the float range
        return None
    # NaN equals nothing in Python but equals itself in PostgreSQL: refuse the ambiguity.
    return None if math.isnan(number) else number


def _timestamptz(value: Any) -> dt.datetime | None:
    # A naive datetime would be read in the server's TimeZone: refuse rather than guess.
    return value if isinstance(value, dt.datetime) and value.utcoffset() is not None else None


def _date(value: Any) -> dt.date | None:
    # datetime is a subclass of date; a timestamp silently truncated to a day is a bug.
    return value if isinstance(value, dt.date) and not isinstance(value, dt.datetime) else None


def _uuid(value: Any) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _jsonb(value: Any) -> str | None:
    try:
        if _has_nul(value):  # PostgreSQL's jsonb cannot hold \u0000
            return None
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):  # not JSON, or absurdly deep
        return None


_CONVERTERS: dict[ColumnType, tuple[Callable[[Any], Any], str]] = {
    ColumnType.TEXT: (
        lambda v: v if isinstance(v, str) and "\x00" not in v else None,
        "a str without NUL characters",
    ),
    ColumnType.BIGINT: (_bigint, "an int in the 64-bit range (not a bool, float or str)"),
    ColumnType.DOUBLE: (_double, "an int or float that is not NaN (not a bool or str)"),
    ColumnType.BOOLEAN: (lambda v: v if isinstance(v, bool) else None, "True or False"),
    ColumnType.TIMESTAMPTZ: (_timestamptz, "a timezone-aware datetime (add tzinfo=UTC)"),
    ColumnType.DATE: (_date, "a datetime.date (not a datetime: call .date() on it)"),
    ColumnType.UUID: (_uuid, "a uuid.UUID or a valid UUID string"),
    ColumnType.JSONB: (_jsonb, "a JSON-serialisable value without NaN or NUL characters"),
}


def _convert(value: Any, ctype: ColumnType, name: str, op: str) -> Any:
    """Check ``value`` against the column type and return it as asyncpg should bind it."""
    if ctype.is_array:
        # Only $eq/$ne reach here with an array column: whole-array equality.
        if not isinstance(value, list | tuple):
            raise FilterError(
                f"{op} on {name!r} ({ctype.value}) needs a list, got {_show(value)}; "
                f"to find one element use {{'{name}': {{'$contains': value}}}}."
            )
        return [_convert(v, _ELEMENT[ctype], name, op) for v in value]
    convert, expected = _CONVERTERS[ctype]
    converted = None if value is None else convert(value)
    if converted is None:
        raise FilterError(
            f"{op} on field {name!r} ({ctype.value}) needs {expected}, got "
            f"{type(value).__name__} {_show(value)}; pass a value of that type."
        )
    return converted
