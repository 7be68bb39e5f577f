"""`Stats`, what ``await db.stats()`` returns: pool, server, collections, operations, statements.

And the read replicas, each as ``db.replicas()`` reports it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

from .._server.pool import PoolStats
from .._server.replica_state import ReplicaStatus
from .histogram import Histogram

__all__ = [
    "CollectionStats",
    "OperationStats",
    "ServerStats",
    "StatementStats",
    "Statements",
    "Stats",
    "operation_stats",
]


@dataclasses.dataclass(frozen=True, slots=True)
class ServerStats:
    """The server and this database, from its statistics views.

    Attributes:
        version: PostgreSQL's version (``server_version``).
        pgvector_version: The ``vector`` extension's version in this database.
        started_at: When the server started.
        uptime_s: Seconds since then.
        connections: Client connections to this database by state
            (``active``, ``idle``, ``idle in transaction``...).
        cache_hit_ratio: Blocks found in ``shared_buffers`` over blocks read, for
            this database (``None`` before any read).
        database_bytes: The database's size on disk.
        deadlocks: Deadlocks detected in this database since statistics were reset.
        temp_bytes: Bytes written to temporary files (sorts or hashes that did not
            fit ``work_mem``) since then.
        temp_files: Temporary files written since then.
    """

    version: str
    pgvector_version: str | None
    started_at: dt.datetime
    uptime_s: float
    connections: Mapping[str, int]
    cache_hit_ratio: float | None
    database_bytes: int
    deadlocks: int
    temp_bytes: int
    temp_files: int


@dataclasses.dataclass(frozen=True, slots=True)
class CollectionStats:
    """One collection's table (summed over its partitions), from the catalog and statistics.

    Attributes:
        name: The collection.
        table: Its table, ``schema.name``.
        rows: Live rows, as the statistics count them (exact after ``analyze()``).
        table_bytes: The table's heap.
        toast_bytes: Its TOAST table (large vectors and text), with its index.
        index_bytes: Indexes other than HNSW (the primary key, filter indexes).
        hnsw_bytes: HNSW indexes.
        dead_rows: Rows deleted or updated and not yet vacuumed.
        last_vacuum: The latest vacuum, manual or automatic.
        last_analyze: The latest analyze, manual or automatic.
        seq_scans: Sequential scans of the table.
        index_scans: Index scans of the table (any index).
        partitions: Its partitions (0 when it is not partitioned).
    """

    name: str
    table: str
    rows: int
    table_bytes: int
    toast_bytes: int
    index_bytes: int
    hnsw_bytes: int
    dead_rows: int
    last_vacuum: dt.datetime | None
    last_analyze: dt.datetime | None
    seq_scans: int
    index_scans: int
    partitions: int

    @property
    def total_bytes(self) -> int:
        """Heap, TOAST and every index."""
        return self.table_bytes + self.toast_bytes + self.index_bytes + self.hnsw_bytes


@dataclasses.dataclass(frozen=True, slots=True)
class OperationStats:
    """Calls of one operation on one collection in this process, since `connect()`.

    Latencies are of the successful calls, from the start of the call to its
    return (acquiring a connection included), read from a histogram of
    buckets at most 14% wide.

    Attributes:
        operation: ``search``, ``search_many``, ``upsert``, ``insert``, ``get``,
            ``get_many``, ``delete`` or ``count``.
        collection: The collection.
        strategy: A search's strategy (``hnsw``, ``hnsw_iterative``, ``exact``);
            ``None`` for other operations and for searches that failed before planning.
        calls: Calls, successful or not.
        errors: Calls that raised.
        error_types: Those by error class (``QueryTimeoutError``: 2, ...).
        p50_ms: The median latency.
        p95_ms: The 95th percentile.
        p99_ms: The 99th percentile.
        mean_ms: The mean.
        max_ms: The slowest call.
    """

    operation: str
    collection: str
    strategy: str | None
    calls: int
    errors: int
    error_types: Mapping[str, int]
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float


def operation_stats(
    operation: str, collection: str, strategy: str, histogram: Histogram, errors: Mapping[str, int]
) -> OperationStats:
    """One series of the recorder, as `OperationStats`."""
    failed = sum(errors.values())
    return OperationStats(
        operation=operation,
        collection=collection,
        strategy=strategy or None,
        calls=histogram.count + failed,
        errors=failed,
        error_types=dict(errors),
        p50_ms=histogram.quantile(0.5) * 1000,
        p95_ms=histogram.quantile(0.95) * 1000,
        p99_ms=histogram.quantile(0.99) * 1000,
        mean_ms=histogram.sum / histogram.count * 1000 if histogram.count else 0.0,
        max_ms=histogram.max * 1000,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class StatementStats:
    """One statement from ``pg_stat_statements`` (this database's, all roles the server shows).

    Attributes:
        queryid: pg_stat_statements' id of the normalised statement.
        calls: Times it ran.
        total_ms: Execution time summed over the calls.
        mean_ms: Mean execution time.
        rows: Rows returned or affected, summed.
        query: The normalised text (constants replaced by ``$n``).
    """

    queryid: int
    calls: int
    total_ms: float
    mean_ms: float
    rows: int
    query: str


@dataclasses.dataclass(frozen=True, slots=True)
class Statements:
    """The top statements by total time; empty, with the ``reason``, where the extension is absent.

    Iterating or ``len()`` goes over `top`.

    Attributes:
        available: Whether ``pg_stat_statements`` could be read.
        reason: Why not, and what to do (``None`` when available).
        top: The statements, slowest in total first.
    """

    available: bool
    reason: str | None
    top: tuple[StatementStats, ...]

    def __iter__(self) -> Iterator[StatementStats]:
        return iter(self.top)

    def __len__(self) -> int:
        return len(self.top)


@dataclasses.dataclass(frozen=True, slots=True)
class Stats:
    """What ``await db.stats()`` returns. ``to_dict()`` gives the same as plain JSON values.

    Example:
        >>> stats = await db.stats()  # doctest: +SKIP
        >>> [(o.collection, o.strategy, o.p99_ms) for o in stats.operations]
        >>> stats.statements.reason or stats.statements.top[0].query

    Attributes:
        taken_at: When the figures were read.
        pool: The connection pool, with acquire-wait percentiles.
        server: The server and this database.
        collections: Every collection, by name.
        operations: Per operation, collection and strategy, what this process ran.
        statements: The top statements from ``pg_stat_statements``.
        replicas: Each read replica, checked when the figures were read (as
            ``db.replicas()``: DSN without password, in rotation or why not, lag
            in seconds and bytes, reads, conflicts); empty without
            ``connect(replicas=...)``.
    """

    taken_at: dt.datetime
    pool: PoolStats
    server: ServerStats
    collections: tuple[CollectionStats, ...]
    operations: tuple[OperationStats, ...]
    statements: Statements
    replicas: tuple[ReplicaStatus, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (datetimes as ISO 8601 strings): ready for ``json.dumps``."""
        plain: dict[str, Any] = _plain(dataclasses.asdict(self))
        return plain


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(v) for key, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value
