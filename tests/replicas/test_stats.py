"""Each replica's lag in ``db.stats()``, ``vecdb stats`` and Prometheus, on real standbys.

One standby's replay is paused after a write, so the two differ: the paused one
is behind in bytes and out of the rotation, the other has replayed everything.
The replica DSNs carry a password (the test servers trust local connections, so
it is never checked): no output may show it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import asyncpg
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import vecdb
from vecdb.prometheus import VecdbCollector

from .conftest import Replicated

DIM = 16
_SECRET = "s3cret-pw"  # noqa: S105 - a password no output may show


class Doc(vecdb.Record):
    id: int
    embedding: vecdb.Vector


def _with_password(dsn: str) -> str:
    return dsn.replace("postgresql://postgres@", f"postgresql://postgres:{_SECRET}@", 1)


async def _sql(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
async def lagging(replicated_db: Replicated) -> AsyncIterator[tuple[vecdb.Database, list[str]]]:
    """A `Database` over both standbys, the first paused behind a write; and their shown DSNs."""
    paused, running = replicated_db.topology.standbys
    dsns = [_with_password(d) for d in replicated_db.standbys]
    config = vecdb.ReplicaConfig(max_lag_bytes=64 * 1024, max_lag_seconds=None, check_interval=3600)
    async with vecdb.connect(replicated_db.primary, replicas=dsns, replica_config=config) as db:
        docs = await db.collection("docs", Doc, dim=DIM, index=None)
        await replicated_db.replayed()
        await _sql(paused.dsn(replicated_db.database), "SELECT pg_wal_replay_pause()")
        try:
            await docs.upsert(Doc(id=i, embedding=[1.0 + i] * DIM) for i in range(1000))
            await replicated_db.replayed(running)
            # The DSNs as every output shows them: the password masked.
            yield db, [d.replace("postgres@", "postgres:***@", 1) for d in replicated_db.standbys]
        finally:
            await _sql(paused.dsn(replicated_db.database), "SELECT pg_wal_replay_resume()")


async def test_stats_report_each_replicas_lag_as_db_replicas_does(
    lagging: tuple[vecdb.Database, list[str]],
) -> None:
    db, standbys = lagging
    stats = await db.stats(top=0)
    paused, running = stats.replicas
    assert [r.dsn for r in stats.replicas] == standbys  # the password redacted away
    assert not paused.healthy
    assert "bytes behind (max_lag_bytes=65536)" in paused.reason
    assert paused.lag_bytes is not None
    assert paused.lag_bytes > 64 * 1024
    assert running.healthy
    assert (running.lag_bytes, running.lag_seconds) == (0, 0)
    again = await db.replicas()
    assert [(r.dsn, r.healthy, r.lag_bytes) for r in again] == [
        (r.dsn, r.healthy, r.lag_bytes) for r in stats.replicas
    ]
    plain = stats.to_dict()
    assert plain["replicas"][0]["lag_bytes"] == paused.lag_bytes
    assert plain["replicas"][1] | {"reads": 0} == {
        "dsn": standbys[1], "healthy": True, "reason": "", "lag_bytes": 0,
        "lag_seconds": 0.0, "in_flight": 0, "reads": 0, "conflicts": 0,
    }  # fmt: skip
    assert _SECRET not in json.dumps(plain)


async def test_stats_without_replicas_has_none(dsn: str) -> None:
    async with vecdb.connect(dsn) as db:
        assert (await db.stats(top=0)).replicas == ()


async def test_vecdb_stats_prints_each_replicas_lag_as_text_and_json(
    lagging: tuple[vecdb.Database, list[str]], replicated_db: Replicated
) -> None:
    _, standbys = lagging
    with_password = [_with_password(d) for d in replicated_db.standbys]
    env = os.environ | {"VECDB_REPLICA_DSNS": ",".join(with_password)}
    env["VECDB_REPLICA_MAX_LAG_BYTES"] = "65536"

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "vecdb", "stats", "--dsn", replicated_db.primary, *args],
            capture_output=True, text=True, timeout=120, check=False, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert _SECRET not in done.stdout + done.stderr
        return done.stdout

    text = run()
    header = next(line for line in text.splitlines() if line.startswith("replica "))
    assert header.split() == ["replica", "in", "rotation", "lag", "s", "lag", "reads",
                              "conflicts", "why", "out"]  # fmt: skip
    paused_line, running_line = (
        next(line for line in text.splitlines() if line.startswith(d)) for d in standbys
    )
    assert "  no  " in paused_line
    assert "bytes behind (max_lag_bytes=65536)" in paused_line
    assert running_line.split()[1:5] == ["yes", "0.000", "0", "B"]
    replicas = json.loads(run("--json"))["replicas"]
    assert [r["dsn"] for r in replicas] == standbys
    assert [r["healthy"] for r in replicas] == [False, True]
    assert replicas[0]["lag_bytes"] > 64 * 1024
    assert (replicas[1]["lag_bytes"], replicas[1]["lag_seconds"]) == (0, 0.0)


async def test_prometheus_has_each_replicas_lag_and_rotation(
    lagging: tuple[vecdb.Database, list[str]],
) -> None:
    db, standbys = lagging
    registry = CollectorRegistry()
    collector = VecdbCollector(db)
    registry.register(collector)
    await collector.refresh()
    text = generate_latest(registry).decode()
    assert _SECRET not in text
    samples = {
        (s.name, s.labels.get("replica")): s.value
        for family in text_string_to_metric_families(text)
        if family.name.startswith("vecdb_replica_")
        for s in family.samples
    }
    paused, running = standbys
    assert samples[("vecdb_replica_in_rotation", paused)] == 0
    assert samples[("vecdb_replica_in_rotation", running)] == 1
    assert samples[("vecdb_replica_lag_bytes", paused)] > 64 * 1024
    assert samples[("vecdb_replica_lag_bytes", running)] == 0
    assert samples[("vecdb_replica_lag_seconds", running)] == 0
    assert ("vecdb_replica_lag_seconds", paused) in samples
