"""The where= filter compiler: each operator per column type against real PostgreSQL.

Every behaviour is checked by running the compiled SQL on a real table, never by
comparing SQL text alone, except where the text itself is the contract
(placeholders, quoting, one array parameter for $in). The module shares one
database holding table ``t``; each test runs in a transaction that is rolled
back, so tests that write (the injection corpus) leave nothing behind.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from vecdb._errors import FilterError
from vecdb._identifiers import quote_ident
from vecdb._schema.columns import ColumnType
from vecdb._search.filters import FIELD_OPERATORS, LOGICAL_OPERATORS, compile_filter

from ._filter_table import DDL

UTC = dt.UTC
U1 = uuid.UUID("00000000-0000-4000-8000-000000000001")
U2 = uuid.UUID("00000000-0000-4000-8000-000000000002")
U3 = uuid.UUID("ffffffff-0000-4000-8000-000000000003")

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
    "embedding": ColumnType.VECTOR,
}
FILTERABLE = sorted(name for name, ctype in FIELDS.items() if not ctype.is_vector)


ROWS: list[tuple[Any, ...]] = [
    # id, name, year, score, flag, ts, day, uid, tags, nums, meta (json text)
    (1, "alpha", 9, 9.5, True, dt.datetime(2024, 1, 1, 10, tzinfo=UTC), dt.date(2024, 1, 1),
     U1, ["a", "b"], [1, 2], '{"k": "v", "n": 1}'),
    (2, "beta", 10, 10.0, False, dt.datetime(2024, 6, 1, tzinfo=UTC), dt.date(2024, 6, 1),
     U2, ["b"], [2, 3], '{"k": "w", "list": [1, 2]}'),
    (3, "O'Brien", 100, -1.5, True,
     dt.datetime(2023, 12, 31, 23, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
     dt.date(2023, 12, 31), U3, [], [], "{}"),
    (4, "50% off_sale \\ now", 2, 0.0, False, dt.datetime(2020, 1, 1, tzinfo=UTC),
     dt.date(2020, 1, 1), None, ["c"], [7], '{"k": null}'),
    (5, None, None, None, None, None, None, None, None, None, None),
]  # fmt: skip
ALL = {1, 2, 3, 4, 5}


async def _create_table(admin_dsn: str, database: str) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f"CREATE DATABASE {quote_ident(database)} TEMPLATE template0")
    finally:
        await admin.close()
    conn = await asyncpg.connect(_with_database(admin_dsn, database))
    try:
        await conn.execute(DDL)
        await conn.executemany(
            "INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)", ROWS
        )
    finally:
        await conn.close()


async def _drop_database(admin_dsn: str, database: str) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {quote_ident(database)} WITH (FORCE)")
    finally:
        await admin.close()


def _with_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + database))


@pytest.fixture(scope="module")
def table_dsn(admin_dsn: str) -> Iterator[str]:
    """One database holding table ``t`` for this module: CREATE DATABASE per test is slow."""
    database = f"vecdb_test_filters_{uuid.uuid4().hex[:12]}"
    asyncio.run(_create_table(admin_dsn, database))
    try:
        yield _with_database(admin_dsn, database)
    finally:
        asyncio.run(_drop_database(admin_dsn, database))


@pytest.fixture
async def conn(table_dsn: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    """A connection inside a transaction that is rolled back: no test sees another's writes."""
    connection: asyncpg.Connection[Any] = await asyncpg.connect(table_dsn)
    transaction = connection.transaction()
    await transaction.start()
    try:
        yield connection
    finally:
        await transaction.rollback()
        await connection.close()


async def matching(
    conn: asyncpg.Connection[Any],
    where: Mapping[str, Any] | None,
    fields: Mapping[str, ColumnType] = FIELDS,
) -> set[int]:
    compiled = compile_filter(where, fields)
    rows = await conn.fetch(f"SELECT id FROM t WHERE {compiled.sql}", *compiled.params)
    return {row["id"] for row in rows}


def case(where: Mapping[str, Any], expected: set[int], id: str) -> Any:
    return pytest.param(where, expected, id=id)


# --- operators per type -----------------------------------------------------------------------

