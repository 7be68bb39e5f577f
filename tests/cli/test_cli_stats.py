"""``vecdb stats``, run end to end as a subprocess: its tables, its JSON, its bad options.

What each figure means is specified in tests/monitor/test_stats.py; here,
only what the command adds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator

import numpy as np
import pytest

import vecdb


class Doc(vecdb.Record):
    id: int
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


def _stats(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vecdb", "stats", "--dsn", dsn, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _load(db: vecdb.Database) -> None:
    docs = await db.collection("docs", Doc, dim=4)
    vectors = np.random.default_rng(0).standard_normal((25, 4)).astype(np.float32)
    await docs.upsert(Doc(id=i, embedding=vectors[i]) for i in range(25))
    async with db.acquire() as conn:
        await conn.execute("DROP EXTENSION IF EXISTS pg_stat_statements")
        await conn.execute("SELECT pg_stat_force_next_flush()")
    await docs.analyze()


async def test_stats_prints_the_server_the_pool_collections_and_why_no_statements(
    db: vecdb.Database, dsn: str
) -> None:
    await _load(db)
    done = _stats(dsn)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("server      PostgreSQL ")
    assert "pgvector 0." in out
    assert "acquire wait p50" in out
    lines = out.splitlines()
    [header] = [line for line in lines if line.startswith("collection ")]
    assert header.split()[:6] == ["collection", "rows", "table", "toast", "index", "hnsw"]
    [docs] = [line for line in lines if line.startswith("docs ")]
    assert docs.split()[1] == "25"
    assert "statements: none (the pg_stat_statements extension is not created" in out


async def test_stats_json_is_the_stats_as_plain_values(db: vecdb.Database, dsn: str) -> None:
    await _load(db)
    done = _stats(dsn, "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert set(data) == {
        "taken_at", "pool", "server", "collections", "operations", "statements", "replicas",
    }  # fmt: skip
    assert data["replicas"] == []  # none configured (tests/replicas has them)
    assert [(c["name"], c["rows"]) for c in data["collections"]] == [("docs", 25)]
    assert data["statements"]["available"] is False
    assert data["statements"]["top"] == []
    assert data["pool"]["max_size"] == 1  # the command's own pool


@pytest.mark.parametrize("top", ["-1", "1001", "many"], ids=["negative", "too-many", "word"])
def test_a_bad_top_is_refused_before_connecting(top: str) -> None:
    # An unreachable DSN: had the command connected, the error would be a connect error.
    done = _stats("postgresql://nobody@127.0.0.1:1/none", "--top", top)
    assert done.returncode == 2
    assert "--top must be a whole number 0..1000" in done.stderr
    assert done.stdout == ""


def test_stats_on_an_unreachable_server_exits_1_with_the_error() -> None:
    done = _stats("postgresql://nobody@127.0.0.1:1/none", "--json")
    assert done.returncode == 1
    assert json.loads(done.stdout)["error"]["type"] == "ConnectError"
