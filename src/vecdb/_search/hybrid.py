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
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._config import check_int
from .._errors import ConfigError, translating
from .._identifiers import qualified, quote_ident
from .._schema.ddl import OPERATORS
from .._schema.fulltext import FullTextSpec, tsv_column
from .._schema.record import VectorSpec
from .._schema.rows import query_vector
from .._schema.spec import CollectionSpec
from .._typing import M, VectorInput
from .filters import CompiledFilter, compile_filter
from .planner import Strategy
from .quantized import search_statement
from .statements import DISTANCE, apply_settings

if TYPE_CHECKING:
    from .searcher import Hit, Searcher

__all__ = ["RRF", "hybrid_search", "hybrid_sql", "keyword_sql"]

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


def _text_half(
    spec: CollectionSpec, ft: FullTextSpec, where: CompiledFilter, text: int, limit: str
) -> str:
    """The text half's candidates (``id``, ``s``): ``$text`` the query, ``$text+1`` the language."""
    tsv = quote_ident(tsv_column(ft))
    query = f"websearch_to_tsquery(${text + 1}::regconfig, ${text}::text)"
    cond = "" if where.matches_all else f" AND ({where.sql})"
    ident = quote_ident(spec.layout.id.name)
    return (
        f"SELECT {ident} AS id, ts_rank_cd({tsv}, {query}) AS s "
        f"FROM {qualified(spec.schema, spec.table)} WHERE {tsv} @@ {query}{cond} "
        f"ORDER BY s DESC, {ident} LIMIT {limit}"
    )


def _final(
    spec: CollectionSpec, columns: tuple[str, ...], distance: str, fused: str, order: str
) -> str:
    ident = quote_ident(spec.layout.id.name)
    select = ", ".join(f"t.{quote_ident(c)}" for c in columns)
    return (
        f"SELECT {select}, {distance} AS {DISTANCE}, f.score AS {SCORE}, "
        f"f.vr AS {VECTOR_RANK}, f.tr AS {TEXT_RANK} "
        f"FROM ({fused}) f JOIN {qualified(spec.schema, spec.table)} t ON t.{ident} = f.id "
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
    vector_half = search_statement(spec, vector, (spec.layout.id.name,), where, strategy)
    fused = (
        f"WITH v AS ({vector_half}), "
        f"vr AS (SELECT {ident} AS id, row_number() OVER (ORDER BY {DISTANCE}, {ident}) AS r "
        f"FROM v), "
        f"tx AS MATERIALIZED ({_text_half(spec, ft, where, n, '$2')}), "
        f"tr AS (SELECT id, row_number() OVER (ORDER BY s DESC, id) AS r FROM tx) "
        f"SELECT coalesce(vr.id, tr.id) AS id, vr.r AS vr, tr.r AS tr, "
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
        f"SELECT id, NULL::bigint AS vr, row_number() OVER (ORDER BY s DESC, id) AS tr, "
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
    ft = _fulltext_field(spec, codec.model.__name__)
    words = clean_text(text)
    rrf = RRF() if fusion is None else fusion
    if not isinstance(rrf, RRF):
        raise ConfigError(f"fusion must be vecdb.RRF(...), got {rrf!r}", setting="fusion")
    searcher._check_search(k, ef_search)
    columns = spec.layout.columns if include_vectors else codec.scalar_columns
    language = ft.language
    settings: Mapping[str, str] = {}
    async with searcher._pool.acquire() as conn:
        if vector is None:
            compiled = compile_filter(where, searcher._fields, first_param=1)
            sql = keyword_sql(spec, ft, columns, compiled)
            args: tuple[Any, ...] = (*compiled.params, words, language, rrf.k, k)
        else:
            spec_v = searcher._vector_field(field)
            query = query_vector(vector, spec, spec_v)
            compiled = compile_filter(where, searcher._fields, first_param=3)
            pool = rrf.pool_size(k)
            plan = await searcher._plan(
                conn, where, compiled, k=pool, ef_search=ef_search, exact=exact, dim=spec_v.dim
            )
            settings = plan.settings
            sql = hybrid_sql(spec, spec_v, ft, columns, compiled, strategy=plan.strategy)
            args = (query, pool, *compiled.params, words, language, rrf.k, k)
        with translating():
            if settings:
                async with conn.transaction(readonly=True):
                    await apply_settings(conn, settings)
                    rows = await conn.fetch(sql, *args, timeout=timeout)
            else:
                rows = await conn.fetch(sql, *args, timeout=timeout)
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
