"""Hybrid search: vector and full-text candidates fused by reciprocal rank, in one statement.

Each half is ranked inside its own limited candidate set, never over the
table: a window function over the whole table would keep PostgreSQL off the
HNSW index. So:

* the vector half is the very statement a vector search would run (same
  strategy, settings and quantized re-ranking, see `quantized.search_statement`)
  limited to ``candidates`` rows;
* the text half is ``tsv @@ websearch_to_tsquery(language, text)`` (served by
  the GIN index) ordered by ``ts_rank_cd``, limited to ``candidates`` rows;
* ``row_number()`` runs over those few rows only, and each record scores
  ``1/(k + vector rank) + 1/(k + text rank)`` (a half it is missing from adds
  nothing). Ranks, never raw scores, are fused: a distance (smaller is better)
  and ``ts_rank`` (larger is better) are not on one scale (langchain-postgres
  #234, mem0 #6883).

On a partitioned collection each half runs over the partitions the filter
leaves (each on its own partition's HNSW or GIN index), carries the partition
key beside the id, and the fused rows are fetched by primary key: one probe of
the one partition holding each (run-time pruning).

Both halves apply the same compiled filter. ``websearch_to_tsquery`` accepts
any text (quotes, operators, backslashes); NUL characters, which PostgreSQL
text cannot hold, are replaced by spaces before binding. A query of stop words
only matches nothing: the text half is then empty, not an error.

Parameters: with a vector, ``$1`` the vector, ``$2`` the candidates, the
filter's values from ``$3``, then the text, the language, RRF's k and the
number of results; keyword-only, the filter's values from ``$1``, then the same four.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._config import check_int
from .._errors import ConfigError, translating
from .._identifiers import qualified, quote_ident
from .._schema.ddl import OPERATORS, hnsw_name
from .._schema.fulltext import FullTextSpec, gin_name, tsv_column
from .._schema.record import VectorSpec
from .._schema.rows import query_vector
from .._schema.spec import CollectionSpec
from .._typing import AnyConnection, M, VectorInput
from .filters import CompiledFilter, compile_filter
from .planner import Plan, Strategy
from .quantized import search_statement
from .statements import DISTANCE, INDEX_PARTITIONS, apply_settings, uses_index

if TYPE_CHECKING:
    from .searcher import Explain, Hit, Searcher

__all__ = ["RRF", "hybrid_explain", "hybrid_search", "hybrid_sql", "keyword_sql"]

SCORE, VECTOR_RANK, TEXT_RANK = "_vecdb_score", "_vecdb_vector_rank", "_vecdb_text_rank"
_MAX_CANDIDATES = 10_000


@dataclasses.dataclass(frozen=True, slots=True)
class RRF:
    """Reciprocal rank fusion: each record scores ``sum(1 / (k + rank))`` over the halves.

    Example:
        >>> hits = await chunks.search(q, k=10, text="pool timeout", fusion=vecdb.RRF(k=60))
        >>> hits[0].score, hits[0].vector_rank, hits[0].text_rank

    Attributes:
        k: Damps the weight of the top ranks (60 in the original paper, and the
            usual default): larger k, flatter weights.
        candidates: How many candidates each half ranks before fusing; default
            ``max(4 * k_results, 40)`` (at most 10000).
    """

    k: int = 60
    candidates: int | None = None

    def __post_init__(self) -> None:
        check_int(self.k, 0, 1_000_000, name="RRF.k", setting="fusion")
        if self.candidates is not None:
            check_int(self.candidates, 1, _MAX_CANDIDATES, name="RRF.candidates", setting="fusion")

    def pool_size(self, k: int) -> int:
        """The candidates per half for ``k`` results (never fewer than ``k``)."""
        wanted = self.candidates if self.candidates is not None else max(4 * k, 40)
        return min(max(wanted, k), _MAX_CANDIDATES)


def _keys(spec: CollectionSpec) -> str:
    """The id, and a partitioned collection's partition key as ``pk``: what the halves carry."""
    ident = f"{quote_ident(spec.layout.id.name)} AS id"
    key = spec.partition_key
    return ident if key is None else f"{ident}, {quote_ident(key)} AS pk"


