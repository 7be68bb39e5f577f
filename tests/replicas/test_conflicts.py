"""Conflicts with recovery, made for real: retried once on the other standby, then typed.

The standbys run with ``max_standby_streaming_delay=0`` (replay cancels a
conflicting query at once) and ``hot_standby_feedback=off``. A conflict is
built step by step, each step waiting on the servers' own state, not on time:

1. on the primary, transaction A takes ``ACCESS EXCLUSIVE`` on one partition of
   a value-partitioned collection and stays open; the standbys replay the lock,
   so their startup process holds it;
2. a search starts; on its standby it locks the parent table, then waits for
   the partition (seen in ``pg_stat_activity`` as a ``Lock`` wait);
3. transaction B takes ``ACCESS EXCLUSIVE`` on the parent alone (``ONLY``) and
   commits: replaying that lock conflicts with the waiting search, which the
   standby cancels ("canceling statement due to conflict with recovery",
   SQLSTATE 40001);
4. vecdb runs the search again on the other standby, where it waits the same way.
   Then either A commits (the retry finishes: the call succeeds) or another B
   cancels the retry too (the call raises `ReplicaConflictError`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

import vecdb

from ._topology import Server, Topology, topology
from .conftest import Replicated, _database

DIM = 8
_POLL = 0.005  # seconds between looks at the standbys' state
_BOUND = 2000  # looks before a step is declared stuck (about 10 s and more)


class Doc(vecdb.Record):
    id: int
    tenant: str
    embedding: vecdb.Vector


_QUERY = [1.0] * DIM
_CONFIG = vecdb.ReplicaConfig(check_interval=3600)
_WAITING = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend'
  AND wait_event_type = 'Lock'
"""
_LOCK_CONFLICTS = (
    "SELECT confl_lock FROM pg_stat_database_conflicts WHERE datname = current_database()"
)


@pytest.fixture(scope="module")
def conflicting() -> Iterator[Topology]:
    """A primary and two standbys that cancel conflicting queries at once."""
    settings = {"max_standby_streaming_delay": "0", "hot_standby_feedback": "off"}
    with topology(2, log_statements=False, standby_settings=settings) as built:
        yield built


@pytest.fixture
async def conflict_db(conflicting: Topology) -> AsyncIterator[Replicated]:
    async for made in _database(conflicting):
        yield made


async def _waiting_on(standbys: list[Server], database: str) -> Server:
    """The standby where a query of ``database`` waits for a lock (polled, bounded)."""
    conns = [await asyncpg.connect(s.dsn(database)) for s in standbys]
    try:
        for _ in range(_BOUND):
            for server, conn in zip(standbys, conns, strict=True):
                if await conn.fetchval(_WAITING):
                    return server
            await asyncio.sleep(_POLL)
    finally:
        for conn in conns:
            await conn.close()
    pytest.fail(f"no query waited for a lock on {[s.name for s in standbys]}")


async def _lock_conflicts(standby: Server, database: str, at_least: int) -> int:
    """``pg_stat_database_conflicts.confl_lock``, once it reaches ``at_least`` (bounded).

    A cancelled backend hands its conflict to the statistics when it exits (or
    ten seconds later when idle): read it after closing the `Database`, polled,
    since a backend exits a little after its client closed.
    """
    conn = await asyncpg.connect(standby.dsn(database))
    try:
        for _ in range(_BOUND):
            count: int = await conn.fetchval(_LOCK_CONFLICTS)
            if count >= at_least:
                return count
            await asyncio.sleep(_POLL * 10)
        return count
    finally:
        await conn.close()


async def _primary(dsn: str) -> asyncpg.Connection:
    # The test servers run with synchronous_commit=off, where WAL reaches the
    # standbys when the WAL writer gets to it (an open transaction's lock record:
    # seconds later). A synchronous commit flushes everything before it, at once.
    return await asyncpg.connect(dsn, server_settings={"synchronous_commit": "on"})


async def _flush(dsn: str) -> None:
    """Send the primary's WAL to the standbys now: a synchronous commit of an xid."""
    conn = await _primary(dsn)
    try:
        await conn.execute("SELECT pg_current_xact_id()")
    finally:
        await conn.close()


