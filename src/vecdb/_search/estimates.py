"""The planner's row estimates for a collection, cached briefly: the input of `planner.choose`."""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from .._identifiers import qualified
from .._schema.spec import CollectionSpec
from .._typing import AnyConnection
from .filters import CompiledFilter

__all__ = ["EstimateCache", "filter_key"]


class EstimateCache:
    """The planner's row estimates for one collection, kept for a short while.

    The decision between exact and HNSW needs only the order of magnitude, and
    statistics change slowly. Per filter (SQL and values) the cache keeps the
    estimate of matching rows (one ``EXPLAIN`` of the filter alone); the
    table's size, shared by every filter, comes from ``pg_class`` the way the
    planner computes it. A new filter value costs one ``EXPLAIN``, a known one
    nothing, until ``ttl`` seconds have passed or `clear` is called.
    """

    def __init__(self, *, ttl: float = 30.0, size: int = 512) -> None:
        self._ttl = ttl
        self._size = size
        self._entries: OrderedDict[str, tuple[float, float, float | None]] = OrderedDict()
        self._total: tuple[float, float] | None = None
        self._partitions: tuple[float, dict[str, float | None]] | None = None
        self._bounds: dict[str, tuple[float, float | None]] = {}

    def clear(self) -> None:
        """Forget every estimate (after a bulk write, for instance)."""
        self._entries.clear()
        self._total = None
        self._partitions = None
        self._bounds.clear()

    def cached(self, key: str) -> float | None:
        """The cached estimate of rows matching the filter ``key``, or ``None``."""
        hit = self._entries.get(key)
        if hit is None or time.monotonic() - hit[0] >= self._ttl:
            return None
        self._entries.move_to_end(key)
        return hit[1]

    def _cached_scope(self, key: str) -> float | None:
        hit = self._entries.get(key)
        return None if hit is None else hit[2]

    async def estimate(
        self,
        conn: AnyConnection,
        spec: CollectionSpec,
        key: str,
        compile_first: Callable[[], CompiledFilter],
    ) -> tuple[float, float]:
        """``(rows matching the filter, rows it is a fraction of)``, as the planner estimates them.

        The second number is the table's rows; for a partitioned table, the
        rows of the partitions the filter leaves to scan: a filter that keeps
        one tenant's partition whole is no filter within it.

        Args:
            conn: A connection, used only for what is not cached.
            spec: The collection.
            key: The filter's cache key (its SQL and values; see `filter_key`).
            compile_first: Compiles the filter with ``first_param=1``; called
                only when its estimate is not cached.
        """
        total = await self.total(conn, spec)
        matching = self.cached(key)
        if matching is not None:
            scope = self._cached_scope(key)
            return matching, total if scope is None else scope
        where = compile_first()
        table = qualified(spec.schema, spec.table)
        sql = f"SELECT 1 FROM {table} WHERE {where.sql}"
        scope = None
        if spec.partitioning is None:
            matching = await _plan_rows(conn, sql, where.params)
        else:
            plan = await _explain(conn, sql, where.params)
            matching = float(plan["Plan Rows"])
            scope = await self._scanned_rows(conn, spec, plan)
        self._entries[key] = (time.monotonic(), matching, scope)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return matching, total if scope is None else scope

    async def _scanned_rows(
        self, conn: AnyConnection, spec: CollectionSpec, plan: Mapping[str, Any]
    ) -> float | None:
        """The rows of the partitions a plan scans; ``None`` when one is not estimated."""
        now = time.monotonic()
        if self._partitions is None or now - self._partitions[0] >= self._ttl:
            rows = await conn.fetch(_PARTITION_ROWS, qualified(spec.schema, spec.table))
            self._partitions = (now, {row["name"]: row["rows"] for row in rows})
        sizes = self._partitions[1]
        scanned = _relations(plan)
        if not scanned or any(sizes.get(name) is None for name in scanned):
            return None
        return float(sum(sizes[name] or 0.0 for name in scanned))

    async def total(self, conn: AnyConnection, spec: CollectionSpec) -> float:
        """The planner's estimate of the rows in the table (cached like the filters')."""
        now = time.monotonic()
        if self._total is not None and now - self._total[0] < self._ttl:
            return self._total[1]
        table = qualified(spec.schema, spec.table)
        total = await conn.fetchval(_TOTAL_ROWS, table)
        if total is None and spec.partitioning is not None:
            total = await conn.fetchval(
                f"SELECT CASE WHEN count(*) = count(rows) THEN sum(rows) END "
                f"FROM ({_PARTITION_ROWS}) p",
                table,
            )
        if total is None:  # never analyzed, or empty when analyzed: ask the planner
            total = await _plan_rows(conn, f"SELECT 1 FROM {table}", [])
        self._total = (now, float(total))
        return float(total)

    async def equality_bound(
        self, conn: AnyConnection, spec: CollectionSpec, column: str
    ) -> tuple[float | None, float]:
        """``(the most rows the planner estimates for column = any one value, rows in the table)``.

        The bound is ``None`` without statistics for the column. It follows
        PostgreSQL's ``var_eq_const``: a value among the most common ones is
        estimated at its frequency; any other value at the remaining fraction
        shared among the other distinct values, but never above the least
        common frequency. So no value is estimated above the largest frequency
        (or, without a most-common list, ``(1 - null_frac) / n_distinct``).
        When that bound is `few_rows`, every value is, and an equality filter
        on this column is searched exactly without an ``EXPLAIN`` per value.
        """
        total = await self.total(conn, spec)
        now = time.monotonic()
        hit = self._bounds.get(column)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1], total
        # A partitioned table's own statistics are over all its partitions.
        inherited = spec.partitioning is not None
        row = await conn.fetchrow(_COLUMN_STATS, spec.schema, spec.table, column, inherited)
        bound = None
        if row is not None:
            null_frac, n_distinct, freqs = row
            if freqs:
                selectivity = max(freqs)
            else:
                distinct = n_distinct if n_distinct > 0 else -n_distinct * total
                selectivity = (1.0 - null_frac) / distinct if distinct > 1 else 1.0
            # A little above the planner's own arithmetic (float4 statistics): a
            # bound too high only costs the EXPLAIN it would have saved.
            bound = math.ceil(selectivity * total * 1.01) + 1
        self._bounds[column] = (now, bound)
        return bound, total