EQUALITY = [
    case({"name": "alpha"}, {1}, "text-shorthand"),
    case({"name": {"$eq": "O'Brien"}}, {3}, "text-quote"),
    case({"year": 10}, {2}, "bigint"),
    case({"score": 10}, {2}, "double-given-int"),
    case({"score": 9.5}, {1}, "double"),
    case({"flag": True}, {1, 3}, "boolean-true"),
    case({"flag": False}, {2, 4}, "boolean-false"),
    case({"ts": dt.datetime(2024, 1, 1, 10, tzinfo=UTC)}, {1}, "timestamptz"),
    case(
        {"ts": dt.datetime(2024, 1, 1, 11, tzinfo=dt.timezone(dt.timedelta(hours=1)))},
        {1},
        "timestamptz-same-instant-other-zone",
    ),
    case({"day": dt.date(2024, 6, 1)}, {2}, "date"),
    case({"uid": U1}, {1}, "uuid-object"),
    case({"uid": str(U2)}, {2}, "uuid-string"),
    case({"uid": str(U3).upper()}, {3}, "uuid-upper-case-string"),
    case({"tags": ["a", "b"]}, {1}, "text-array-whole"),
    case({"tags": ["b", "a"]}, set(), "text-array-order-matters"),
    case({"nums": {"$eq": [2, 3]}}, {2}, "bigint-array-whole"),
    case({"meta": {"n": 1, "k": "v"}}, {1}, "jsonb-plain-dict-any-key-order"),
    case({"meta": {"$eq": {}}}, {3}, "jsonb-empty-object"),
]


@pytest.mark.parametrize(("where", "expected"), EQUALITY)
async def test_eq_matches_equal_values(
    conn: asyncpg.Connection[Any], where: dict[str, Any], expected: set[int]
) -> None:
    assert await matching(conn, where) == expected


NULLS = [
    case({"year": None}, {5}, "eq-none-is-null"),
    case({"year": {"$eq": None}}, {5}, "explicit-eq-none"),
    case({"year": {"$ne": None}}, {1, 2, 3, 4}, "ne-none-is-not-null"),
    case({"year": {"$ne": 10}}, {1, 3, 4, 5}, "ne-matches-null-rows"),
    case({"name": {"$ne": "alpha"}}, {2, 3, 4, 5}, "text-ne-matches-null-rows"),
    case({"flag": {"$ne": True}}, {2, 4, 5}, "boolean-ne-matches-null-rows"),
    case({"meta": {"$ne": {}}}, {1, 2, 4, 5}, "jsonb-ne-matches-null-rows"),
    case({"uid": {"$exists": True}}, {1, 2, 3}, "exists-true"),
    case({"uid": {"$exists": False}}, {4, 5}, "exists-false"),
    case({"year": {"$in": [10, None]}}, {2, 5}, "in-with-none-matches-null"),
    case({"year": {"$nin": [10]}}, {1, 3, 4, 5}, "nin-matches-null-rows"),
    case({"year": {"$nin": [10, None]}}, {1, 3, 4}, "nin-with-none-excludes-null"),
    case({"year": {"$in": [None]}}, {5}, "in-only-none"),
    case({"year": {"$lt": 1000}}, {1, 2, 3, 4}, "comparison-never-matches-null"),
    case({"tags": {"$contains": "b"}}, {1, 2}, "contains-never-matches-null"),
    case({"$not": {"year": {"$gt": 9}}}, {1, 4, 5}, "not-matches-null-rows"),
    case({"year": {"$not": {"$gt": 9}}}, {1, 4, 5}, "field-not-matches-null-rows"),
    case({"$not": {"year": {"$ne": 10}}}, {2}, "not-ne-is-eq"),
    case({"$not": {"$not": {"year": {"$gt": 9}}}}, {2, 3}, "double-not"),
]


@pytest.mark.parametrize(("where", "expected"), NULLS)
async def test_null_semantics(
    conn: asyncpg.Connection[Any], where: dict[str, Any], expected: set[int]
) -> None:
    assert await matching(conn, where) == expected


