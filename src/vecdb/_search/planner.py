"""Search: which strategy a query takes, its SQL, and its per-transaction settings.

Three strategies:

* ``"hnsw"``: no filter; the HNSW index returns the ``k`` nearest. ``ef_search``
  is raised to at least ``k``.
* ``"hnsw_iterative"``: a filter that many rows match. pgvector >= 0.8 keeps
  scanning the graph (``hnsw.iterative_scan = relaxed_order``) until ``k`` rows
  pass the filter or ``hnsw.max_scan_tuples`` is reached; the rows come back in
  roughly the right order, so an outer query re-sorts them by distance.
* ``"exact"``: ``exact=True``, no index, or a filter few rows match. The
  matching rows (found through B-tree indexes) are sorted by exact distance.
  Index scans are switched off for the transaction so the planner cannot pick
  the HNSW index and return fewer than ``k`` rows.

"Few" is decided per query from the planner's estimate of the filter's rows
(``EXPLAIN`` of a ``SELECT`` with only the filter), cached briefly per filter
and values (see `EstimateCache`): exact when at most `EXACT_MAX_ROWS` rows
(fewer above `EXACT_ROWS_DIM` dimensions) or under `EXACT_MAX_FRACTION` of
the table match. Below that fraction an HNSW scan would have to visit
``k / fraction`` tuples and more; below that many rows an exact scan of the
matching rows takes under ~10 ms and is exact.

Settings are applied with ``set_config(name, value, true)`` (``SET LOCAL``)
inside the query's transaction, so none outlives it on a pooled connection.
An unfiltered search at the connection's ``hnsw.ef_search`` (``k`` no larger)
needs none: it is one statement, without a transaction (see `docs/search.md`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from .._identifiers import qualified, quote_ident
from .._schema.columns import ColumnType
from .._schema.ddl import OPERATORS
from .._schema.record import VectorSpec
from .._schema.rows import HALF_MAX, check_vectors
from .._schema.spec import CollectionSpec
from .._typing import AnyConnection
from .filters import CompiledFilter

__all__ = [
    "DISTANCE",
    "EXACT_MAX_FRACTION",
    "EXACT_MAX_ROWS",
    "EXACT_ROWS_DIM",
    "EstimateCache",
    "Explain",
    "Plan",
    "Strategy",
    "apply_settings",
    "choose",
    "default_ef_search",
    "equality_field",
    "exact_max_rows",
    "few_rows",
    "filter_key",
    "filtered_ef_search",
    "query_vector",
    "search_sql",
    "uses_index",
]

Strategy = Literal["hnsw", "hnsw_iterative", "exact"]

# An exact scan costs ~1.7 µs per matching row at 384 dims (measured here: 5,000
# rows in ~9 ms), more where vectors are TOASTed (3.5-5 µs at 768-1536 dims): the
# row limit keeps it under ~10 ms, and shrinks in proportion above 384 dims.
EXACT_MAX_ROWS = 5_000
EXACT_ROWS_DIM = 384
EXACT_MAX_FRACTION = 0.01  # below 1%, an HNSW scan visits >= 100 * k tuples: exact wins
EF_SEARCH_MAX = 1000  # pgvector's upper bound for hnsw.ef_search
DEFAULT_EF_SEARCH = 40  # pgvector's default hnsw.ef_search
# Under a filter, an iterative scan's recall follows ef_search much as an
# unfiltered scan's does (measured on MiniLM embeddings: 0.992-0.995 at 20-50%
# selectivity with 200, ~6 ms); below 20% fewer candidates pass the filter, so
# ef_search grows in proportion (400 at 10%), up to pgvector's maximum.
FILTERED_EF_SEARCH = 200
FILTERED_EF_FRACTION = 0.2
MAX_SCAN_TUPLES_DEFAULT = 20_000  # pgvector's default hnsw.max_scan_tuples
MAX_SCAN_TUPLES_CAP = 2_000_000
DISTANCE = "_vecdb_distance"  # underscore names cannot be pydantic fields: no collision
# enable_indexscan off keeps the planner off the HNSW index (B-tree bitmap scans
# remain); jit off because a scan of many rows costs more than jit_above_cost,
# and compiling it costs more than it saves.
_EXACT: Mapping[str, str] = {"jit": "off", "enable_indexscan": "off"}


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """How one search runs.

    Attributes:
        strategy: ``"hnsw"``, ``"hnsw_iterative"`` or ``"exact"``.
        reason: Why, in words.
        settings: The ``SET LOCAL`` values (name to value; ``ef_search`` may be
            an SQL expression resolved at run time when not given). Empty when
            the query needs none: it then runs as one statement, without a
            transaction.
        estimated_rows: The planner's estimate of rows matching the filter.
        total_rows: The planner's estimate of rows in the table.
    """

    strategy: Strategy
    reason: str
    settings: Mapping[str, str]
    estimated_rows: float | None = None
    total_rows: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Explain:
    """What ``collection.explain()`` returns.

    Attributes:
        strategy: ``"hnsw"``, ``"hnsw_iterative"`` or ``"exact"`` (see `docs/search.md`).
        reason: Why that strategy was chosen.
        uses_vector_index: Whether PostgreSQL's plan scans the HNSW index.
        plan: The ``EXPLAIN (FORMAT JSON)`` plan (the top-level object).
        sql: The search statement.
        settings: The ``SET LOCAL`` values the search runs with.
        estimated_rows: The planner's estimate of rows matching the filter.
        total_rows: The planner's estimate of rows in the collection.
    """

    strategy: Strategy
    reason: str
    uses_vector_index: bool
    plan: dict[str, Any]
    sql: str
    settings: Mapping[str, str]
    estimated_rows: float | None
    total_rows: float | None


def choose(
    *,
    has_index: bool,
    exact: bool,
    filtered: bool,
    k: int,
    ef_search: int | None,
    iterative: bool,
    estimated_rows: float | None,
    total_rows: float | None,
    dim: int,
    default_ef_search: int = DEFAULT_EF_SEARCH,
) -> Plan:
    """Pick the strategy and settings for one query (pure: no I/O).

    Args:
        has_index: The vector field has an HNSW index.
        exact: The caller asked for ``exact=True``.
        filtered: The query has a filter.
        k: The number of results.
        ef_search: The caller's ``ef_search``, or ``None``.
        iterative: pgvector has iterative index scans (0.8+).
        estimated_rows: The planner's estimate of rows matching the filter.
        total_rows: The planner's estimate of rows in the table.
        dim: The dimension of the vector field searched.
        default_ef_search: The ``hnsw.ef_search`` the connections start with
            (see `default_ef_search`).
    """
    if exact or not has_index:
        reason = "exact=True" if exact else "the collection has no vector index"
        return Plan("exact", reason, dict(_EXACT), estimated_rows, total_rows)
    fraction = None
    if filtered and estimated_rows is not None:
        fraction = estimated_rows / max(total_rows or 0.0, estimated_rows, 1.0)
        few = few_rows(estimated_rows, total_rows, dim)
        if few or not iterative:
            reason = (
                f"the filter matches ~{estimated_rows:.0f} of ~{total_rows or 0:.0f} rows "
                f"({fraction:.2%}): an exact scan of those rows is cheaper and exact"
            )
            if not few:
                reason = (
                    f"the filter matches ~{estimated_rows:.0f} rows and this pgvector has "
                    "no iterative index scans (0.8+): exact scan keeps the results complete"
                )
            return Plan("exact", reason, dict(_EXACT), estimated_rows, total_rows)
    if not filtered and ef_search is None and k <= default_ef_search:
        # Nothing to set: the connection's ef_search already holds k candidates,
        # and the index scan's plan costs far less than jit_above_cost.
        reason = f"no filter: the HNSW index at the connection's ef_search ({default_ef_search})"
        return Plan("hnsw", reason, {}, estimated_rows, total_rows)
    # A transaction is needed anyway: JIT off costs nothing more there, and keeps
    # a plan the planner prefers to the index (a large k, a filter) from compiling.
    settings: dict[str, str] = {"jit": "off"}
    wanted = ef_search
    if wanted is None and filtered:
        wanted = filtered_ef_search(fraction)
    if wanted is None:
        # Keep the server's (or pool's) hnsw.ef_search, but never below k.
        settings["hnsw.ef_search"] = f"max:{min(k, EF_SEARCH_MAX)}"
    else:
        settings["hnsw.ef_search"] = str(min(max(wanted, k), EF_SEARCH_MAX))
    if not filtered and k <= EF_SEARCH_MAX:
        reason = "no filter: the HNSW index, ef_search raised" + (
            " as asked" if ef_search is not None else f" to k={k}"
        )
        return Plan("hnsw", reason, settings, estimated_rows, total_rows)
    settings["hnsw.iterative_scan"] = "relaxed_order"
    need = k / fraction if fraction else k
    settings["hnsw.max_scan_tuples"] = str(
        min(MAX_SCAN_TUPLES_CAP, max(MAX_SCAN_TUPLES_DEFAULT, math.ceil(need * 20)))
    )
    reason = (
        f"the filter matches ~{estimated_rows or 0:.0f} of ~{total_rows or 0:.0f} rows: "
        "an iterative HNSW scan, re-sorted by distance"
        if filtered
        else f"k={k} exceeds ef_search's maximum: an iterative HNSW scan"
    )
    return Plan("hnsw_iterative", reason, settings, estimated_rows, total_rows)


def few_rows(estimated_rows: float, total_rows: float | None, dim: int) -> bool:
    """Whether a filter matching ``estimated_rows`` of ``total_rows`` is searched exactly.

    At most `exact_max_rows` rows, or under `EXACT_MAX_FRACTION` of the table.
    Monotonic in ``estimated_rows``: if an upper bound of the estimate is few,
    so is the estimate.
    """
    fraction = estimated_rows / max(total_rows or 0.0, estimated_rows, 1.0)
    return estimated_rows <= exact_max_rows(dim) or fraction < EXACT_MAX_FRACTION


def exact_max_rows(dim: int) -> int:
    """`EXACT_MAX_ROWS` up to `EXACT_ROWS_DIM` dimensions, proportionally fewer above."""
    if dim <= EXACT_ROWS_DIM:
        return EXACT_MAX_ROWS
    return max(1, EXACT_MAX_ROWS * EXACT_ROWS_DIM // dim)


def equality_field(where: Mapping[str, Any] | None, fields: Mapping[str, ColumnType]) -> str | None:
    """The field of a filter that is one equality on a scalar column (``{"doc_id": "a"}``).

    ``None`` for any other filter. The filter must have compiled already.
    """
    if where is None or len(where) != 1:
        return None
    ((name, value),) = where.items()
    if isinstance(value, Mapping):
        if set(value) != {"$eq"}:
            return None
        value = value["$eq"]
    ctype = fields.get(name)
    if value is None or ctype is None or ctype.is_array or ctype is ColumnType.JSONB:
        return None
    return name


def filtered_ef_search(fraction: float | None) -> int:
    """``ef_search`` for an iterative scan under a filter matching ``fraction`` of the rows.

    The fewer rows pass the filter, the more candidates each graph step must
    hold to keep recall: `FILTERED_EF_SEARCH` down to `FILTERED_EF_FRACTION`
    of the rows, proportionally more below.
    """
    if not fraction:
        return FILTERED_EF_SEARCH
    scale = FILTERED_EF_FRACTION / fraction
    return min(EF_SEARCH_MAX, max(FILTERED_EF_SEARCH, math.ceil(FILTERED_EF_SEARCH * scale)))


def default_ef_search(server_settings: Mapping[str, str]) -> int:
    """The ``hnsw.ef_search`` pooled connections start with: the pool's, else pgvector's 40.

    A value set on the server (``ALTER SYSTEM``, ``ALTER DATABASE``) is not
    seen here; see `docs/search.md`.
    """
    value = server_settings.get("hnsw.ef_search")
    try:
        return DEFAULT_EF_SEARCH if value is None else int(value)
    except ValueError:
        return 0  # not a number: the server refuses it; never skip the SET LOCAL


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


def query_vector(vector: Any, spec: CollectionSpec, field: VectorSpec) -> npt.NDArray[np.float32]:
    """One query vector, checked as ``check_vectors([vector], ..., queries=True)[0]`` checks it.

    A float32 array of the right shape is checked in place (finite; not zero
    under cosine; within halfvec's range), a few microseconds instead of
    ~15; anything else, and any vector that fails, goes through
    `check_vectors`, which converts it or raises its usual error.
    """
    if (
        type(vector) is np.ndarray
        and vector.dtype == np.float32
        and vector.shape == (field.dim,)
        and np.isfinite(vector).all()
        and (spec.metric != "cosine" or vector.any())
        and (spec.storage != "halfvec" or np.abs(vector).max() <= HALF_MAX)
    ):
        return vector
    checked: npt.NDArray[np.float32] = check_vectors([vector], spec, field, queries=True)[0]
    return checked


def search_sql(
    spec: CollectionSpec,
    vector: VectorSpec,
    columns: tuple[str, ...],
    where: CompiledFilter,
    strategy: Strategy,
) -> str:
    """The search statement: ``$1`` the query vector, ``$2`` k, then the filter's values.

    The filter must have been compiled with ``first_param=3``.
    """
    distance = (
        f"{quote_ident(vector.name)} {OPERATORS[spec.metric]} "
        f"$1::{spec.vector_type.value}({int(vector.dim)})"
    )
    select = ", ".join(quote_ident(c) for c in columns)
    table = qualified(spec.schema, spec.table)
    cond = "" if where.matches_all else f" WHERE {where.sql}"
    if strategy == "hnsw_iterative":
        # relaxed_order returns rows slightly out of order: re-sort outside a
        # MATERIALIZED CTE (so the planner cannot fold the two sorts into one).
        return (
            f"WITH c AS MATERIALIZED (SELECT {select}, {distance} AS {DISTANCE} "
            f"FROM {table}{cond} ORDER BY {DISTANCE} LIMIT $2) "
            f"SELECT * FROM c ORDER BY {DISTANCE}"
        )
    return (
        f"SELECT {select}, {distance} AS {DISTANCE} FROM {table}{cond} ORDER BY {DISTANCE} LIMIT $2"
    )


def uses_index(plan: Mapping[str, Any], index: str) -> bool:
    """Whether a plan (``EXPLAIN (FORMAT JSON)`` node) scans ``index`` anywhere."""
    if plan.get("Index Name") == index:
        return True
    return any(uses_index(child, index) for child in plan.get("Plans", ()))


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
        self._entries: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._total: tuple[float, float] | None = None
        self._bounds: dict[str, tuple[float, float | None]] = {}

    def clear(self) -> None:
        """Forget every estimate (after a bulk write, for instance)."""
        self._entries.clear()
        self._total = None
        self._bounds.clear()

    def cached(self, key: str) -> float | None:
        """The cached estimate of rows matching the filter ``key``, or ``None``."""
        hit = self._entries.get(key)
        if hit is None or time.monotonic() - hit[0] >= self._ttl:
            return None
        self._entries.move_to_end(key)
        return hit[1]

    async def estimate(
        self,
        conn: AnyConnection,
        spec: CollectionSpec,
        key: str,
        compile_first: Callable[[], CompiledFilter],
    ) -> tuple[float, float]:
        """``(rows matching the filter, rows in the table)``, as the planner estimates them.

        Args:
            conn: A connection, used only for what is not cached.
            spec: The collection.
            key: The filter's cache key (its SQL and values; see `filter_key`).
            compile_first: Compiles the filter with ``first_param=1``; called
                only when its estimate is not cached.
        """
        total = await self.total(conn, spec)
        matching = self.cached(key)
        if matching is None:
            where = compile_first()
            table = qualified(spec.schema, spec.table)
            sql = f"SELECT 1 FROM {table} WHERE {where.sql}"
            matching = await _plan_rows(conn, sql, where.params)
            self._entries[key] = (time.monotonic(), matching)
            if len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return matching, total

    async def total(self, conn: AnyConnection, spec: CollectionSpec) -> float:
        """The planner's estimate of the rows in the table (cached like the filters')."""
        now = time.monotonic()
        if self._total is not None and now - self._total[0] < self._ttl:
            return self._total[1]
        table = qualified(spec.schema, spec.table)
        total = await conn.fetchval(_TOTAL_ROWS, table)
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
        row = await conn.fetchrow(_COLUMN_STATS, spec.schema, spec.table, column)
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
WHERE schemaname = $1 AND tablename = $2 AND attname = $3 AND NOT inherited
"""


async def _plan_rows(conn: AnyConnection, sql: str, params: list[Any]) -> float:
    raw = await conn.fetchval("EXPLAIN (FORMAT JSON) " + sql, *params)
    plan = json.loads(raw) if isinstance(raw, str) else raw
    return float(plan[0]["Plan"]["Plan Rows"])
