"""Operations that need a database session of their own, refused through PgBouncer.

`Collection.create_index` sets session settings for a build that cannot run in a
transaction (``CREATE INDEX CONCURRENTLY``), and ``repartition`` holds a session
advisory lock for its whole run. In transaction pooling mode each statement may
run on another server connection, so the settings and the lock would be left
behind on one that another client gets next: both are refused there, up front.
"""

from __future__ import annotations

from .._config import PoolConfig
from .._errors import ConfigError

__all__ = ["refuse_through_pgbouncer"]


def refuse_through_pgbouncer(pool: PoolConfig, what: str) -> None:
    """Raise `ConfigError` when the pool goes through PgBouncer (``pool.pgbouncer``)."""
    if pool.pgbouncer:
        raise ConfigError(
            f"{what} needs a database session of its own (a session lock or session "
            "settings), which PgBouncer in transaction mode does not give; run it from a "
            "Database connected directly to the server (e.g. vecdb.connect(direct_dsn)) or "
            "from the CLI with --dsn <direct>. Nothing was changed.",
            setting="pgbouncer",
        )
