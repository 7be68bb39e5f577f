"""vecdb's connection pool: asyncpg's pool, with a lifecycle, counters and retirement.

`ConnectionPool` owns everything about handing out connections: acquiring
with a timeout (and a clear `PoolTimeoutError`), the counters behind
`PoolStats`, retiring connections past ``max_lifetime``, transactions,
renewing every connection after a schema change, and closing. `Database`
and the collections use it; neither touches asyncpg's pool directly.

The pool is created only once migrations have committed, so that the codec
registration sees the ``vector``/``halfvec`` types and no prepared statement
predates the schema (asyncpg #103, pgvector-python #33).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Generator
from typing import Any, Literal

import anyio
import asyncpg

from .._config import PoolConfig
from .._errors import (
    DRIVER_ERRORS,
    ConnectionLostError,
    DatabaseClosedError,
    PoolTimeoutError,
    translating,
)
from .._monitor.histogram import Histogram
from .._monitor.recorder import Monitor
from .._search import session as _session
from .._typing import Connection, Pool, PoolConnection
from . import capabilities
from . import codecs as _codecs
from .capabilities import Capabilities

__all__ = [
    "Acquire",
    "ConnectionPool",
    "IsolationLevel",
    "PoolStats",
    "PooledConnection",
    "create_pool",
    "server_settings",
]

logger = logging.getLogger("vecdb.pool")

IsolationLevel = Literal["read_committed", "repeatable_read", "serializable"]


class PooledConnection(Connection):
    """A connection that knows its age, so the pool can retire it after ``max_lifetime``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.vecdb_born = time.monotonic()
        self.vecdb_session = _session.Session()

    def _cleanup(self) -> None:
        # asyncpg (0.32) runs this when the connection is lost, but leaves a COPY
        # that waits for the socket to drain (``writing_allowed``) waiting: for its
        # whole timeout, or for ever. Waking it makes the COPY fail now, with the
        # connection's loss, as every other statement does.
        writing = getattr(getattr(self, "_protocol", None), "writing_allowed", None)
        if writing is not None:
            writing.set()
        super()._cleanup()  # type: ignore[misc]


