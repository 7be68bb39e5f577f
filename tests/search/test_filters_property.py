"""Property: PostgreSQL and a pure-Python reference agree on which rows a filter matches.

A seeded table of rows (every column NULL a quarter of the time) is written once;
Hypothesis then draws filters over every operator, nested with $and/$or/$not.
Each filter is compiled, run on the real table, and the ids it finds compared
with `evaluate_filter`, a direct reading of the semantics documented in
``vecdb._search.filters``. Values come mostly from the table's own small pools, so
that equalities, ranges and containment match often.
"""

from __future__ import annotations

import datetime as dt
import json
import operator
import random
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vecdb._schema.columns import ColumnType
from vecdb._search.filters import compile_filter

from ._filter_table import DDL

FIELDS: dict[str, ColumnType] = {
    "name": ColumnType.TEXT,
    "year": ColumnType.BIGINT,
    "score": ColumnType.DOUBLE,
    "flag": ColumnType.BOOLEAN,
    "ts": ColumnType.TIMESTAMPTZ,
    "day": ColumnType.DATE,
    "uid": ColumnType.UUID,
    "tags": ColumnType.TEXT_ARRAY,
    "nums": ColumnType.BIGINT_ARRAY,
    "meta": ColumnType.JSONB,
}
NAMES = list(FIELDS)


# --- the reference implementation -------------------------------------------------------------


def evaluate_filter(
    where: Mapping[str, Any] | None, row: Mapping[str, Any], fields: Mapping[str, ColumnType]
) -> bool:
    """Whether ``row`` matches ``where``, by the semantics in ``vecdb._search.filters``."""
    return not where or _document(where, row, fields)


def _document(where: Mapping[str, Any], row: Mapping[str, Any], fields: Any) -> bool:
    return all(_entry(key, value, row, fields) for key, value in where.items())


def _entry(key: str, value: Any, row: Mapping[str, Any], fields: Any) -> bool:
    if key == "$and":
        return all(_document(item, row, fields) for item in value)
    if key == "$or":
        return any(_document(item, row, fields) for item in value)
    if key == "$not":
        return not _document(value, row, fields)
    ctype = fields[key]
    if isinstance(value, Mapping) and (
        ctype is not ColumnType.JSONB or any(k.startswith("$") for k in value)
    ):
        return all(_operator(op, arg, row[key], ctype) for op, arg in value.items())
    return _operator("$eq", value, row[key], ctype)


_ORDER = {"$lt": operator.lt, "$lte": operator.le, "$gt": operator.gt, "$gte": operator.ge}


def _operator(op: str, arg: Any, x: Any, ctype: ColumnType) -> bool:  # noqa: PLR0911
    if op == "$not":
        return not all(_operator(o, a, x, ctype) for o, a in arg.items())
    if op == "$exists":
        return (x is not None) is arg
    if op == "$eq":
        return _same(x, arg, ctype)
    if op == "$ne":
        return not _same(x, arg, ctype)
    if op == "$in":
        return any(_same(x, a, ctype) for a in arg)
    if op == "$nin":
        return not any(_same(x, a, ctype) for a in arg)
    if x is None:  # comparisons and containment never match NULL
        return False
    if op == "$contains":
        if ctype.is_array:
            wanted = arg if isinstance(arg, list | tuple | set | frozenset) else [arg]
            return all(item in x for item in wanted)
        if ctype is ColumnType.TEXT:
            return bool(arg in x)
        return _json_contains(x, arg, top=True)
    return bool(_ORDER[op](_normal(x, ctype), _normal(arg, ctype)))


def _same(x: Any, arg: Any, ctype: ColumnType) -> bool:
    if x is None or arg is None:
        return x is None and arg is None
    if ctype is ColumnType.JSONB:
        return _json_equal(x, arg)
    return bool(_normal(x, ctype) == _normal(arg, ctype))


def _normal(value: Any, ctype: ColumnType) -> Any:
    if ctype is ColumnType.UUID and isinstance(value, str):
        return uuid.UUID(value)
    if ctype is ColumnType.TEXT_ARRAY or ctype is ColumnType.BIGINT_ARRAY:
        return list(value)
    return value


def _json_equal(a: Any, b: Any) -> bool:
    # jsonb keeps true apart from 1, which Python's == does not.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_json_equal, a, b))
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return False
    return bool(a == b)


def _json_contains(a: Any, b: Any, *, top: bool) -> bool:
    """PostgreSQL's jsonb ``@>`` (section 8.14.3 of its manual)."""
    if isinstance(b, dict):
        return isinstance(a, dict) and all(
            k in a and _json_contains(a[k], v, top=False) for k, v in b.items()
        )
    if isinstance(b, list):
        return isinstance(a, list) and all(
            any(_json_contains(x, y, top=False) for x in a) for y in b
        )
    if isinstance(a, list) and top:  # only a top-level array contains a bare scalar
        return any(_json_equal(x, b) for x in a)
    return _json_equal(a, b)


