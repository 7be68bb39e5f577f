"""`vecdb.connect()`: resolve the server, check it, migrate, then open the pool."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Generator, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import anyio
import asyncpg

from .._config import MigrationConfig, PoolConfig, env_str, redact_dsn, server_settings_from_env
from .._errors import (
    READ_ONLY,
    ConfigError,
    ConnectError,
    DatabaseError,
    PendingMigrationsError,
    translating,
)
from .._migrate.base import Migration
from .._migrate.engine import Migrator
from .._migrate.sources import load_sources
from .._monitor import tracing as _tracing
from .._monitor.recorder import Monitor
from .._typing import Connection
from . import capabilities
from . import embedded as _embedded
from . import pgbouncer as _pgbouncer
from . import reconfigure as _reconfigure
from .database import Database
from .pool import create_pool
from .replica_config import ReplicaConfig
from .replicas import open_router, replica_dsns

__all__ = ["ConnectCall", "connect", "open_connection"]

logger = logging.getLogger("vecdb")

MigrateMode = Literal["apply", "check", "off"]
_MIGRATE_MODES = ("apply", "check", "off")
_CONNECT_TIMEOUT = 15.0


class _Connector:
    """Dedicated (non-pooled) connections for migrations; checks the server on first use."""

    def __init__(self, dsn: str, *, need_create: bool, pgbouncer: bool = False) -> None:
        self._dsn = dsn
        self._need_create = need_create
        self._pgbouncer = pgbouncer
        self._checked = False

    async def __call__(self) -> Connection:
        conn = await open_connection(
            self._dsn, application_name="vecdb-migrate", pgbouncer=self._pgbouncer
        )
        if not self._checked:
            try:
                with translating():
                    found = await capabilities.read(conn)
                capabilities.check(found, need_create=self._need_create)
                refuse_standby(found.in_recovery, self._dsn)
            except BaseException:
                conn.terminate()
                raise
            self._checked = True
        return conn


async def open_connection(
    dsn: str, *, application_name: str, pgbouncer: bool = False
) -> Connection:
    """One direct connection, with connection failures turned into `ConnectError`.

    ``pgbouncer``: the DSN goes through PgBouncer, which refuses every startup
    setting but a few (``application_name`` is one), and prepared statements.
    """
    settings = {"application_name": application_name}
    if not pgbouncer:
        # Lets the server notice within a second that a client died in the
        # middle of a long statement, so its locks go with it.
        settings["client_connection_check_interval"] = "1000"
    try:
        with translating(connecting_to=redact_dsn(dsn)):
            return await asyncpg.connect(
                dsn,
                timeout=_CONNECT_TIMEOUT,
                server_settings=settings,
                statement_cache_size=0 if pgbouncer else 100,  # 100: asyncpg's default
            )
    except ConnectError as exc:
        hint = _pgbouncer.startup_refused(exc)
        if hint is None:
            raise
        raise hint from exc


async def _open(
    dsn: str | None,
    *,
    data_dir: str | Path | None,
    pool: PoolConfig | None,
    migrate: MigrateMode,
    migrations: Iterable[str | type[Migration]],
    migration_dsn: str | None,
    migration_config: MigrationConfig | None,
    server_settings: Mapping[str, str] | None,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    replicas: Sequence[str] | None = None,
    read_your_writes: bool = False,
    replica_config: ReplicaConfig | None = None,
) -> Database:
    started = time.perf_counter()
    replicas = replica_dsns(replicas)
    replica_config = replica_config or ReplicaConfig.from_env()
    if migrate not in _MIGRATE_MODES:
        raise ConfigError(
            f"migrate={migrate!r} is not one of {', '.join(map(repr, _MIGRATE_MODES))}",
            setting="migrate",
        )
    pool_config = pool if pool is not None else PoolConfig.from_env()
    migration_config = migration_config or MigrationConfig.from_env()
    sources = load_sources(migrations)

    embedded = None
    dsn = dsn or env_str("VECDB_DSN")
    if dsn is None:
        path = Path(data_dir) if data_dir is not None else None
        # Checked before the server starts: a typo in a name fails without any I/O.
        wanted = _reconfigure.embedded_wanted(server_settings)
        embedded = await anyio.to_thread.run_sync(
            functools.partial(_embedded.start, path, settings=wanted)
        )
        dsn = embedded.dsn
    else:
        _check_dsn_options(data_dir=data_dir, server_settings=server_settings)
    direct = migration_dsn or env_str("VECDB_MIGRATION_DSN")
    _pgbouncer.check_migrations(pool_config, migrate=migrate, direct=direct is not None)
    monitor = Monitor(_tracing.make(tracer_provider, meter_provider, dsn=dsn))
    monitor.loop = asyncio.get_running_loop()

    migrator = Migrator(
        _Connector(
            direct or dsn,
            need_create=migrate == "apply",
            pgbouncer=pool_config.pgbouncer and direct is None,
        ),
        sources,
        migration_config,
        lock_refused=_pgbouncer.LOCK_REFUSED if pool_config.pgbouncer and direct is None else None,
        step_span=monitor.tracing.migration_step if monitor.tracing else None,
    )
    if migrate == "apply":
        await _upgrade(migrator)
    elif migrate == "check":
        with translating():
            await migrator.check()

    try:
        with translating(connecting_to=redact_dsn(dsn)):
            pool_ = await create_pool(dsn, pool_config, monitor)
            try:
                # The first connection of a pool with min_size=0 is made here.
                found = await pool_.capabilities()
            except BaseException:
                await pool_.close()
                raise
    except ConnectError as exc:
        hint = _pgbouncer.startup_refused(exc)
        if hint is None:
            raise
        raise hint from exc
    logger.info(
        "connected to %s in %.1f ms (migrate=%s)",
        f"embedded server {embedded.data_dir}" if embedded else redact_dsn(dsn),
        (time.perf_counter() - started) * 1000,
        migrate,
    )
    router = None
    if replicas:
        try:
            router = await open_router(
                pool_, replicas, replica_config, read_your_writes=read_your_writes
            )
        except BaseException:
            await pool_.close()
            raise
    return Database(
        pool=pool_,
        capabilities=found,
        migrator=migrator,
        dsn=dsn,
        embedded=embedded,
        replicas=router,
    )


def refuse_standby(in_recovery: bool, dsn: str) -> None:
    """Migrations write: refuse a standby given as the primary, before anything runs."""
    if in_recovery:
        raise ConfigError(
            f"{redact_dsn(dsn)} is a standby (pg_is_in_recovery() is true), which is read-only: "
            "migrations must run on the primary. Pass the primary's DSN as dsn= (or "
            'migration_dsn=) and the standby in replicas=, or connect with migrate="off".',
            setting="dsn",
        )


async def _upgrade(migrator: Migrator) -> None:
    """Apply pending migrations; on a read-only server, accept a schema that is current."""
    try:
        with translating():
            await migrator.upgrade()
    except DatabaseError as exc:
        if exc.sqlstate != READ_ONLY:
            raise
        # A standby, or default_transaction_read_only: nothing can be written here, and
        # nothing needs to be when every migration is applied already.
        try:
            with translating():
                await migrator.check()
        except PendingMigrationsError as pending:
            names = ", ".join(f"{source} {version}" for source, version, _ in pending.pending)
            raise ConfigError(
                f"the server is read-only (a standby, or default_transaction_read_only is "
                f"on), so the pending migrations ({names}) cannot be applied there. Apply "
                "them on the primary (`vecdb migrate --dsn PRIMARY`, or "
                "connect(migration_dsn=PRIMARY)), or connect with migrate='off' to read "
                "with the schema as it is.",
                setting="migrate",
            ) from exc.__cause__ or exc


def _check_dsn_options(
    *, data_dir: str | Path | None, server_settings: Mapping[str, str] | None
) -> None:
    """Refuse the embedded server's options with a DSN, rather than ignore them."""
    if data_dir is not None:
        raise ConfigError(
            "data_dir= is for the embedded server; it cannot be combined with a DSN",
            setting="data_dir",
        )
    if server_settings:
        raise ConfigError(
            "server_settings= configures the embedded server (ALTER SYSTEM when vecdb starts "
            "it), and vecdb never changes the configuration of a server given by DSN on its "
            "own. Run `vecdb tune --dsn ... --apply --yes` to review and apply settings to "
            "that server, or use PoolConfig(server_settings=...) for per-session settings "
            "such as work_mem.",
            setting="server_settings",
        )
    ignored = sorted(variable for _, variable in server_settings_from_env().values())
    if ignored:
        logger.warning(
            "%s configure the embedded server and are ignored for a server given by DSN; "
            "`vecdb tune --dsn ... --apply --yes` changes that server's settings",
            ", ".join(ignored),
        )


