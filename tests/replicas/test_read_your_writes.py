"""Read your writes: a read right after a write, on a standby, finds the write (or is stale)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import pytest

import vecdb

from .conftest import Replicated

DIM = 8


class Note(vecdb.Record):
    id: int
    embedding: vecdb.Vector


def _vector(i: int) -> list[float]:
    return [float(i + 1), *([1.0] * (DIM - 1))]


async def _sql(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def test_a_write_is_found_by_the_next_search_on_a_replica_100_times_in_a_row(
    replicated_db: Replicated,
) -> None:
    # A generous bound: reads wait for replay up to it, and the test then checks
    # that no read needed the primary.
    config = vecdb.ReplicaConfig(consistency_wait=30.0, check_interval=3600)
    async with vecdb.connect(
        replicated_db.primary,
        replicas=replicated_db.standbys,
        read_your_writes=True,
        replica_config=config,
    ) as db:
        notes = await db.collection("notes", Note, dim=DIM, metric="l2", index=None)
        before = sum(s.reads for s in await db.replicas())
        for i in range(100):
            await notes.upsert([Note(id=i, embedding=_vector(i))])
            (hit,) = await notes.search(_vector(i), k=1)
            assert hit.record.id == i
            assert hit.distance == 0
        after = sum(s.reads for s in await db.replicas())
    assert after - before == 100  # every search ran on a standby
    name = replicated_db.database
    assert sum(s.statements(name, "<->") for s in replicated_db.topology.standbys) == 100


async def test_consistent_true_finds_a_write_100_times_in_a_row_without_read_your_writes(
    replicated_db: Replicated,
) -> None:
    """Per call: ``connect()`` keeps no positions, yet each such read sees the write.

    The pools commit synchronously: each write reaches the standbys at once
    rather than at the WAL writer's next round (200 ms under the servers'
    ``synchronous_commit=off``), which keeps the test short; replay still races
    the read.
    """
    config = vecdb.ReplicaConfig(consistency_wait=30.0, check_interval=3600)
    pool = vecdb.PoolConfig(server_settings={"synchronous_commit": "on"})
    async with vecdb.connect(
        replicated_db.primary, replicas=replicated_db.standbys, pool=pool, replica_config=config
    ) as db:
        notes = await db.collection("notes", Note, dim=DIM, metric="l2", index=None)
        before = sum(s.reads for s in await db.replicas())
        for i in range(100):
            await notes.upsert([Note(id=i, embedding=_vector(i))])
            (hit,) = await notes.search(_vector(i), k=1, consistent=True)
            assert hit.record.id == i
            assert hit.distance == 0
        after = sum(s.reads for s in await db.replicas())
    assert after - before == 100  # every search ran on a standby
    name = replicated_db.database
    assert sum(s.statements(name, "<->") for s in replicated_db.topology.standbys) == 100


_READS = [
    pytest.param(lambda c, **kw: c.get(7, **kw), id="get"),
    pytest.param(lambda c, **kw: c.get_many([7], **kw), id="get_many"),
    pytest.param(lambda c, **kw: c.count({"id": 7}, **kw), id="count"),
    pytest.param(lambda c, **kw: c.search(_vector(7), k=1, **kw), id="search"),
    pytest.param(lambda c, **kw: c.search_many([_vector(7)], k=1, **kw), id="search_many"),
]


def _found(result: object) -> bool:
    """Whether a read's result holds note 7."""
    if result is None:
        return False
    if isinstance(result, int):
        return result == 1
    if isinstance(result, Note):
        return result.id == 7
    if isinstance(result, list) and result and isinstance(result[0], list):
        result = result[0]
    assert isinstance(result, list)
    return any(getattr(r, "record", r).id == 7 for r in result)


