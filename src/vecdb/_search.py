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
and values: exact when at most `EXACT_MAX_ROWS` rows or under
`EXACT_MAX_FRACTION` of the table match. Below that fraction an HNSW scan
would have to visit ``k / fraction`` tuples and more; an exact scan of the
matching rows is both cheaper and exact.

Every setting is applied with ``set_config(name, value, true)`` (``SET LOCAL``)
inside the query's transaction, so none outlives it on a pooled connection.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Literal

from ._ddl import OPERATORS
from ._filters import CompiledFilter
from ._record import VectorSpec
from ._spec import CollectionSpec
from ._sql import qualified, quote_ident
from ._typing import AnyConnection

__all__ = [
    "DISTANCE",
    "EXACT_MAX_FRACTION",
    "EXACT_MAX_ROWS",
    "EstimateCache",
    "Explain",
    "Plan",
    "Strategy",
    "apply_settings",
    "choose",
    "search_sql",
    "uses_index",
]

Strategy = Literal["hnsw", "hnsw_iterative", "exact"]

EXACT_MAX_ROWS = 10_000  # an exact scan of this many rows costs a few ms at 384 dims
EXACT_MAX_FRACTION = 0.01  # below 1%, an HNSW scan visits >= 100 * k tuples: exact wins
EF_SEARCH_MAX = 1000  # pgvector's upper bound for hnsw.ef_search
FILTERED_EF_SEARCH = 200  # under a filter: measured recall@10 >= 0.99 at 10-50% selectivity
MAX_SCAN_TUPLES_DEFAULT = 20_000  # pgvector's default hnsw.max_scan_tuples
MAX_SCAN_TUPLES_CAP = 2_000_000
DISTANCE = "_vecdb_distance"  # underscore names cannot be pydantic fields: no collision


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """How one search runs.

    Attributes:
        strategy: ``"hnsw"``, ``"hnsw_iterative"`` or ``"exact"``.
        reason: Why, in words.
        settings: The ``SET LOCAL`` values (name to value; ``ef_search`` may be
            an SQL expression resolved at run time when not given).
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
) -> Plan:
    """Pick the strategy and settings for one query (pure: no I/O)."""
    settings: dict[str, str] = {"jit": "off"}
    if exact or not has_index:
        settings["enable_indexscan"] = "off"
        reason = "exact=True" if exact else "the collection has no vector index"
        return Plan("exact", reason, settings, estimated_rows, total_rows)
    fraction = None
    if filtered and estimated_rows is not None:
        fraction = estimated_rows / max(total_rows or 0.0, estimated_rows, 1.0)
        few = estimated_rows <= EXACT_MAX_ROWS or fraction < EXACT_MAX_FRACTION
        if few or not iterative:
            settings["enable_indexscan"] = "off"
            reason = (
                f"the filter matches ~{estimated_rows:.0f} of ~{total_rows or 0:.0f} rows "
                f"({fraction:.2%}): an exact scan of those rows is cheaper and exact"
            )
            if not few:
                reason = (
                    f"the filter matches ~{estimated_rows:.0f} rows and this pgvector has "
                    "no iterative index scans (0.8+): exact scan keeps the results complete"
                )
            return Plan("exact", reason, settings, estimated_rows, total_rows)
    wanted = ef_search
    if wanted is None and filtered:
        # The fewer rows pass the filter, the more candidates each graph step
        # must hold to keep recall: 200 down to 20% selectivity, more below.
        scale = 0.2 / fraction if fraction else 1.0
        wanted = max(FILTERED_EF_SEARCH, math.ceil(FILTERED_EF_SEARCH * scale))
    if wanted is None:
        # Keep the server's (or pool's) hnsw.ef_search, but never below k.
        settings["hnsw.ef_search"] = f"max:{min(k, EF_SEARCH_MAX)}"
    else:
        settings["hnsw.ef_search"] = str(min(max(wanted, k), EF_SEARCH_MAX))
    if not filtered and k <= EF_SEARCH_MAX:
        return Plan("hnsw", "no filter: the HNSW index", settings, estimated_rows, total_rows)
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
    """The planner's row estimates per filter (SQL and values), kept for a short while.

    The decision between exact and HNSW needs only the order of magnitude, and
    statistics change slowly: a cached estimate saves an EXPLAIN per query.
    """

    def __init__(self, *, ttl: float = 30.0, size: int = 512) -> None:
        self._ttl = ttl
        self._size = size
        self._entries: OrderedDict[str, tuple[float, float, float]] = OrderedDict()

    def clear(self) -> None:
        """Forget every estimate (after a bulk write, for instance)."""
        self._entries.clear()

    async def estimate(
        self, conn: AnyConnection, spec: CollectionSpec, where: CompiledFilter
    ) -> tuple[float, float]:
        """``(rows matching the filter, rows in the table)``, as the planner estimates them.

        ``where`` must be compiled with ``first_param=1``.
        """
        key = where.sql + "\x00" + repr(where.params)
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and now - hit[0] < self._ttl:
            self._entries.move_to_end(key)
            return hit[1], hit[2]
        table = qualified(spec.schema, spec.table)
        matching = await _plan_rows(conn, f"SELECT 1 FROM {table} WHERE {where.sql}", where.params)
        total = await _plan_rows(conn, f"SELECT 1 FROM {table}", [])
        self._entries[key] = (now, matching, total)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return matching, total


async def _plan_rows(conn: AnyConnection, sql: str, params: list[Any]) -> float:
    raw = await conn.fetchval("EXPLAIN (FORMAT JSON) " + sql, *params)
    plan = json.loads(raw) if isinstance(raw, str) else raw
    return float(plan[0]["Plan"]["Plan Rows"])
