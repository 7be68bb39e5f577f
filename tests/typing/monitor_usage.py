"""User-style code for stats, Prometheus and tracing: must pass ``mypy --strict`` (never run)."""

from __future__ import annotations

import json

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

import vecdb
from vecdb.prometheus import VecdbCollector


async def slowest_searches() -> list[tuple[str, float]]:
    async with vecdb.connect(
        tracer_provider=TracerProvider(), meter_provider=MeterProvider()
    ) as db:
        stats: vecdb.Stats = await db.stats(top=5)
        document: str = json.dumps(stats.to_dict())
        waits: float = stats.pool.wait_ms_p99
        server: vecdb.ServerStats = stats.server
        sizes = [(c.name, c.hnsw_bytes, c.total_bytes) for c in stats.collections]
        statements: vecdb.Statements = stats.statements
        top: list[vecdb.StatementStats] = list(statements)
        assert waits >= 0
        assert server.uptime_s >= 0
        assert document
        assert len(sizes) + len(top) >= 0
        registry = CollectorRegistry()
        collector = VecdbCollector(db, refresh_interval=30.0)
        registry.register(collector)
        await collector.refresh()
        ops: tuple[vecdb.OperationStats, ...] = stats.operations
        return [(o.collection, o.p99_ms) for o in ops if o.operation == "search"]