ORDERING = [
    case({"year": {"$gt": 9}}, {2, 3}, "bigint-gt-as-numbers-not-text"),
    case({"year": {"$gte": 10}}, {2, 3}, "bigint-gte"),
    case({"year": {"$lt": 10}}, {1, 4}, "bigint-lt"),
    case({"year": {"$lte": 9}}, {1, 4}, "bigint-lte"),
    case({"year": {"$gte": 9, "$lt": 100}}, {1, 2}, "two-operators-are-anded"),
    case({"score": {"$gt": 9.75}}, {2}, "double-gt"),
    case({"score": {"$lt": 0}}, {3}, "double-lt-int"),
    case({"score": {"$gte": -1.5, "$lte": 0.0}}, {3, 4}, "double-range"),
    case({"name": {"$lt": "b"}}, {1, 3, 4}, "text-lt"),
    case({"name": {"$gte": "beta"}}, {2}, "text-gte"),
    case({"ts": {"$gt": dt.datetime(2024, 1, 1, 5, tzinfo=UTC)}}, {1, 2}, "timestamptz-gt"),
    case({"ts": {"$lt": dt.datetime(2024, 1, 1, 5, tzinfo=UTC)}}, {3, 4}, "timestamptz-lt"),
    case({"day": {"$gt": dt.date(2023, 12, 31)}}, {1, 2}, "date-gt"),
    case({"day": {"$lte": dt.date(2023, 12, 31)}}, {3, 4}, "date-lte"),
    case({"uid": {"$gt": str(U1)}}, {2, 3}, "uuid-gt"),
]


@pytest.mark.parametrize(("where", "expected"), ORDERING)
async def test_comparisons_use_the_column_type(
    conn: asyncpg.Connection[Any], where: dict[str, Any], expected: set[int]
) -> None:
    assert await matching(conn, where) == expected


MEMBERSHIP = [
    case({"year": {"$in": [9, 100]}}, {1, 3}, "bigint-list"),
    case({"year": {"$in": (9, 100)}}, {1, 3}, "tuple"),
    case({"year": {"$in": {9, 100}}}, {1, 3}, "set"),
    case({"score": {"$in": [9.5, -1.5]}}, {1, 3}, "double"),
    case({"name": {"$in": ["alpha", "O'Brien"]}}, {1, 3}, "text"),
    case({"flag": {"$in": [False]}}, {2, 4}, "boolean"),
    case({"uid": {"$in": [str(U1), U3]}}, {1, 3}, "uuid-mixed"),
    case({"day": {"$in": [dt.date(2024, 1, 1), dt.date(2020, 1, 1)]}}, {1, 4}, "date"),
    case({"ts": {"$in": [dt.datetime(2024, 6, 1, tzinfo=UTC)]}}, {2}, "timestamptz"),
    case({"name": {"$nin": ["alpha", "beta"]}}, {3, 4, 5}, "nin-text"),
]


@pytest.mark.parametrize(("where", "expected"), MEMBERSHIP)
async def test_in_and_nin(
    conn: asyncpg.Connection[Any], where: dict[str, Any], expected: set[int]
) -> None:
    assert await matching(conn, where) == expected


CONTAINS = [
    case({"tags": {"$contains": "b"}}, {1, 2}, "text-array-scalar"),
    case({"tags": {"$contains": ["a", "b"]}}, {1}, "text-array-all-of-list"),
    case({"tags": {"$contains": ["a", "z"]}}, set(), "text-array-missing-one"),
    case({"nums": {"$contains": 2}}, {1, 2}, "bigint-array-scalar"),
    case({"nums": {"$contains": {3, 2}}}, {2}, "bigint-array-set"),
    case({"name": {"$contains": "Bri"}}, {3}, "text-substring"),
    case({"name": {"$contains": "%"}}, {4}, "text-percent-is-literal"),
    case({"name": {"$contains": "_"}}, {4}, "text-underscore-is-literal"),
    case({"name": {"$contains": "\\"}}, {4}, "text-backslash-is-literal"),
    case({"name": {"$contains": "ALPHA"}}, set(), "text-case-sensitive"),
    case({"name": {"$contains": ""}}, {1, 2, 3, 4}, "text-empty-matches-non-null"),
    case({"meta": {"$contains": {"k": "v"}}}, {1}, "jsonb-object"),
    case({"meta": {"$contains": {"list": [1]}}}, {2}, "jsonb-nested-array"),
    case({"meta": {"$contains": {"k": None}}}, {4}, "jsonb-json-null"),
    case({"meta": {"$contains": {}}}, {1, 2, 3, 4}, "jsonb-empty-object"),
]


@pytest.mark.parametrize(("where", "expected"), CONTAINS)
async def test_contains(
    conn: asyncpg.Connection[Any], where: dict[str, Any], expected: set[int]
) -> None:
    assert await matching(conn, where) == expected