def _text_half(
    spec: CollectionSpec, ft: FullTextSpec, where: CompiledFilter, text: int, limit: str
) -> str:
    """The text half's candidates (``id``, [``pk``,] ``s``): ``$text`` the query, then language."""
    tsv = quote_ident(tsv_column(ft))
    query = f"websearch_to_tsquery(${text + 1}::regconfig, ${text}::text)"
    cond = "" if where.matches_all else f" AND ({where.sql})"
    ident = quote_ident(spec.layout.id.name)
    return (
        f"SELECT {_keys(spec)}, ts_rank_cd({tsv}, {query}) AS s "
        f"FROM {qualified(spec.schema, spec.table)} WHERE {tsv} @@ {query}{cond} "
        f"ORDER BY s DESC, {ident} LIMIT {limit}"
    )


def _final(
    spec: CollectionSpec, columns: tuple[str, ...], distance: str, fused: str, order: str
) -> str:
    """The fused ids joined back to their rows.

    On a partitioned collection the join is on the primary key (id and
    partition key), not the id alone: each row is then one probe of one
    partition's primary key index (run-time pruning), instead of a probe of
    every partition's.
    """
    ident = quote_ident(spec.layout.id.name)
    select = ", ".join(f"t.{quote_ident(c)}" for c in columns)
    on = f"t.{ident} = f.id"
    if spec.partition_key is not None:
        on += f" AND t.{quote_ident(spec.partition_key)} = f.pk"
    return (
        f"SELECT {select}, {distance} AS {DISTANCE}, f.score AS {SCORE}, "
        f"f.vr AS {VECTOR_RANK}, f.tr AS {TEXT_RANK} "
        f"FROM ({fused}) f JOIN {qualified(spec.schema, spec.table)} t ON {on} "
        f"ORDER BY {order}"
    )


_ORDER = "f.score DESC, f.vr NULLS LAST, f.tr NULLS LAST, f.id"


def hybrid_sql(
    spec: CollectionSpec,
    vector: VectorSpec,
    ft: FullTextSpec,
    columns: tuple[str, ...],
    where: CompiledFilter,
    *,
    strategy: Strategy,
) -> str:
    """Vector and text halves fused by RRF (filter compiled with ``first_param=3``)."""
    n = 3 + len(where.params)  # the text; then language, RRF k, results
    ident = quote_ident(spec.layout.id.name)
    vector_half = search_statement(spec, vector, spec.primary_key, where, strategy)
    pk = "" if spec.partition_key is None else "coalesce(vr.pk, tr.pk) AS pk, "
    fused = (
        f"WITH v AS ({vector_half}), "
        f"vr AS (SELECT {_keys(spec)}, row_number() OVER (ORDER BY {DISTANCE}, {ident}) AS r "
        f"FROM v), "
        f"tx AS MATERIALIZED ({_text_half(spec, ft, where, n, '$2')}), "
        f"tr AS (SELECT *, row_number() OVER (ORDER BY s DESC, id) AS r FROM tx) "
        f"SELECT coalesce(vr.id, tr.id) AS id, {pk}vr.r AS vr, tr.r AS tr, "
        f"coalesce(1.0 / (${n + 2}::int + vr.r), 0) + coalesce(1.0 / (${n + 2}::int + tr.r), 0) "
        f"AS score FROM vr FULL JOIN tr ON vr.id = tr.id "
        f"ORDER BY score DESC, vr.r NULLS LAST, tr.r NULLS LAST, id LIMIT ${n + 3}::int"
    )
    query = f"$1::{spec.vector_type.value}({int(vector.dim)})"
    distance = f"t.{quote_ident(vector.name)} {OPERATORS[spec.metric]} {query}"
    return _final(spec, columns, distance, fused, _ORDER)


