"""`Searcher`: plans, runs and explains one collection's vector searches.

A `Collection` owns one and hands it every search; the searcher owns what
searching needs and nothing else: the statement cache and the planner's
row estimates (`estimates.EstimateCache`), which the collection's writes
invalidate through `Searcher.data_changed`. The strategy itself is
`planner.choose`; the statement is `statements.search_sql`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any, Generic

import numpy as np
import numpy.typing as npt

from .._config import check_int
from .._errors import ConfigError, translating
from .._identifiers import qualified
from .._monitor.recorder import note_search
from .._schema.ddl import hnsw_name
from .._schema.quantization import candidates
from .._schema.record import VectorSpec
from .._schema.rows import RecordCodec, check_vectors, query_vector
from .._schema.spec import CollectionSpec
from .._typing import AnyConnection, Connections, M, VectorInput
from . import session as _session
from .estimates import EstimateCache, filter_key
from .filters import CompiledFilter, compile_filter
from .planner import (
    EF_SEARCH_MAX,
    Plan,
    Strategy,
    choose,
    default_ef_search,
    equality_field,
    few_rows,
)
from .quantized import search_statement
from .statements import (
    DISTANCE,
    INDEX_PARTITIONS,
    ORDINAL,
    QUERY_ROW,
    apply_settings,
    batch_sql,
    uses_index,
)

__all__ = ["MAX_K", "Explain", "Hit", "Searcher"]

MAX_K = 10_000
_SQL_CACHE_SIZE = 256  # distinct (field, filter shape, strategy) per collection
# search_many: queries per statement at least this many (fewer connections
# than that would leave idle), and rows per statement at most this many.
_BATCH_MIN = 32
_BATCH_MAX_ROWS = 50_000


@dataclasses.dataclass(frozen=True, slots=True)
class Hit(Generic[M]):
    """One search result.

    Attributes:
        record: The record; its vector fields are ``None`` unless the search
            passed ``include_vectors=True``.
        distance: Smaller is closer. ``cosine``: 1 - cosine similarity (0..2);
            ``l2``: Euclidean distance; ``inner_product``: the *negative* inner
            product (-a·b); ``l1``: taxicab distance. NaN in a keyword-only
            search (``search(None, text=...)``).
        score: With ``text=``: the fused score, ``sum(1 / (RRF.k + rank))`` over
            the halves the record was found in (larger is better); else ``None``.
        vector_rank: With ``text=``: the record's rank (1-based) among the vector
            half's candidates, ``None`` if it was not one.
        text_rank: With ``text=``: its rank among the full-text candidates
            (by ``ts_rank_cd``), ``None`` if the text did not match it.
    """

    record: M
    distance: float
    score: float | None = None
    vector_rank: int | None = None
    text_rank: int | None = None


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
        uses_text_index: With ``text=``: whether the plan scans the `FullText`
            field's GIN index (on a partitioned collection, a partition's).
    """

    strategy: Strategy
    reason: str
    uses_vector_index: bool
    plan: dict[str, Any]
    sql: str
    settings: Mapping[str, str]
    estimated_rows: float | None
    total_rows: float | None
    uses_text_index: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class _Prepared:
    """A search ready to run for any query vector: the statement and what goes with it."""

    sql: str
    params: tuple[Any, ...]  # after the query vector: k, then the filter's values
    settings: Mapping[str, str]
    include_vectors: bool
    timeout: float | None


class _Element:
    """One query vector of a batch, as an array element.

    asyncpg takes any sized iterable inside an array argument for a nested
    array, an ndarray included; this wrapper is not one, and the vector codec
    reads it through ``__array__``.
    """

    __slots__ = ("vector",)

    def __init__(self, vector: npt.NDArray[np.float32]) -> None:
        self.vector = vector

    def __array__(self, dtype: Any = None, copy: Any = None) -> npt.NDArray[np.float32]:
        return self.vector


