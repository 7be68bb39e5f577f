"""The asyncpg pool: created after migrations, codecs in ``init``, lifetime-bounded connections.

The pool is created only once migrations have committed, so that the codec
registration sees the ``vector``/``halfvec`` types and no prepared statement
predates the schema (asyncpg #103, pgvector-python #33).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import asyncpg

from .._config import PoolConfig
from .._typing import Connection, Pool
from . import codecs as _codecs

__all__ = ["PoolStats", "PooledConnection", "create_pool", "server_settings"]


class PooledConnection(Connection):
    """A connection that knows its age, so the pool can retire it after ``max_lifetime``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.vecdb_born = time.monotonic()


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


async def create_pool(dsn: str, config: PoolConfig) -> Pool:
    """Open the pool described by ``config`` (``min_size`` connections up front)."""
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
    )
    return pool