async def _lock_parent(dsn: str) -> None:
    """Transaction B: the parent table alone, ACCESS EXCLUSIVE, committed (WAL-logged)."""
    conn = await _primary(dsn)
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE ONLY docs IN ACCESS EXCLUSIVE MODE")
    finally:
        await conn.close()


async def _setup(
    db: vecdb.Database, where: Replicated
) -> tuple[vecdb.Collection[Doc], asyncpg.Connection, asyncpg.transaction.Transaction]:
    """The collection, and transaction A holding one partition (replayed on both standbys)."""
    docs = await db.collection(
        "docs", Doc, dim=DIM, metric="l2", index=None, partition=vecdb.ValuePartitions("tenant")
    )
    await docs.upsert(
        [Doc(id=i, tenant=f"t{i % 2}", embedding=[float(i), *_QUERY[1:]]) for i in range(20)]
    )
    partition = (await docs.partitions())[0].name
    holder = await _primary(where.primary)
    held = holder.transaction()
    await held.start()
    await holder.execute(f'LOCK TABLE "{partition}" IN ACCESS EXCLUSIVE MODE')
    await _flush(where.primary)
    await where.replayed()  # both startup processes now hold the partition
    return docs, holder, held


async def test_a_search_cancelled_by_replay_is_retried_on_the_other_standby_and_succeeds(
    conflict_db: Replicated,
) -> None:
    name, standbys = conflict_db.database, conflict_db.topology.standbys
    async with vecdb.connect(
        conflict_db.primary, replicas=conflict_db.standbys, replica_config=_CONFIG
    ) as db:
        docs, holder, held = await _setup(db, conflict_db)
        try:
            before = {s.name: await _lock_conflicts(s, name, 0) for s in standbys}
            search = asyncio.create_task(docs.search(_QUERY, k=3))
            first = await _waiting_on(standbys, name)
            await _lock_parent(conflict_db.primary)  # replay cancels the search on `first`
            other = [s for s in standbys if s is not first]
            assert await _waiting_on(other, name) is other[0]  # the retry
            await held.commit()  # the partition is free: the retry finishes
            hits = await search
        finally:
            await holder.close()
        assert len(hits) == 3
        statuses = {s.dsn: s for s in await db.replicas()}
        (operation,) = [o for o in (await db.stats(top=0)).operations if o.operation == "search"]
    # Closed: the standbys' backends exit and report their conflicts.
    cancelled = statuses[first.dsn(name)]
    assert cancelled.conflicts == 1
    assert cancelled.healthy  # a conflict is no fault of the standby's: it stays in rotation
    assert statuses[other[0].dsn(name)].conflicts == 0
    assert (operation.calls, operation.errors) == (1, 0)
    # The standby's own statistics saw the conflict: the test did not pass vacuously.
    assert await _lock_conflicts(first, name, before[first.name] + 1) == before[first.name] + 1


async def test_a_second_conflict_on_the_retry_raises_replica_conflict_error(
    conflict_db: Replicated,
) -> None:
    name, standbys = conflict_db.database, conflict_db.topology.standbys
    async with vecdb.connect(
        conflict_db.primary, replicas=conflict_db.standbys, replica_config=_CONFIG
    ) as db:
        docs, holder, held = await _setup(db, conflict_db)
        try:
            before = [await _lock_conflicts(s, name, 0) for s in standbys]
            search = asyncio.create_task(docs.search(_QUERY, k=3))
            first = await _waiting_on(standbys, name)
            await _lock_parent(conflict_db.primary)
            other = [s for s in standbys if s is not first]
            await _waiting_on(other, name)
            await _lock_parent(conflict_db.primary)  # and again, under the retry
            with pytest.raises(vecdb.ReplicaConflictError, match="cancelled twice") as info:
                await search
            await held.commit()
        finally:
            await holder.close()
        statuses = await db.replicas()
        (operation,) = [o for o in (await db.stats(top=0)).operations if o.operation == "search"]
        assert len(await docs.search(_QUERY, k=3)) == 3  # nothing is left broken
    assert info.value.sqlstate == "40001"
    assert "conflict with recovery" in str(info.value)
    assert [s.conflicts for s in statuses] == [1, 1]
    assert all(s.healthy for s in statuses)
    assert operation.error_types == {"ReplicaConflictError": 1}
    after = [await _lock_conflicts(s, name, b + 1) for s, b in zip(standbys, before, strict=True)]
    assert after == [b + 1 for b in before]