class Searcher(Generic[M]):
    """Vector search over one collection's table.

    Args:
        pool: Where connections come from.
        spec: The collection's definition.
        codec: Turns its rows into records.
        iterative: pgvector has iterative index scans (0.8+).
    """

    def __init__(
        self, pool: Connections, spec: CollectionSpec, codec: RecordCodec[M], *, iterative: bool
    ) -> None:
        self._pool = pool
        self._spec = spec
        self._codec = codec
        self._model = codec.model
        self._fields = spec.layout.filterable
        self._iterative = iterative
        self._estimates = EstimateCache()
        self._sql_cache: dict[tuple[str, str, str, bool, str | None, int | None], str] = {}
        # Behind PgBouncer (transaction mode) no setting may outlive a transaction.
        self._sessions = not pool.config.pgbouncer
        # An unfiltered search's plan depends on its arguments alone (the spec and
        # pool config are fixed for this searcher's life): planned once per
        # argument set, which saves ~half of vecdb's own Python per search.
        self._unfiltered: dict[tuple[Any, ...], tuple[VectorSpec, _Prepared, Strategy]] = {}

    def data_changed(self) -> None:
        """Forget the row estimates: the collection's data changed a lot (or may have)."""
        self._estimates.clear()

    # -- search --------------------------------------------------------------------------

    def _vector_field(self, field: str | None) -> VectorSpec:
        vectors = self._spec.layout.vectors
        if field is None:
            if len(vectors) == 1:
                return vectors[0]
            raise ConfigError(
                f"{self._model.__name__} has several vector fields "
                f"{[v.name for v in vectors]}; pass field= to say which to search",
                setting="field",
            )
        for v in vectors:
            if v.name == field:
                return v
        raise ConfigError(
            f"field={field!r} is not a vector field of {self._model.__name__}; "
            f"choose one of {[v.name for v in vectors]}",
            setting="field",
        )

    def _check_search(self, k: int, ef_search: int | None) -> None:
        check_int(k, 1, MAX_K, name="k")
        if ef_search is not None:
            check_int(ef_search, 1, EF_SEARCH_MAX, name="ef_search")

    async def _plan(
        self,
        conn: AnyConnection,
        where: Mapping[str, Any] | None,
        compiled: CompiledFilter,
        *,
        k: int,
        ef_search: int | None,
        exact: bool,
        dim: int,
        precise: bool = False,
    ) -> Plan:
        """The strategy for a query; ``precise``: the planner's own estimate, never a bound."""
        has_index = self._spec.index is not None
        estimated = total = None
        if has_index and not exact and not compiled.matches_all:
            key = filter_key(compiled)
            estimates = self._estimates
            with translating():
                column = None if precise else equality_field(where, self._fields)
                if column is not None and estimates.cached(key) is None:
                    # An equality on a column where no value is estimated to match
                    # more than a few rows: exact, whatever the value (no EXPLAIN).
                    bound, total = await estimates.equality_bound(conn, self._spec, column)
                    if bound is not None and few_rows(bound, total, dim):
                        estimated = bound
                if estimated is None:
                    estimated, total = await estimates.estimate(
                        conn,
                        self._spec,
                        key,
                        # For the EXPLAIN of the filter alone: placeholders from $1.
                        lambda: compile_filter(where, self._fields, first_param=1),
                    )
        return choose(
            has_index=has_index,
            exact=exact,
            filtered=not compiled.matches_all,
            # A quantized index must return k * rerank candidates (pgvector #865).
            k=candidates(self._spec.index, k),
            ef_search=ef_search,
            iterative=self._iterative,
            estimated_rows=estimated,
            total_rows=total,
            dim=dim,
            default_ef_search=default_ef_search(self._pool.config.server_settings),
        )

    def _sql(
        self,
        vector: VectorSpec,
        compiled: CompiledFilter,
        plan: Plan,
        vectors: bool,
        source: str | None = None,
        *,
        batch: bool = False,
        k: int | None = None,
    ) -> str:
        # The text depends only on these (the filter's values are parameters):
        # cached, since building it is a visible share of a 1 ms search.
        origin = "\0batch" if batch else source
        key = (vector.name, compiled.sql, plan.strategy, vectors, origin, k)
        sql = self._sql_cache.get(key)
        if sql is None:
            columns = self._spec.layout.columns if vectors else self._codec.scalar_columns
            if batch:
                inner = search_statement(
                    self._spec, vector, columns, compiled, plan.strategy, query=QUERY_ROW
                )
                sql = batch_sql(self._spec, vector, inner)
            else:
                sql = search_statement(
                    self._spec, vector, columns, compiled, plan.strategy, source=source, k=k
                )
            if len(self._sql_cache) >= _SQL_CACHE_SIZE:
                self._sql_cache.clear()
            self._sql_cache[key] = sql
        return sql

    async def search(
        self,
        vector: VectorInput,
        k: int = 10,
        *,
        where: Mapping[str, Any] | None = None,
        ef_search: int | None = None,
        exact: bool = False,
        include_vectors: bool = False,
        field: str | None = None,
        timeout: float | None = None,
        source: str | None = None,
        consistent: bool | None = None,
    ) -> list[Hit[M]]:
        """The ``k`` records closest to ``vector`` matching ``where``: see `Collection.search`.

        ``source`` replaces the table in the statement's ``FROM`` (a subquery
        over the table and its archive, say); the plan is the table's.
        ``consistent``: which replica may serve it (`Connections.acquire`).
        """
        key = None
        known = None
        if (
            where is None
            and type(k) is int
            and (ef_search is None or type(ef_search) is int)
            and (field is None or type(field) is str)
            and (timeout is None or type(timeout) in {int, float})
        ):
            # The types too: 10.0 == 10 and True == 1, which check_int refuses.
            key = (field, k, ef_search, bool(exact), bool(include_vectors), timeout, source)
            known = self._unfiltered.get(key)
        if known is None:
            spec_v = self._vector_field(field)
            self._check_search(k, ef_search)
        else:
            spec_v, prepared, strategy = known
        query = query_vector(vector, self._spec, spec_v)
        async with _session.acquire(self._pool, consistent=consistent) as conn:
            if known is None:
                compiled = compile_filter(where, self._fields, first_param=3)
                plan = await self._plan(
                    conn, where, compiled, k=k, ef_search=ef_search, exact=exact, dim=spec_v.dim
                )
                prepared = self._prepare(
                    spec_v, compiled, plan, k, include_vectors, timeout, source
                )
                strategy = plan.strategy
                if key is not None:
                    if len(self._unfiltered) >= _SQL_CACHE_SIZE:
                        self._unfiltered.clear()
                    self._unfiltered[key] = (spec_v, prepared, strategy)
            note_search(strategy, k, prepared.settings, prepared.sql)
            rows = await self._fetch(conn, query, prepared)
        records = self._codec.from_rows(rows, with_vectors=prepared.include_vectors)
        return [
            Hit(record, float(row[DISTANCE])) for record, row in zip(records, rows, strict=True)
        ]

    def _prepare(  # noqa: PLR0917 - private; the search's own arguments, in order
        self,
        spec_v: VectorSpec,
        compiled: CompiledFilter,
        plan: Plan,
        k: int,
        include_vectors: bool,
        timeout: float | None,
        source: str | None = None,
        *,
        batch: bool = False,
    ) -> _Prepared:
        if compiled.matches_all and not batch:
            # k written in: the plan is then made once per connection (statements.limit_of).
            sql = self._sql(spec_v, compiled, plan, include_vectors, source, k=k)
            return _Prepared(sql, (), plan.settings, include_vectors, timeout)
        sql = self._sql(spec_v, compiled, plan, include_vectors, source, batch=batch)
        return _Prepared(sql, (k, *compiled.params), plan.settings, include_vectors, timeout)

    async def _fetch(self, conn: AnyConnection, query: Any, prepared: _Prepared) -> list[Any]:
        """The statement's rows, with its settings: kept on the session where there is one."""
        sql, params, timeout = prepared.sql, prepared.params, prepared.timeout
        session = _session.session_of(conn) if self._sessions else None
        with translating():
            if session is not None:
                # One round trip in a steady workload (see session.py).
                await _session.apply(conn, session, prepared.settings)
                rows = await conn.fetch(sql, query, *params, timeout=timeout)
                session.clean_search = True
            elif prepared.settings:
                # SET LOCAL: the settings end with this transaction (BEGIN READ ONLY
                # is one statement, like BEGIN).
                async with conn.transaction(readonly=True):
                    await apply_settings(conn, prepared.settings)
                    rows = await conn.fetch(sql, query, *params, timeout=timeout)
            else:
                # Nothing to set (unfiltered, default ef_search >= k): one statement,
                # no transaction; see docs/search.md for what this assumes.
                rows = await conn.fetch(sql, query, *params, timeout=timeout)
        return rows

    async def search_many(
        self,
        vectors: Sequence[VectorInput] | npt.NDArray[Any],
        k: int = 10,
        *,
        where: Mapping[str, Any] | None = None,
        ef_search: int | None = None,
        exact: bool = False,
        include_vectors: bool = False,
        field: str | None = None,
        concurrency: int | None = None,
        timeout: float | None = None,
        consistent: bool | None = None,
    ) -> list[list[Hit[M]]]:
        """`search` for many query vectors: see `Collection.search_many`."""
        spec_v = self._vector_field(field)
        self._check_search(k, ef_search)
        if len(vectors) == 0:
            return []
        queries = check_vectors(list(vectors), self._spec, spec_v, queries=True)
        limit = check_int(
            concurrency if concurrency is not None else self._pool.config.max_size,
            1,
            10_000,
            name="concurrency",
        )
        compiled = compile_filter(where, self._fields, first_param=3)
        async with _session.acquire(self._pool, consistent=consistent) as conn:
            plan = await self._plan(
                conn, where, compiled, k=k, ef_search=ef_search, exact=exact, dim=spec_v.dim
            )
        prepared = self._prepare(spec_v, compiled, plan, k, include_vectors, timeout, batch=True)
        note_search(plan.strategy, k, plan.settings, prepared.sql)
        # One statement per chunk (a LATERAL join over the chunk's vectors), the
        # chunks spread over up to `limit` connections.
        n = len(queries)
        size = max(_BATCH_MIN, -(-n // limit))
        size = max(1, min(size, _BATCH_MAX_ROWS // k))
        gate = asyncio.Semaphore(limit)

        async def chunk(start: int) -> list[list[Hit[M]]]:
            part = [_Element(q) for q in queries[start : start + size]]
            async with gate, _session.acquire(self._pool, consistent=consistent) as conn:
                rows = await self._fetch(conn, part, prepared)
            found: list[list[Hit[M]]] = [[] for _ in part]
            records = self._codec.from_rows(rows, with_vectors=include_vectors)
            for record, row in zip(records, rows, strict=True):
                found[row[ORDINAL] - 1].append(Hit(record, float(row[DISTANCE])))
            return found

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(chunk(start)) for start in range(0, n, size)]
        except ExceptionGroup as failed:
            # The first chunk's error is the call's (the others were cancelled with
            # it), raised as itself: callers catch vecdb errors, not a group.
            raise failed.exceptions[0]  # noqa: B904 - keeps the error's own cause
        return [hits for t in tasks for hits in t.result()]

    async def explain(
        self,
        vector: VectorInput,
        k: int = 10,
        *,
        where: Mapping[str, Any] | None = None,
        ef_search: int | None = None,
        exact: bool = False,
        field: str | None = None,
        analyze: bool = False,
        timeout: float | None = None,
        consistent: bool | None = None,
    ) -> Explain:
        """How `search` would run a query: see `Collection.explain`."""
        spec_v = self._vector_field(field)
        self._check_search(k, ef_search)
        query = query_vector(vector, self._spec, spec_v)
        compiled = compile_filter(where, self._fields, first_param=3)
        options = "ANALYZE, BUFFERS, FORMAT JSON" if analyze else "FORMAT JSON"
        async with self._pool.acquire(readonly=True, consistent=consistent) as conn:
            plan = await self._plan(
                conn,
                where,
                compiled,
                k=k,
                ef_search=ef_search,
                exact=exact,
                dim=spec_v.dim,
                precise=True,
            )
            sql = self._sql(spec_v, compiled, plan, vectors=False)
            with translating():
                async with conn.transaction(readonly=True):
                    if plan.settings:
                        await apply_settings(conn, plan.settings)
                    raw = await conn.fetchval(
                        f"EXPLAIN ({options}) {sql}", query, k, *compiled.params, timeout=timeout
                    )
            indexes = {hnsw_name(self._spec, spec_v)}
            if self._spec.partitioning is not None:
                name = qualified(self._spec.schema, hnsw_name(self._spec, spec_v))
                indexes.update(row[0] for row in await conn.fetch(INDEX_PARTITIONS, name))
        document = json.loads(raw) if isinstance(raw, str) else raw
        top: dict[str, Any] = document[0]
        return Explain(
            strategy=plan.strategy,
            reason=plan.reason,
            uses_vector_index=uses_index(top["Plan"], indexes),
            plan=top,
            sql=sql,
            settings=dict(plan.settings),
            estimated_rows=plan.estimated_rows,
            total_rows=plan.total_rows,
        )
