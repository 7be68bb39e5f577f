"""Prometheus metrics of a vecdb `Database`: ``VecdbCollector(db)``, for a registry.

Needs the ``vecdb[prometheus]`` extra. Example::

    from prometheus_client import REGISTRY, start_http_server
    from vecdb.prometheus import VecdbCollector

    db = await vecdb.connect()
    REGISTRY.register(VecdbCollector(db))
    start_http_server(9100)

Metrics (labels are bounded: operation and strategy names, collection names,
pool states, migration sources, replica DSNs; never ids, values or query text):

- ``vecdb_operation_duration_seconds{operation,collection,strategy}``: histogram
  of successful calls;
- ``vecdb_operation_errors_total{operation,collection,error_type}``;
- ``vecdb_pool_connections{state}`` (``idle``, ``in_use``),
  ``vecdb_pool_max_connections``, ``vecdb_pool_acquire_wait_seconds`` (histogram),
  ``vecdb_pool_acquire_timeouts_total``;
- ``vecdb_migrations_pending{source}``, ``vecdb_migration_version{source}``;
- ``vecdb_collection_rows{collection}``,
  ``vecdb_collection_bytes{collection,kind}`` (``table``, ``toast``, ``index``, ``hnsw``);
- with ``connect(replicas=...)``, per replica (its DSN, password redacted):
  ``vecdb_replica_in_rotation{replica}`` (1 or 0), ``vecdb_replica_lag_seconds{replica}``
  and ``vecdb_replica_lag_bytes{replica}`` (no lag sample while it is down:
  its lag is unknown).

The operation and pool metrics are read from memory at each scrape. The
migration, collection and replica metrics need the database: they are read at
most every ``refresh_interval`` seconds (see `VecdbCollector.refresh`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

try:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        "vecdb.prometheus needs the prometheus_client package: pip install 'vecdb[prometheus]'"
    ) from exc

from ._errors import ConfigError, VecdbError
from ._monitor.histogram import Histogram
from ._server.database import Database, connections
from ._server.replica_state import ReplicaStatus

if TYPE_CHECKING:
    from ._monitor.recorder import Series

__all__ = ["VecdbCollector"]

logger = logging.getLogger("vecdb.prometheus")

_BYTES_KINDS = ("table", "toast", "index", "hnsw")


class VecdbCollector(Collector):
    """Exports one `Database`'s operations, pool, migrations and collections.

    Args:
        db: The database (from ``vecdb.connect()``).
        refresh_interval: Seconds between reads of the migration and collection
            figures from the database (a scrape in between serves the last ones).
        timeout: Seconds a scrape from another thread waits for that read.

    A scrape from a thread other than the database's event loop (the
    ``prometheus_client`` HTTP server) waits for the read; a scrape on the
    event loop itself (an ``async`` handler) cannot, so it starts the read and
    serves what it has: call ``await collector.refresh()`` in such a handler
    first (see examples/fastapi_app.py).

    Raises:
        ConfigError: A bad ``refresh_interval`` or ``timeout``.
    """

    def __init__(
        self, db: Database, *, refresh_interval: float = 15.0, timeout: float = 5.0
    ) -> None:
        for name, value in (("refresh_interval", refresh_interval), ("timeout", timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(
                    f"{name} must be a number of seconds >= 0, got {value!r}", setting=name
                )
        self._db = db
        self._pool = connections(db)
        self._interval = float(refresh_interval)
        self._timeout = float(timeout)
        self._attempted: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._migrations: list[tuple[str, int, int]] = []  # source, version, pending
        self._collections: list[tuple[str, int, dict[str, int]]] = []  # name, rows, bytes
        self._replicas: tuple[ReplicaStatus, ...] = ()

    # -- the database's figures ---------------------------------------------------------------

    async def refresh(self) -> None:
        """Read the migration, collection and replica figures now (on the database's loop)."""
        status = await self._db.migrations.status()
        stats = await self._db.stats(top=0)
        sources: dict[str, list[int]] = {}
        for s in status:
            version_pending = sources.setdefault(s.source, [0, 0])
            if s.state == "applied":
                version_pending[0] = max(version_pending[0], s.version)
            elif s.state in {"pending", "incomplete"}:
                version_pending[1] += 1
        self._migrations = [(source, v, p) for source, (v, p) in sorted(sources.items())]
        self._collections = [
            (
                c.name,
                c.rows,
                {
                    "table": c.table_bytes,
                    "toast": c.toast_bytes,
                    "index": c.index_bytes,
                    "hnsw": c.hnsw_bytes,
                },
            )
            for c in stats.collections
        ]
        self._replicas = stats.replicas

    def _maybe_refresh(self) -> None:
        now = time.monotonic()
        # An attempt that failed or timed out counts: a slow database is not asked
        # again at every scrape.
        last = self._attempted
        loop = self._pool.monitor.loop
        if (last is not None and now - last < self._interval) or self._db.closed:
            return
        if loop is None or loop.is_closed():
            return
        self._attempted = now
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            # A scrape inside the loop (an async handler) must not block it.
            if self._task is None or self._task.done():
                self._task = loop.create_task(self._refresh_logged())
            return
        future = asyncio.run_coroutine_threadsafe(self._refresh_logged(), loop)
        try:
            future.result(self._timeout)
        except TimeoutError:
            future.cancel()
            logger.warning("vecdb metrics: the database did not answer in %gs", self._timeout)

    async def _refresh_logged(self) -> None:
        try:
            await self.refresh()
        except VecdbError as exc:
            # A scrape must not fail for it: the last figures are served.
            logger.warning("vecdb metrics: could not read the database: %s", exc)

    # -- the collector protocol -------------------------------------------------------------

    def describe(self) -> Iterable[Metric]:
        """The metric families, without samples (so registering reads nothing)."""
        return list(self._families(samples=False))

    def collect(self) -> Iterable[Metric]:
        """Every metric, for one scrape."""
        self._maybe_refresh()
        return list(self._families(samples=True))

    def _families(self, *, samples: bool) -> Iterator[Metric]:
        series = self._pool.monitor.series() if samples else []
        yield _durations(series)
        yield _errors(series)
        yield from self._pool_families(samples=samples)
        pending = GaugeMetricFamily(
            "vecdb_migrations_pending", "Migrations not applied, per source.", labels=["source"]
        )
        version = GaugeMetricFamily(
            "vecdb_migration_version",
            "The highest applied migration version, per source.",
            labels=["source"],
        )
        rows = GaugeMetricFamily(
            "vecdb_collection_rows",
            "Live rows per collection (the statistics' count).",
            labels=["collection"],
        )
        size = GaugeMetricFamily(
            "vecdb_collection_bytes",
            "Bytes per collection, by kind: table, toast, index (not HNSW), hnsw.",
            labels=["collection", "kind"],
            unit="bytes",
        )
        if samples:
            for source, applied, waiting in self._migrations:
                pending.add_metric([source], waiting)
                version.add_metric([source], applied)
            for name, count, sizes in self._collections:
                rows.add_metric([name], count)
                for kind in _BYTES_KINDS:
                    size.add_metric([name, kind], sizes[kind])
        yield from (pending, version, rows, size)
        yield from self._replica_families(samples=samples)

    def _replica_families(self, *, samples: bool) -> Iterator[Metric]:
        rotation = GaugeMetricFamily(
            "vecdb_replica_in_rotation",
            "1 when the read replica serves reads, 0 when it is out (down, lagging).",
            labels=["replica"],
        )
        seconds = GaugeMetricFamily(
            "vecdb_replica_lag_seconds",
            "Replay lag of the read replica: 0 once it replayed all it received.",
            labels=["replica"],
            unit="seconds",
        )
        size = GaugeMetricFamily(
            "vecdb_replica_lag_bytes",
            "WAL bytes between the primary's position and the replica's replay.",
            labels=["replica"],
            unit="bytes",
        )
        for r in self._replicas if samples else ():
            rotation.add_metric([r.dsn], 1 if r.healthy else 0)
            if r.lag_seconds is not None:
                seconds.add_metric([r.dsn], r.lag_seconds)
            if r.lag_bytes is not None:
                size.add_metric([r.dsn], r.lag_bytes)
        yield from (rotation, seconds, size)

    def _pool_families(self, *, samples: bool) -> Iterator[Metric]:
        conns = GaugeMetricFamily(
            "vecdb_pool_connections", "Pooled connections by state.", labels=["state"]
        )
        most = GaugeMetricFamily("vecdb_pool_max_connections", "The pool's max_size.")
        wait = HistogramMetricFamily(
            "vecdb_pool_acquire_wait_seconds",
            "Time waited for a pooled connection.",
            unit="seconds",
        )
        timeouts = CounterMetricFamily(
            "vecdb_pool_acquire_timeouts", "Acquires that gave up after acquire_timeout."
        )
        if samples:
            stats = self._pool.stats()
            conns.add_metric(["idle"], stats.idle)
            conns.add_metric(["in_use"], stats.in_use)
            most.add_metric([], stats.max_size)
            waits = self._pool.wait_histogram()
            wait.add_metric([], waits.prometheus_buckets(), sum_value=waits.sum)
            timeouts.add_metric([], stats.timeouts)
        yield from (conns, most, wait, timeouts)


def _durations(series: list[tuple[tuple[str, str, str], Series]]) -> Metric:
    family = HistogramMetricFamily(
        "vecdb_operation_duration_seconds",
        "Duration of successful vecdb operations, from call to return.",
        labels=["operation", "collection", "strategy"],
        unit="seconds",
    )
    for labels, s in series:
        h: Histogram = s.histogram
        if h.count:
            family.add_metric(list(labels), h.prometheus_buckets(), sum_value=h.sum)
    return family


def _errors(series: list[tuple[tuple[str, str, str], Series]]) -> Metric:
    family = CounterMetricFamily(
        "vecdb_operation_errors",
        "vecdb operations that raised, by error class.",
        labels=["operation", "collection", "error_type"],
    )
    merged: dict[tuple[str, str, str], int] = {}
    for (operation, collection, _), s in series:
        for error_type, n in s.errors.items():
            key = (operation, collection, error_type)
            merged[key] = merged.get(key, 0) + n
    for key, n in sorted(merged.items()):
        family.add_metric(list(key), n)
    return family
