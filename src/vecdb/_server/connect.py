"""`vecdb.connect()`: resolve the server, check it, migrate, then open the pool."""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import anyio
import asyncpg

from .._config import MigrationConfig, PoolConfig, env_str, redact_dsn
from .._errors import ConfigError, ConnectError, translate
from .._migrate.base import Migration
from .._migrate.engine import Migrator
from .._migrate.sources import load_sources
from .._typing import Connection
from . import embedded as _embedded
from .database import Database
from .pool import create_pool

__all__ = ["ConnectCall", "connect", "open_connection"]

logger = logging.getLogger("vecdb")

MigrateMode = Literal["apply", "check", "off"]
_MIGRATE_MODES = ("apply", "check", "off")
_MIN_SERVER = 140000
_MIN_PGVECTOR = (0, 7)
_CONNECT_TIMEOUT = 15.0

_PREFLIGHT = """
SELECT current_setting('server_version_num')::int AS server_version_num,
       current_setting('server_version') AS server_version,
       current_database() AS database,
       (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS installed,
       -- pg_available_extensions reads every control file on disk: only when needed
       CASE WHEN NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'vector')
            THEN (SELECT default_version FROM pg_available_extensions WHERE name = 'vector')
       END AS available,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
       has_database_privilege(current_database(), 'CREATE') AS can_create
"""


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


async def _preflight(conn: Connection, *, need_create: bool) -> None:
    """Say clearly what the server lacks, before any migration tries and fails obscurely."""
    row = await conn.fetchrow(_PREFLIGHT)
    assert row is not None  # noqa: S101 - a SELECT without FROM returns one row
    if row["server_version_num"] < _MIN_SERVER:
        raise ConfigError(
            f"PostgreSQL {row['server_version']} is too old: vecdb needs PostgreSQL 14 or "
            "newer. Upgrade the server, or use the embedded one (connect() without a DSN)."
        )
    installed, available = row["installed"], row["available"]
    if installed is None and available is None:
        raise ConfigError(
            f"the pgvector extension is not installed on this server (PostgreSQL "
            f"{row['server_version']}): install it (e.g. `apt install "
            f"postgresql-{row['server_version_num'] // 10000}-pgvector`, or see "
            "https://github.com/pgvector/pgvector#installation), or use the embedded "
            "server by calling connect() without a DSN."
        )
    if installed is None and need_create and not row["superuser"]:
        raise ConfigError(
            f"the pgvector extension is available but not created in database "
            f"{row['database']!r}, and this role may not create it (CREATE EXTENSION vector "
            f"needs a superuser). Ask an administrator to run `CREATE EXTENSION vector;` in "
            f"{row['database']!r}, then connect again."
        )
    version = installed or available
    if _version_tuple(version) < _MIN_PGVECTOR:
        raise ConfigError(
            f"pgvector {version} is too old: vecdb needs 0.7 or newer (0.8 for iterative "
            "index scans). Upgrade the package on the server, then run "
            "`ALTER EXTENSION vector UPDATE;`."
        )


class _Connector:
    """Dedicated (non-pooled) connections for migrations; checks the server on first use."""

    def __init__(self, dsn: str, *, need_create: bool) -> None:
        self._dsn = dsn
        self._need_create = need_create
        self._checked = False

    async def __call__(self) -> Connection:
        conn = await open_connection(self._dsn, application_name="vecdb-migrate")
        if not self._checked:
            try:
                await _preflight(conn, need_create=self._need_create)
            except BaseException:
                conn.terminate()
                raise
            self._checked = True
        return conn


async def open_connection(dsn: str, *, application_name: str) -> Connection:
    """One direct connection, with connection failures turned into `ConnectError`."""
    try:
        return await asyncpg.connect(
            dsn,
            timeout=_CONNECT_TIMEOUT,
            server_settings={
                "application_name": application_name,
                # Lets the server notice within a second that a client died in the
                # middle of a long statement, so its locks go with it.
                "client_connection_check_interval": "1000",
            },
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        reason = translate(exc) or exc
        raise ConnectError(
            f"cannot connect to {redact_dsn(dsn)}: {reason}. Check that the server is running "
            "and the DSN's host, port, database, user and password are right."
        ) from exc


async def _open(
    dsn: str | None,
    *,
    data_dir: str | Path | None,
    pool: PoolConfig | None,
    migrate: MigrateMode,
    migrations: Iterable[str | type[Migration]],
    migration_dsn: str | None,
    migration_config: MigrationConfig | None,
) -> Database:
    started = time.perf_counter()
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
        embedded = await anyio.to_thread.run_sync(_embedded.start, path)
        dsn = embedded.dsn
    elif data_dir is not None:
        raise ConfigError(
            "data_dir= is for the embedded server; it cannot be combined with a DSN",
            setting="data_dir",
        )
    migration_dsn = migration_dsn or env_str("VECDB_MIGRATION_DSN") or dsn

    migrator = Migrator(
        _Connector(migration_dsn, need_create=migrate == "apply"), sources, migration_config
    )
    if migrate == "apply":
        await migrator.upgrade()
    elif migrate == "check":
        await migrator.check()

    try:
        pool_ = await create_pool(dsn, pool_config)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise ConnectError(f"cannot open the pool on {redact_dsn(dsn)}: {translate(exc)}") from exc
    logger.info(
        "connected to %s in %.1f ms (migrate=%s)",
        f"embedded server {embedded.data_dir}" if embedded else redact_dsn(dsn),
        (time.perf_counter() - started) * 1000,
        migrate,
    )
    return Database(
        pool=pool_, pool_config=pool_config, migrator=migrator, dsn=dsn, embedded=embedded
    )


class ConnectCall:
    """What `connect()` returns: ``await`` it for a `Database`, or ``async with`` it."""

    __slots__ = ("_database", "_kwargs")

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._database: Database | None = None

    def __await__(self) -> Generator[Any, None, Database]:
        return _open(**self._kwargs).__await__()

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
) -> ConnectCall:
    """Connect to PostgreSQL, apply migrations, and open a pool.

    Example:
        >>> db = await vecdb.connect()  # doctest: +SKIP
        >>> async with vecdb.connect("postgresql://app@db/app") as db:  # doctest: +SKIP
        ...     print(await db.health())

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

    Raises:
        ConfigError: Bad arguments or environment, or a server without what vecdb needs.
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
    )