def filter_key(where: CompiledFilter) -> str:
    """A cache key for a filter: its SQL and values (compiled the same way every time)."""
    return where.sql + "\x00" + repr(where.params)


# The planner's table size (estimate_rel_size in PostgreSQL's plancat.c): the
# tuple density of the last VACUUM/ANALYZE times the table's current pages.
# NULL where the planner guesses from the tuple width instead.
_TOTAL_ROWS = """
SELECT round(c.reltuples::float8 / c.relpages
             * (pg_relation_size(c.oid) / current_setting('block_size')::int))
FROM pg_class c
WHERE c.oid = $1::regclass AND c.relkind = 'r' AND c.reltuples >= 0 AND c.relpages > 0
"""


_COLUMN_STATS = """
SELECT null_frac::float8, n_distinct::float8, most_common_freqs::float8[]
FROM pg_stats
WHERE schemaname = $1 AND tablename = $2 AND attname = $3 AND inherited = $4
"""


# Each partition's rows as _TOTAL_ROWS computes a table's; 0 for an empty,
# never analysed one (a partition made ahead of time), NULL where unknown.
_PARTITION_ROWS = """
SELECT c.relname AS name,
       CASE WHEN pg_relation_size(c.oid) = 0 THEN 0
            WHEN c.reltuples >= 0 AND c.relpages > 0
            THEN round(c.reltuples::float8 / c.relpages
                       * (pg_relation_size(c.oid) / current_setting('block_size')::int))
       END AS rows
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = $1::regclass
"""


async def _explain(conn: AnyConnection, sql: str, params: list[Any]) -> dict[str, Any]:
    raw = await conn.fetchval("EXPLAIN (FORMAT JSON) " + sql, *params)
    document = json.loads(raw) if isinstance(raw, str) else raw
    plan: dict[str, Any] = document[0]["Plan"]
    return plan


async def _plan_rows(conn: AnyConnection, sql: str, params: list[Any]) -> float:
    return float((await _explain(conn, sql, params))["Plan Rows"])


def _relations(plan: Mapping[str, Any]) -> set[str]:
    """The tables a plan node and its children scan."""
    found = {plan["Relation Name"]} if "Relation Name" in plan else set()
    for child in plan.get("Plans", ()):
        found |= _relations(child)
    return found
