"""PgBouncer in transaction pooling mode: what vecdb does differently, and what it refuses.

Transaction pooling gives each transaction (or lone statement) whichever server
connection is free. Three things do not survive that, and vecdb uses each:

- prepared statements (asyncpg's cache): `PoolConfig(pgbouncer=True)` turns it off;
- settings sent at connection start: PgBouncer refuses them, so the migration
  connection sends none through it, and the pool config refuses its own;
- session advisory locks and session ``SET``: the migration lock, a
  repartition run's lock and an index build's settings would be taken on one
  server connection and then be left behind on it, for another client. So
  ``migrate="apply"`` needs ``migration_dsn`` (a direct connection), and
  `Collection.create_index` and ``repartition`` are refused
  (`vecdb._collections.sessions`).
"""

from __future__ import annotations

from .._config import PoolConfig
from .._errors import ConfigError, ConnectError

__all__ = ["LOCK_REFUSED", "check_migrations", "startup_refused"]

_STARTUP_REFUSED = "unsupported startup parameter"
LOCK_REFUSED = (
    "migrations through PgBouncer in transaction mode cannot hold the migration lock (a "
    "session advisory lock: the next statement may run on another server connection). "
    "Pass migration_dsn= a direct connection to the server (or set $VECDB_MIGRATION_DSN), "
    "or connect with migrate='check' and run `vecdb migrate --dsn <direct>` in your deploy "
    "step. Nothing was changed."
)


def check_migrations(pool: PoolConfig, *, migrate: str, direct: bool) -> None:
    """Refuse ``migrate="apply"`` through PgBouncer, before any I/O.

    Args:
        pool: The pool's config (``pgbouncer``).
        migrate: The connect mode.
        direct: A ``migration_dsn`` (or ``$VECDB_MIGRATION_DSN``) was given.

    Raises:
        ConfigError: Migrations would run through transaction pooling.
    """
    if pool.pgbouncer and migrate == "apply" and not direct:
        raise ConfigError(LOCK_REFUSED, setting="migration_dsn")


def startup_refused(error: ConnectError) -> ConfigError | None:
    """A clearer error when a pooler refused vecdb's startup settings, else ``None``."""
    if _STARTUP_REFUSED not in str(error):
        return None
    return ConfigError(
        f"{error} -- this is PgBouncer refusing a setting sent at connection start. "
        "Connect with pool=vecdb.PoolConfig(pgbouncer=True) (and migration_dsn= a direct "
        "connection, for migrations); see docs/deployment.md.",
        setting="pgbouncer",
    )