def keyword_sql(
    spec: CollectionSpec, ft: FullTextSpec, columns: tuple[str, ...], where: CompiledFilter
) -> str:
    """The text half alone (filter compiled with ``first_param=1``)."""
    n = 1 + len(where.params)
    fused = (
        f"WITH tx AS MATERIALIZED ({_text_half(spec, ft, where, n, f'${n + 3}::int')}) "
        f"SELECT *, NULL::bigint AS vr, row_number() OVER (ORDER BY s DESC, id) AS tr, "
        f"1.0 / (${n + 2}::int + row_number() OVER (ORDER BY s DESC, id)) AS score FROM tx"
    )
    return _final(spec, columns, "NULL::float8", fused, _ORDER)


def _fulltext_field(spec: CollectionSpec, model: str) -> FullTextSpec:
    if not spec.layout.fulltext:
        text_fields = [f.name for f in spec.layout.fields if f.type.value == "text"]
        raise ConfigError(
            f"text= needs a field marked vecdb.FullText, and {model} has none; declare one "
            f"(e.g. `{(text_fields or ['text'])[0]}: Annotated[str, vecdb.FullText("
            "language='english')]`) and open the collection with evolve=True",
            setting="text",
        )
    return spec.layout.fulltext[0]


def clean_text(text: object) -> str:
    """The query text as bound: NUL (which PostgreSQL text cannot hold) becomes a space.

    Raises:
        ConfigError: Not a string, or nothing but whitespace.
    """
    if not isinstance(text, str):
        raise ConfigError(f"text= must be a string, got {type(text).__name__}", setting="text")
    cleaned = text.replace("\x00", " ")
    if not cleaned.strip():
        raise ConfigError(
            f"text={text!r} has no words to search for; pass text=None for a vector-only "
            "search, or some words",
            setting="text",
        )
    return cleaned


@dataclasses.dataclass(frozen=True, slots=True)
class _Statement:
    """A text= search ready to run: the SQL, its arguments, and the vector half's plan."""

    sql: str
    args: tuple[Any, ...]
    plan: Plan | None  # None: keyword search alone


async def _statement(  # noqa: PLR0917 - private; search()'s own arguments, in order
    searcher: Searcher[M],
    conn: AnyConnection,
    vector: VectorInput | None,
    k: int,
    text: str,
    fusion: RRF | None,
    where: Mapping[str, Any] | None,
    ef_search: int | None,
    exact: bool,
    columns: tuple[str, ...] | None,
    field: str | None,
    *,
    precise: bool = False,
) -> _Statement:
    """Check the arguments, plan the vector half, and build the statement (``columns``: scalars)."""
    spec, codec = searcher._spec, searcher._codec
    ft = _fulltext_field(spec, codec.model.__name__)
    words = clean_text(text)
    rrf = RRF() if fusion is None else fusion
    if not isinstance(rrf, RRF):
        raise ConfigError(f"fusion must be vecdb.RRF(...), got {rrf!r}", setting="fusion")
    searcher._check_search(k, ef_search)
    if columns is None:
        columns = codec.scalar_columns
    if vector is None:
        compiled = compile_filter(where, searcher._fields, first_param=1)
        sql = keyword_sql(spec, ft, columns, compiled)
        return _Statement(sql, (*compiled.params, words, ft.language, rrf.k, k), None)
    spec_v = searcher._vector_field(field)
    query = query_vector(vector, spec, spec_v)
    compiled = compile_filter(where, searcher._fields, first_param=3)
    pool = rrf.pool_size(k)
    plan = await searcher._plan(
        conn, where, compiled, k=pool, ef_search=ef_search, exact=exact, dim=spec_v.dim,
        precise=precise,
    )  # fmt: skip
    sql = hybrid_sql(spec, spec_v, ft, columns, compiled, strategy=plan.strategy)
    return _Statement(sql, (query, pool, *compiled.params, words, ft.language, rrf.k, k), plan)


