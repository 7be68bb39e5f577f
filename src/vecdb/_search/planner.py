"""Which strategy a search takes, and with which settings: a pure decision, no I/O.

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
and values (see `estimates.EstimateCache`): exact when at most `EXACT_MAX_ROWS` rows
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
import math
from collections.abc import Mapping
from typing import Any, Literal

from .._schema.columns import ColumnType

__all__ = [
    "DEFAULT_EF_SEARCH",
    "EF_SEARCH_MAX",
    "EXACT_MAX_FRACTION",
    "EXACT_MAX_ROWS",
    "EXACT_ROWS_DIM",
    "Plan",
    "Strategy",
    "choose",
    "default_ef_search",
    "equality_field",
    "exact_max_rows",
    "few_rows",
    "filtered_ef_search",
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
# A filter that keeps (nearly) every row it reads - one tenant's whole LIST
# partition, a month's RANGE partitions - is no filter within them: their own
# HNSW indexes at ef_search 100 give recall@10 0.99 (MiniLM, 25k rows: 0.991 at
# 3.9 ms, against 0.997 at 7.2 ms with 200), and below a fifth of the exact
# scan's row limit an exact scan is cheaper still.
WHOLE_FRACTION = 0.9
WHOLE_EF_SEARCH = 100
MAX_SCAN_TUPLES_DEFAULT = 20_000  # pgvector's default hnsw.max_scan_tuples
MAX_SCAN_TUPLES_CAP = 2_000_000
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
        whole = fraction >= WHOLE_FRACTION
        if whole:
            few = estimated_rows <= exact_max_rows(dim) // 5
        else:
            few = few_rows(estimated_rows, total_rows, dim)
        if few or (not iterative and not whole):
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
    whole = fraction is not None and fraction >= WHOLE_FRACTION
    if wanted is None and filtered:
        wanted = WHOLE_EF_SEARCH if whole else filtered_ef_search(fraction)
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
    if whole and not iterative:
        # Nearly every candidate passes: a plain scan returns k rows.
        reason = (
            f"the filter keeps ~{estimated_rows or 0:.0f} of the ~{total_rows or 0:.0f} rows "
            "it reads: their HNSW indexes, as without a filter"
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
        + (" (nearly all pass: ef_search as without a filter)" if whole else "")
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
