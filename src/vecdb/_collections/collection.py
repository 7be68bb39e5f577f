"""`Collection[M]`: typed records in a PostgreSQL table, written in bulk and searched by vector.

Made by ``await db.collection(name, Model, dim=...)``; see `docs/collections.md`
and `docs/search.md`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import numpy.typing as npt

from .._errors import (
    ConfigError,
    FilterError,
    translating,
)
from .._identifiers import qualified, quote_ident
from .._schema import spec as _spec
from .._schema.record import Record
from .._schema.rows import RecordCodec
from .._schema.spec import HNSW, CollectionSpec, ForeignKey, Metric, Storage
from .._search.filters import compile_filter
from .._search.planner import (
    EstimateCache,
)
from .._search.searcher import Hit, Searching
from . import catalog as _catalog
from . import indexing as _indexing
from .indexing import ProgressCallback
from .writer import Writer, affected

if TYPE_CHECKING:
    from .._server.database import Database

__all__ = ["DEFAULT_INDEX", "Collection", "Hit", "open_collection"]

logger = logging.getLogger("vecdb.collections")

M = TypeVar("M", bound=Record)

DEFAULT_INDEX = HNSW()

RecordInput: TypeAlias = M | Mapping[str, Any]
VectorInput: TypeAlias = Sequence[float] | npt.NDArray[Any]


class Collection(Searching[M]):
    """A collection of ``M`` records: one table, typed columns, vector indexes.

    Get one with ``await db.collection("chunks", Chunk, dim=384)``.

    Example:
        >>> chunks = await db.collection("chunks", Chunk, dim=384, metric="cosine")
        >>> await chunks.upsert([Chunk(id=1, doc_id="a", text="...", embedding=v)])
        1
        >>> hits = await chunks.search(q, k=10, where={"doc_id": "a"})
        >>> hits[0].record.text, hits[0].distance
    """

    def __init__(
        self, db: Database, model: type[M], spec: CollectionSpec, *, iterative: bool
    ) -> None:
        self._db = db
        self._model = model
        self._spec = spec
        self._codec = RecordCodec(model, spec)
        self._fields = spec.layout.filterable
        self._iterative = iterative
        self._estimates = EstimateCache()
        self._sql_cache: dict[tuple[str, str, str, bool], str] = {}
        self._table = qualified(spec.schema, spec.table)
        self._writer = Writer(db, spec, self._codec)
        self._select = ", ".join(quote_ident(c) for c in spec.layout.columns)
        self._select_scalars = ", ".join(quote_ident(c) for c in self._codec.scalar_columns)

    def __repr__(self) -> str:
        return (
            f"<vecdb.Collection {self._spec.name!r} of {self._model.__name__} "
            f"({self._spec.metric}, {self._spec.storage})>"
        )

    @property
    def name(self) -> str:
        """The collection's name."""
        return self._spec.name

    @property
    def model(self) -> type[M]:
        """The record class."""
        return self._model

    @property
    def spec(self) -> dict[str, Any]:
        """The definition as stored in the catalog (fields, vectors, metric, index...)."""
        return self._spec.to_json()

    @property
    def table(self) -> str:
        """The table, ``schema.name``, for hand-written SQL."""
        return f"{self._spec.schema}.{self._spec.table}"

    # -- writing ---------------------------------------------------------------------

    async def upsert(
        self,
        records: Iterable[RecordInput[M]] | AsyncIterable[RecordInput[M]],
        *,
        batch_size: int | None = None,
        timeout: float | None = None,
    ) -> int:
        """Insert records, replacing those whose id exists; return the rows written.

        Records are model instances or dicts. Each chunk of the input is
        validated before it is sent, then COPYed (binary) into a temporary table
        and merged with one ``INSERT ... ON CONFLICT (id) DO UPDATE``; into an
        empty collection it is COPYed straight into the table instead (under a
        lock that keeps other writers out until commit), and a first load of
        5,000 rows or more drops the HNSW index and builds it again before the
        commit. An id given twice keeps its last record.

        Args:
            records: An iterable or async iterable of records (a list, a generator...).
            batch_size: ``None`` (default): everything in one transaction, all
                or nothing. A number: commit every ``batch_size`` records, so a
                failure keeps the batches before it.
            timeout: Seconds each statement of the write may take (a chunk's
                COPY, the merge, an index rebuild); default no limit. The pool's
                ``command_timeout`` does not apply, since a large merge or index
                build can take minutes; ``PoolConfig.statement_timeout`` (server
                side) still applies, except to an index rebuild.

        Raises:
            RecordValidationError: A record does not fit the model (``position``).
            DimensionMismatchError: A vector has the wrong length (``record_id``, ``position``).
            InvalidVectorError: A vector is empty, holds NaN/infinity, or is zero under cosine.
            QueryTimeoutError: A statement took longer than ``timeout``; nothing
                of the transaction was written.
            DatabaseError: The server refused the rows (a foreign key, for instance).
        """
        self._db._check_open()
        written = await self._writer.write(records, "upsert", batch_size, timeout)
        self._estimates.clear()
        return written

    async def insert(
        self,
        records: Iterable[RecordInput[M]] | AsyncIterable[RecordInput[M]],
        *,
        batch_size: int | None = None,
        timeout: float | None = None,
    ) -> int:
        """Insert new records; refuse ids that exist or repeat.

        Same input, batching and ``timeout`` as `upsert`.

        Raises:
            DuplicateRecordError: Ids already in the collection or given twice
                (``ids``); nothing of the batch was written.
        """
        self._db._check_open()
        written = await self._writer.write(records, "insert", batch_size, timeout)
        self._estimates.clear()
        return written

    async def analyze(self, *, timeout: float | None = None) -> None:
        """Refresh the planner's statistics (after a large load or delete)."""
        async with self._db.acquire() as conn:
            with translating():
                await conn.execute(f"ANALYZE {self._table}", timeout=timeout)
        self._estimates.clear()

    # -- reading -----------------------------------------------------------------------

    async def get(
        self, id: Any, *, include_vectors: bool = True, timeout: float | None = None
    ) -> M | None:
        """The record with this id, or ``None``."""
        key = self._codec.coerce_id(id)
        columns = self._select if include_vectors else self._select_scalars
        id_col = quote_ident(self._spec.layout.id.name)
        async with self._db.acquire() as conn:
            with translating():
                row = await conn.fetchrow(
                    f"SELECT {columns} FROM {self._table} WHERE {id_col} = $1", key, timeout=timeout
                )
        return None if row is None else self._codec.from_row(row, with_vectors=include_vectors)

    async def get_many(
        self, ids: Iterable[Any], *, include_vectors: bool = True, timeout: float | None = None
    ) -> list[M]:
        """The records with these ids, in the order given; missing ids are skipped."""
        keys = [self._codec.coerce_id(i) for i in ids]
        if not keys:
            return []
        columns = self._select if include_vectors else self._select_scalars
        id_col = quote_ident(self._spec.layout.id.name)
        async with self._db.acquire() as conn:
            with translating():
                rows = await conn.fetch(
                    f"SELECT {columns} FROM {self._table} WHERE {id_col} = ANY($1)",
                    list(set(keys)),
                    timeout=timeout,
                )
        by_id = {row[0]: self._codec.from_row(row, with_vectors=include_vectors) for row in rows}
        return [by_id[k] for k in keys if k in by_id]

    async def count(
        self, where: Mapping[str, Any] | None = None, *, timeout: float | None = None
    ) -> int:
        """How many records match ``where`` (all when ``None``).

        Raises:
            FilterError: The filter is malformed or names an unknown field.
        """
        compiled = compile_filter(where, self._fields)
        async with self._db.acquire() as conn:
            with translating():
                n = await conn.fetchval(
                    f"SELECT count(*) FROM {self._table} WHERE {compiled.sql}",
                    *compiled.params,
                    timeout=timeout,
                )
        return int(n)

    async def delete(
        self,
        ids: Iterable[Any] | None = None,
        *,
        where: Mapping[str, Any] | None = None,
        allow_all: bool = False,
        timeout: float | None = None,
    ) -> int:
        """Delete by ids, or by filter; return how many records were deleted.

        Example:
            >>> await chunks.delete([1, 2])
            >>> await chunks.delete(where={"doc_id": "a"})
            >>> await chunks.delete(where={}, allow_all=True)    # everything, on purpose

        Raises:
            FilterError: Both or neither of ``ids`` and ``where`` given, or a
                filter that matches every row without ``allow_all=True``.
        """
        if (ids is None) == (where is None):
            raise FilterError(
                "delete() needs ids or where=, not both nor neither: delete([1, 2]) or "
                "delete(where={'doc_id': 'a'})"
            )
        if ids is not None:
            if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
                raise FilterError(f"delete() takes a list of ids, got {ids!r}; write delete([id])")
            keys = list({self._codec.coerce_id(i) for i in ids})
            if not keys:
                return 0
            id_col = quote_ident(self._spec.layout.id.name)
            sql, params = f"DELETE FROM {self._table} WHERE {id_col} = ANY($1)", [keys]
        else:
            compiled = compile_filter(where, self._fields)
            if compiled.matches_all and not allow_all:
                raise FilterError(
                    f"where={where!r} matches every record of {self.name!r}; pass "
                    "allow_all=True to delete them all"
                )
            sql, params = f"DELETE FROM {self._table} WHERE {compiled.sql}", compiled.params
        async with self._db.acquire() as conn:
            with translating():
                status = await conn.execute(sql, *params, timeout=timeout)
        self._estimates.clear()
        return affected(status)

    # -- indexes ---------------------------------------------------------------------------

    async def create_index(
        self,
        index: HNSW | None = None,
        *,
        concurrently: bool = True,
        progress: ProgressCallback | None = None,
        maintenance_work_mem: str | None = None,
        parallel_workers: int | None = None,
        timeout: float | None = None,
    ) -> None:
        """(Re)build the HNSW index of the vector field(s), e.g. after a large first load.

        The new index is built beside the old one and swapped in, so searches
        keep an index meanwhile. An INVALID index left by a failed concurrent
        build is dropped and rebuilt. The parameters are saved in the catalog.

        Example:
            >>> await chunks.create_index(vecdb.HNSW(m=16, ef_construction=64),
            ...                           progress=lambda p: print(p.phase, p.fraction))

        Args:
            index: The parameters; default the collection's (or `HNSW()`).
            concurrently: Build without blocking writes (``CONCURRENTLY``; slower).
            progress: Called with an `IndexProgress` about every 0.25 s while the
                build runs (read from a second pooled connection), and once at
                the end with ``phase == "done"``. May be a coroutine function.
            maintenance_work_mem: The build's memory, e.g. ``"2GB"``; default
                enough for the graph, from the server's setting up to 1 GB.
            parallel_workers: ``max_parallel_maintenance_workers``; default the
                server's ``max_parallel_workers``.
            timeout: Seconds each statement of the build may take (the
                ``CREATE INDEX``, the drop of an old or INVALID index, which
                waits for running transactions), client and server side;
                default no limit: neither the pool's ``command_timeout`` nor
                ``PoolConfig.statement_timeout`` applies.

        Raises:
            DatabaseError: The build failed (its INVALID index was dropped).
        """
        self._db._check_open()
        chosen = index if index is not None else (self._spec.index or DEFAULT_INDEX)
        if not isinstance(chosen, HNSW):
            raise ConfigError(f"index must be a vecdb.HNSW, got {chosen!r}", setting="index")
        spec = dataclasses.replace(self._spec, index=chosen)
        await _indexing.build_hnsw(
            self._db,
            spec,
            concurrently=concurrently,
            progress=progress,
            maintenance_work_mem=maintenance_work_mem,
            parallel_workers=parallel_workers,
            timeout=timeout,
        )
        async with self._db.transaction() as conn:
            await _indexing.save_index(conn, spec)
        self._spec = spec
        self._estimates.clear()


