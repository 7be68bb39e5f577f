"""``db.stats()``: the in-process figures and the server's, read together."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from .._collections import catalog as _catalog
from .._config import check_int
from .._errors import MigrationError, translating
from .._server.pool import ConnectionPool
from .._server.replica_state import ReplicaStatus
from .queries import collection_stats, server_stats, statements
from .recorder import Monitor
from .stats import OperationStats, Stats, operation_stats

__all__ = ["gather", "operations"]

MAX_TOP = 1000


def operations(monitor: Monitor) -> tuple[OperationStats, ...]:
    """Every series of the recorder, by operation, collection and strategy."""
    return tuple(
        operation_stats(operation, collection, strategy, series.histogram, series.errors)
        for (operation, collection, strategy), series in monitor.series()
    )


async def gather(
    pool: ConnectionPool,
    *,
    top: int,
    timeout: float | None,
    replicas: Sequence[ReplicaStatus] = (),
) -> Stats:
    """The body of ``db.stats()``: one pooled connection, read-only statements.

    ``replicas``: the replicas as just checked (`ReplicaRouter.refresh`).
    """
    check_int(top, 0, MAX_TOP, name="top")
    pool.check_open()
    async with pool.acquire(timeout=timeout) as conn:
        with translating():
            server = await server_stats(conn)
            try:
                infos = await _catalog.list_all(conn)
            except MigrationError:
                infos = []  # never migrated: no catalog, so no collections
            tables = [(info.name, info.schema, info.table) for info in infos]
            collections = await collection_stats(conn, tables) if tables else ()
            top_statements = await statements(conn, top)
    return Stats(
        taken_at=dt.datetime.now(dt.UTC),
        pool=pool.stats(),
        server=server,
        collections=collections,
        operations=operations(pool.monitor),
        statements=top_statements,
        replicas=tuple(replicas),
    )