LOGICAL = [
    case({"name": "alpha", "year": 9}, {1}, "keys-are-anded"),
    case({"name": "alpha", "year": 10}, set(), "keys-are-anded-no-match"),
    case({"$and": [{"flag": True}, {"year": {"$gt": 9}}]}, {3}, "and"),
    case({"$or": [{"year": 9}, {"name": "beta"}]}, {1, 2}, "or"),
    case({"$or": ({"year": 9},)}, {1}, "or-tuple-of-one"),
    case({"$not": {"flag": True}}, {2, 4, 5}, "not"),
    case(
        {"$or": [{"$and": [{"flag": True}, {"score": {"$lt": 0}}]}, {"nums": {"$contains": 7}}]},
        {3, 4},
        "nested",
    ),
    case({"$and": [{"year": {"$gt": 1}}], "flag": False}, {2, 4}, "logical-beside-field"),
    case({"tags": {"$not": {"$contains": "b"}}}, {3, 4, 5}, "field-not-contains"),
]


@pytest.mark.parametrize(("where", "expected"), LOGICAL)
async def test_logical_operators(
    conn: asyncpg.Connection[Any], where: dict[str, Any], expected: set[int]
) -> None:
    assert await matching(conn, where) == expected


@pytest.mark.parametrize("where", [None, {}], ids=["none", "empty"])
async def test_empty_filter_matches_all(
    conn: asyncpg.Connection[Any], where: dict[str, Any] | None
) -> None:
    compiled = compile_filter(where, FIELDS)
    assert (compiled.sql, compiled.params, compiled.matches_all) == ("TRUE", [], True)
    assert await matching(conn, where) == ALL


def test_a_real_filter_does_not_claim_to_match_all() -> None:
    assert compile_filter({"year": {"$gte": 0}}, FIELDS).matches_all is False


# --- the SQL text contract --------------------------------------------------------------------


def test_values_are_numbered_placeholders_in_order() -> None:
    compiled = compile_filter({"year": {"$gte": 2020}, "name": "a"}, FIELDS)
    assert compiled.sql == '("year" >= $1 AND "name" = $2)'
    assert compiled.params == [2020, "a"]


def test_first_param_offsets_the_placeholders() -> None:
    compiled = compile_filter({"year": 1, "name": "a"}, FIELDS, first_param=3)
    assert compiled.sql == '("year" = $3 AND "name" = $4)'


def test_in_binds_the_whole_list_as_one_array_parameter() -> None:
    compiled = compile_filter({"year": {"$in": [1, 2, 3]}}, FIELDS)
    assert compiled.sql == '"year" = ANY($1)'
    assert compiled.params == [[1, 2, 3]]


def test_uuid_strings_are_converted_before_binding() -> None:
    assert compile_filter({"uid": str(U1)}, FIELDS).params == [U1]


async def test_alias_qualifies_columns(conn: asyncpg.Connection[Any]) -> None:
    compiled = compile_filter({"year": 9}, FIELDS, alias="x")
    assert compiled.sql == '"x"."year" = $1'
    rows = await conn.fetch(f"SELECT x.id FROM t AS x WHERE {compiled.sql}", *compiled.params)
    assert [row["id"] for row in rows] == [1]


async def test_parameters_follow_the_query_own(conn: asyncpg.Connection[Any]) -> None:
    compiled = compile_filter({"year": {"$gt": 5}}, FIELDS, first_param=2)
    rows = await conn.fetch(
        f"SELECT id FROM t WHERE id <> $1 AND {compiled.sql}", 2, *compiled.params
    )
    assert {row["id"] for row in rows} == {1, 3}


# --- errors -----------------------------------------------------------------------------------


def deep_not(depth: int) -> dict[str, Any]:
    where: dict[str, Any] = {"year": 1}
    for _ in range(depth):
        where = {"$not": where}
    return where


def deep_field_not(depth: int) -> dict[str, Any]:
    ops: dict[str, Any] = {"$eq": 1}
    for _ in range(depth):
        ops = {"$not": ops}
    return {"year": ops}