@dataclasses.dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of the pool, from ``db.pool_stats()``.

    Attributes:
        size: Open connections.
        idle: Open connections not in use.
        in_use: Connections handed out.
        waiting: Tasks waiting for a connection right now.
        min_size: The configured minimum.
        max_size: The configured maximum.
        acquisitions: Connections handed out since the pool opened.
        timeouts: Acquires that gave up after ``acquire_timeout``.
        wait_ms_total: Time spent waiting for a connection, summed over acquisitions.
        wait_ms_max: The longest single wait.
        retired: Connections closed because they outlived ``max_lifetime``.
        wait_ms_p50: The median wait for a connection (from a histogram of
            buckets at most 14% wide).
        wait_ms_p99: The 99th percentile wait.
    """

    size: int
    idle: int
    in_use: int
    waiting: int
    min_size: int
    max_size: int
    acquisitions: int
    timeouts: int
    wait_ms_total: float
    wait_ms_max: float
    retired: int
    wait_ms_p50: float = 0.0
    wait_ms_p99: float = 0.0

    @property
    def wait_ms_mean(self) -> float:
        """Mean wait per acquisition: near zero when the pool is sized right."""
        return self.wait_ms_total / self.acquisitions if self.acquisitions else 0.0


def server_settings(config: PoolConfig) -> dict[str, str]:
    """The ``SET`` values every pooled connection starts with."""
    settings = {"application_name": config.application_name}
    if config.statement_timeout is not None:
        settings["statement_timeout"] = f"{int(config.statement_timeout * 1000)}ms"
    settings.update(config.server_settings)
    return settings


async def _init(conn: Connection) -> None:
    schema = await conn.fetchval(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'vector'"
    )
    if schema is not None:
        await _codecs.register(conn, schema=schema)


async def create_pool(
    dsn: str, config: PoolConfig, monitor: Monitor | None = None
) -> ConnectionPool:
    """Open the pool described by ``config`` (``min_size`` connections up front)."""
    # Searches keep their settings on the connection between holders (see
    # _search/session.py); behind PgBouncer they use SET LOCAL and asyncpg's reset.
    hooks: dict[str, Any] = {}
    if not config.pgbouncer:
        hooks = {"setup": _session.setup, "reset": _session.reset}
    pool: Pool = await asyncpg.create_pool(
        dsn,
        min_size=config.min_size,
        max_size=config.max_size,
        max_inactive_connection_lifetime=config.max_idle,
        command_timeout=config.command_timeout,
        statement_cache_size=config.statement_cache_size,
        server_settings=server_settings(config),
        connection_class=PooledConnection,
        init=_init,
        **hooks,
    )
    return ConnectionPool(pool, config, monitor)


class Acquire:
    """``pool.acquire()``: ``async with`` it, or ``await`` it, then ``await pool.release(conn)``."""

    __slots__ = ("_conn", "_pool", "_timeout")

    def __init__(self, pool: ConnectionPool, timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._conn: PoolConnection | None = None

    def __await__(self) -> Generator[Any, None, PoolConnection]:
        return self._pool._acquire(self._timeout).__await__()

    async def __aenter__(self) -> PoolConnection:
        self._conn = await self._pool._acquire(self._timeout)
        return self._conn

    async def __aexit__(self, *exc: object) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            if isinstance(exc[1], ConnectionLostError):
                # Dead, or cut off mid-protocol: in no state to serve anyone again.
                # (A dead one asyncpg has already taken back, and says so.)
                with contextlib.suppress(asyncpg.InterfaceError):
                    conn.terminate()
            await self._pool.release(conn)


class ConnectionPool:
    """The pool every `Database` and collection draws connections from.

    Args:
        pool: The asyncpg pool (made by `create_pool`).
        config: Its configuration.
        monitor: The operations recorder of the collections using this pool.
    """

    def __init__(self, pool: Pool, config: PoolConfig, monitor: Monitor | None = None) -> None:
        self._pool = pool
        self._config = config
        self._closed = False
        self._waiting = 0
        self._acquisitions = 0
        self._timeouts = 0
        self._wait_total = 0.0
        self._wait_max = 0.0
        self._retired = 0
        self._waits = Histogram()
        self.monitor = monitor if monitor is not None else Monitor()

    @property
    def config(self) -> PoolConfig:
        """The pool's configuration."""
        return self._config

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed

    def check_open(self) -> None:
        """Raise `DatabaseClosedError` once the pool is closed."""
        if self._closed:
            raise DatabaseClosedError(
                "this Database is closed and cannot be reopened; call vecdb.connect() again"
            )

    def acquire(
        self,
        *,
        timeout: float | None = None,
        readonly: bool = False,
        consistent: bool | None = None,
    ) -> Acquire:
        """A pooled connection (``async with``, or ``await`` then `release`).

        ``readonly`` and ``consistent`` are for `Connections` that route reads to
        replicas; one server serves both, so they change nothing here.

        Raises:
            PoolTimeoutError: No connection became free within ``timeout``
                (default ``PoolConfig.acquire_timeout``).
            DatabaseClosedError: The pool was closed.
        """
        self.check_open()
        return Acquire(self, timeout)

    async def _acquire(self, timeout: float | None) -> PoolConnection:
        self.check_open()
        budget = self._config.acquire_timeout if timeout is None else timeout
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
                    raise self._timeout_error(budget) from None
        finally:
            self._waiting -= 1
        waited = (time.perf_counter() - started) * 1000
        self._acquisitions += 1
        self._wait_total += waited
        self._wait_max = max(self._wait_max, waited)
        self._waits.add(waited / 1000)
        return conn

    def _timeout_error(self, budget: float) -> PoolTimeoutError:
        stats = self.stats()
        return PoolTimeoutError(
            f"no database connection became free within {budget:g}s "
            f"({stats.in_use} in use of max_size={stats.max_size}, {stats.waiting} waiting). "
            "Raise PoolConfig.max_size / acquire_timeout, or hold connections for less time.",
            timeout=budget,
            in_use=stats.in_use,
            max_size=stats.max_size,
            waiting=stats.waiting,
        )

    async def release(self, conn: PoolConnection) -> None:
        """Return a connection; one past ``max_lifetime`` is closed instead.

        A cancelled task still returns its connection (asyncpg shields the release).
        """
        lifetime = self._config.max_lifetime
        born = getattr(conn, "vecdb_born", None)
        if lifetime is not None and born is not None and time.monotonic() - born > lifetime:
            self._retired += 1
            conn.terminate()
        try:
            await self._pool.release(conn)
        except DRIVER_ERRORS as exc:
            # The reset (ROLLBACK, RESET ALL) found the connection dead: asyncpg has
            # terminated it, and the next acquire opens a new one. What the caller
            # did before is done (or was already reported), so this is no error of theirs.
            logger.info("discarded a broken database connection on release: %s", exc)

    @contextlib.asynccontextmanager
    async def transaction(
        self,
        *,
        isolation: IsolationLevel | None = None,
        readonly: bool = False,
        timeout: float | None = None,
    ) -> AsyncIterator[PoolConnection]:
        """A pooled connection inside a transaction: commits on success, rolls back on error."""
        async with self.acquire(timeout=timeout) as conn:
            with translating():
                async with conn.transaction(isolation=isolation, readonly=readonly):
                    yield conn

    def stats(self) -> PoolStats:
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
            wait_ms_p50=self._waits.quantile(0.5) * 1000,
            wait_ms_p99=self._waits.quantile(0.99) * 1000,
        )

    def wait_histogram(self) -> Histogram:
        """The acquire waits so far, in seconds (a copy)."""
        return self._waits.merge(())

    async def capabilities(self) -> Capabilities:
        """Read what the server can do (not counted in `stats`: vecdb's own bookkeeping).

        Driver errors are the caller's to translate (at connect, they name the server).
        """
        self.check_open()
        async with self._pool.acquire() as conn:
            return await capabilities.read(conn)

    async def schema_changed(self) -> None:
        """Renew every connection as it is next released (after DDL or migrations).

        Cached plans and codecs may predate the new schema (asyncpg #103).
        """
        await self._pool.expire_connections()

    async def close(self, *, timeout: float | None = 10.0) -> None:
        """Close, waiting up to ``timeout`` for connections in use, then terminating them.

        Safe to call more than once; shielded from cancellation.
        """
        if self._closed:
            return
        self._closed = True
        self.monitor.flush()
        with anyio.CancelScope(shield=True):
            try:
                with anyio.fail_after(timeout):
                    await self._pool.close()
            except TimeoutError:
                self._pool.terminate()
