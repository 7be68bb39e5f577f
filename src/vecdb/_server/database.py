"""`Database`: the handle `vecdb.connect()` returns — pool, lifecycle, migrations, collections."""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from .._collections import adopt as _adopt
from .._collections import collection as _collection
from .._collections.catalog import CollectionInfo
from .._collections.collection import DEFAULT_INDEX, Collection
from .._config import check_int, redact_dsn
from .._errors import translating
from .._migrate.engine import MigrationStatus, Migrator
from .._migrate.state import HistoryEvent
from .._monitor import collect as _monitor
from .._monitor.stats import Stats
from .._schema.partitioning import Partitioning
from .._schema.spec import HNSW, ForeignKey, Metric, Storage
from .._typing import Connections, M, PoolConnection
from . import capabilities
from .capabilities import Capabilities
from .pool import Acquire, ConnectionPool, IsolationLevel, PoolStats
from .replicas import ReplicaRouter, ReplicaStatus

if TYPE_CHECKING:
    from .._config import PoolConfig
    from .embedded import EmbeddedServer

__all__ = ["Database", "Health", "Migrations", "connections"]


@dataclasses.dataclass(frozen=True, slots=True)
class Health:
    """The result of ``db.health()``.

    Attributes:
        ok: The server answered.
        latency_ms: Round trip of a trivial query, including acquiring a connection.
        server_version: PostgreSQL's version string (e.g. ``"18.6"``).
        pgvector_version: The installed ``vector`` extension's version.
        in_recovery: Whether the server is a standby.
        pool: The pool at the time of the check.
    """

    ok: bool
    latency_ms: float
    server_version: str
    pgvector_version: str | None
    in_recovery: bool
    pool: PoolStats


class Migrations:
    """``db.migrations``: inspect and change the schema's migration state.

    Operations run on a dedicated connection under the migration lock; after
    any change the pool's connections are renewed so that no cached plan
    predates the schema.
    """

    def __init__(
        self,
        pool: ConnectionPool,
        migrator: Migrator,
        on_change: Callable[[], Awaitable[None]],
    ) -> None:
        self._pool = pool
        self._migrator = migrator
        self._on_change = on_change

    async def status(self) -> list[MigrationStatus]:
        """Every known migration per source: applied or pending, when, checksum, drift."""
        self._pool.check_open()
        with translating():
            return await self._migrator.status()

    async def plan(self, to: int | None = None, source: str | None = None) -> list[MigrationStatus]:
        """The migrations ``upgrade(to, source)`` would run, in order; applies nothing."""
        self._pool.check_open()
        with translating():
            return await self._migrator.plan(to, source)

    async def history(self) -> list[HistoryEvent]:
        """Every event (applied, rolled back, failed, baselined, repaired), oldest first."""
        self._pool.check_open()
        with translating():
            return await self._migrator.history()

    async def invalid_indexes(self) -> list[str]:
        """INVALID indexes (``schema.name``) left by failed concurrent builds."""
        self._pool.check_open()
        with translating():
            return await self._migrator.invalid_indexes()

    async def upgrade(
        self, to: int | None = None, source: str | None = None
    ) -> list[MigrationStatus]:
        """Apply pending migrations; ``to`` (with ``source``) stops at a version.

        Returns:
            The migrations this call applied.

        Raises:
            MigrationError: A migration failed (it was rolled back; later ones did not run).
            MigrationLockTimeout: Another session held the lock for longer than ``lock_wait``.
        """
        self._pool.check_open()
        with translating():
            applied = await self._migrator.upgrade(to, source)
        if applied:
            await self._on_change()
        return applied

    async def rollback(self, to: int, source: str | None = None) -> list[MigrationStatus]:
        """Roll ``source`` back to version ``to`` (0: everything), newest first.

        ``source`` may be omitted when the application has exactly one source.

        Raises:
            IrreversibleMigrationError: A migration on the path has no ``down()``;
                nothing was changed.
        """
        self._pool.check_open()
        with translating():
            reverted = await self._migrator.rollback(to, source)
        if reverted:
            await self._on_change()
        return reverted

    async def repair(self) -> list[MigrationStatus]:
        """Accept changed code of applied migrations; each is logged as ``repaired``."""
        self._pool.check_open()
        with translating():
            return await self._migrator.repair()

    async def baseline(self, to: int, source: str | None = None) -> list[MigrationStatus]:
        """Record versions 1..``to`` of ``source`` as applied without running them."""
        self._pool.check_open()
        with translating():
            return await self._migrator.baseline(to, source)


