"""The search statement, its ``SET LOCAL`` settings, and reading its plan.

The statement binds ``$1`` the query vector, ``$2`` k, then the filter's
values; identifiers are quoted, every value bound, except that an unfiltered
statement has its range-checked k written in (`limit_of`). Settings are applied with
``set_config(name, value, true)`` inside the query's transaction, so none
outlives it on a pooled connection.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from .._identifiers import qualified, quote_ident
from .._schema.ddl import OPERATORS
from .._schema.record import VectorSpec
from .._schema.spec import CollectionSpec
from .._typing import AnyConnection
from .filters import CompiledFilter
from .planner import Strategy

__all__ = [
    "DISTANCE",
    "INDEX_PARTITIONS",
    "ORDINAL",
    "QUERY_ROW",
    "apply_settings",
    "batch_sql",
    "limit_of",
    "search_sql",
    "uses_index",
]

DISTANCE = "_vecdb_distance"  # underscore names cannot be pydantic fields: no collision
ORDINAL = "_vecdb_ord"  # a batch row's query, from 1
QUERY_ROW = "_vecdb_q.v"  # a batch row's query vector, for `batch_sql`'s inner statement
_QUERIES = "_vecdb_q"  # the batch's alias for unnest($1): no table or column is named so


async def apply_settings(conn: AnyConnection, settings: Mapping[str, str]) -> None:
    """``SET LOCAL`` every setting in one round trip (names and values bound)."""
    calls: list[str] = []
    params: list[str] = []
    for name, value in settings.items():
        n = len(params) + 1
        if value.startswith("max:"):
            # greatest(k, the current value): current_setting(..., true) is NULL
            # while pgvector is not loaded in this session; 40 is its default.
            params += [name, value[4:]]
            calls.append(
                f"set_config(${n}, greatest((${n + 1}::text)::int, "
                f"coalesce(current_setting(${n}, true), '40')::int)::text, true)"
            )
        else:
            params += [name, value]
            calls.append(f"set_config(${n}, ${n + 1}, true)")
    await conn.execute("SELECT " + ", ".join(calls), *params)


def search_sql(
    spec: CollectionSpec,
    vector: VectorSpec,
    columns: tuple[str, ...],
    where: CompiledFilter,
    strategy: Strategy,
    *,
    source: str | None = None,
    query: str | None = None,
    k: int | None = None,
) -> str:
    """The search statement: ``$1`` the query vector, ``$2`` k, then the filter's values.

    The filter must have been compiled with ``first_param=3``. ``source``
    replaces the table in ``FROM`` (an aliased subquery with the same columns).
    ``query`` replaces ``$1`` as the query vector (the batch's per-row vector):
    the caller then sorts the rows itself, so an iterative scan gets no re-sort.
    ``k``: written into the statement instead of ``$2`` (see `limit_of`).
    """
    limit = limit_of(k)
    operand = f"$1::{spec.vector_type.value}({int(vector.dim)})" if query is None else query
    distance = f"{quote_ident(vector.name)} {OPERATORS[spec.metric]} {operand}"
    select = ", ".join(quote_ident(c) for c in columns)
    table = qualified(spec.schema, spec.table) if source is None else source
    cond = "" if where.matches_all else f" WHERE {where.sql}"
    if strategy == "hnsw_iterative" and query is None:
        # relaxed_order returns rows slightly out of order: re-sort outside a
        # MATERIALIZED CTE (so the planner cannot fold the two sorts into one).
        return (
            f"WITH c AS MATERIALIZED (SELECT {select}, {distance} AS {DISTANCE} "
            f"FROM {table}{cond} ORDER BY {DISTANCE} LIMIT {limit}) "
            f"SELECT * FROM c ORDER BY {DISTANCE}"
        )
    if strategy == "exact":
        # An order no index provides: PostgreSQL 18 still scans a LIST
        # partition's HNSW index under enable_indexscan=off once pruning leaves
        # that one partition (approximate rows from an "exact" search).
        distance = f"({distance}) + 0"
    return (
        f"SELECT {select}, {distance} AS {DISTANCE} FROM {table}{cond} "
        f"ORDER BY {DISTANCE} LIMIT {limit}"
    )


def limit_of(k: int | None) -> str:
    """The statement's ``LIMIT``: ``$2``, or ``k`` itself for a statement with no other value.

    A bound ``LIMIT`` makes PostgreSQL plan the statement again at every
    execution: the generic plan of ``LIMIT $2`` is costed for an unknown limit
    and never wins (``pg_prepared_statements``: 0 generic, 4,000 custom plans
    in 4,000 runs). An unfiltered search's plan depends on no value, so its
    k is written in and the plan is made once per connection. ``k`` is an int
    the searcher has range-checked; it is the only value ever written in.
    Filtered statements keep ``$2``, and PostgreSQL's own choice between a
    custom and a generic plan for their values.
    """
    if k is None:
        return "$2"
    if type(k) is not int or k < 1:
        raise ValueError(f"k must be a positive int to be written into a statement, got {k!r}")
    return str(k)


def batch_sql(spec: CollectionSpec, vector: VectorSpec, inner: str) -> str:
    """Many searches in one statement: ``$1`` an array of query vectors, then as `search_sql`.

    Each query vector is one row of ``unnest($1) WITH ORDINALITY``; ``inner``,
    the search statement with `QUERY_ROW` as its query vector (`search_sql`'s,
    or a quantized index's re-ranking form), runs for it in a LATERAL
    subquery, so each row gets its own index scan (see docs/search.md, "hot
    path"). Rows come back ordered by `ORDINAL`, then distance: the outer sort
    also puts an iterative scan's relaxed order right.
    """
    array = f"$1::{spec.vector_type.value}({int(vector.dim)})[]"
    return (
        f"SELECT {_QUERIES}.{ORDINAL}, c.* FROM unnest({array}) WITH ORDINALITY "
        f"AS {_QUERIES}(v, {ORDINAL}) CROSS JOIN LATERAL ({inner}) AS c "
        f"ORDER BY {_QUERIES}.{ORDINAL}, c.{DISTANCE}"
    )


def uses_index(plan: Mapping[str, Any], indexes: Collection[str]) -> bool:
    """Whether a plan (``EXPLAIN (FORMAT JSON)`` node) scans one of ``indexes`` anywhere."""
    if plan.get("Index Name") in indexes:
        return True
    return any(uses_index(child, indexes) for child in plan.get("Plans", ()))


# A partitioned index's partitions: each partition's own HNSW index.
INDEX_PARTITIONS = """
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = to_regclass($1)
"""