async def open_collection(
    db: Database,
    name: str,
    model: type[M],
    *,
    dim: int | None,
    metric: Metric,
    storage: Storage,
    index: HNSW | None,
    filterable: Iterable[str],
    foreign_keys: Mapping[str, ForeignKey] | None,
    evolve: bool,
    schema: str,
    timeout: float | None,
) -> Collection[M]:
    """Create or open a collection (the body of ``db.collection()``)."""
    db._check_open()
    given = _spec.make_spec(
        name,
        model,
        dim=dim,
        metric=metric,
        storage=storage,
        index=index,
        filterable=filterable,
        foreign_keys=foreign_keys,
        schema=schema,
    )
    async with db.transaction(timeout=timeout) as conn:
        before = await _catalog.load(conn, name)
        spec = await _catalog.open_or_create(
            conn, given, f"{model.__module__}.{model.__qualname__}", evolve=evolve
        )
        version = await conn.fetchval(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        )
        changed = before is None or before.spec != spec.to_json()
    if changed:
        # New or altered tables: make sure no pooled connection keeps a plan
        # or a type cache from before (asyncpg #103).
        await db._schema_changed()
    iterative = tuple(int(p) for p in str(version).split(".")[:2] if p.isdigit()) >= (0, 8)
    return Collection(db, model, spec, iterative=iterative)


async def list_collections(db: Database, timeout: float | None) -> list[_catalog.CollectionInfo]:
    """The body of ``db.collections()``."""
    async with db.acquire(timeout=timeout) as conn:
        with translating():
            return await _catalog.list_all(conn)


async def drop_collection(db: Database, name: str, timeout: float | None) -> None:
    """The body of ``db.drop_collection()``."""
    async with db.transaction(timeout=timeout) as conn:
        await _catalog.drop(conn, name)
    await db._schema_changed()