class ConnectCall:
    """What `connect()` returns: ``await`` it for a `Database`, or ``async with`` it."""

    __slots__ = ("_database", "_kwargs")

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._database: Database | None = None

    def __await__(self) -> Generator[Any, None, Database]:
        return _open(**self._kwargs).__await__()

    def __repr__(self) -> str:
        # What `asyncio.run(vecdb.connect())` shows: it refuses anything but a coroutine
        # with "a coroutine was expected, got <repr>", so the repr says what to do.
        return (
            "<vecdb.connect() call, not a coroutine: await it inside an async function "
            "(db = await vecdb.connect(...)) or use `async with vecdb.connect(...) as db:`; "
            "asyncio.run() takes that function's coroutine, asyncio.run(main())>"
        )

    async def __aenter__(self) -> Database:
        self._database = await _open(**self._kwargs)
        return self._database

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._database is not None:
            await self._database.close()


def connect(
    dsn: str | None = None,
    *,
    data_dir: str | Path | None = None,
    pool: PoolConfig | None = None,
    migrate: MigrateMode = "apply",
    migrations: Iterable[str | type[Migration]] = (),
    migration_dsn: str | None = None,
    migration_config: MigrationConfig | None = None,
    server_settings: Mapping[str, str] | None = None,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    replicas: Iterable[str] | None = None,
    read_your_writes: bool = False,
    replica_config: ReplicaConfig | None = None,
) -> ConnectCall:
    """Connect to PostgreSQL, apply migrations, and open a pool.

    Example:
        >>> db = await vecdb.connect()  # doctest: +SKIP
        >>> async with vecdb.connect("postgresql://app@db/app") as db:  # doctest: +SKIP
        ...     print(await db.health())
        >>> db = await vecdb.connect(server_settings={"shared_buffers": "2GB"})  # doctest: +SKIP

    Args:
        dsn: Any PostgreSQL >= 14 with pgvector >= 0.7. Default ``$VECDB_DSN``,
            else the embedded server.
        data_dir: The embedded server's data directory (default
            ``$VECDB_DATA_DIR``, else the user's data directory). Data survives
            restarts; other processes using the same directory share the server.
        pool: Pool settings; default `PoolConfig.from_env()` (``VECDB_POOL_*``).
        migrate: ``"apply"`` pending migrations under the advisory lock,
            ``"check"`` (raise `PendingMigrationsError` if any are pending), or ``"off"``.
        migrations: The application's migrations: package names and/or
            `Migration` subclasses, applied after vecdb's own.
        migration_dsn: A direct connection for migrations when ``dsn`` goes through
            PgBouncer in transaction mode (default ``$VECDB_MIGRATION_DSN``, else ``dsn``).
        migration_config: Lock wait and DDL lock timeout; default
            `MigrationConfig.from_env()`.
        server_settings: The embedded server's settings, over the values vecdb derives
            from the machine (and over ``VECDB_SERVER_*``), e.g.
            ``{"shared_buffers": "2GB"}``. Checked against the server's own
            ``pg_settings``; applied when vecdb starts the server (a server already
            running for other processes is left alone, and what differs is logged).
            Not for a DSN: see ``vecdb tune``, or `PoolConfig.server_settings` for
            per-session settings.
        tracer_provider: An OpenTelemetry ``TracerProvider`` for vecdb's spans (one
            per public operation and per migration step); default the global one.
            Needs ``vecdb[otel]``; without OpenTelemetry installed nothing is traced.
        meter_provider: An OpenTelemetry ``MeterProvider`` for the
            ``db.client.operation.duration`` histogram; default the global one.
        replicas: DSNs of streaming standbys of ``dsn``'s server (default
            ``$VECDB_REPLICA_DSNS``, comma-separated). Searches and reads go to them,
            writes and migrations to ``dsn``; see docs/replicas.md.
        read_your_writes: A task's reads see its own earlier writes: they go to a
            replica that has replayed them (waiting up to
            ``ReplicaConfig.consistency_wait``), else to the primary.
        replica_config: Lag bounds, fallback and choice; default
            `ReplicaConfig.from_env()` (``VECDB_REPLICA_*``).

    Raises:
        ConfigError: Bad arguments or environment, a server without what vecdb needs,
            or an unknown server setting or bad value (it is named; nothing is changed).
        ConnectError: The server cannot be reached.
        MigrationError: A migration failed, or the schema is too new / drifted / pending.
    """
    return ConnectCall(
        dsn=dsn,
        data_dir=data_dir,
        pool=pool,
        migrate=migrate,
        migrations=tuple(migrations),
        migration_dsn=migration_dsn,
        migration_config=migration_config,
        server_settings=dict(server_settings) if server_settings is not None else None,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        replicas=tuple(replicas) if replicas is not None else None,
        read_your_writes=read_your_writes,
        replica_config=replica_config,
    )
