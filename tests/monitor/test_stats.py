"""``db.stats()``: the pool, the server, collections, operations and statements, on a real server.

Statistics views are fed when a backend flushes its counters: tests that read
them use a pool of one connection and call ``pg_stat_force_next_flush()`` on it
(see tests/server/test_doctor.py), so no test waits on the server's timers.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

import vecdb
from vecdb._monitor.histogram import BOUNDS, Histogram

ONE = vecdb.PoolConfig(min_size=1, max_size=1)


class Doc(vecdb.Record):
    id: int
    lang: str
    created: dt.datetime
    embedding: vecdb.Vector


def _docs(n: int, dim: int = 8) -> list[Doc]:
    vectors = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
    day = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return [
        Doc(id=i, lang="en" if i % 2 else "fr", created=day + dt.timedelta(days=i % 60),
            embedding=vectors[i])
        for i in range(n)
    ]  # fmt: skip


async def _flush(db: vecdb.Database) -> None:
    async with db.acquire() as conn:
        await conn.execute("SELECT pg_stat_force_next_flush()")


# -- the histogram -------------------------------------------------------------------------------


def test_a_percentile_is_within_one_bucket_above_the_true_value() -> None:
    h = Histogram()
    values = np.random.default_rng(1).lognormal(-6, 1, 10_000)
    for v in values:
        h.add(float(v))
    for q in (0.5, 0.95, 0.99):
        true = float(np.quantile(values, q))
        assert true <= h.quantile(q) * 1.0000001 <= true * 1.15


def test_the_histogram_has_a_fixed_size_whatever_it_records() -> None:
    h = Histogram()
    for v in (1e-9, 0.001, 1e6):
        h.add(v)
    assert len(h.counts) == len(BOUNDS) + 1
    assert h.count == 3
    assert h.quantile(1.0) == 1e6  # above the last bound: the largest value seen


# -- db.stats() ------------------------------------------------------------------------------------


async def test_stats_reports_each_part_typed_and_as_json(dsn: str) -> None:
    async with vecdb.connect(dsn, pool=ONE) as db:
        docs = await db.collection("docs", Doc, dim=8, filterable=("lang",))
        await docs.upsert(_docs(300))
        await _flush(db)
        await docs.analyze()
        stats = await db.stats()
    assert isinstance(stats, vecdb.Stats)
    assert stats.pool.acquisitions >= 1
    assert 0 <= stats.pool.wait_ms_p50 <= stats.pool.wait_ms_p99
    assert stats.server.version.split(".")[0].isdigit()
    assert stats.server.pgvector_version
    assert stats.server.uptime_s > 0
    assert stats.server.connections.get("active", 0) >= 1  # the one reading these figures
    assert stats.server.database_bytes > 0
    [col] = stats.collections
    assert (col.name, col.table, col.rows, col.partitions) == ("docs", "public.docs", 300, 0)
    assert col.table_bytes > 0
    assert col.hnsw_bytes > 0
    assert col.index_bytes > 0  # the primary key and the lang index
    assert col.last_analyze is not None
    # Plain JSON, with the same figures.
    plain = json.loads(json.dumps(stats.to_dict()))
    assert plain["collections"][0]["rows"] == 300
    assert plain["pool"]["wait_ms_p99"] == stats.pool.wait_ms_p99
    assert isinstance(plain["taken_at"], str)


async def test_operations_are_counted_per_operation_collection_and_strategy(
    db: vecdb.Database,
) -> None:
    docs = await db.collection("docs", Doc, dim=8, filterable=("lang",))
    await docs.upsert(_docs(50))
    query = _docs(1)[0].embedding
    for _ in range(3):
        await docs.search(query, k=5)
    await docs.search(query, k=5, exact=True)
    await docs.get(1)
    await docs.get_many([1, 2, 999])
    await docs.count()
    await docs.delete([1])
    with pytest.raises(vecdb.ConfigError):
        await docs.search(query, k=0)
    ops = {(o.operation, o.strategy): o for o in (await db.stats()).operations}
    assert set(ops) == {
        ("upsert", None),
        ("search", "hnsw"),
        ("search", "exact"),
        ("search", None),  # the failed one: refused before a strategy was chosen
        ("get", None),
        ("get_many", None),
        ("count", None),
        ("delete", None),
    }
    hnsw = ops[("search", "hnsw")]
    assert (hnsw.calls, hnsw.errors, hnsw.collection) == (3, 0, "docs")
    assert 0 < hnsw.p50_ms <= hnsw.p95_ms <= hnsw.p99_ms <= hnsw.max_ms
    failed = ops[("search", None)]
    assert (failed.calls, failed.errors, failed.error_types) == (1, 1, {"ConfigError": 1})
    assert failed.p50_ms == 0.0  # latencies are of successful calls only


async def test_a_partitioned_collection_reports_its_partitions_summed(dsn: str) -> None:
    async with vecdb.connect(dsn, pool=ONE) as db:
        docs = await db.collection(
            "events", Doc, dim=8, partition=vecdb.TimePartitions("created", interval="month")
        )
        await docs.upsert(_docs(120))
        await _flush(db)
        await docs.analyze()
        [col] = (await db.stats()).collections
    assert col.partitions >= 2  # January and February 2026 at least
    assert col.rows == 120
    assert col.hnsw_bytes > 0


async def test_stats_without_pg_stat_statements_are_empty_with_the_reason(
    db: vecdb.Database,
) -> None:
    async with db.acquire() as conn:
        await conn.execute("DROP EXTENSION IF EXISTS pg_stat_statements")
    statements = (await db.stats()).statements
    assert not statements.available
    assert len(statements) == 0
    assert list(statements) == []
    assert statements.reason is not None
    assert "CREATE EXTENSION pg_stat_statements" in statements.reason


async def test_stats_list_the_top_statements_where_pg_stat_statements_is_loaded() -> None:
    """The embedded server vecdb starts loads pg_stat_statements (it is tuned at start)."""
    with tempfile.TemporaryDirectory(prefix="vecdb-stats-") as root:
        async with vecdb.connect(data_dir=Path(root) / "data", pool=ONE) as db:
            async with db.acquire() as conn:
                await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            docs = await db.collection("docs", Doc, dim=8)
            await docs.upsert(_docs(20))
            for _ in range(5):
                await docs.count()
            stats = await db.stats(top=50)
            top_one = await db.stats(top=1)
    assert stats.statements.available, stats.statements.reason
    assert stats.statements.reason is None
    counts = [s for s in stats.statements if s.query.startswith("SELECT count(*) FROM")]
    assert counts
    assert counts[0].calls >= 5
    assert counts[0].total_ms >= counts[0].mean_ms >= 0
    assert len(top_one.statements) == 1


@pytest.mark.parametrize("top", [-1, 1001, True, "5"], ids=["negative", "too-many", "bool", "str"])
async def test_a_bad_top_is_refused_naming_it(db: vecdb.Database, top: object) -> None:
    before = db.pool_stats().acquisitions
    with pytest.raises(vecdb.ConfigError, match="top"):
        await db.stats(top=top)  # type: ignore[arg-type]
    assert db.pool_stats().acquisitions == before  # refused before any I/O


async def test_stats_on_a_database_never_migrated_has_no_collections(dsn: str) -> None:
    async with vecdb.connect(dsn, migrate="off", pool=ONE) as db:
        stats = await db.stats()
    assert stats.collections == ()
    assert stats.server.pgvector_version is None


async def test_stats_after_close_raises_database_closed(dsn: str) -> None:
    db = await vecdb.connect(dsn, pool=ONE)
    await db.close()
    with pytest.raises(vecdb.DatabaseClosedError):
        await db.stats()