SHAPE_ERRORS = [
    pytest.param(["year", 1], "a filter must be a dict", id="where-is-a-list"),
    pytest.param("year = 1", "a filter must be a dict", id="where-is-a-string"),
    pytest.param({"$and": {"year": 1}}, "non-empty list", id="and-not-a-list"),
    pytest.param({"$and": "year"}, "non-empty list", id="and-a-string"),
    pytest.param({"$and": []}, "non-empty list", id="and-empty"),
    pytest.param({"$or": []}, "non-empty list", id="or-empty"),
    pytest.param({"$or": [1]}, "a filter must be a dict", id="or-of-non-dicts"),
    pytest.param({"$or": [{}]}, "empty filter", id="or-of-empty-dict"),
    pytest.param({"$not": [{"year": 1}]}, "a filter must be a dict", id="not-a-list"),
    pytest.param({"$not": {}}, "empty filter", id="not-empty"),
    pytest.param({"year": {"$not": 5}}, "needs a dict of operators", id="field-not-scalar"),
    pytest.param({"year": {"$in": []}}, "non-empty list", id="in-empty"),
    pytest.param({"year": {"$nin": 5}}, "non-empty list", id="nin-scalar"),
    pytest.param({"name": {"$in": "abc"}}, "non-empty list", id="in-a-string"),
    pytest.param({"tags": {"$contains": []}}, "non-empty list", id="contains-empty-list"),
    pytest.param({"tags": {"$contains": [None]}}, "needs a str", id="contains-none-in-array"),
    pytest.param({1: 2}, "keys must be strings", id="non-str-key"),
    pytest.param({"year": {}}, "empty operator dict", id="empty-operator-dict"),
    pytest.param({"year": {"$exists": 1}}, "True or False", id="exists-not-bool"),
    pytest.param({"year": {"$gt": None}}, "cannot compare with None", id="gt-none"),
    pytest.param(deep_not(40), "nested more than 32", id="deep-not"),
    pytest.param(deep_field_not(40), "nested more than 32", id="deep-field-not"),
    pytest.param({"year": {"$gt": 1}, "$and": [deep_not(33)]}, "nested", id="deep-and"),
]


