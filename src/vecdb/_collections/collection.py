"""`Collection[M]`: typed records in a PostgreSQL table, written in bulk and searched by vector.

Made by ``await db.collection(name, Model, dim=...)``; see `docs/collections.md`
and `docs/search.md`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, Literal, TypeAlias

import numpy.typing as npt

from .._config import check_int
from .._errors import ConfigError, translating
from .._identifiers import qualified, quote_ident
from .._monitor.recorder import recorded
from .._schema import spec as _spec
from .._schema.ddl import registry_name
from .._schema.partitioning import ArchiveReport, PartitionInfo, Partitioning
from .._schema.rows import RecordCodec
from .._schema.spec import HNSW, CollectionSpec, ForeignKey, Metric, Storage
from .._search import hybrid as _hybrid
from .._search.filters import compile_filter
from .._search.hybrid import RRF
from .._search.searcher import Explain, Hit, Searcher
from .._typing import AnyConnection, Connections, M, VectorInput
from . import archive as _archive
from . import archive_records as _records
from . import archive_rows as _archive_rows
from . import catalog as _catalog
from . import conform as _conform
from . import export as _export
from . import indexing as _indexing
from . import partitions as _partitions
from . import repartition as _repartition
from . import reupsert as _reupsert
from .archive_records import ArchiveProgress
from .indexing import ProgressCallback
from .repartition import RepartitionCallback
from .routing import check_consistent, read_operation
from .sessions import refuse_through_pgbouncer
from .writer import Writer

__all__ = ["DEFAULT_INDEX", "Collection", "open_collection"]

logger = logging.getLogger("vecdb.collections")

DEFAULT_INDEX = HNSW()

RecordInput: TypeAlias = M | Mapping[str, Any]


class Collection(Generic[M]):
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
        self, pool: Connections, model: type[M], spec: CollectionSpec, *, iterative: bool
    ) -> None:
        self._pool = pool
        self._model = model
        self._iterative = iterative
        self._bind(spec)

    def _bind(self, spec: CollectionSpec) -> None:
        """Make every part from ``spec``.

        Called again whenever the definition changes (`create_index`), so that
        no part (the codec, the writer, the searcher) keeps an older copy.
        """
        self._spec = spec
        self._codec = RecordCodec(self._model, spec)
        self._searcher = Searcher(self._pool, spec, self._codec, iterative=self._iterative)
        self._writer = Writer(self._pool, spec, self._codec, on_change=self._searcher.data_changed)
        self._fields = spec.layout.filterable
        self._table = qualified(spec.schema, spec.table)
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

    @recorded("upsert")
    async def upsert(
        self,
        records: Iterable[RecordInput[M]] | AsyncIterable[RecordInput[M]],
        *,
        batch_size: int | None = None,
        timeout: float | None = None,
        rebuild_index: bool | Literal["auto"] = False,
    ) -> int:
        """Insert records, replacing those whose id exists; return the rows written.

        Records are model instances or dicts. Each chunk of the input is
        validated before it is sent, then COPYed (binary) into a temporary table
        and merged with one ``INSERT ... ON CONFLICT (id) DO UPDATE``; into an
        empty collection it is COPYed straight into the table instead (under a
        lock that keeps other writers out until commit), and a first load of
        5,000 rows or more drops the HNSW index and builds it again before the
        commit. An id given twice keeps its last record.

        Example:
            >>> await chunks.upsert(re_embedded(all_chunks), rebuild_index="auto")  # doctest: +SKIP

        Args:
            records: An iterable or async iterable of records (a list, a generator...).
            batch_size: ``None`` (default): everything in one transaction, all
                or nothing. A number: commit every ``batch_size`` records, so a
                failure keeps the batches before it.
            rebuild_index: For a bulk re-upsert (re-embedding) into an indexed
                collection that has rows. ``False`` (default): merge into the
                index. ``True``: drop the HNSW index concurrently, merge, build
                it again concurrently; searches meanwhile succeed as exact scans
                (slower), writers are not blocked. ``"auto"``: the rebuild when
                the upsert's records are at least ``REBUILD_SHARE`` (20%) of
                the collection's rows and 2,000 or more, else the plain merge.
                Ignored for partitioned collections (plain merge); ``True``
                needs ``batch_size=None``. See docs/collections.md.
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
            ConfigError: ``rebuild_index`` is not ``True``, ``False`` or
                ``"auto"``, or is ``True`` with a ``batch_size``; nothing was written.
        """
        return await self._writer.write(records, "upsert", batch_size, timeout, rebuild_index)

    @recorded("insert")
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
        return await self._writer.write(records, "insert", batch_size, timeout)

    async def analyze(self, *, timeout: float | None = None) -> None:
        """Refresh the planner's statistics (after a large load or delete)."""
        await self._writer.analyze(timeout=timeout)

    # -- reading -----------------------------------------------------------------------

    @recorded("get")
    @read_operation
    async def get(
        self,
        id: Any,
        *,
        include_vectors: bool = True,
        include_archived: bool = False,
        timeout: float | None = None,
        consistent: bool | None = None,
    ) -> M | None:
        """The record with this id, or ``None``; ``include_archived``: look in the archive too.

        ``consistent``: which replica may answer, as for `search`.
        """
        consistent = check_consistent(consistent)
        key = self._codec.coerce_id(id)
        columns = self._select if include_vectors else self._select_scalars
        id_col = quote_ident(self._spec.layout.id.name)
        where = f"{id_col} = $1"
        if self._spec.partitioning is not None:
            # The registry names the partition: the executor prunes the others
            # (an index probe on one partition instead of one on each).
            part = quote_ident(self._spec.partitioning.field)
            registry = qualified(self._spec.schema, registry_name(self._spec))
            where += f" AND {part} = (SELECT {part} FROM {registry} WHERE {id_col} = $1)"
        async with self._pool.acquire(readonly=True, consistent=consistent) as conn:
            with translating():
                row = await conn.fetchrow(
                    f"SELECT {columns} FROM {self._table} WHERE {where}", key, timeout=timeout
                )
                if row is None and include_archived:
                    source = await self._with_archive(conn)
                    row = await conn.fetchrow(
                        f"SELECT {columns} FROM {source} WHERE {id_col} = $1 LIMIT 1",
                        key,
                        timeout=timeout,
                    )
        return None if row is None else self._codec.from_row(row, with_vectors=include_vectors)

    @recorded("get_many")
    @read_operation
    async def get_many(
        self,
        ids: Iterable[Any],
        *,
        include_vectors: bool = True,
        timeout: float | None = None,
        consistent: bool | None = None,
    ) -> list[M]:
        """The records with these ids, in the order given; missing ids are skipped.

        ``consistent``: which replica may answer, as for `search`.
        """
        consistent = check_consistent(consistent)
        keys = [self._codec.coerce_id(i) for i in ids]
        if not keys:
            return []
        columns = self._select if include_vectors else self._select_scalars
        id_col = quote_ident(self._spec.layout.id.name)
        async with self._pool.acquire(readonly=True, consistent=consistent) as conn:
            with translating():
                rows = await conn.fetch(
                    f"SELECT {columns} FROM {self._table} WHERE {id_col} = ANY($1)",
                    list(set(keys)),
                    timeout=timeout,
                )
        by_id = {row[0]: self._codec.from_row(row, with_vectors=include_vectors) for row in rows}
        return [by_id[k] for k in keys if k in by_id]

    @recorded("count")
    @read_operation
    async def count(
        self,
        where: Mapping[str, Any] | None = None,
        *,
        include_archived: bool = False,
        timeout: float | None = None,
        consistent: bool | None = None,
    ) -> int:
        """How many records match ``where`` (all when ``None``); ``include_archived``: and archived.

        ``consistent``: which replica may answer, as for `search`.

        Raises:
            FilterError: The filter is malformed or names an unknown field.
            ConfigError: ``consistent`` is not a bool or ``None``.
        """
        consistent = check_consistent(consistent)
        compiled = compile_filter(where, self._fields)
        async with self._pool.acquire(readonly=True, consistent=consistent) as conn:
            with translating():
                source = await self._with_archive(conn) if include_archived else self._table
                n = await conn.fetchval(
                    f"SELECT count(*) FROM {source} WHERE {compiled.sql}",
                    *compiled.params,
                    timeout=timeout,
                )
        return int(n)

    @recorded("delete")
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
        return await self._writer.delete(ids, where=where, allow_all=allow_all, timeout=timeout)

    # -- search ------------------------------------------------------------------------

    @recorded("search")
    @read_operation
    async def search(
        self,
        vector: VectorInput | None,
        k: int = 10,
        *,
        where: Mapping[str, Any] | None = None,
        ef_search: int | None = None,
        exact: bool = False,
        include_vectors: bool = False,
        include_archived: bool = False,
        field: str | None = None,
        timeout: float | None = None,
        text: str | None = None,
        fusion: RRF | None = None,
        consistent: bool | None = None,
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
            include_archived: Search the archived records too (see `archive`).
            field: The vector field to search, when the model has several.
            timeout: Seconds for the query; default the pool's command timeout.
            text: Words to search the `FullText` field for (web search syntax:
                ``"exact phrase"``, ``-not``, ``or``). With a vector, both
                halves are fused by ``fusion`` in one statement, under the same
                ``where``; with ``vector=None``, keyword search alone. Hits then
                carry ``score``, ``vector_rank`` and ``text_rank``.
            fusion: How the halves are fused: `RRF` (the default, ``RRF(k=60)``).
            consistent: With replicas (docs/replicas.md): ``True`` reads from a
                replica that has replayed all the primary had written when the
                call began (waiting up to ``ReplicaConfig.consistency_wait``),
                else from the primary (``text=`` searches always
                run on the primary); ``False``, from any replica in rotation,
                even one behind this task's last write; ``None``, as
                ``connect(read_your_writes=...)`` says. Ignored without replicas.

        Raises:
            DimensionMismatchError: The query vector has the wrong length.
            InvalidVectorError: It holds NaN/infinity, or is zero under cosine.
            FilterError: The filter is malformed.
            ConfigError: ``text=`` on a collection without a `FullText` field,
                empty ``text``, or neither a vector nor ``text``; ``consistent``
                not a bool or ``None``.
        """
        consistent = check_consistent(consistent)
        if text is not None or vector is None or fusion is not None:
            return await self._hybrid(
                vector, k, text, fusion, where, ef_search, exact, include_vectors,
                include_archived, field, timeout,
            )  # fmt: skip
        source = None
        if include_archived:
            async with self._pool.acquire(readonly=True, consistent=consistent) as conn:
                with translating():
                    source = await self._with_archive(conn)
        return await self._searcher.search(
            vector,
            k,
            where=where,
            ef_search=ef_search,
            exact=exact,
            include_vectors=include_vectors,
            field=field,
            timeout=timeout,
            source=source,
            consistent=consistent,
        )

    async def _hybrid(  # noqa: PLR0917 - private; search()'s own arguments, in order
        self,
        vector: VectorInput | None,
        k: int,
        text: str | None,
        fusion: RRF | None,
        where: Mapping[str, Any] | None,
        ef_search: int | None,
        exact: bool,
        include_vectors: bool,
        include_archived: bool,
        field: str | None,
        timeout: float | None,
    ) -> list[Hit[M]]:
        if text is None:
            raise ConfigError(
                "search() needs a query vector, or text= for a keyword search"
                if vector is None
                else "fusion= fuses a vector and a full-text search: pass text= too",
                setting="text",
            )
        if include_archived:
            raise ConfigError(
                "text= does not search archived records yet; pass include_archived=False",
                setting="include_archived",
            )
        return await _hybrid.hybrid_search(
            self._searcher, vector, k, text=text, fusion=fusion, where=where,
            ef_search=ef_search, exact=exact, include_vectors=include_vectors, field=field,
            timeout=timeout,
        )  # fmt: skip

    @recorded("search_many")
    @read_operation
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
        """`search` for many query vectors at once, concurrently over the pool.

        The strategy is decided once for the shared filter; queries then run
        on up to ``concurrency`` pooled connections (default: the pool's
        ``max_size``). Returns one list of hits per query, in order.
        ``consistent``: as for `search`; with ``True``, every connection waits
        for the same primary position, read once for the call.
        """
        consistent = check_consistent(consistent)
        return await self._searcher.search_many(
            vectors,
            k,
            where=where,
            ef_search=ef_search,
            exact=exact,
            include_vectors=include_vectors,
            field=field,
            concurrency=concurrency,
            timeout=timeout,
            consistent=consistent,
        )

    @read_operation
    async def explain(
        self,
        vector: VectorInput | None,
        k: int = 10,
        *,
        where: Mapping[str, Any] | None = None,
        ef_search: int | None = None,
        exact: bool = False,
        field: str | None = None,
        analyze: bool = False,
        timeout: float | None = None,
        text: str | None = None,
        fusion: RRF | None = None,
        consistent: bool | None = None,
    ) -> Explain:
        """How `search` would run this query: strategy, settings and PostgreSQL's plan.

        Example:
            >>> plan = await chunks.explain(q, k=10, text="pool timeout")
            >>> plan.uses_vector_index, plan.uses_text_index

        Args:
            vector: The query vector, as for `search` (``None`` with ``text=``).
            k: As for `search`.
            where: As for `search`.
            ef_search: As for `search`.
            exact: As for `search`.
            field: As for `search`.
            analyze: Run the query (``EXPLAIN ANALYZE, BUFFERS``) for real timings.
            timeout: Seconds for the statement.
            text: As for `search`: the fused (or keyword-only) statement is explained.
            fusion: As for `search`.
            consistent: As for `search`.

        Raises:
            ConfigError: As for `search`.
        """
        consistent = check_consistent(consistent)
        if text is not None or vector is None or fusion is not None:
            if text is None:
                raise ConfigError(
                    "explain() needs a query vector, or text= for a keyword search"
                    if vector is None
                    else "fusion= fuses a vector and a full-text search: pass text= too",
                    setting="text",
                )
            return await _hybrid.hybrid_explain(
                self._searcher, vector, k, text=text, fusion=fusion, where=where,
                ef_search=ef_search, exact=exact, field=field, analyze=analyze, timeout=timeout,
            )  # fmt: skip
        return await self._searcher.explain(
            vector,
            k,
            where=where,
            ef_search=ef_search,
            exact=exact,
            field=field,
            analyze=analyze,
            timeout=timeout,
            consistent=consistent,
        )

    # -- partitions ------------------------------------------------------------------------

    async def partitions(
        self, *, exact: bool = False, timeout: float | None = None
    ) -> list[PartitionInfo]:
        """The collection's partitions, live then archived: name, bounds (or value), rows, bytes.

        Example:
            >>> for p in await events.partitions():
            ...     print(p.name, p.lower, p.upper, p.rows, p.total_bytes)

        Args:
            exact: Count every partition's rows. By default a live partition
                whose statistics say it holds 100,000 rows or more reports that
                estimate (counting reads every row), and an archived one the
                count recorded, and checked by checksum, when it was archived.
            timeout: Seconds to wait for a connection.

        Raises:
            ConfigError: The collection is not partitioned.
        """
        if self._spec.partitioning is None:
            raise ConfigError(
                f"collection {self.name!r} is not partitioned; create it with "
                "partition=vecdb.TimePartitions(...) or vecdb.ValuePartitions(...)",
                setting="partition",
            )
        async with self._pool.acquire(timeout=timeout) as conn:
            with translating():
                live = await _partitions.list_partitions(conn, self._spec, exact=exact)
                return live + await _records.archived_partitions(conn, self._spec, exact=exact)

    async def repartition(
        self,
        partition: Partitioning,
        *,
        batch_size: int = 10_000,
        progress: RepartitionCallback | None = None,
        timeout: float | None = None,
    ) -> int:
        """Convert this unpartitioned collection into a partitioned one while it stays in use.

        The rows are copied in batches (by id, one transaction each) into a new
        partitioned table beside the old one, laid out as ``db.collection(...,
        partition=partition)`` would make it (partitions, id registry, HNSW and
        filter indexes on every partition). Writes made meanwhile are logged by
        triggers and replayed. The copy is then compared with the collection
        (rows, and a checksum of ids, vectors and fields) and swapped in by one
        short transaction: ACCESS EXCLUSIVE under a lock timeout, tried again
        while long transactions are in the way. A run that was killed or failed
        is resumed by the next call. Afterwards this object uses the new layout;
        other processes must open the collection again (with ``partition=``)
        before they write to it. See `docs/partitions.md`.

        Example:
            >>> events = await db.collection("events", Event, dim=384)
            >>> await events.repartition(
            ...     vecdb.TimePartitions("created_at", interval="month", premake=3),
            ...     progress=lambda p: print(p.phase, p.rows_done, p.rows_total),
            ... )
            1000000
            >>> await events.partitions()           # [PartitionInfo(name='events_p20240101', ...

        Args:
            partition: ``vecdb.TimePartitions(...)`` or ``vecdb.ValuePartitions(...)``,
                as ``db.collection(partition=...)`` takes it.
            batch_size: Rows copied, or logged changes replayed, per transaction.
            progress: Called with a `RepartitionProgress` after each batch and at
                each phase (``"copying"``, ``"indexing"``, ``"catching up"``,
                ``"verifying"``, ``"swapping"``, ``"done"``). May be a coroutine
                function.
            timeout: Seconds each statement may take (a batch, one partition's
                HNSW build, the verification scan), client and server side;
                default no limit (neither the pool's ``command_timeout`` nor
                ``PoolConfig.statement_timeout`` applies).

        Returns:
            The rows of the converted collection, counted right after the swap.

        Raises:
            ConfigError: Nothing was changed: the collection is partitioned
                already; the field cannot partition it (``setting`` names it),
                or rows have no value for it; other collections reference it
                by foreign key (named), or it references itself; views
                depend on its table; it has archived rows; a table is in the
                way of a partition's name; another repartition of it is running;
                the pool goes through PgBouncer (`PoolConfig.pgbouncer`).
            ArchiveChecksumError: The copy did not match the collection; it was
                discarded and the collection is as it was.
            LockTimeoutError: Long transactions kept the swap from its lock;
                the copy is kept: call again to finish.
        """
        self._pool.check_open()
        refuse_through_pgbouncer(self._pool.config, "repartition()")
        check_int(batch_size, 1, name="batch_size")
        rows = await _repartition.repartition(
            self._pool,
            self._spec,
            partition,
            batch_size=batch_size,
            progress=progress,
            timeout=timeout,
        )
        self._bind(dataclasses.replace(self._spec, partitioning=partition))
        await self._pool.schema_changed()  # plans and types of the old table (asyncpg #103)
        return rows

    async def _with_archive(self, conn: AnyConnection) -> str:
        """The table and its archive as one ``FROM`` item (the table alone without one).

        An archived table keeps the columns of its time: one an evolve added
        since reads as NULL, as it does for the live rows of that time
        (`conform.projection`).
        """
        archived = await _records.archived_tables(conn, self._spec)
        if not archived:
            return self._table
        found = await _conform.columns(conn, [self._table, *archived])
        names = self._spec.layout.columns
        union = " UNION ALL ".join(
            f"SELECT {_conform.projection(names, found[self._table], found[t])} FROM {t}"
            for t in (self._table, *archived)
        )
        return f"({union}) AS _vecdb_with_archive"

    async def archive(
        self,
        older_than: dt.datetime,
        *,
        field: str | None = None,
        batch_size: int = 10_000,
        progress: ArchiveProgress | None = None,
    ) -> ArchiveReport:
        """Move data older than ``older_than`` into the ``vecdb_archive`` schema, nothing lost.

        A time-partitioned collection archives every partition that ends at or
        before ``older_than``: detached (``DETACH PARTITION … CONCURRENTLY``, so
        nobody waits) and moved with its indexes, no row rewritten. An
        unpartitioned collection needs ``field=``, a datetime or date field:
        its rows move in batches of ``batch_size``, one statement each. Either
        way a row is in the collection or in the archive at every moment, an
        interrupted run is finished (or resumed) by the next call, and the
        report carries the checksum of the content before and after. Archived
        records leave `search`, `get` and `count` (unless ``include_archived``)
        and keep their ids; only `purge_archive` deletes them. See
        `docs/partitions.md`.

        Example:
            >>> cutoff = datetime.now(UTC) - timedelta(days=365)
            >>> report = await events.archive(older_than=cutoff)
            >>> report.rows, report.partitions, report.ok

        Args:
            older_than: A timezone-aware datetime.
            field: For an unpartitioned collection: the time field to archive by.
            batch_size: Rows per batch (unpartitioned collections).
            progress: Called with ``(partition or table, rows so far)``; may be async.

        Raises:
            ConfigError: A naive ``older_than``; ``field=`` missing on an
                unpartitioned collection, or given on a partitioned one; a value
                partitioned collection; other collections referencing an
                unpartitioned one.
            ArchiveChecksumError: Rows were written into the range while it was
                archived; the move was undone.
        """
        self._pool.check_open()
        check_int(batch_size, 1, name="batch_size")
        try:
            report = await _archive.archive(
                self._pool,
                self._spec,
                older_than,
                field=field,
                batch_size=batch_size,
                progress=progress,
            )
        finally:
            if self._spec.partitioning is not None:
                await self._pool.schema_changed()  # partition DDL: asyncpg #103
        self._searcher.data_changed()
        return report

    async def restore(
        self,
        newer_than: dt.datetime | None = None,
        *,
        from_file: str | Path | None = None,
        progress: ArchiveProgress | None = None,
    ) -> ArchiveReport:
        """Bring archived data back: all of it, or what is newer than ``newer_than``.

        Archived partitions are moved back and attached (their indexes come
        back with them); an unpartitioned collection's rows move back in one
        transaction. Checked before anything moves: a range that has received
        new rows since it was archived, or archived ids written again, refuse
        the restore with nothing changed.

        With ``from_file=``, the rows of an `export_archive` file are written
        back instead (after their checksum is checked against the manifest's,
        before anything is written).

        A partition archived before the collection evolved gets its columns
        made the collection's first (a field added since is NULL there, as in
        the live rows of that time); each partition moves in one transaction,
        so a failure leaves it archived as it was (see `docs/partitions.md`).

        Raises:
            ConfigError: The restore would overlap live data (see above), or the
                file's manifest is missing or for another collection.
            SchemaMismatchError: The collection dropped a field that archived
                rows hold values in, changed a type in a way that would change
                archived values, or added a NOT NULL column without a default;
                nothing was changed.
            ArchiveChecksumError: The file's rows differ from what was exported.
            ImportError: ``from_file=`` without pyarrow (``vecdb[parquet]``).
        """
        self._pool.check_open()
        if from_file is not None:
            return await _export.restore(
                self._pool,
                self._spec,
                Path(from_file),
                codec=self._codec,
                writer=self._writer,
                progress=progress,
            )
        if self._spec.partitioning is None:
            report = await _archive_rows.restore_rows(
                self._pool, self._spec, newer_than, progress=progress
            )
        else:
            try:
                report = await _archive.restore(
                    self._pool, self._spec, newer_than, progress=progress
                )
            finally:
                # Partition DDL (asyncpg #103): partitions restored before a failure count too.
                await self._pool.schema_changed()
        self._searcher.data_changed()
        return report

    async def export_archive(self, path: str | Path) -> ArchiveReport:
        """Write the archived records to a Parquet file, with a manifest beside it.

        ``<path>.manifest.json`` records the collection, its definition, the
        rows and the archive's checksum; ``restore(from_file=path)`` reads it
        back. Needs the ``vecdb[parquet]`` extra (pyarrow).

        Example:
            >>> await events.export_archive("events-2024.parquet")
            >>> await events.purge_archive(cutoff, confirm="events")

        Raises:
            ConfigError: Nothing is archived, or ``path`` exists.
            ImportError: pyarrow is not installed.
        """
        self._pool.check_open()
        manifest = await _export.export(self._pool, self._spec, Path(path))
        return ArchiveReport(
            rows=manifest["rows"],
            partitions=tuple(manifest["tables"]),
            checksum_before=manifest["checksum"],
            checksum_after=manifest["checksum"],
        )

    async def purge_archive(self, older_than: dt.datetime, *, confirm: str) -> ArchiveReport:
        """Delete archived partitions that end at or before ``older_than``, for good.

        The only call that deletes archived data. ``confirm`` must be the
        collection's name.

        Raises:
            ConfigError: ``confirm`` is not the collection's name (nothing is
                deleted), or other records still reference archived ids.
        """
        self._pool.check_open()
        if confirm != self.name:
            raise ConfigError(
                f"purge_archive() deletes archived data for good: pass confirm={self.name!r} "
                f"to say so (got {confirm!r}). Nothing was deleted.",
                setting="confirm",
            )
        if self._spec.partitioning is None:
            raise ConfigError(
                f"purge_archive() drops archived partitions; {self.name!r} is not "
                f"partitioned (its archived rows are in {_records.ARCHIVE_SCHEMA}."
                f"{self._spec.table}: delete from it with SQL if you must)",
                setting="confirm",
            )
        return await _archive.purge(self._pool, self._spec, older_than)

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
                enough for the graph, never below the server's setting, and at
                most the larger of 1 GB and a third of ``effective_cache_size``
                (a quarter of memory on the tuned embedded server).
            parallel_workers: ``max_parallel_maintenance_workers``; default the
                server's ``max_parallel_maintenance_workers`` (a parallel build
                needs ``/dev/shm`` larger than its memory: pgvector #453).
            timeout: Seconds each statement of the build may take (the
                ``CREATE INDEX``, the drop of an old or INVALID index, which
                waits for running transactions), client and server side;
                default no limit: neither the pool's ``command_timeout`` nor
                ``PoolConfig.statement_timeout`` applies.

        Raises:
            DatabaseError: The build failed (its INVALID index was dropped).
            ConfigError: The pool goes through PgBouncer (`PoolConfig.pgbouncer`).
        """
        self._pool.check_open()
        refuse_through_pgbouncer(self._pool.config, "create_index()")
        chosen = index if index is not None else (self._spec.index or DEFAULT_INDEX)
        if not isinstance(chosen, HNSW):
            raise ConfigError(f"index must be a vecdb.HNSW, got {chosen!r}", setting="index")
        _spec.check_index(
            chosen, self._spec.layout, metric=self._spec.metric, storage=self._spec.storage
        )
        spec = dataclasses.replace(self._spec, index=chosen)
        await _indexing.build_hnsw(
            self._pool,
            spec,
            concurrently=concurrently,
            progress=progress,
            maintenance_work_mem=maintenance_work_mem,
            parallel_workers=parallel_workers,
            timeout=timeout,
        )
        async with self._pool.transaction() as conn:
            await _catalog.save_spec(conn, spec)
        self._bind(spec)


