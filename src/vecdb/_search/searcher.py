"""The search half of `Collection`: plan, run and explain vector searches.

`Collection` inherits these methods; they live here so that each module
stays one idea: writing and managing a collection there, searching it here.
The strategy itself (which plan, which settings, which SQL) is `planner`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar

import numpy as np
import numpy.typing as npt

from .._errors import ConfigError, translating
from .._schema.ddl import hnsw_name
from .._schema.record import Record, VectorSpec
from .._schema.rows import RecordCodec, check_vectors
from .._schema.spec import CollectionSpec
from .._typing import AnyConnection
from .filters import CompiledFilter, compile_filter
from .planner import (
    DISTANCE,
    EF_SEARCH_MAX,
    EstimateCache,
    Explain,
    Plan,
    apply_settings,
    choose,
    default_ef_search,
    equality_field,
    few_rows,
    filter_key,
    query_vector,
    search_sql,
    uses_index,
)

if TYPE_CHECKING:
    from .._schema.columns import ColumnType
    from .._server.database import Database

__all__ = ["MAX_K", "Hit", "Searching"]

M = TypeVar("M", bound=Record)

MAX_K = 10_000
_SQL_CACHE_SIZE = 256  # distinct (field, filter shape, strategy) per collection

VectorInput: TypeAlias = Sequence[float] | npt.NDArray[Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Hit(Generic[M]):
    """One search result.

    Attributes:
        record: The record; its vector fields are ``None`` unless the search
            passed ``include_vectors=True``.
        distance: Smaller is closer. ``cosine``: 1 - cosine similarity (0..2);
            ``l2``: Euclidean distance; ``inner_product``: the *negative* inner
            product (-a·b); ``l1``: taxicab distance.
    """

    record: M
    distance: float


def _check_int(value: Any, low: int, high: int, name: str) -> int:
    """``value`` if it is an int in ``low..high``, else `ConfigError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            f"{name} must be an int from {low} to {high}, got {value!r}", setting=name
        )
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class _Prepared:
    """A search ready to run for any query vector: the statement and what goes with it."""

    sql: str
    params: tuple[Any, ...]  # after the query vector: k, then the filter's values
    settings: Mapping[str, str]
    include_vectors: bool
    timeout: float | None


class Searching(Generic[M]):
    """Vector search over a collection's table (mixed into `Collection`)."""

    _db: Database
    _model: type[M]
    _spec: CollectionSpec
    _codec: RecordCodec[M]
    _fields: Mapping[str, ColumnType]
    _iterative: bool
    _estimates: EstimateCache
    _sql_cache: dict[tuple[str, str, str, bool], str]

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
        _check_int(k, 1, MAX_K, "k")
        if ef_search is not None:
            _check_int(ef_search, 1, EF_SEARCH_MAX, "ef_search")

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
            k=k,
            ef_search=ef_search,
            iterative=self._iterative,
            estimated_rows=estimated,
            total_rows=total,
            dim=dim,
            default_ef_search=default_ef_search(self._db.pool_config.server_settings),
        )

    def _sql(self, vector: VectorSpec, compiled: CompiledFilter, plan: Plan, vectors: bool) -> str:
        # The text depends only on these (the filter's values are parameters):
        # cached, since building it is a visible share of a 1 ms search.
        key = (vector.name, compiled.sql, plan.strategy, vectors)
        sql = self._sql_cache.get(key)
        if sql is None:
            columns = self._spec.layout.columns if vectors else self._codec.scalar_columns
            sql = search_sql(self._spec, vector, columns, compiled, plan.strategy)
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
    ) -> list[Hit[M]]:
        """The ``k`` records closest to ``vector`` that match ``where``, closest first.

        Example:
            >>> hits = await chunks.search(q, k=10, where={"year": {"$gte": 2020}})
            >>> [(h.record.id, h.distance) for h in hits]

        Args:
            vector: The query (a list or a numpy array of the collection's dimension).
            k: How many results (1..10000). Fewer only when fewer records match.
            where: A filter (see `docs/search.md`); ``None`` for all records.
            ef_search: HNSW's candidate list (1..1000); raised to at least ``k``.
                Default: the connection's ``hnsw.ef_search`` (pgvector's 40, or
                ``PoolConfig.server_settings``) unfiltered, 200 or more under a
                filter (see `docs/search.md`).
            exact: Compare with every (matching) record instead of using the index.
            include_vectors: Fetch the vectors too; otherwise the records'
                vector fields are ``None``.
            field: The vector field to search, when the model has several.
            timeout: Seconds for the query; default the pool's command timeout.

        Raises:
            DimensionMismatchError: The query vector has the wrong length.
            InvalidVectorError: It holds NaN/infinity, or is zero under cosine.
            FilterError: The filter is malformed.
        """
        spec_v = self._vector_field(field)
        self._check_search(k, ef_search)
        query = query_vector(vector, self._spec, spec_v)
        compiled = compile_filter(where, self._fields, first_param=3)
        async with self._db.acquire() as conn:
            plan = await self._plan(
                conn, where, compiled, k=k, ef_search=ef_search, exact=exact, dim=spec_v.dim
            )
            prepared = self._prepare(spec_v, compiled, plan, k, include_vectors, timeout)
            return await self._run(conn, query, prepared)

    def _prepare(  # noqa: PLR0917 - private; the search's own arguments, in order
        self,
        spec_v: VectorSpec,
        compiled: CompiledFilter,
        plan: Plan,
        k: int,
        include_vectors: bool,
        timeout: float | None,
    ) -> _Prepared:
        sql = self._sql(spec_v, compiled, plan, include_vectors)
        return _Prepared(sql, (k, *compiled.params), plan.settings, include_vectors, timeout)

    async def _run(
        self, conn: AnyConnection, query: npt.NDArray[np.float32], prepared: _Prepared
    ) -> list[Hit[M]]:
        sql, params, timeout = prepared.sql, prepared.params, prepared.timeout
        with translating():
            if prepared.settings:
                # SET LOCAL: the settings end with this transaction (BEGIN READ ONLY
                # is one statement, like BEGIN).
                async with conn.transaction(readonly=True):
                    await apply_settings(conn, prepared.settings)
                    rows = await conn.fetch(sql, query, *params, timeout=timeout)
            else:
                # Nothing to set (unfiltered, default ef_search >= k): one statement,
                # no transaction; see docs/search.md for what this assumes.
                rows = await conn.fetch(sql, query, *params, timeout=timeout)
        decode, vectors = self._codec.from_row, prepared.include_vectors
        return [Hit(decode(row, with_vectors=vectors), float(row[DISTANCE])) for row in rows]

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
    ) -> list[list[Hit[M]]]:
        """`search` for many query vectors at once, concurrently over the pool.

        The strategy is decided once for the shared filter; queries then run
        on up to ``concurrency`` pooled connections (default: the pool's
        ``max_size``). Returns one list of hits per query, in order.
        """
        spec_v = self._vector_field(field)
        self._check_search(k, ef_search)
        if len(vectors) == 0:
            return []
        queries = check_vectors(list(vectors), self._spec, spec_v, queries=True)
        limit = _check_int(
            concurrency if concurrency is not None else self._db.pool_config.max_size,
            1,
            10_000,
            "concurrency",
        )
        compiled = compile_filter(where, self._fields, first_param=3)
        async with self._db.acquire() as conn:
            plan = await self._plan(
                conn, where, compiled, k=k, ef_search=ef_search, exact=exact, dim=spec_v.dim
            )
        prepared = self._prepare(spec_v, compiled, plan, k, include_vectors, timeout)
        gate = asyncio.Semaphore(limit)

        async def one(query: npt.NDArray[np.float32]) -> list[Hit[M]]:
            async with gate, self._db.acquire() as conn:
                return await self._run(conn, query, prepared)

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(q)) for q in queries]
        return [t.result() for t in tasks]

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
    ) -> Explain:
        """How `search` would run this query: strategy, settings and PostgreSQL's plan.

        Args:
            vector: The query vector, as for `search`.
            k: As for `search`.
            where: As for `search`.
            ef_search: As for `search`.
            exact: As for `search`.
            field: As for `search`.
            analyze: Run the query (``EXPLAIN ANALYZE, BUFFERS``) for real timings.
            timeout: Seconds for the statement.
        """
        spec_v = self._vector_field(field)
        self._check_search(k, ef_search)
        query = query_vector(vector, self._spec, spec_v)
        compiled = compile_filter(where, self._fields, first_param=3)
        options = "ANALYZE, BUFFERS, FORMAT JSON" if analyze else "FORMAT JSON"
        async with self._db.acquire() as conn:
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
        document = json.loads(raw) if isinstance(raw, str) else raw
        top: dict[str, Any] = document[0]
        return Explain(
            strategy=plan.strategy,
            reason=plan.reason,
            uses_vector_index=uses_index(top["Plan"], hnsw_name(self._spec, spec_v)),
            plan=top,
            sql=sql,
            settings=dict(plan.settings),
            estimated_rows=plan.estimated_rows,
            total_rows=plan.total_rows,
        )
