"""Read replicas: one pool per standby, health and lag, and the choice of server per read.

`ReplicaRouter` is what collections get as their `Connections` when
``vecdb.connect(replicas=[...])`` is used: ``acquire(readonly=True)`` hands out
a standby's connection, everything else is the primary's pool. Each standby has
a pool of its own, made from the same `PoolConfig` (so the same session
settings, ``hnsw.ef_search`` included).

Health: a background task checks every standby each ``check_interval``; a
standby that does not answer, is not in recovery, or lags beyond
``max_lag_bytes`` / ``max_lag_seconds`` leaves the rotation until a later check
finds it well. A read that fails because its standby went away marks it down at
once. Lag is measured so that an idle primary does not look like lag: seconds
are 0 once the standby has replayed all it received (``now() -
pg_last_xact_replay_timestamp()`` alone grows while nothing is written), and
bytes are the distance from the primary's current WAL position to the replay
position.

Read your writes: after a write on the primary the task keeps the primary's WAL
insert position (a context variable); its reads go to a standby that has
replayed past it, waiting up to ``consistency_wait``, else to the primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Generator, Sequence
from contextvars import ContextVar
from types import TracebackType
from typing import Any

from .._collections import routing as _routing
from .._config import PoolConfig, redact_dsn
from .._errors import (
    ReplicaUnavailableError,
    VecdbError,
    translating,
)
from .._monitor.recorder import Monitor
from .._typing import PoolConnection
from .pool import ConnectionPool, IsolationLevel, create_pool
from .replica_config import ReplicaConfig
from .replica_state import UNREACHABLE as _UNREACHABLE
from .replica_state import Replica as _Replica
from .replica_state import ReplicaStatus, replica_dsns
from .replica_state import at_or_past as _at_or_past
from .replica_state import failure as _failure
from .replica_state import is_closed as _closed
from .replica_state import lsn_value as _lsn

__all__ = ["ReplicaRouter", "ReplicaStatus", "open_router", "replica_dsns"]

logger = logging.getLogger("vecdb.replicas")

_LAG_SQL = """
SELECT pg_is_in_recovery() AS standby,
       pg_last_wal_replay_lsn()::text AS replay,
       CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE COALESCE(EXTRACT(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)
       END::float8 AS lag_seconds,
       GREATEST(pg_wal_lsn_diff($1::text::pg_lsn, pg_last_wal_replay_lsn()), 0)::int8
           AS lag_bytes
"""
_REPLAYED_SQL = "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn"
# The insert position, not pg_current_wal_lsn() (the write position): under
# synchronous_commit=off a commit record may still sit in WAL buffers, behind
# the write position, and a standby that reached the latter may not have it yet.
_WRITTEN_SQL = "SELECT pg_current_wal_insert_lsn()::text"
_CHECK_FAILED: tuple[type[BaseException], ...] = (VecdbError, *_UNREACHABLE)
_POLL = 0.005  # seconds between replay checks while a read waits for a write

# The primary's WAL position after this task's last write (read_your_writes).
_written: ContextVar[str | None] = ContextVar("vecdb_written_lsn", default=None)


class _Held:
    """A connection of the router's: ``async with`` it, or ``await`` it then ``release``.

    Released through the router, which keeps the WAL position a write reached.
    """

    __slots__ = ("_conn", "_router", "_timeout")

    def __init__(self, router: ReplicaRouter, timeout: float | None) -> None:
        self._router = router
        self._timeout = timeout
        self._conn: PoolConnection | None = None

    def _take(self) -> Awaitable[PoolConnection]:
        raise NotImplementedError

    def __await__(self) -> Generator[Any, None, PoolConnection]:
        return self._take().__await__()

    async def __aenter__(self) -> PoolConnection:
        self._conn = await self._take()
        return self._conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._router._release(conn, exc)


class _Read(_Held):
    """``router.acquire(readonly=True)``: a replica's connection (or the primary's)."""

    __slots__ = ("_consistent",)

    def __init__(
        self, router: ReplicaRouter, timeout: float | None, consistent: bool | None
    ) -> None:
        super().__init__(router, timeout)
        self._consistent = consistent

    def _take(self) -> Awaitable[PoolConnection]:
        return self._router._acquire_read(self._timeout, self._consistent)


class _Write(_Held):
    """A primary connection that, on release, keeps the WAL position its writes reached."""

    __slots__ = ()

    def _take(self) -> Awaitable[PoolConnection]:
        return self._router._primary.acquire(timeout=self._timeout)


class ReplicaRouter:
    """The primary's pool and one pool per replica, behind the `Connections` protocol."""

    def __init__(
        self,
        primary: ConnectionPool,
        replicas: Sequence[tuple[str, ConnectionPool]],
        config: ReplicaConfig,
        *,
        read_your_writes: bool,
    ) -> None:
        self._primary = primary
        self._replicas = [_Replica(i, dsn, pool) for i, (dsn, pool) in enumerate(replicas)]
        self._settings = config
        self._read_your_writes = read_your_writes
        self._turn = 0
        self._on_primary = False  # reads fell back: logged once, on the change
        self._held: dict[int, _Replica | None] = {}  # id(conn) -> where it came from
        self._health_task: asyncio.Task[None] | None = None
        # The primary's position once migrations committed: a standby behind it may
        # not have vecdb's schema (or the vector type its connections need) yet.
        self._ready: str | None = None

    # -- the Connections protocol ------------------------------------------------------

    @property
    def config(self) -> PoolConfig:
        """The pools' configuration (the same for every server)."""
        return self._primary.config

    @property
    def monitor(self) -> Monitor:
        """The operations recorder: the primary pool's, whichever server runs a call."""
        return self._primary.monitor

    @property
    def replica_config(self) -> ReplicaConfig:
        """Health bounds, fallback and choice."""
        return self._settings

    def check_open(self) -> None:
        """Raise `DatabaseClosedError` once closed."""
        self._primary.check_open()

    def acquire(
        self,
        *,
        timeout: float | None = None,
        readonly: bool = False,
        consistent: bool | None = None,
    ) -> _Read | _Write:
        """A replica's connection when ``readonly``, else the primary's.

        ``consistent`` (reads only): ``True``, a replica that has replayed all the
        primary had written when the read began (waiting up to ``consistency_wait``),
        else the primary; ``False``, any replica in rotation, however stale within
        the lag bounds; ``None``, as ``read_your_writes`` says.
        """
        self.check_open()
        return _Read(self, timeout, consistent) if readonly else _Write(self, timeout)

    @contextlib.asynccontextmanager
    async def transaction(
        self,
        *,
        isolation: IsolationLevel | None = None,
        readonly: bool = False,
        timeout: float | None = None,
    ) -> AsyncIterator[PoolConnection]:
        """A primary connection inside a transaction (the WAL position is kept after commit)."""
        async with self.acquire(timeout=timeout) as conn:
            with translating():
                async with conn.transaction(isolation=isolation, readonly=readonly):
                    yield conn

    async def schema_changed(self) -> None:
        """Renew every server's connections: replicas replay the DDL too."""
        await self._primary.schema_changed()
        for replica in self._replicas:
            await replica.pool.schema_changed()

    # -- choosing a server ----------------------------------------------------------------

    def _candidates(self, exclude: set[int]) -> list[_Replica]:
        healthy = [r for r in self._replicas if r.healthy and r.index not in exclude]
        if not healthy:
            return []
        self._turn = (self._turn + 1) % len(healthy)
        rotated = healthy[self._turn :] + healthy[: self._turn]
        if self._settings.choice == "least_busy":
            rotated.sort(key=lambda r: r.in_flight)  # stable: ties keep their turn
        return rotated

    async def _acquire_read(self, timeout: float | None, consistent: bool | None) -> PoolConnection:
        attempt = _routing.current()
        candidates = self._candidates(attempt.exclude if attempt else set())
        target = None
        if consistent is None and self._read_your_writes:
            target = _written.get()
        elif consistent and candidates:
            target = await self._position(attempt)
        deadline = time.monotonic() + self._settings.consistency_wait
        for replica in candidates:
            try:
                conn = await replica.pool.acquire(timeout=timeout)
            except VecdbError as exc:
                if _failure(exc) != "down":
                    raise
                self._mark_down(replica, str(exc))
                continue
            if target is None or await self._caught_up(replica, conn, target, deadline):
                replica.in_flight += 1
                replica.reads += 1
                self._held[id(conn)] = replica
                if self._on_primary:
                    self._on_primary = False
                    logger.info("reads go to replicas again")
                return conn
            await replica.pool.release(conn)
        if target is None and not consistent:
            self._no_replica()  # a consistent read that no replica can serve is the primary's
        conn = await self._primary.acquire(timeout=timeout)
        self._held[id(conn)] = None
        return conn

    async def _position(self, attempt: _routing.Attempt | None) -> str:
        """The primary's WAL insert position, read once per read operation (its retry too)."""
        if attempt is not None and attempt.position is not None:
            return attempt.position
        async with self._primary.acquire() as conn:
            with translating():
                position: str = await conn.fetchval(_WRITTEN_SQL)
        if attempt is not None:
            attempt.position = position
        return position

    async def _caught_up(
        self, replica: _Replica, conn: PoolConnection, target: str, deadline: float
    ) -> bool:
        if replica.replay is not None and _lsn(replica.replay) >= _lsn(target):
            return True
        with translating():
            while not await conn.fetchval(_REPLAYED_SQL, target):
                if time.monotonic() >= deadline:
                    return False
                await asyncio.sleep(_POLL)
        return True

    def _no_replica(self) -> None:
        reasons = "; ".join(f"{redact_dsn(r.dsn)}: {r.reason}" for r in self._replicas)
        if self._settings.fallback == "raise":
            raise ReplicaUnavailableError(
                f"no replica is in rotation ({reasons}). Start or repair a standby, raise "
                "ReplicaConfig.max_lag_bytes / max_lag_seconds, or use "
                'ReplicaConfig(fallback="primary") to read from the primary meanwhile.'
            )
        if not self._on_primary:
            self._on_primary = True
            logger.warning("no replica is in rotation (%s); reads go to the primary", reasons)

    async def _release(self, conn: PoolConnection, exc: BaseException | None) -> None:
        if id(conn) not in self._held:  # a primary connection from _Write
            try:
                if exc is None and self._read_your_writes and not _closed(conn):
                    with translating():
                        _written.set(await conn.fetchval(_WRITTEN_SQL))
            finally:
                await self._primary.release(conn)
            return
        replica = self._held.pop(id(conn))
        if replica is None:
            await self._primary.release(conn)
            return
        replica.in_flight -= 1
        try:
            failure = _failure(exc) if exc is not None else None
            if exc is not None and _closed(conn):
                failure = failure or "down"  # whatever the error, the session is gone
            if failure is not None:
                if failure == "down":
                    self._mark_down(replica, str(exc))
                else:
                    replica.conflicts += 1
                _routing.note_failure(replica.index, conflict=failure == "conflict")
        finally:
            try:
                await replica.pool.release(conn)
            except _UNREACHABLE as lost:
                # The read itself is done; its standby went away before the reset on
                # release (asyncpg has terminated the connection already).
                self._mark_down(replica, f"connection lost: {lost}")

    async def release(self, conn: PoolConnection) -> None:
        """Return a connection obtained with ``await acquire(...)``."""
        await self._release(conn, None)

    def _mark_down(self, replica: _Replica, reason: str) -> None:
        if replica.healthy:
            logger.warning("replica %s leaves the rotation: %s", redact_dsn(replica.dsn), reason)
        replica.healthy = False
        replica.reason = reason
        replica.lag_bytes = replica.lag_seconds = None

    # -- health ---------------------------------------------------------------------------

    async def refresh(self) -> list[ReplicaStatus]:
        """Check every replica now; who is in the rotation follows the result."""
        primary_lsn: str | None = None
        with contextlib.suppress(VecdbError):
            async with self._primary.acquire() as conn:
                with translating():
                    primary_lsn = await conn.fetchval("SELECT pg_current_wal_lsn()::text")
        await asyncio.gather(*(self._check(r, primary_lsn) for r in self._replicas))
        return self.statuses()

    async def _check(self, replica: _Replica, primary_lsn: str | None) -> None:
        bound = max(self._settings.check_interval, 2.0)
        try:
            async with asyncio.timeout(bound), replica.pool.acquire() as conn:
                with translating():
                    row = await conn.fetchrow(_LAG_SQL, primary_lsn)
        except _CHECK_FAILED as exc:  # the release of a broken connection raises too
            self._mark_down(replica, f"no answer within {bound:g}s" if not str(exc) else str(exc))
            return
        assert row is not None  # noqa: S101 - a SELECT without FROM returns one row
        if not row["standby"]:
            self._mark_down(replica, "not a standby (pg_is_in_recovery() is false)")
            return
        replica.replay = row["replay"]
        replica.lag_bytes = row["lag_bytes"]
        replica.lag_seconds = row["lag_seconds"]
        reason = self._too_far(replica)
        if not reason and self._ready is not None and not _at_or_past(replica.replay, self._ready):
            reason = "has not replayed the schema vecdb migrated to yet"
        if reason:
            self._mark_down(replica, reason)
            replica.lag_bytes, replica.lag_seconds = row["lag_bytes"], row["lag_seconds"]
        elif not replica.healthy:
            # Connections opened while it was behind (or down) may predate the
            # schema and the vector type's codec: renew them.
            await replica.pool.schema_changed()
            replica.healthy, replica.reason = True, ""
            logger.info("replica %s joins the rotation", redact_dsn(replica.dsn))

    def _too_far(self, replica: _Replica) -> str:
        cfg = self._settings
        if cfg.max_lag_bytes is not None and (replica.lag_bytes or 0) > cfg.max_lag_bytes:
            return f"{replica.lag_bytes} bytes behind (max_lag_bytes={cfg.max_lag_bytes})"
        if cfg.max_lag_seconds is not None and (replica.lag_seconds or 0) > cfg.max_lag_seconds:
            return f"{replica.lag_seconds:.1f}s behind (max_lag_seconds={cfg.max_lag_seconds:g})"
        return ""

    async def wait_ready(self) -> None:
        """Wait up to ``consistency_wait`` for the replicas to replay the primary's schema."""
        with contextlib.suppress(VecdbError):
            async with self._primary.acquire() as conn:
                with translating():
                    self._ready = await conn.fetchval(_WRITTEN_SQL)
        if self._ready is None:
            return
        deadline = time.monotonic() + self._settings.consistency_wait
        for replica in self._replicas:
            with contextlib.suppress(*_CHECK_FAILED):
                async with replica.pool.acquire() as conn:
                    await self._caught_up(replica, conn, self._ready, deadline)

    def statuses(self) -> list[ReplicaStatus]:
        """Each replica as last checked."""
        return [r.status() for r in self._replicas]

    def start(self) -> None:
        """Start the periodic health checks."""
        self._health_task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._settings.check_interval)
            try:
                await self.refresh()
            except Exception:  # a health check must never end the monitor
                logger.exception("replica health check failed")

    async def close(self, *, timeout: float | None = 10.0) -> None:
        """Stop the checks and close every pool. Safe to call more than once."""
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
            self._health_task = None
        for replica in self._replicas:
            await replica.pool.close(timeout=timeout)
        await self._primary.close(timeout=timeout)


async def open_router(
    primary: ConnectionPool,
    dsns: Sequence[str],
    config: ReplicaConfig,
    *,
    read_your_writes: bool,
) -> ReplicaRouter:
    """One pool per replica with the primary's `PoolConfig`, checked once, then watched.

    A replica that cannot be reached now starts out of the rotation (and is
    logged); it joins when a later check finds it well.
    """
    pools: list[tuple[str, ConnectionPool]] = []
    try:
        for dsn in dsns:
            try:
                pool = await create_pool(dsn, primary.config)
            except _UNREACHABLE as exc:
                # Down now: a pool that connects on first use, so the replica can join later.
                logger.warning("replica %s cannot be reached: %s", redact_dsn(dsn), exc)
                pool = await create_pool(dsn, primary.config.model_copy(update={"min_size": 0}))
            pools.append((dsn, pool))
    except BaseException:
        for _, pool in pools:
            await pool.close()
        raise
    router = ReplicaRouter(primary, pools, config, read_your_writes=read_your_writes)
    await router.wait_ready()
    await router.refresh()
    router.start()
    return router
