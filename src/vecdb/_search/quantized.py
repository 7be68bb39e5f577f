"""The search statement over a quantized HNSW index: candidates by the index, re-ranked exactly.

Same parameters as `statements.search_sql` (``$1`` the query vector, ``$2``
k, then the filter's values). The index scan runs in a ``MATERIALIZED`` CTE
ordered by the index's own expression (`quantization.order_expression`) and
limited to ``k * rerank`` rows; the outer query orders those by the metric on
the full vectors and keeps ``k``. The planner is given ``k * rerank`` as its
k, so ``hnsw.ef_search`` covers the candidates (pgvector #865).

An exact search (``exact=True``, no index, a filter few rows match) never
touches the index: it is the ordinary statement.
"""

from __future__ import annotations

from .._identifiers import qualified, quote_ident
from .._schema.ddl import OPERATORS
from .._schema.quantization import candidates, order_expression
from .._schema.record import VectorSpec
from .._schema.spec import CollectionSpec
from .filters import CompiledFilter
from .planner import Strategy
from .statements import DISTANCE, limit_of, search_sql

__all__ = ["search_statement"]


def search_statement(
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
    """`statements.search_sql`, or its re-ranking form when the index is quantized.

    ``query`` replaces ``$1`` as the query vector, and ``k`` is written in
    instead of ``$2``, as for `statements.search_sql`.
    """
    index = spec.index
    if index is None or index.quantization is None or strategy == "exact":
        return search_sql(spec, vector, columns, where, strategy, source=source, query=query, k=k)
    if query is None:
        query = f"$1::{spec.vector_type.value}({int(vector.dim)})"
    order = order_expression(index, vector, OPERATORS[spec.metric], query)
    inner = columns if vector.name in columns else (*columns, vector.name)
    table = qualified(spec.schema, spec.table) if source is None else source
    cond = "" if where.matches_all else f" WHERE {where.sql}"
    factor = candidates(index, 1)
    limit = limit_of(k)
    pool_limit = f"$2::int * {int(factor)}" if k is None else limit_of(k * int(factor))
    distance = f"{quote_ident(vector.name)} {OPERATORS[spec.metric]} {query}"
    return (
        f"WITH c AS MATERIALIZED (SELECT {', '.join(quote_ident(c) for c in inner)} "
        f"FROM {table}{cond} ORDER BY {order} LIMIT {pool_limit}) "
        f"SELECT {', '.join(quote_ident(c) for c in columns)}, {distance} AS {DISTANCE} "
        f"FROM c ORDER BY {DISTANCE} LIMIT {limit}"
    )