# --- the table --------------------------------------------------------------------------------

UTC = dt.UTC
ALPHABET = "ab%_\\'é☃"
TEXTS = ["", "a", "b", "ab", "ba", "a%", "%", "_", "a_b", "\\", "'", "O'B", "é", "☃", "aé☃"]
YEARS = [-3, -2, -1, 0, 1, 2, 3, 9, 10, 100, -(2**63), 2**63 - 1]
SCORES = [-1.5, -0.0, 0.0, 0.5, 2.0, 10.0, 1e300, float("inf"), float("-inf")]
INSTANTS = [
    dt.datetime(2020, 1, 1, tzinfo=UTC),
    dt.datetime(2024, 1, 1, 10, tzinfo=UTC),
    dt.datetime(2024, 1, 1, 10, 0, 0, 1, tzinfo=UTC),
    dt.datetime(1999, 12, 31, 23, 59, tzinfo=UTC),
]
ZONES = [UTC, dt.timezone(dt.timedelta(hours=-5)), dt.timezone(dt.timedelta(hours=5, minutes=30))]
DAYS = [dt.date(2020, 1, 1), dt.date(2024, 1, 1), dt.date(2024, 10, 1), dt.date(2024, 9, 30)]
UUIDS = [uuid.UUID(int=n) for n in (1, 2, 2**127, 2**128 - 1)]
TAGS = ["a", "b", "c"]
NUMS = [0, 1, 2, 3]
JSON_KEYS = ["k", "n", "l"]
JSON_SCALARS = [None, True, False, -1, 0, 1, 2, "a", "b"]
NULL_SHARE = 0.25
ROW_COUNT = 200


def _random_json(rnd: random.Random, depth: int) -> Any:
    kind = rnd.randrange(6 if depth < 3 else 4)
    if kind == 4:
        return [_random_json(rnd, depth + 1) for _ in range(rnd.randint(0, 3))]
    if kind == 5:
        return {k: _random_json(rnd, depth + 1) for k in rnd.sample(JSON_KEYS, rnd.randint(0, 3))}
    return rnd.choice(JSON_SCALARS)


def _random_value(rnd: random.Random, name: str) -> Any:  # noqa: PLR0911 - one line per column
    if name == "name":
        return rnd.choice(TEXTS)
    if name == "year":
        return rnd.choice(YEARS)
    if name == "score":
        return rnd.choice(SCORES)
    if name == "flag":
        return rnd.random() < 0.5
    if name == "ts":
        return rnd.choice(INSTANTS).astimezone(rnd.choice(ZONES))
    if name == "day":
        return rnd.choice(DAYS)
    if name == "uid":
        return rnd.choice(UUIDS)
    if name in ("tags", "nums"):
        return rnd.choices(TAGS if name == "tags" else NUMS, k=rnd.randint(0, 3))
    return {k: _random_json(rnd, 1) for k in rnd.sample(JSON_KEYS, rnd.randint(0, 3))}


def make_rows(count: int, seed: int) -> list[dict[str, Any]]:
    """Rows whose every column is NULL a quarter of the time, else drawn from a small pool.

    The table is made once and each Hypothesis example is one filter: an example
    then costs one query, so hundreds run in seconds and a failure shrinks fast.
    """
    rnd = random.Random(seed)  # noqa: S311 - test data, not a secret
    return [
        {"id": i}
        | {name: None if rnd.random() < NULL_SHARE else _random_value(rnd, name) for name in NAMES}
        for i in range(count)
    ]


ROWS = make_rows(ROW_COUNT, seed=20240101)

# --- the filters ------------------------------------------------------------------------------

JSON = st.recursive(
    st.sampled_from(JSON_SCALARS),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(JSON_KEYS), inner),
    max_leaves=4,
)
ELEMENTS = {"tags": st.sampled_from([*TAGS, "z"]), "nums": st.integers(0, 4)}

# Non-NULL filter values per field: mostly values the table holds, so that
# equality and containment match often, plus arbitrary ones for the edges.
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "name": st.sampled_from(TEXTS) | st.text(alphabet=ALPHABET, max_size=3),
    "year": st.sampled_from(YEARS) | st.integers(-(2**63), 2**63 - 1),
    "score": st.sampled_from(SCORES) | st.integers(-3, 3) | st.floats(allow_nan=False),
    "flag": st.booleans(),
    "ts": st.builds(lambda d, z: d.astimezone(z), st.sampled_from(INSTANTS), st.sampled_from(ZONES))
    | st.datetimes(timezones=st.just(UTC)),
    "day": st.sampled_from(DAYS) | st.dates(),
    "uid": st.sampled_from(UUIDS) | st.sampled_from(UUIDS).map(str) | st.uuids(),
    "tags": st.lists(ELEMENTS["tags"], max_size=3),
    "nums": st.lists(ELEMENTS["nums"], max_size=3),
    "meta": st.dictionaries(st.sampled_from(JSON_KEYS), JSON, max_size=3),
}