@pytest.mark.parametrize(("where", "message"), SHAPE_ERRORS)
def test_malformed_filters_say_what_was_expected(where: Any, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        compile_filter(where, FIELDS)


def test_depth_32_is_allowed() -> None:
    compile_filter(deep_not(31), FIELDS)


@pytest.mark.parametrize(
    "where",
    [{"nope": 1}, {"Year": 1}, {"year ": 1}, {"": 1}, {"$and": [{"nope": 1}]}],
    ids=["unknown", "case-differs", "trailing-space", "empty-name", "inside-and"],
)
def test_unknown_field_lists_the_valid_fields(where: dict[str, Any]) -> None:
    with pytest.raises(FilterError, match="not a declared field") as raised:
        compile_filter(where, FIELDS)
    assert str(FILTERABLE) in str(raised.value)


def test_vector_field_is_not_filterable() -> None:
    with pytest.raises(FilterError, match="vector field") as raised:
        compile_filter({"embedding": [0.1, 0.2]}, FIELDS)
    assert "search()" in str(raised.value)


@pytest.mark.parametrize(
    "where",
    [
        {"year": {"$regex": "^1"}},
        {"year": {"$foo": 1}},
        {"year": {"$and": [1]}},
        {"year": {"eq": 1}},
        {"year": {"$eq": 1, "$where": "1"}},
    ],
    ids=["regex", "foo", "logical-at-field-level", "missing-dollar", "second-of-two"],
)
def test_unknown_field_operator_lists_the_valid_operators(where: dict[str, Any]) -> None:
    with pytest.raises(FilterError, match="unknown operator") as raised:
        compile_filter(where, FIELDS)
    assert str(list(FIELD_OPERATORS)) in str(raised.value)


@pytest.mark.parametrize(
    "where",
    [{"$eq": 1}, {"$regex": "x"}, {"$nor": [{"year": 1}]}],
    ids=["field-operator", "regex", "nor"],
)
def test_unknown_top_level_operator_lists_fields_and_logical_operators(
    where: dict[str, Any],
) -> None:
    with pytest.raises(FilterError, match="unknown operator") as raised:
        compile_filter(where, FIELDS)
    assert str(list(LOGICAL_OPERATORS)) in str(raised.value)
    assert str(FILTERABLE) in str(raised.value)


@pytest.mark.parametrize(
    ("where", "valid"),
    [
        ({"flag": {"$gt": True}}, ["$eq", "$ne", "$in", "$nin", "$exists", "$not"]),
        ({"tags": {"$lt": ["a"]}}, ["$eq", "$ne", "$exists", "$contains", "$not"]),
        ({"tags": {"$in": [["a"]]}}, ["$eq", "$ne", "$exists", "$contains", "$not"]),
        ({"meta": {"$in": [{}]}}, ["$eq", "$ne", "$exists", "$contains", "$not"]),
        ({"meta": {"$gte": {}}}, ["$eq", "$ne", "$exists", "$contains", "$not"]),
        ({"year": {"$contains": 1}}, ["$eq", "$ne", "$lt", "$lte", "$gt", "$gte", "$in"]),
        ({"day": {"$contains": dt.date(2024, 1, 1)}}, ["$eq", "$ne", "$lt"]),
    ],
    ids=["gt-boolean", "lt-array", "in-array", "in-jsonb", "gte-jsonb", "contains-bigint",
         "contains-date"],
)  # fmt: skip
def test_operator_on_wrong_type_lists_the_operators_that_apply(
    where: dict[str, Any], valid: list[str]
) -> None:
    with pytest.raises(FilterError, match="does not apply") as raised:
        compile_filter(where, FIELDS)
    assert all(repr(op) in str(raised.value) for op in valid)


BAD_VALUES = [
    pytest.param({"year": "2020"}, "needs an int", id="bigint-str-is-not-cast"),
    pytest.param({"year": True}, "needs an int", id="bigint-bool"),
    pytest.param({"year": 1.5}, "needs an int", id="bigint-float"),
    pytest.param({"year": 2**63}, "64-bit", id="bigint-overflow"),
    pytest.param({"year": {"$in": [1, "2"]}}, "needs an int", id="bigint-in-with-str"),
    pytest.param({"score": True}, "needs an int or float", id="double-bool"),
    pytest.param({"score": float("nan")}, "not NaN", id="double-nan"),
    pytest.param({"score": {"$gt": "1.0"}}, "needs an int or float", id="double-str"),
    pytest.param({"score": 10**400}, "needs an int or float", id="double-int-overflow"),
    pytest.param({"flag": 1}, "True or False", id="boolean-int"),
    pytest.param({"flag": "true"}, "True or False", id="boolean-str"),
    pytest.param({"ts": dt.datetime(2024, 1, 1)}, "timezone-aware", id="timestamptz-naive"),  # noqa: DTZ001
    pytest.param({"ts": dt.date(2024, 1, 1)}, "timezone-aware", id="timestamptz-date"),
    pytest.param({"ts": "2024-01-01T00:00:00Z"}, "timezone-aware", id="timestamptz-str"),
    pytest.param({"day": dt.datetime(2024, 1, 1, tzinfo=UTC)}, "not a datetime", id="date-dt"),
    pytest.param({"day": "2024-01-01"}, "datetime.date", id="date-str"),
    pytest.param({"uid": "not-a-uuid"}, "valid UUID", id="uuid-bad-string"),
    pytest.param({"uid": 123}, "valid UUID", id="uuid-int"),
    pytest.param({"name": 5}, "needs a str", id="text-int"),
    pytest.param({"name": "a\x00b"}, "NUL", id="text-nul"),
    pytest.param({"name": {"$contains": 5}}, "needs a str", id="text-contains-int"),
    pytest.param({"tags": "a"}, "needs a list", id="array-eq-scalar"),
    pytest.param({"tags": {"$contains": 5}}, "needs a str", id="text-array-contains-int"),
    pytest.param({"nums": {"$contains": "1"}}, "needs an int", id="bigint-array-contains-str"),
    pytest.param({"meta": {"$eq": {"x": float("nan")}}}, "JSON-serialisable", id="jsonb-nan"),
    pytest.param({"meta": {"$contains": {"x": object()}}}, "JSON-serialisable", id="jsonb-obj"),
    pytest.param({"meta": {"x": "a\x00"}}, "NUL", id="jsonb-nul"),
    pytest.param({"meta": {"$contains": None}}, "exists", id="jsonb-contains-none"),
    pytest.param({"tags": {"$contains": None}}, "exists", id="array-contains-none"),
    pytest.param({"name": {"$contains": None}}, "exists", id="text-contains-none"),
]


@pytest.mark.parametrize(("where", "message"), BAD_VALUES)
def test_values_of_the_wrong_type_are_refused_before_any_sql(
    where: dict[str, Any], message: str
) -> None:
    with pytest.raises(FilterError, match=message):
        compile_filter(where, FIELDS)


def _deep_list(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def _cyclic() -> dict[str, Any]:
    value: dict[str, Any] = {}
    value["k"] = value
    return value


@pytest.mark.parametrize(
    "where",
    [
        {"meta": {"$eq": _deep_list(5000)}},
        {"meta": {"$contains": _cyclic()}},
        {"name": "x" * 1_000_000 + "\x00"},
        {"y" * 100_000: 1},
        {"year": {"$in": ["z" * 100_000]}},
    ],
    ids=["deep-json", "cyclic-json", "huge-text", "huge-key", "huge-in"],
)
def test_huge_or_deep_values_give_a_short_message(where: dict[str, Any]) -> None:
    with pytest.raises(FilterError) as raised:
        compile_filter(where, FIELDS)
    assert len(str(raised.value)) < 500


@pytest.mark.parametrize("first_param", [0, -1, True], ids=["zero", "negative", "bool"])
def test_first_param_must_be_positive(first_param: int) -> None:
    with pytest.raises(FilterError, match="first_param"):
        compile_filter({"year": 1}, FIELDS, first_param=first_param)


# --- injection corpus -------------------------------------------------------------------------

NASTY_KEYS = [
    "a' OR '1'='1",
    '"; DROP TABLE t; --',
    'year"--',
    'year" OR "1"="1',
    "year; DELETE FROM t",
    "year)--",
    "$or' OR 1=1",
    "year\u037e DROP TABLE t",  # Greek question mark, looks like ';'
    "name/**/OR/**/1=1",
]


@pytest.mark.parametrize("key", NASTY_KEYS)
@pytest.mark.parametrize("where_of", ["top", "in-or", "as-operator"])
async def test_nasty_keys_are_refused(
    conn: asyncpg.Connection[Any], key: str, where_of: str
) -> None:
    shapes: dict[str, dict[str, Any]] = {
        "top": {key: 1},
        "in-or": {"$or": [{"year": 1}, {key: 1}]},
        "as-operator": {"year": {key: 1}},
    }
    with pytest.raises(FilterError):
        compile_filter(shapes[where_of], FIELDS)
    assert await conn.fetchval("SELECT count(*) FROM t") == len(ROWS)


NASTY_VALUES = [
    "x') OR 1=1 --",
    "O'Brien",
    "%",
    "_",
    "\\",
    "'; DROP TABLE t; --",
    '" OR ""="',
    "$1 OR TRUE",
    "' || (SELECT current_user) || '",
    "1; SELECT pg_sleep(10)",
    "ünïcødé ☃ 🎉 \u202e",
    "E'\\x27'",
    "$$; DROP TABLE t; $$",
    "\n\r\t",
]


@pytest.fixture
async def nasty(conn: asyncpg.Connection[Any]) -> dict[int, str]:
    names = {100 + i: value for i, value in enumerate(NASTY_VALUES)}
    await conn.executemany("INSERT INTO t (id, name) VALUES ($1, $2)", list(names.items()))
    return {row[0]: row[1] for row in ROWS if row[1] is not None} | names


@pytest.mark.parametrize("value", NASTY_VALUES)
async def test_nasty_values_match_literally_and_never_reach_the_sql(
    conn: asyncpg.Connection[Any], nasty: dict[int, str], value: str
) -> None:
    before = await conn.fetchval("SELECT count(*) FROM t")
    cases: list[tuple[dict[str, Any], set[int]]] = [
        ({"name": value}, {i for i, n in nasty.items() if n == value}),
        ({"name": {"$in": [value, "zzz"]}}, {i for i, n in nasty.items() if n == value}),
        ({"name": {"$contains": value}}, {i for i, n in nasty.items() if value in n}),
        ({"tags": {"$contains": value}}, set()),
        ({"meta": {"$contains": {value: value}}}, set()),
    ]
    for where, expected in cases:
        compiled = compile_filter(where, FIELDS)
        assert value not in compiled.sql
        assert await matching(conn, where) == expected
    assert await conn.fetchval("SELECT count(*) FROM t") == before


async def test_declared_field_with_quotes_is_quoted_not_executed(
    conn: asyncpg.Connection[Any],
) -> None:
    weird = 'we"ird; DROP TABLE t; --'
    await conn.execute(f"ALTER TABLE t ADD COLUMN {quote_ident(weird)} bigint")
    await conn.execute(f"UPDATE t SET {quote_ident(weird)} = id * 2")
    assert await matching(conn, {weird: 4}, {weird: ColumnType.BIGINT}) == {2}
    assert await conn.fetchval("SELECT count(*) FROM t") == len(ROWS)