@pytest.mark.parametrize("read", _READS)
async def test_with_replay_paused_a_read_is_stale_and_consistent_true_is_not(
    replicated_db: Replicated, read: Callable[..., Awaitable[object]]
) -> None:
    """The option matters: a standby that has not replayed the write answers without it."""
    config = vecdb.ReplicaConfig(
        max_lag_bytes=None, max_lag_seconds=None, consistency_wait=0.05, check_interval=3600
    )
    standbys, name = replicated_db.topology.standbys, replicated_db.database
    async with vecdb.connect(
        replicated_db.primary, replicas=replicated_db.standbys, replica_config=config
    ) as db:
        notes = await db.collection("notes", Note, dim=DIM, metric="l2", index=None)
        await notes.upsert([Note(id=i, embedding=_vector(i)) for i in range(5)])
        await replicated_db.replayed()
        # A check now: connect() waited only consistency_wait for the schema's replay.
        assert all(s.healthy for s in await db.replicas())
        for standby in standbys:
            await _sql(standby.dsn(name), "SELECT pg_wal_replay_pause()")
        try:
            await notes.upsert([Note(id=7, embedding=_vector(7))])
            reads = sum(s.reads for s in await db.replicas())
            assert not _found(await read(notes))  # a paused standby answered: stale
            assert not _found(await read(notes, consistent=False))
            assert sum(s.reads for s in await db.replicas()) > reads
            assert _found(await read(notes, consistent=True))  # waited, then the primary
        finally:
            for standby in standbys:
                await _sql(standby.dsn(name), "SELECT pg_wal_replay_resume()")


async def test_consistent_false_reads_a_stale_replica_despite_read_your_writes(
    replicated_db: Replicated,
) -> None:
    config = vecdb.ReplicaConfig(
        max_lag_bytes=None, max_lag_seconds=None, consistency_wait=0.05, check_interval=3600
    )
    standbys, name = replicated_db.topology.standbys, replicated_db.database
    async with vecdb.connect(
        replicated_db.primary,
        replicas=replicated_db.standbys,
        read_your_writes=True,
        replica_config=config,
    ) as db:
        notes = await db.collection("notes", Note, dim=DIM, metric="l2", index=None)
        await replicated_db.replayed()
        # A check now: connect() waited only consistency_wait for the schema's replay.
        assert all(s.healthy for s in await db.replicas())
        for standby in standbys:
            await _sql(standby.dsn(name), "SELECT pg_wal_replay_pause()")
        try:
            await notes.upsert([Note(id=7, embedding=_vector(7))])
            assert await notes.get(7, consistent=False) is None  # a stale standby, on purpose
            found = await notes.get(7)  # read_your_writes: waited, then the primary
            assert found is not None
            assert found.id == 7
        finally:
            for standby in standbys:
                await _sql(standby.dsn(name), "SELECT pg_wal_replay_resume()")


@pytest.mark.parametrize("consistent", [True, False, None])
async def test_without_replicas_consistent_is_accepted_and_changes_nothing(
    dsn: str, consistent: bool | None
) -> None:
    async with vecdb.connect(dsn) as db:
        notes = await db.collection("notes", Note, dim=DIM, metric="l2", index=None)
        await notes.upsert([Note(id=7, embedding=_vector(7))])
        for read in _READS:
            assert _found(await read.values[0](notes, consistent=consistent))
        plan = await notes.explain(_vector(7), k=1, consistent=consistent)
        assert plan.strategy == "exact"


@pytest.mark.parametrize("read", _READS)
@pytest.mark.parametrize("bad", ["yes", 1, 0.0], ids=["str", "int", "float"])
async def test_a_bad_consistent_is_refused_with_the_valid_values(
    dsn: str, read: Callable[..., Awaitable[object]], bad: object
) -> None:
    async with vecdb.connect(dsn) as db:
        notes = await db.collection("notes", Note, dim=DIM, metric="l2", index=None)
        await notes.upsert([Note(id=7, embedding=_vector(7))])
        with pytest.raises(vecdb.ConfigError, match=r"consistent must be True .* False .* None"):
            await read(notes, consistent=bad)
        assert await notes.count() == 1
