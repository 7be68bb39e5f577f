"""``vecdb.prometheus.VecdbCollector``: scraped from a real ``prometheus_client`` HTTP server.

The scrape runs in a thread (as Prometheus's would, from outside the event
loop), and the text is parsed with ``prometheus_client.parser``.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator

import anyio
import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

import vecdb
from vecdb._monitor.recorder import MAX_SERIES, OTHER, Monitor
from vecdb.prometheus import VecdbCollector


class Doc(vecdb.Record):
    id: int
    lang: str
    embedding: vecdb.Vector


@pytest.fixture
async def db(dsn: str) -> AsyncIterator[vecdb.Database]:
    """One pooled connection: `_load` flushes its statistics before ANALYZE on that backend.

    (A write's counts flushed after an ANALYZE would add to the live rows it set.)
    """
    database = await vecdb.connect(dsn, pool=vecdb.PoolConfig(min_size=1, max_size=1))
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def endpoint(registry: CollectorRegistry) -> Iterator[str]:
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def _scrape(url: str) -> dict[str, list[Sample]]:
    def get() -> str:
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - 127.0.0.1
            return str(response.read().decode())

    text = await anyio.to_thread.run_sync(get)
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def _value(samples: list[Sample], name: str, **labels: str) -> float:
    [found] = [s.value for s in samples if s.name == name and s.labels == labels]
    return found


async def _load(db: vecdb.Database, n: int = 40) -> vecdb.Collection[Doc]:
    docs = await db.collection("docs", Doc, dim=8, filterable=("lang",))
    vectors = np.random.default_rng(0).standard_normal((n, 8)).astype(np.float32)
    await docs.upsert(
        Doc(id=i, lang="en" if i % 2 else "fr", embedding=vectors[i]) for i in range(n)
    )
    async with db.acquire() as conn:
        await conn.execute("SELECT pg_stat_force_next_flush()")
    await docs.analyze()
    return docs


async def test_a_scrape_has_every_metric_with_its_labels(
    db: vecdb.Database, registry: CollectorRegistry, endpoint: str
) -> None:
    docs = await _load(db)
    query = [1.0] + [0.0] * 7
    for _ in range(3):
        await docs.search(query, k=5)
    with pytest.raises(vecdb.ConfigError):
        await docs.search(query, k=0)
    registry.register(VecdbCollector(db))
    metrics = await _scrape(endpoint)

    durations = metrics["vecdb_operation_duration_seconds"]
    labels = {"operation": "search", "collection": "docs", "strategy": "hnsw"}
    assert _value(durations, "vecdb_operation_duration_seconds_count", **labels) == 3
    assert _value(durations, "vecdb_operation_duration_seconds_bucket", **labels, le="+Inf") == 3
    assert _value(durations, "vecdb_operation_duration_seconds_sum", **labels) > 0
    upsert = {"operation": "upsert", "collection": "docs", "strategy": ""}
    assert _value(durations, "vecdb_operation_duration_seconds_count", **upsert) == 1

    errors = metrics["vecdb_operation_errors"]
    assert _value(
        errors, "vecdb_operation_errors_total",
        operation="search", collection="docs", error_type="ConfigError",
    ) == 1  # fmt: skip

    pool = metrics["vecdb_pool_connections"]
    assert {s.labels["state"] for s in pool} == {"idle", "in_use"}
    assert _value(metrics["vecdb_pool_max_connections"], "vecdb_pool_max_connections") == 1
    waits = metrics["vecdb_pool_acquire_wait_seconds"]
    assert _value(waits, "vecdb_pool_acquire_wait_seconds_count") >= 5

    assert (
        _value(metrics["vecdb_migrations_pending"], "vecdb_migrations_pending", source="vecdb") == 0
    )
    assert (
        _value(metrics["vecdb_migration_version"], "vecdb_migration_version", source="vecdb") >= 1
    )
    assert (
        _value(metrics["vecdb_collection_rows"], "vecdb_collection_rows", collection="docs") == 40
    )
    sizes = metrics["vecdb_collection_bytes"]
    assert {s.labels["kind"] for s in sizes} == {"table", "toast", "index", "hnsw"}
    assert _value(sizes, "vecdb_collection_bytes", collection="docs", kind="hnsw") > 0


async def test_labels_never_carry_ids_values_or_query_text(
    db: vecdb.Database, registry: CollectorRegistry, endpoint: str
) -> None:
    docs = await _load(db)
    registry.register(VecdbCollector(db))
    for i in range(30):
        await docs.search([float(i + 1)] + [0.0] * 7, k=3, where={"lang": f"lang-{i}"})
        await docs.get(i)
    metrics = await _scrape(endpoint)
    values = {v for samples in metrics.values() for s in samples for v in s.labels.values()}
    allowed_labels = {"operation", "collection", "strategy", "error_type", "state", "le",
                      "source", "kind"}  # fmt: skip
    assert {k for samples in metrics.values() for s in samples for k in s.labels} <= allowed_labels
    assert not [v for v in values if "lang-" in v or "SELECT" in v]
    series = {
        (s.labels["operation"], s.labels["strategy"])
        for s in metrics["vecdb_operation_duration_seconds"]
        if s.name.endswith("_count")
    }
    # 30 filter values and 30 ids: still one series per operation and strategy.
    assert len(series) <= 4


def test_series_stay_bounded_however_many_collections() -> None:
    monitor = Monitor()
    for i in range(MAX_SERIES + 50):
        with monitor.operation("get", f"c{i}"):
            pass
    keys = [key for key, _ in monitor.series()]
    assert len(keys) == MAX_SERIES + 1
    [(_, other)] = [(k, s) for k, s in monitor.series() if k[1] == OTHER]
    assert other.histogram.count == 50


async def test_a_scrape_inside_the_event_loop_serves_without_blocking_it(
    db: vecdb.Database, registry: CollectorRegistry
) -> None:
    """An async handler's scrape: memory figures at once, the database's after refresh()."""
    await _load(db)
    collector = VecdbCollector(db)
    registry.register(collector)
    first = generate_latest(registry).decode()
    assert "vecdb_pool_connections" in first
    await collector.refresh()
    assert 'vecdb_collection_rows{collection="docs"} 40.0' in generate_latest(registry).decode()


async def test_a_scrape_after_close_still_answers(
    dsn: str, registry: CollectorRegistry, endpoint: str
) -> None:
    db = await vecdb.connect(dsn)
    registry.register(VecdbCollector(db))
    await db.close()
    metrics = await _scrape(endpoint)
    assert "vecdb_pool_connections" in metrics


@pytest.mark.parametrize(
    ("option", "value"),
    [("refresh_interval", -1), ("timeout", "5"), ("refresh_interval", True)],
    ids=["negative-interval", "str-timeout", "bool-interval"],
)
async def test_bad_options_are_refused_naming_them(
    db: vecdb.Database, registry: CollectorRegistry, option: str, value: object
) -> None:
    with pytest.raises(vecdb.ConfigError, match=option):
        VecdbCollector(db, **{option: value})  # type: ignore[arg-type]
    assert list(registry.collect()) == []  # nothing was registered


def test_without_prometheus_client_the_import_error_names_the_extra() -> None:
    script = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "try:\n"
        "    import vecdb.prometheus\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "import vecdb\n"
        "print('vecdb imports:', vecdb.connect.__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'vecdb[prometheus]'" in done.stdout
    assert "vecdb imports: connect" in done.stdout
