"""The write path: validate chunk by chunk, then binary COPY, straight or through a merge.

Into a table that is empty when the write's transaction starts, the rows are
COPYed straight into the table (ids de-duplicated client-side, the last record
of an id winning). Otherwise they are COPYed into a staging table and merged
once: ``upsert`` with ``INSERT ... SELECT ... ON CONFLICT (id) DO UPDATE``,
``insert`` after looking for existing ids and naming them. Without a batch
size the whole input is one transaction (all or nothing) while the client
holds at most ``max(WRITE_CHUNK, REBUILD_MIN_ROWS)`` records: the first ones
until it knows whether a first load is large, then one chunk at a time.

A large first load into an empty collection with an HNSW index drops the index,
loads, and builds it again in the same transaction: inserting row by row into
the graph is several times slower than one build (pgvector #559).

An upsert with ``rebuild_index=True`` (or ``"auto"`` over the threshold) into
an indexed collection that has rows stages everything first and merges between
a concurrent drop and a concurrent build of its HNSW index (`reupsert`).

Every statement of a write gets the caller's ``timeout``, else no limit:
asyncpg would otherwise apply the pool's ``command_timeout``, which a large
merge or an index build can exceed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from typing import Any, Literal

from .._config import check_int
from .._errors import (
    ConfigError,
    DuplicateRecordError,
    FilterError,
    LockTimeoutError,
    translating,
)
from .._identifiers import qualified, quote_ident
from .._schema.ddl import registry_name
from .._schema.record import Record
from .._schema.rows import RecordCodec
from .._schema.spec import CollectionSpec
from .._search.filters import compile_filter
from .._typing import AnyConnection, Connections
from . import first_load as _first_load
from . import indexing as _indexing
from . import partitions as _partitions
from . import reupsert as _reupsert
from . import seen as _seen
from .archive_records import ARCHIVE_SCHEMA

__all__ = ["REBUILD_MIN_ROWS", "WRITE_CHUNK", "Writer", "affected"]

logger = logging.getLogger("vecdb.collections")

WRITE_CHUNK = 5_000  # records validated and COPYed at a time: bounds client memory
# A first load of at least this many rows into an empty collection with an HNSW
# index drops the index and builds it after loading, in the same transaction.
# Measured here (384-d, m=16, 2 CPUs), upsert into the empty indexed collection,
# row by row into the graph / drop, load, build: 1k rows 0.76 / 0.18 s, 2k
# 1.6 / 0.4 s, 5k 4.7 / 0.9 s, 10k 9.9 / 1.8 s. Below the threshold a first
# load stays seconds and keeps its index for readers (a rebuild holds ACCESS
# EXCLUSIVE); at one chunk, deciding needs no records buffered beyond the first.
REBUILD_MIN_ROWS = WRITE_CHUNK
# One staging table name per collection: asyncpg caches copy_records_to_table's
# type introspection by statement text, so a name shared by collections with
# different vector types would encode one collection's rows with another's codec.
_STAGE_PREFIX = "_vecdb_stage_"
_ORD = "_vecdb_ord"
_ANALYZE_MIN_ROWS = 1_000


@dataclasses.dataclass(slots=True)
class _Chunk:
    """One validated chunk of the input."""

    rows: list[tuple[Any, ...]]  # COPY rows, in the layout's column order
    ids: list[Any]
    start: int  # position of its first record in the whole input
    internal: bool  # an id appears more than once within the chunk
    earlier: list[Any]  # ids that an earlier chunk of the same transaction gave
    keys: set[Any]  # the partitions its rows go to (partitioned collections only)

    def last_wins(self) -> list[tuple[Any, ...]]:
        """The rows with one per id, the last one, in input order."""
        if not self.internal:
            return self.rows
        last = {i: j for j, i in enumerate(self.ids)}
        return [self.rows[j] for j in sorted(last.values())]

    def staged(self) -> list[tuple[Any, ...]]:
        """The rows with their input position, for the staging table."""
        return [(*row, self.start + j) for j, row in enumerate(self.rows)]


async def _chunks(records: Any, size: int) -> AsyncIterator[list[Any]]:
    """The input in lists of at most ``size``, from an iterable or an async iterable."""
    batch: list[Any] = []
    if isinstance(records, AsyncIterable):
        async for item in records:
            batch.append(item)
            if len(batch) >= size:
                yield batch
                batch = []
    else:
        if isinstance(records, Mapping | Record):
            records = [records]  # one record passed alone
        for item in records:
            batch.append(item)
            if len(batch) >= size:
                yield batch
                batch = []
    if batch:
        yield batch


async def _chain(head: list[_Chunk], rest: AsyncIterator[_Chunk] | None) -> AsyncIterator[_Chunk]:
    for chunk in head:
        yield chunk
    if rest is not None:
        async for chunk in rest:
            yield chunk


def affected(status: str) -> int:
    """Rows affected, from a command tag such as ``INSERT 0 5`` or ``DELETE 3``."""
    return int(status.rsplit(maxsplit=1)[-1])


class Writer:
    """Writes one collection's records: upsert, insert, delete, and the statistics after.

    Args:
        pool: Where connections come from.
        spec: The collection's definition.
        codec: Turns records into COPY rows.
        on_change: Called after every write: what was estimated of the data
            (the searcher's row estimates) may no longer hold.
    """

    def __init__(
        self,
        pool: Connections,
        spec: CollectionSpec,
        codec: RecordCodec[Any],
        *,
        on_change: Callable[[], None],
    ) -> None:
        self._pool = pool
        self._on_change = on_change
        self._spec = spec
        self._codec = codec
        self._table = qualified(spec.schema, spec.table)
        self._select = ", ".join(quote_ident(c) for c in spec.layout.columns)
        self._id_col = quote_ident(spec.layout.id.name)
        self._stage_name = _STAGE_PREFIX + spec.name
        self._stage_table = quote_ident(self._stage_name)
        self._partitions = _partitions.Partitions(spec) if spec.partitioning is not None else None

    async def write(
        self,
        records: Any,
        mode: Literal["upsert", "insert"],
        batch_size: int | None,
        timeout: float | None,
        rebuild_index: object = False,
    ) -> int:
        """Validate and write ``records``; return the rows written (see `Collection.upsert`)."""
        self._pool.check_open()
        if batch_size is not None:
            check_int(batch_size, 1, name="batch_size", why=" or None")
        rebuild = _reupsert.check_choice(rebuild_index)
        if rebuild is True and batch_size is not None:
            raise ConfigError(
                "rebuild_index=True needs the whole upsert in one transaction (batch_size=None): "
                f"got batch_size={batch_size}. Drop batch_size, or use rebuild_index='auto' "
                "(which merges batches the plain way). Nothing was written.",
                setting="rebuild_index",
            )
        try:
            return await self._write(records, mode, batch_size, timeout, rebuild)
        finally:
            self._on_change()

    async def _write(
        self,
        records: Any,
        mode: Literal["upsert", "insert"],
        batch_size: int | None,
        timeout: float | None,
        rebuild: _reupsert.RebuildChoice,
    ) -> int:
        chunks = _chunks(records, batch_size or WRITE_CHUNK)
        prepared = self._prepare(chunks, mode, across=batch_size is None)
        written = 0
        if batch_size is not None:
            # Each batch is validated before its transaction starts, and commits on its own.
            async for batch in prepared:
                written += await self._transaction(mode, [batch], None, timeout, False)
        else:
            # Up to REBUILD_MIN_ROWS records are validated before any connection
            # is taken: enough to know whether a first load is large.
            head: list[_Chunk] = []
            seen = 0
            async for chunk in prepared:
                head.append(chunk)
                seen += len(chunk.rows)
                if seen >= REBUILD_MIN_ROWS:
                    break
            if not head:
                return 0
            written = await self._transaction(mode, head, prepared, timeout, rebuild)
        await self._maybe_analyze(written)
        return written

    async def _prepare(
        self, chunks: AsyncIterator[list[Any]], mode: str, *, across: bool
    ) -> AsyncIterator[_Chunk]:
        """Validate chunk by chunk; ``across``: note ids repeated from earlier chunks.

        An upsert's ``earlier`` may name ids no earlier chunk gave (`SeenIds`:
        its memory stays flat on a long stream); deleting or deduplicating
        those changes nothing. An insert's is exact: it names them in its error.
        """
        seen: set[Any] = set()
        maybe_seen = _seen.SeenIds()
        position = 0
        async for items in chunks:
            models = [self._codec.validate(item, position + j) for j, item in enumerate(items)]
            rows, ids = self._codec.rows(models, position)
            unique = set(ids)
            internal = len(unique) < len(ids)
            earlier: list[Any] = []
            if across and mode == "upsert":
                earlier = maybe_seen.add(unique)
            elif across:
                earlier = [i for i in unique if i in seen] if seen else []
                seen |= unique
            if mode == "insert" and (internal or earlier):
                counts: dict[Any, int] = {}
                for i in ids:
                    counts[i] = counts.get(i, 0) + 1
                repeats = list(dict.fromkeys([i for i, n in counts.items() if n > 1] + earlier))
                raise DuplicateRecordError(
                    f"insert() was given ids more than once: {repeats[:20]}; pass each record "
                    "once (or use upsert(), where the last one wins). Nothing was written.",
                    ids=repeats,
                )
            keys = (
                self._partitions.keys(rows, ids, position)
                if self._partitions is not None
                else set()
            )
            yield _Chunk(rows, ids, position, internal, earlier, keys)
            position += len(items)

    async def _transaction(
        self,
        mode: str,
        head: list[_Chunk],
        rest: AsyncIterator[_Chunk] | None,
        timeout: float | None,
        rebuild: _reupsert.RebuildChoice,
    ) -> int:
        """Write ``head`` then ``rest`` in one transaction; return the rows written."""
        limit = _indexing.statement_limit(timeout)
        size = sum(len(c.rows) for c in head)
        rows = str(size) if rest is None else f"{size}+"  # for the log: a stream may go on
        chunks = _chain(head, rest)
        if self._partitions is not None:
            if rebuild is not False:
                logger.debug("rebuild_index ignored: %r is partitioned", self._spec.name)
            return await self._partitioned(mode, chunks, rows=rows, timeout=limit)
        async with self._pool.acquire() as conn:
            with translating():
                # A first look outside the transaction, so that it holds no lock
                # when the transaction asks for a stronger one (see below).
                row = await conn.fetchrow(
                    f"SELECT NOT EXISTS (SELECT 1 FROM {self._table}) AS empty, "
                    "array(SELECT c.relname::text || ':' || i.indisvalid::text FROM pg_index i "
                    "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam "
                    "WHERE i.indrelid = to_regclass($1) AND a.amname = 'hnsw') AS hnsw, "
                    "(SELECT reltuples FROM pg_class WHERE oid = to_regclass($1)) AS reltuples",
                    self._table,
                    timeout=limit,
                )
                assert row is not None  # noqa: S101 - one row, always
                valid = {n for n, _, ok in (h.rpartition(":") for h in row["hnsw"]) if ok == "true"}
                # A rebuild killed mid-way leaves the collection without its index.
                if _reupsert.needs_repair(self._spec, valid) and await _reupsert.repair(
                    conn, self._spec, timeout=timeout
                ):
                    valid = set(_reupsert.expected(self._spec))
                if not row["empty"] and valid and rebuild is not False and mode == "upsert":
                    return await self._restage(
                        conn, chunks, rebuild, rows=float(row["reltuples"]), timeout=timeout
                    )
                async with conn.transaction():
                    empty: bool = row["empty"]
                    indexes: list[tuple[str, str]] = []
                    if empty:
                        first_rebuild = bool(row["hnsw"]) and size >= REBUILD_MIN_ROWS
                        # The straight COPY needs the table to stay empty of other
                        # writers' rows until commit. A savepoint could catch their
                        # unique violations, but rolling back to it would lose the
                        # chunks of a stream already sent, and one subtransaction per
                        # chunk overflows PostgreSQL's per-backend subxid cache (64)
                        # on large loads, slowing every snapshot on the server. So
                        # lock instead: SHARE ROW EXCLUSIVE waits for writers in
                        # flight and keeps new ones out until commit, and does not
                        # block readers. It is the transaction's first statement (no
                        # snapshot yet, even under REPEATABLE READ) and the first
                        # lock on the table, so it cannot deadlock as an upgrade
                        # would. A rebuild takes ACCESS EXCLUSIVE right away, as
                        # DROP INDEX would: readers of the (empty) collection then
                        # wait for the commit.
                        strength = "ACCESS EXCLUSIVE" if first_rebuild else "SHARE ROW EXCLUSIVE"
                        await conn.execute(
                            f"LOCK TABLE {self._table} IN {strength} MODE", timeout=limit
                        )
                        # Under the lock, the answer holds until commit.
                        empty = await conn.fetchval(
                            f"SELECT NOT EXISTS (SELECT 1 FROM {self._table})", timeout=limit
                        )
                        if empty and first_rebuild:
                            indexes = await _indexing.hnsw_indexes(conn, self._spec)
                    if empty:
                        return await self._load(conn, chunks, indexes, rows=rows, timeout=timeout)
                    return await self._stage_and_merge(conn, mode, chunks, rows=rows, timeout=limit)

    async def _load(
        self,
        conn: AnyConnection,
        chunks: AsyncIterator[_Chunk],
        indexes: list[tuple[str, str]],
        *,
        rows: str,
        timeout: float | None,
    ) -> int:
        """COPY straight into the empty, locked table; drop and rebuild ``indexes`` around it."""
        limit = _indexing.statement_limit(timeout)
        if indexes:
            logger.info(
                "first load of %s rows into the empty collection %r: dropping its HNSW "
                "index(es) %s, loading, then building them again in the same transaction",
                rows,
                self._spec.name,
                ", ".join(name for name, _ in indexes),
            )
            await _indexing.drop_indexes(conn, self._spec, indexes, timeout=timeout)
        else:
            logger.debug("writing %s rows straight into the empty table %s", rows, self._table)
        written = 0
        async for chunk in chunks:
            if chunk.earlier:
                # upsert() repeating ids of an earlier chunk: those rows are this
                # transaction's own (the table was empty and is locked), so
                # replacing them is deleting them before the new COPY.
                status = await conn.execute(
                    f"DELETE FROM {self._table} WHERE {self._id_col} = ANY($1)",
                    chunk.earlier,
                    timeout=limit,
                )
                written -= affected(status)
            records = chunk.last_wins()
            await conn.copy_records_to_table(
                self._spec.table,
                schema_name=self._spec.schema,
                records=records,
                columns=list(self._spec.layout.columns),
                timeout=limit,
            )
            written += len(records)
        if indexes:
            await _indexing.rebuild_indexes(
                conn, self._spec, indexes, rows=written, timeout=timeout
            )
        return written

    async def _stage(
        self,
        conn: AnyConnection,
        chunks: AsyncIterator[_Chunk],
        *,
        timeout: float,
        until_commit: bool = True,
    ) -> tuple[bool, set[Any]]:
        """COPY every chunk into a new staging table; return (ids repeat, partition keys).

        ``until_commit=False``: a temporary table that outlives transactions,
        which the caller drops.
        """
        drop = " ON COMMIT DROP" if until_commit else ""
        await conn.execute(
            f"CREATE TEMP TABLE {self._stage_table} (LIKE {self._table}, {_ORD} bigint){drop}",
            timeout=timeout,
        )
        dedupe = False
        keys: set[Any] = set()
        async for chunk in chunks:
            await conn.copy_records_to_table(
                self._stage_name,
                records=chunk.staged(),
                columns=[*self._spec.layout.columns, _ORD],
                timeout=timeout,
            )
            dedupe = dedupe or chunk.internal or bool(chunk.earlier)
            keys |= chunk.keys
        return dedupe, keys

    def _source(self, *, dedupe: bool) -> str:
        """The staged rows, one per id (the last given) when ids repeat."""
        cols = self._select
        if not dedupe:
            return f"SELECT {cols} FROM {self._stage_table}"
        return (
            f"SELECT DISTINCT ON ({self._id_col}) {cols} FROM {self._stage_table} "
            f"ORDER BY {self._id_col}, {_ORD} DESC"
        )

    async def _stage_and_merge(
        self,
        conn: AnyConnection,
        mode: str,
        chunks: AsyncIterator[_Chunk],
        *,
        rows: str,
        timeout: float,
    ) -> int:
        """COPY into a staging table, then merge it into the table in one statement."""
        logger.debug("writing %s rows to %s through a staging table", rows, self._table)
        dedupe, _ = await self._stage(conn, chunks, timeout=timeout)
        return await self._merge(conn, mode, dedupe=dedupe, timeout=timeout)

    async def _restage(
        self,
        conn: AnyConnection,
        chunks: AsyncIterator[_Chunk],
        rebuild: _reupsert.RebuildChoice,
        *,
        rows: float,
        timeout: float | None,
    ) -> int:
        """An upsert that may rebuild the HNSW index around its merge (`reupsert`).

        Every row is staged first, outside a transaction (the stage is this
        session's own), so that the choice knows how many there are; the merge
        then runs in one transaction, the plain way or between the index's drop
        and its concurrent build.
        """
        limit = _indexing.statement_limit(timeout)
        staged = 0

        async def counted() -> AsyncIterator[_Chunk]:
            nonlocal staged
            async for chunk in chunks:
                staged += len(chunk.rows)
                yield chunk

        async def merge() -> int:
            async with conn.transaction():
                return await self._merge(conn, "upsert", dedupe=dedupe, timeout=limit)

        await conn.execute(f"DROP TABLE IF EXISTS pg_temp.{self._stage_table}", timeout=limit)
        try:
            dedupe, _ = await self._stage(conn, counted(), timeout=limit, until_commit=False)
            if rows < 0:  # never analyzed
                rows = float(await conn.fetchval(f"SELECT count(*) FROM {self._table}"))
            if _reupsert.should_rebuild(rebuild, staged, rows):
                written = await _reupsert.rebuild_around(
                    conn, self._spec, merge, rows=staged, timeout=timeout
                )
                if written is not None:
                    return written
            else:
                logger.debug(
                    "upsert of %d rows into %r (about %d rows): merging the plain way",
                    staged,
                    self._spec.name,
                    rows,
                )
            return await merge()
        finally:
            await _reupsert.shielded(
                lambda: conn.execute(
                    f"DROP TABLE IF EXISTS pg_temp.{self._stage_table}", timeout=limit
                )
            )

    async def _partitioned(
        self, mode: str, chunks: AsyncIterator[_Chunk], *, rows: str, timeout: float
    ) -> int:
        """Write into a partitioned collection: partitions first, then ids, then rows.

        An empty collection is loaded straight (`first_load`). Otherwise, in
        one transaction: COPY into staging; make the partitions the rows
        need (a lock on the parent only when one is missing, taken before any
        row is touched); lock the id registry rows of every staged id (in id
        order, so two writers cannot deadlock) and, in a statement that starts
        after those locks, move the rows whose partition key changed; then
        merge. Whoever writes one id waits for the other's commit, and the row
        ends in exactly one partition.
        """
        assert self._partitions is not None  # noqa: S101 - partitioned collections only
        logger.debug("writing %s rows to partitioned %s", rows, self._table)
        spec = self._spec
        async with self._pool.acquire() as conn:
            with translating():
                empty = await _first_load.looks_empty(conn, spec, timeout=timeout)
                async with conn.transaction():
                    if empty and await _first_load.lock_if_empty(conn, spec, timeout=timeout):
                        return await _first_load.load(
                            conn, spec, self._partitions, chunks, rows=rows, timeout=timeout
                        )
                    dedupe, keys = await self._stage(conn, chunks, timeout=timeout)
                    await self._partitions.make(conn, keys)
                    return await self._merge(conn, mode, dedupe=dedupe, timeout=timeout)

    async def _refuse_archived(self, conn: AnyConnection, source: str, *, timeout: float) -> None:
        """Refuse to write ids whose record is archived: the archive would then hold a twin.

        Raises:
            DuplicateRecordError: Some ids are archived (``ids``); nothing was written.
        """
        table = self._spec.table.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")
        archived = await conn.fetchval(
            "SELECT EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relname LIKE $2)",
            ARCHIVE_SCHEMA,
            table + "\\_%",
            timeout=timeout,
        )
        if not archived:
            return
        registry = qualified(self._spec.schema, registry_name(self._spec))
        key = quote_ident(self._spec.partition_key or "")
        id_col = self._id_col
        found = await conn.fetchval(
            f"SELECT array_agg(s.{id_col}) FROM (SELECT s.{id_col} FROM ({source}) s "
            f"JOIN {registry} r ON r.{id_col} = s.{id_col} WHERE NOT EXISTS (SELECT 1 FROM "
            f"{self._table} t WHERE t.{id_col} = r.{id_col} AND t.{key} = r.{key}) LIMIT 20) s",
            timeout=timeout,
        )
        if found:
            raise DuplicateRecordError(
                f"ids {found} of {self._spec.name!r} are archived; writing them would make a "
                "second record beside the archived one. restore() them first, or use other "
                "ids. Nothing was written.",
                ids=found,
            )

    async def _claim_ids(self, conn: AnyConnection, source: str, *, timeout: float) -> None:
        """Register and lock every staged id; move rows whose partition key changes."""
        registry = qualified(self._spec.schema, registry_name(self._spec))
        key = quote_ident(self._spec.partition_key or "")
        id_col = self._id_col
        await conn.execute(
            f"INSERT INTO {registry} ({id_col}, {key}) SELECT {id_col}, {key} FROM ({source}) s "
            f"ORDER BY {id_col} ON CONFLICT ({id_col}) DO NOTHING",
            timeout=timeout,
        )
        await conn.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {registry} r JOIN ({source}) s "
            f"ON s.{id_col} = r.{id_col} ORDER BY r.{id_col} FOR UPDATE OF r) locked",
            timeout=timeout,
        )
        # A new statement, so a new snapshot: it sees what writers of these ids
        # committed while this transaction waited for their locks.
        await conn.execute(
            f"WITH src AS ({source}), moved AS ("
            f"SELECT r.{id_col} AS id, r.{key} AS old_key FROM {registry} r "
            f"JOIN src ON src.{id_col} = r.{id_col} WHERE r.{key} IS DISTINCT FROM src.{key}), "
            f"gone AS (DELETE FROM {self._table} t USING moved m "
            f"WHERE t.{id_col} = m.id AND t.{key} = m.old_key) "
            f"UPDATE {registry} r SET {key} = src.{key} FROM src "
            f"WHERE r.{id_col} = src.{id_col} AND r.{key} IS DISTINCT FROM src.{key}",
            timeout=timeout,
        )

    async def _merge(self, conn: AnyConnection, mode: str, *, dedupe: bool, timeout: float) -> int:
        cols = self._select
        id_col = self._id_col
        source = self._source(dedupe=dedupe)
        partitioned = self._partitions is not None
        # The ids that exist: a partitioned table's are in its registry.
        ids_table = (
            qualified(self._spec.schema, registry_name(self._spec)) if partitioned else self._table
        )
        if mode == "insert":
            existing = await conn.fetchval(
                f"SELECT array_agg(s.{id_col} ORDER BY s.{_ORD}) FROM {self._stage_table} s "
                f"JOIN {ids_table} t ON t.{id_col} = s.{id_col}",
                timeout=timeout,
            )
            if existing:
                raise DuplicateRecordError(
                    f"{len(existing)} id(s) already exist in {self._spec.name!r}: {existing[:20]}; "
                    "use upsert() to replace them. Nothing was written.",
                    ids=existing,
                )
            # An id inserted by another session just now is a unique violation,
            # which translating() (in _transaction) makes a DuplicateRecordError.
            if partitioned:
                key = quote_ident(self._spec.partition_key or "")
                await conn.execute(
                    f"INSERT INTO {ids_table} ({id_col}, {key}) "
                    f"SELECT {id_col}, {key} FROM ({source}) s ORDER BY {id_col}",
                    timeout=timeout,
                )
            status = await conn.execute(
                f"INSERT INTO {self._table} ({cols}) {source}", timeout=timeout
            )
            return affected(status)
        if partitioned:
            await self._refuse_archived(conn, source, timeout=timeout)
            await self._claim_ids(conn, source, timeout=timeout)
        primary_key = self._spec.primary_key
        updates = ", ".join(
            f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}"
            for c in self._spec.layout.columns
            if c not in primary_key
        )
        conflict = ", ".join(quote_ident(c) for c in primary_key)
        status = await conn.execute(
            f"INSERT INTO {self._table} ({cols}) {source} "
            f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}",
            timeout=timeout,
        )
        return affected(status)

    async def delete(
        self,
        ids: Iterable[Any] | None,
        *,
        where: Mapping[str, Any] | None,
        allow_all: bool,
        timeout: float | None,
    ) -> int:
        """Delete by ids or by filter; return the rows deleted (see `Collection.delete`)."""
        self._pool.check_open()
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
            sql, params = f"DELETE FROM {self._table} WHERE {self._id_col} = ANY($1)", [keys]
        else:
            compiled = compile_filter(where, self._spec.layout.filterable)
            if compiled.matches_all and not allow_all:
                raise FilterError(
                    f"where={where!r} matches every record of {self._spec.name!r}; pass "
                    "allow_all=True to delete them all"
                )
            sql, params = f"DELETE FROM {self._table} WHERE {compiled.sql}", compiled.params
        if self._partitions is not None:
            # The registry's row goes with the record, in the same statement.
            registry = qualified(self._spec.schema, registry_name(self._spec))
            sql = (
                f"WITH gone AS ({sql} RETURNING {self._id_col}), "
                f"unregistered AS (DELETE FROM {registry} r USING gone "
                f"WHERE r.{self._id_col} = gone.{self._id_col}) "
                f"SELECT count(*) FROM gone"
            )
        try:
            async with self._pool.acquire() as conn:
                with translating():
                    if self._partitions is not None:
                        return int(await conn.fetchval(sql, *params, timeout=timeout))
                    status = await conn.execute(sql, *params, timeout=timeout)
        finally:
            self._on_change()
        return affected(status)

    async def analyze(self, *, timeout: float | None) -> None:
        """``ANALYZE`` the table: fresh statistics for the planner and the searcher."""
        async with self._pool.acquire() as conn:
            with translating():
                await conn.execute(f"ANALYZE {self._table}", timeout=timeout)
        self._on_change()

    async def _maybe_analyze(self, written: int) -> None:
        """Refresh planner statistics after a large load, so filtered search estimates well.

        Autovacuum does this too, but later; a search right after a first bulk
        load would plan with no statistics. Skipped (not waited for) when
        another session holds the table, e.g. a concurrent index build.
        """
        if written < _ANALYZE_MIN_ROWS:
            return
        try:
            async with self._pool.transaction() as conn:
                rows = await conn.fetchval(
                    "SELECT reltuples FROM pg_class WHERE oid = to_regclass($1)", self._table
                )
                if rows is not None and rows >= 0 and written < 0.2 * rows:
                    return
                await conn.execute("SELECT set_config('lock_timeout', '100ms', true)")
                await conn.execute(f"ANALYZE {self._table}")
        except LockTimeoutError:
            logger.debug("skipped ANALYZE of %s: the table is busy", self._table)