async def open_collection(
    pool: Connections,
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
    iterative: bool,
    partition: Partitioning | None = None,
) -> Collection[M]:
    """Create or open a collection (the body of ``db.collection()``).

    Args:
        pool: Where connections come from.
        name: As for ``db.collection()``, like the rest but ``iterative``.
        model: The record class.
        dim: The dimension of vector fields without `Dim`.
        metric: The distance.
        storage: ``vector`` or ``halfvec``.
        index: The HNSW parameters, or ``None``.
        filterable: Fields with filter indexes.
        foreign_keys: Field name to `ForeignKey`.
        evolve: Apply non-destructive differences.
        schema: The table's schema.
        timeout: Seconds to wait for a pooled connection.
        iterative: The server's pgvector has iterative index scans (0.8+).
        partition: How the table is partitioned, or ``None``.
    """
    pool.check_open()
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
        partition=partition,
    )
    async with pool.transaction(timeout=timeout) as conn:
        before = await _catalog.load(conn, name)
        spec = await _catalog.open_or_create(
            conn, given, f"{model.__module__}.{model.__qualname__}", evolve=evolve
        )
        changed = before is None or before.spec != spec.to_json()
    if before is not None and spec.partitioning is not None:
        # At creation they were made with the table; at open, time has moved on.
        async with pool.transaction(timeout=timeout) as conn:
            made = await _partitions.premake(conn, spec, dt.datetime.now(dt.UTC))
        changed = changed or bool(made)
    if before is not None:
        # A re-upsert's rebuild killed mid-way left the collection without its index.
        await _reupsert.repair_on_open(pool, spec)
    if changed:
        # New or altered tables: make sure no pooled connection keeps a plan
        # or a type cache from before (asyncpg #103).
        await pool.schema_changed()
    return Collection(pool, model, spec, iterative=iterative)


async def list_collections(
    pool: Connections, timeout: float | None
) -> list[_catalog.CollectionInfo]:
    """The body of ``db.collections()``."""
    pool.check_open()
    async with pool.acquire(timeout=timeout) as conn:
        with translating():
            return await _catalog.list_all(conn)


async def drop_collection(pool: Connections, name: str, timeout: float | None) -> None:
    """The body of ``db.drop_collection()``."""
    pool.check_open()
    async with pool.transaction(timeout=timeout) as conn:
        await _catalog.drop(conn, name)
    await pool.schema_changed()
