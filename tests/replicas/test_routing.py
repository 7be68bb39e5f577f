"""Reads go to the standbys, spread over both; writes, DDL and migrations to the primary.

Each server's own log is the witness: the test servers log every statement
(``log_statement=all``) with its database's name, and each test has its own
database.
"""

from __future__ import annotations

import asyncpg
import pytest

import vecdb

from .conftest import Replicated

DIM = 8


class Item(vecdb.Record):
    id: int
    tag: str
    embedding: vecdb.Vector


def _items(n: int, start: int = 0) -> list[Item]:
    return [
        Item(id=i, tag=f"t{i % 3}", embedding=[float(i + 1)] + [1.0] * (DIM - 1))
        for i in range(start, start + n)
    ]


_ONE_EACH = vecdb.PoolConfig(min_size=1, max_size=1, application_name="vecdb-replica-test")
_QUIET = vecdb.ReplicaConfig(check_interval=3600, choice="round_robin")


async def test_searches_spread_over_both_standbys_and_writes_stay_on_the_primary(
    replicated_db: Replicated,
) -> None:
    async with vecdb.connect(
        replicated_db.primary,
        replicas=replicated_db.standbys,
        pool=_ONE_EACH,
        replica_config=_QUIET,
    ) as db:
        items = await db.collection("items", Item, dim=DIM, index=None)
        await items.upsert(_items(20))
        await replicated_db.replayed()
        for _ in range(4):
            hits = await items.search([1.0] * DIM, k=3)
            assert len(hits) == 3
        top, name = replicated_db.topology, replicated_db.database
        assert [s.statements(name, "<=>") for s in top.standbys] == [2, 2]
        assert top.primary.statements(name, "<=>") == 0
        assert top.primary.statements(name, "INSERT INTO") > 0
        assert [s.statements(name, "INSERT INTO") for s in top.standbys] == [0, 0]
        statuses = await db.replicas()
    assert [s.reads for s in statuses] == [2, 2]
    assert all(s.healthy for s in statuses)


@pytest.mark.parametrize(
    "read",
    [
        pytest.param(lambda c: c.get(3), id="get"),
        pytest.param(lambda c: c.get_many([1, 2]), id="get_many"),
        pytest.param(lambda c: c.count({"tag": "t1"}), id="count"),
        pytest.param(lambda c: c.explain([1.0] * DIM, k=2), id="explain"),
        pytest.param(lambda c: c.search_many([[1.0] * DIM] * 3, k=2), id="search_many"),
    ],
)
async def test_every_read_goes_to_a_standby(replicated_db: Replicated, read: object) -> None:
    async with vecdb.connect(
        replicated_db.primary, replicas=replicated_db.standbys, replica_config=_QUIET
    ) as db:
        items = await db.collection("items", Item, dim=DIM, index=None)
        await items.upsert(_items(6))
        await replicated_db.replayed()
        before = sum(s.reads for s in (await db.replicas()))
        await read(items)  # type: ignore[operator]
        after = sum(s.reads for s in (await db.replicas()))
    assert after > before


async def test_acquire_readonly_gives_a_standby_with_the_pools_session_settings(
    replicated_db: Replicated,
) -> None:
    pool = vecdb.PoolConfig(server_settings={"hnsw.ef_search": "77", "work_mem": "7MB"})
    async with vecdb.connect(
        replicated_db.primary, replicas=replicated_db.standbys, pool=pool
    ) as db:
        async with db.acquire(readonly=True) as conn:
            assert await conn.fetchval("SELECT pg_is_in_recovery()")
            assert await conn.fetchval("SHOW hnsw.ef_search") == "77"
            assert await conn.fetchval("SHOW work_mem") == "7MB"
        conn = await db.acquire(readonly=True)
        try:
            assert await conn.fetchval("SELECT pg_is_in_recovery()")
        finally:
            await db.release(conn)
        async with db.acquire() as conn:
            assert not await conn.fetchval("SELECT pg_is_in_recovery()")
        async with db.transaction() as conn:
            assert not await conn.fetchval("SELECT pg_is_in_recovery()")


async def test_migrations_refuse_a_standby_given_as_the_primary(
    replicated_db: Replicated,
) -> None:
    with pytest.raises(vecdb.ConfigError, match=r"is a standby \(pg_is_in_recovery\(\) is true\)"):
        await vecdb.connect(replicated_db.standbys[0])
    conn = await asyncpg.connect(replicated_db.primary)
    try:
        assert await conn.fetchval("SELECT to_regnamespace('vecdb') IS NULL")
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("replicas", "message"),
    [
        pytest.param([""], "replicas= must be DSN strings", id="empty"),
        pytest.param([None], "replicas= must be DSN strings", id="not-a-string"),
    ],
)
async def test_bad_replica_dsns_are_refused_before_anything_runs(
    replicated_db: Replicated, replicas: list[object], message: str
) -> None:
    with pytest.raises(vecdb.ConfigError, match=message):
        await vecdb.connect(replicated_db.primary, replicas=replicas)  # type: ignore[arg-type]
    conn = await asyncpg.connect(replicated_db.primary)
    try:
        assert await conn.fetchval("SELECT to_regnamespace('vecdb') IS NULL")
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        pytest.param({"fallback": "nowhere"}, "fallback", id="fallback"),
        pytest.param({"choice": "random"}, "choice", id="choice"),
        pytest.param({"max_lag_bytes": -1}, "max_lag_bytes", id="negative-bytes"),
        pytest.param({"check_interval": 0}, "check_interval", id="zero-interval"),
        pytest.param({"max_lag": 5}, "unknown setting 'max_lag'", id="unknown"),
    ],
)
def test_bad_replica_config_is_refused(settings: dict[str, object], message: str) -> None:
    with pytest.raises(vecdb.ConfigError, match=message):
        vecdb.ReplicaConfig(**settings)  # type: ignore[arg-type]


def test_replica_dsns_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from vecdb._server.replicas import replica_dsns  # noqa: PLC0415 - the one reader of it

    monkeypatch.setenv("VECDB_REPLICA_DSNS", " postgresql:///a?host=/x , postgresql:///b?host=/y,")
    assert replica_dsns(None) == ["postgresql:///a?host=/x", "postgresql:///b?host=/y"]
    assert replica_dsns([]) == []