async def hybrid_search(
    searcher: Searcher[M],
    vector: VectorInput | None,
    k: int,
    *,
    text: str,
    fusion: RRF | None,
    where: Mapping[str, Any] | None,
    ef_search: int | None,
    exact: bool,
    include_vectors: bool,
    field: str | None,
    timeout: float | None,
) -> list[Hit[M]]:
    """The body of ``Collection.search(..., text=...)``: see `Collection.search`."""
    from .searcher import Hit  # noqa: PLC0415 - searcher's module imports nothing of this one

    spec, codec = searcher._spec, searcher._codec
    columns = spec.layout.columns if include_vectors else None
    async with searcher._pool.acquire() as conn:
        statement = await _statement(
            searcher, conn, vector, k, text, fusion, where, ef_search, exact, columns, field
        )
        settings = statement.plan.settings if statement.plan is not None else {}
        with translating():
            if settings:
                async with conn.transaction(readonly=True):
                    await apply_settings(conn, settings)
                    rows = await conn.fetch(statement.sql, *statement.args, timeout=timeout)
            else:
                rows = await conn.fetch(statement.sql, *statement.args, timeout=timeout)
    decode = codec.from_row
    return [
        Hit(
            decode(row, with_vectors=include_vectors),
            math.nan if row[DISTANCE] is None else float(row[DISTANCE]),
            score=float(row[SCORE]),
            vector_rank=row[VECTOR_RANK],
            text_rank=row[TEXT_RANK],
        )
        for row in rows
    ]


async def _with_partitions(conn: AnyConnection, spec: CollectionSpec, name: str) -> set[str]:
    """An index's name, and its partitions' (each partition's own index) when partitioned."""
    names = {name}
    if spec.partitioning is not None:
        parent = qualified(spec.schema, name)
        names.update(row[0] for row in await conn.fetch(INDEX_PARTITIONS, parent))
    return names


_KEYWORD_REASON = (
    "keyword search alone (text= without a vector): every match is ranked by ts_rank_cd; "
    "the GIN index finds the matches"
)


async def hybrid_explain(
    searcher: Searcher[M],
    vector: VectorInput | None,
    k: int,
    *,
    text: str,
    fusion: RRF | None,
    where: Mapping[str, Any] | None,
    ef_search: int | None,
    exact: bool,
    field: str | None,
    analyze: bool,
    timeout: float | None,
) -> Explain:
    """The body of ``Collection.explain(..., text=...)``: how `hybrid_search` would run."""
    from .searcher import Explain  # noqa: PLC0415 - searcher's module imports nothing of this one

    spec = searcher._spec
    options = "ANALYZE, BUFFERS, FORMAT JSON" if analyze else "FORMAT JSON"
    async with searcher._pool.acquire(readonly=True) as conn:
        statement = await _statement(
            searcher, conn, vector, k, text, fusion, where, ef_search, exact, None, field,
            precise=True,
        )  # fmt: skip
        plan = statement.plan
        with translating():
            async with conn.transaction(readonly=True):
                if plan is not None and plan.settings:
                    await apply_settings(conn, plan.settings)
                raw = await conn.fetchval(
                    f"EXPLAIN ({options}) {statement.sql}", *statement.args, timeout=timeout
                )
            vector_indexes: set[str] = set()
            if plan is not None:
                spec_v = searcher._vector_field(field)
                vector_indexes = await _with_partitions(conn, spec, hnsw_name(spec, spec_v))
            text_indexes = await _with_partitions(
                conn, spec, gin_name(spec, spec.layout.fulltext[0])
            )
    document = json.loads(raw) if isinstance(raw, str) else raw
    top: dict[str, Any] = document[0]
    return Explain(
        strategy=plan.strategy if plan is not None else "exact",
        reason=plan.reason if plan is not None else _KEYWORD_REASON,
        uses_vector_index=uses_index(top["Plan"], vector_indexes),
        plan=top,
        sql=statement.sql,
        settings=dict(plan.settings) if plan is not None else {},
        estimated_rows=plan.estimated_rows if plan is not None else None,
        total_rows=plan.total_rows if plan is not None else None,
        uses_text_index=uses_index(top["Plan"], text_indexes),
    )
