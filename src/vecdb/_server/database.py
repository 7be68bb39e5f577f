"""`Database`: the handle `vecdb.connect()` returns — pool, lifecycle, migrations, collections."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import time
import warnings
from collections.abc import AsyncIterator, Generator, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

import anyio

from .._collections import collection as _collection
from .._collections.catalog import CollectionInfo
from .._collections.collection import DEFAULT_INDEX, Collection, M
from .._config import redact_dsn
from .._errors import DatabaseClosedError, PoolTimeoutError, translating
from .._migrate.engine import MigrationStatus, Migrator
from .._migrate.state import HistoryEvent
from .._schema.spec import HNSW, ForeignKey, Metric, Storage
from .._typing import Pool, PoolConnection
from .pool import PoolStats

if TYPE_CHECKING:
    from .._config import PoolConfig
    from .embedded import EmbeddedServer

__all__ = ["Database", "Health", "Migrations"]

IsolationLevel = Literal["read_committed", "repeatable_read", "serializable"]


class _State(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


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

    def __init__(self, database: Database, migrator: Migrator) -> None:
        self._database = database
        self._migrator = migrator

    async def status(self) -> list[MigrationStatus]:
        """Every known migration per source: applied or pending, when, checksum, drift."""
        self._database._check_open()
        return await self._migrator.status()

    async def plan(self, to: int | None = None, source: str | None = None) -> list[MigrationStatus]:
        """The migrations ``upgrade(to, source)`` would run, in order; applies nothing."""
        self._database._check_open()
        return await self._migrator.plan(to, source)

    async def history(self) -> list[HistoryEvent]:
        """Every event (applied, rolled back, failed, baselined, repaired), oldest first."""
        self._database._check_open()
        return await self._migrator.history()

    async def invalid_indexes(self) -> list[str]:
        """INVALID indexes (``schema.name``) left by failed concurrent builds."""
        self._database._check_open()
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
        self._database._check_open()
        applied = await self._migrator.upgrade(to, source)
        if applied:
            await self._database._schema_changed()
        return applied

    async def rollback(self, to: int, source: str | None = None) -> list[MigrationStatus]:
        """Roll ``source`` back to version ``to`` (0: everything), newest first.

        ``source`` may be omitted when the application has exactly one source.

        Raises:
            IrreversibleMigrationError: A migration on the path has no ``down()``;
                nothing was changed.
        """
        self._database._check_open()
        reverted = await self._migrator.rollback(to, source)
        if reverted:
            await self._database._schema_changed()
        return reverted

    async def repair(self) -> list[MigrationStatus]:
        """Accept changed code of applied migrations; each is logged as ``repaired``."""
        self._database._check_open()
        return await self._migrator.repair()

    async def baseline(self, to: int, source: str | None = None) -> list[MigrationStatus]:
        """Record versions 1..``to`` of ``source`` as applied without running them."""
        self._database._check_open()
        return await self._migrator.baseline(to, source)


class _Acquire:
    """``db.acquire()``: ``async with`` it, or ``await`` it and later ``await db.release(conn)``."""

    __slots__ = ("_conn", "_database", "_timeout")

    def __init__(self, database: Database, timeout: float | None) -> None:
        self._database = database
        self._timeout = timeout
        self._conn: PoolConnection | None = None

    def __await__(self) -> Generator[Any, None, PoolConnection]:
        return self._database._acquire(self._timeout).__await__()

    async def __aenter__(self) -> PoolConnection:
        self._conn = await self._database._acquire(self._timeout)
        return self._conn

    async def __aexit__(self, *exc: object) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._database.release(conn)


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
        pool: Pool,
        pool_config: PoolConfig,
        migrator: Migrator,
        dsn: str,
        embedded: EmbeddedServer | None,
    ) -> None:
        self._pool = pool
        self._pool_config = pool_config
        self._dsn = dsn
        self._embedded = embedded
        self._state = _State.OPEN
        self._migrations = Migrations(self, migrator)
        self._waiting = 0
        self._acquisitions = 0
        self._timeouts = 0
        self._wait_total = 0.0
        self._wait_max = 0.0
        self._retired = 0

    def __repr__(self) -> str:
        where = f"embedded {self._embedded.data_dir}" if self._embedded else redact_dsn(self._dsn)
        return f"<vecdb.Database {self._state.value} {where}>"

    # -- lifecycle ----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether `close()` was called."""
        return self._state is _State.CLOSED

    @property
    def embedded(self) -> EmbeddedServer | None:
        """The embedded server in use, or ``None`` for a DSN."""
        return self._embedded

    @property
    def pool_config(self) -> PoolConfig:
        """The pool's configuration."""
        return self._pool_config

    @property
    def migrations(self) -> Migrations:
        """Migration status, history, upgrade, rollback and repair."""
        self._check_open()
        return self._migrations

    def _check_open(self) -> None:
        if self._state is _State.CLOSED:
            raise DatabaseClosedError(
                "this Database is closed and cannot be reopened; call vecdb.connect() again"
            )

    async def close(self, *, timeout: float | None = 10.0) -> None:
        """Close the pool, waiting up to ``timeout`` seconds for connections in use.

        Safe to call more than once. Connections still busy after the timeout
        are terminated.
        """
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        with anyio.CancelScope(shield=True):
            try:
                with anyio.fail_after(timeout):
                    await self._pool.close()
            except TimeoutError:
                self._pool.terminate()

    async def __aenter__(self) -> Self:
        self._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if getattr(self, "_state", _State.CLOSED) is _State.OPEN:
            _warn(
                f"unclosed {self!r}: call `await db.close()` or use `async with vecdb.connect()`",
                ResourceWarning,
                source=self,
                stacklevel=1,
            )

    async def _schema_changed(self) -> None:
        # Cached plans and codecs may predate the new schema (asyncpg #103):
        # renew every connection as it is next released.
        await self._pool.expire_connections()

    # -- connections ----------------------------------------------------------------

    def acquire(self, *, timeout: float | None = None) -> _Acquire:
        """A pooled connection: ``async with db.acquire() as conn`` (or ``await``, then `release`).

        Args:
            timeout: Seconds to wait for a free connection; default
                ``PoolConfig.acquire_timeout``.

        Raises:
            PoolTimeoutError: No connection became free in time.
            DatabaseClosedError: The database was closed.
        """
        self._check_open()
        return _Acquire(self, timeout)

    async def _acquire(self, timeout: float | None) -> PoolConnection:
        self._check_open()
        budget = self._pool_config.acquire_timeout if timeout is None else timeout
        started = time.perf_counter()
        self._waiting += 1
        try:
            with translating():
                try:
                    conn: PoolConnection
                    if self._pool.get_idle_size():
                        # A connected, idle connection is there: taking it cannot
                        # wait, and a timer per acquire is a visible cost on a
                        # 1 ms query. (asyncpg's pool is LIFO: the newest idle one.)
                        conn = await self._pool.acquire()
                    else:
                        # asyncio.timeout, not acquire(timeout=): asyncpg implements
                        # the latter with wait_for, a task per acquire.
                        async with asyncio.timeout(budget):
                            conn = await self._pool.acquire()
                except TimeoutError:
                    # Before translating(): a pool timeout is not a query timeout.
                    self._timeouts += 1
                    raise self._pool_timeout(budget) from None
        finally:
            self._waiting -= 1
        waited = (time.perf_counter() - started) * 1000
        self._acquisitions += 1
        self._wait_total += waited
        self._wait_max = max(self._wait_max, waited)
        return conn

    def _pool_timeout(self, budget: float) -> PoolTimeoutError:
        stats = self.pool_stats()
        return PoolTimeoutError(
            f"no database connection became free within {budget:g}s "
            f"({stats.in_use} in use of max_size={stats.max_size}, {stats.waiting} waiting). "
            "Raise PoolConfig.max_size / acquire_timeout, or hold connections for less time."
        )

    async def release(self, conn: PoolConnection) -> None:
        """Return a connection obtained with ``await db.acquire()``.

        A cancelled task still returns its connection (asyncpg shields the
        release); a connection past ``max_lifetime`` is closed instead.
        """
        lifetime = self._pool_config.max_lifetime
        born = getattr(conn, "vecdb_born", None)
        if lifetime is not None and born is not None and time.monotonic() - born > lifetime:
            self._retired += 1
            conn.terminate()
        await self._pool.release(conn)

    @contextlib.asynccontextmanager
    async def transaction(
        self,
        *,
        isolation: IsolationLevel | None = None,
        readonly: bool = False,
        timeout: float | None = None,
    ) -> AsyncIterator[PoolConnection]:
        """A pooled connection inside a transaction: commits on success, rolls back on error.

        Example:
            >>> async with db.transaction() as conn:  # doctest: +SKIP
            ...     await conn.execute("UPDATE ...")
        """
        async with self.acquire(timeout=timeout) as conn:
            with translating():
                async with conn.transaction(isolation=isolation, readonly=readonly):
                    yield conn

    def pool_stats(self) -> PoolStats:
        """Size, idle, in use and waiting connections, and acquisition counters."""
        size = self._pool.get_size()
        idle = self._pool.get_idle_size()
        return PoolStats(
            size=size,
            idle=idle,
            in_use=size - idle,
            waiting=self._waiting,
            min_size=self._pool.get_min_size(),
            max_size=self._pool.get_max_size(),
            acquisitions=self._acquisitions,
            timeouts=self._timeouts,
            wait_ms_total=self._wait_total,
            wait_ms_max=self._wait_max,
            retired=self._retired,
        )

    async def health(self, *, timeout: float | None = 5.0) -> Health:
        """Check the server answers; report versions, recovery state and the pool.

        Raises:
            QueryTimeoutError: The server did not answer within ``timeout``.
            ConnectError: The server cannot be reached.
        """
        started = time.perf_counter()
        async with self.acquire(timeout=timeout) as conn:
            with translating():
                row = await conn.fetchrow(
                    "SELECT current_setting('server_version') AS server_version, "
                    "(SELECT extversion FROM pg_extension WHERE extname = 'vector') AS pgvector, "
                    "pg_is_in_recovery() AS in_recovery",
                    timeout=timeout,
                )
        assert row is not None  # noqa: S101 - a SELECT without FROM returns one row
        return Health(
            ok=True,
            latency_ms=(time.perf_counter() - started) * 1000,
            server_version=row["server_version"],
            pgvector_version=row["pgvector"],
            in_recovery=row["in_recovery"],
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
            timeout: Seconds to wait for a pooled connection.

        Raises:
            ConfigError: A bad name, field type, metric, storage, index or foreign key.
            SchemaMismatchError: The collection exists with another definition;
                ``differences`` lists each one and how to resolve it.
            CollectionNotFoundError: A foreign key names a missing collection.
        """
        return await _collection.open_collection(
            self,
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
        )

    async def collections(self, *, timeout: float | None = None) -> list[CollectionInfo]:
        """Every collection: name, table, model and stored definition, by name."""
        self._check_open()
        return await _collection.list_collections(self, timeout)

    async def drop_collection(self, name: str, *, timeout: float | None = None) -> None:
        """Drop a collection: its table and catalog row, in one transaction.

        Raises:
            CollectionNotFoundError: No collection has that name.
            ConfigError: Another collection references it by foreign key.
        """
        self._check_open()
        await _collection.drop_collection(self, name, timeout)