class Database:
    """A vecdb database: a connection pool, migrations and collections.

    Made by `vecdb.connect()`; close it with ``await db.close()`` or use
    ``async with vecdb.connect() as db``. Once closed it cannot be reopened.

    Example:
        >>> async with vecdb.connect() as db:  # doctest: +SKIP
        ...     async with db.acquire() as conn:
        ...         await conn.fetchval("SELECT 1")
    """

    def __init__(
        self,
        *,
        pool: ConnectionPool,
        capabilities: Capabilities,
        migrator: Migrator,
        dsn: str,
        embedded: EmbeddedServer | None,
        replicas: ReplicaRouter | None = None,
    ) -> None:
        self._pool = pool
        self._replicas = replicas
        # What collections draw connections from: reads go to replicas when there are any.
        self._connections: Connections = replicas if replicas is not None else pool
        self._capabilities = capabilities
        self._dsn = dsn
        self._embedded = embedded
        self._migrations = Migrations(pool, migrator, self._schema_changed)

    def __repr__(self) -> str:
        where = f"embedded {self._embedded.data_dir}" if self._embedded else redact_dsn(self._dsn)
        return f"<vecdb.Database {'closed' if self.closed else 'open'} {where}>"

    # -- lifecycle ----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether `close()` was called."""
        return self._pool.closed

    @property
    def embedded(self) -> EmbeddedServer | None:
        """The embedded server in use, or ``None`` for a DSN."""
        return self._embedded

    @property
    def pool_config(self) -> PoolConfig:
        """The pool's configuration."""
        return self._pool.config

    @property
    def migrations(self) -> Migrations:
        """Migration status, history, upgrade, rollback and repair."""
        self._pool.check_open()
        return self._migrations

    async def close(self, *, timeout: float | None = 10.0) -> None:
        """Close the pool, waiting up to ``timeout`` seconds for connections in use.

        Safe to call more than once. Connections still busy after the timeout
        are terminated.
        """
        if self._replicas is not None:
            await self._replicas.close(timeout=timeout)  # the primary's pool too
        await self._pool.close(timeout=timeout)

    async def __aenter__(self) -> Self:
        self._pool.check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __del__(self, _warn: Any = warnings.warn) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None and not pool.closed:
            _warn(
                f"unclosed {self!r}: call `await db.close()` or use `async with vecdb.connect()`",
                ResourceWarning,
                source=self,
                stacklevel=1,
            )

    async def _schema_changed(self) -> None:
        """After migrations changed the schema: renew connections, read the server again."""
        await self._connections.schema_changed()
        with translating():
            self._capabilities = await self._pool.capabilities()

    # -- connections ----------------------------------------------------------------

    def acquire(
        self, *, timeout: float | None = None, readonly: bool = False
    ) -> Acquire | AbstractAsyncContextManager[PoolConnection]:
        """A pooled connection: ``async with db.acquire() as conn`` (or ``await``, then `release`).

        Args:
            timeout: Seconds to wait for a free connection; default
                ``PoolConfig.acquire_timeout``.
            readonly: A replica's connection, for reads of your own (with
                ``connect(replicas=...)``; else the primary's). See docs/replicas.md.

        Raises:
            PoolTimeoutError: No connection became free in time.
            DatabaseClosedError: The database was closed.
        """
        if self._replicas is not None:  # a write keeps its WAL position for read_your_writes
            return self._replicas.acquire(timeout=timeout, readonly=readonly)
        return self._pool.acquire(timeout=timeout)

    async def release(self, conn: PoolConnection) -> None:
        """Return a connection obtained with ``await db.acquire()``.

        A cancelled task still returns its connection (asyncpg shields the
        release); a connection past ``max_lifetime`` is closed instead.
        """
        await (self._replicas or self._pool).release(conn)

    def transaction(
        self,
        *,
        isolation: IsolationLevel | None = None,
        readonly: bool = False,
        timeout: float | None = None,
    ) -> AbstractAsyncContextManager[PoolConnection]:
        """A pooled connection inside a transaction: commits on success, rolls back on error.

        Example:
            >>> async with db.transaction() as conn:  # doctest: +SKIP
            ...     await conn.execute("UPDATE ...")
        """
        if self._replicas is not None:  # kept for read_your_writes
            return self._replicas.transaction(
                isolation=isolation, readonly=readonly, timeout=timeout
            )
        return self._pool.transaction(isolation=isolation, readonly=readonly, timeout=timeout)

    async def replicas(self) -> list[ReplicaStatus]:
        """Check every replica now: in rotation or not (and why), lag in bytes and seconds.

        Empty without ``connect(replicas=...)``.
        """
        self._pool.check_open()
        return [] if self._replicas is None else await self._replicas.refresh()

    def pool_stats(self) -> PoolStats:
        """Size, idle, in use and waiting connections, and acquisition counters."""
        return self._pool.stats()

    async def stats(self, *, top: int = 10, timeout: float | None = None) -> Stats:
        """Everything to see what is slow, without writing a catalog query.

        The pool (with acquire-wait percentiles), the server (versions, uptime,
        connections, cache hit ratio, size, deadlocks, temporary files), every
        collection (rows, bytes by kind, dead rows, vacuum and analyze, scans,
        partitions), this process's operations (calls, errors, p50/p95/p99 per
        operation, collection and search strategy), the ``top`` statements of
        ``pg_stat_statements`` (empty, with the reason, where it is absent), and
        each read replica, checked now as by `replicas` (in rotation, lag in
        seconds and bytes). Read-only; see `docs/operations.md`.

        Example:
            >>> stats = await db.stats()  # doctest: +SKIP
            >>> print(json.dumps(stats.to_dict(), indent=2))

        Args:
            top: How many statements (0..1000), slowest in total first.
            timeout: Seconds to wait for a pooled connection.

        Raises:
            ConfigError: ``top`` out of range.
            DatabaseClosedError: The database was closed.
        """
        check_int(top, 0, _monitor.MAX_TOP, name="top")  # before the replicas are checked
        replicas = await self.replicas()
        return await _monitor.gather(self._pool, top=top, timeout=timeout, replicas=replicas)

    async def health(self, *, timeout: float | None = 5.0) -> Health:
        """Check the server answers; report versions, recovery state and the pool.

        Raises:
            QueryTimeoutError: The server did not answer within ``timeout``.
            ConnectError: The server cannot be reached.
        """
        started = time.perf_counter()
        async with self.acquire(timeout=timeout) as conn:
            with translating():
                caps = await capabilities.read(conn, timeout=timeout)
        return Health(
            ok=True,
            latency_ms=(time.perf_counter() - started) * 1000,
            server_version=caps.server_version,
            pgvector_version=caps.pgvector_version,
            in_recovery=caps.in_recovery,
            pool=self.pool_stats(),
        )

    # -- collections ----------------------------------------------------------------

    async def collection(
        self,
        name: str,
        model: type[M],
        *,
        dim: int | None = None,
        metric: Metric = "cosine",
        storage: Storage = "vector",
        index: HNSW | None = DEFAULT_INDEX,
        filterable: Iterable[str] = (),
        foreign_keys: Mapping[str, ForeignKey] | None = None,
        evolve: bool = False,
        schema: str = "public",
        partition: Partitioning | None = None,
        timeout: float | None = None,
    ) -> Collection[M]:
        """Create a collection, or open it and check its definition.

        Safe to call from several tasks or processes at once: creation is
        serialised on the collection's name, and every caller gets the same table.

        Example:
            >>> class Chunk(vecdb.Record):
            ...     id: int
            ...     doc_id: str
            ...     text: str
            ...     embedding: vecdb.Vector
            >>> chunks = await db.collection("chunks", Chunk, dim=384, metric="cosine",
            ...                              filterable=("doc_id",))  # doctest: +SKIP

        Args:
            name: The collection (and table) name: ``[a-z_][a-z0-9_]*``, at most 48 characters.
            model: The `Record` subclass; its fields become typed columns.
            dim: The dimension of vector fields that do not declare `Dim`.
            metric: ``"cosine"``, ``"l2"``, ``"inner_product"`` or ``"l1"``.
            storage: ``"vector"`` (float32) or ``"halfvec"`` (float16: half the space).
            index: ``vecdb.HNSW(m=, ef_construction=)``, or ``None`` for exact
                search only; default ``HNSW()`` (m=16, ef_construction=64).
            filterable: Fields to index for filters (B-tree; GIN for arrays and
                jsonb). Every declared field can be filtered; these are fast.
            foreign_keys: Field name to `ForeignKey` on another collection's id.
            evolve: On open, add new optional fields (``ALTER TABLE ... ADD
                COLUMN``) and create/drop filter indexes; never anything destructive.
            schema: The PostgreSQL schema of the table.
            partition: ``vecdb.TimePartitions(field, interval=, premake=)`` (RANGE
                partitions by a required datetime or date field) or
                ``vecdb.ValuePartitions(field)`` (one LIST partition per value);
                see `docs/partitions.md`. Default: one table.
            timeout: Seconds to wait for a pooled connection.

        Raises:
            ConfigError: A bad name, field type, metric, storage, index or foreign key.
            SchemaMismatchError: The collection exists with another definition;
                ``differences`` lists each one and how to resolve it.
            CollectionNotFoundError: A foreign key names a missing collection.
        """
        return await _collection.open_collection(
            self._connections,
            name,
            model,
            dim=dim,
            metric=metric,
            storage=storage,
            index=index,
            filterable=filterable,
            foreign_keys=foreign_keys,
            evolve=evolve,
            schema=schema,
            timeout=timeout,
            iterative=self._capabilities.iterative_scan,
            partition=partition,
        )

    async def adopt(
        self,
        table: str,
        model: type[M],
        *,
        vector_field: str = "embedding",
        id_field: str = "id",
        schema: str = "public",
        name: str | None = None,
        metric: Metric | None = None,
        timeout: float | None = None,
    ) -> Collection[M]:
        """Register an existing pgvector table as a collection, without copying a row.

        The table's columns are checked against the model (a field per column
        it uses, same types, the primary key, the vector's dimension); any
        difference fails with all of them and changes nothing. Otherwise the only
        write is the catalog row: no DDL, no index. An existing HNSW index on the
        vector column is recorded (``collection.spec["index"]``, and its metric);
        without one, a warning says that searches are exact until
        ``create_index()``. Calling it again opens the adopted collection.

        Example:
            >>> class Doc(vecdb.Record):
            ...     id: str
            ...     vec: vecdb.Vector
            ...     metadata: dict[str, Any]
            >>> docs = await db.adopt(
            ...     "docs", Doc, vector_field="vec", schema="vecs"
            ... )  # doctest: +SKIP

        Args:
            table: The existing table.
            model: The `Record` subclass; its field names are the column names.
            vector_field: The vector column (and the model's field of that name).
            id_field: The primary key column (and the model's field of that name).
            schema: The table's schema.
            name: The collection's name (default: the table's).
            metric: The distance; default the HNSW index's, else ``"cosine"``.
            timeout: Seconds to wait for a pooled connection.

        Raises:
            SchemaMismatchError: The table has no vector column, another dimension,
                or columns that differ from the model; ``differences`` lists each.
            ConfigError: No such table, a partitioned one, a bad name, or a name
                taken by another collection.
        """
        return await _adopt.adopt(
            self._connections,
            table,
            model,
            vector_field=vector_field,
            id_field=id_field,
            schema=schema,
            name=name,
            metric=metric,
            timeout=timeout,
            iterative=self._capabilities.iterative_scan,
        )

    async def collections(self, *, timeout: float | None = None) -> list[CollectionInfo]:
        """Every collection: name, table, model and stored definition, by name."""
        return await _collection.list_collections(self._connections, timeout)

    async def drop_collection(self, name: str, *, timeout: float | None = None) -> None:
        """Drop a collection: its table and catalog row, in one transaction.

        Raises:
            CollectionNotFoundError: No collection has that name.
            ConfigError: Another collection references it by foreign key.
        """
        await _collection.drop_collection(self._connections, name, timeout)


def connections(db: Database) -> ConnectionPool:
    """The pool behind ``db``, for the CLI's commands that work below the collection API."""
    return db._pool