def _contains_arg(name: str) -> st.SearchStrategy[Any]:
    ctype = FIELDS[name]
    if ctype.is_array:
        element = ELEMENTS[name]
        return element | st.lists(element, min_size=1, max_size=3)
    if ctype is ColumnType.TEXT:
        return VALUES["name"]
    return JSON.filter(lambda v: v is not None)


def field_operators(name: str) -> st.SearchStrategy[dict[str, Any]]:
    """Operator dicts for one field: every operator its type allows, nested with $not."""
    ctype = FIELDS[name]
    value = VALUES[name]
    maybe = st.none() | value
    choices: list[st.SearchStrategy[dict[str, Any]]] = [
        st.fixed_dictionaries({"$eq": maybe}),
        st.fixed_dictionaries({"$ne": maybe}),
        st.fixed_dictionaries({"$exists": st.booleans()}),
    ]
    if not ctype.is_array and ctype is not ColumnType.JSONB:
        # None is drawn apart, so that half the lists hold no NULL at all.
        members = st.builds(
            lambda items, null: [*items, None] if null else items,
            st.lists(value, max_size=3),
            st.booleans(),
        ).filter(bool)
        choices += [st.fixed_dictionaries({op: members}) for op in ("$in", "$nin")]
    if ctype.is_ordered:
        choices += [st.fixed_dictionaries({op: value}) for op in ("$lt", "$lte", "$gt", "$gte")]
    if ctype.is_array or ctype in (ColumnType.TEXT, ColumnType.JSONB):
        choices.append(st.fixed_dictionaries({"$contains": _contains_arg(name)}))
    return st.recursive(
        st.one_of(choices),
        lambda inner: (
            st.builds(lambda a, b: a | b, inner, inner) | inner.map(lambda ops: {"$not": ops})
        ),
        max_leaves=3,
    )


def _leaf(name: str) -> st.SearchStrategy[dict[str, Any]]:
    shorthand = (st.none() | VALUES[name]).map(lambda v: {name: v})
    return shorthand | field_operators(name).map(lambda ops: {name: ops})


LEAF = st.sampled_from(NAMES).flatmap(_leaf)
# Half the filters are one field's condition, which no sibling can mask; the rest
# nest conditions under $and, $or, $not and multi-key dicts.
FILTERS = LEAF | st.recursive(
    LEAF,
    lambda inner: (
        st.lists(inner, min_size=1, max_size=3).map(lambda items: {"$and": items})
        | st.lists(inner, min_size=1, max_size=3).map(lambda items: {"$or": items})
        | inner.map(lambda where: {"$not": where})
        | st.builds(lambda a, b: a | b, inner, inner)
    ),
    max_leaves=8,
)

# --- the property -----------------------------------------------------------------------------


def _record(row: Mapping[str, Any]) -> tuple[Any, ...]:
    # Without a registered codec asyncpg sends jsonb as text.
    return tuple(
        json.dumps(row[name]) if name == "meta" and row[name] is not None else row[name]
        for name in ("id", *NAMES)
    )


@pytest.fixture
async def conn(dsn: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    connection: asyncpg.Connection[Any] = await asyncpg.connect(dsn)
    try:
        await connection.execute(DDL)
        await connection.executemany(
            "INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            [_record(row) for row in ROWS],
        )
        yield connection
    finally:
        await connection.close()


def test_the_table_has_nulls_and_repeats() -> None:
    """The property is only as strong as the table: every column has NULLs and repeated values."""
    for name in NAMES:
        values = [json.dumps(row[name], default=str) for row in ROWS]
        assert values.count("null") >= ROW_COUNT // 10, name
        assert len(set(values)) < len(values), name


@settings(
    max_examples=500,
    deadline=None,
    # The table is filled once, by the fixture; every example only reads it.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(where=FILTERS)
async def test_postgres_and_reference_agree(
    conn: asyncpg.Connection[Any], where: dict[str, Any]
) -> None:
    compiled = compile_filter(where, FIELDS)
    # No value reaches the SQL text: every '$' in it is one of our placeholders.
    assert compiled.sql.count("$") == len(compiled.params)
    query = f"SELECT id FROM t WHERE {compiled.sql}"
    found = {r["id"] for r in await conn.fetch(query, *compiled.params)}
    expected = {row["id"] for row in ROWS if evaluate_filter(where, row, FIELDS)}
    assert found == expected, (compiled.sql, compiled.params)
