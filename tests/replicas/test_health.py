"""Health: lagging, paused, stopped and missing standbys leave the rotation, and come back.

Health checks are made rare (``check_interval``) and run on demand with
``db.replicas()``, so every test decides when a check happens.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import asyncpg
import pytest

import vecdb
from vecdb._server.replica_state import failure

from .conftest import Replicated

DIM = 64


class Doc(vecdb.Record):
    id: int
    embedding: vecdb.Vector


def _docs(n: int, start: int = 0) -> list[Doc]:
    return [
        Doc(id=i, embedding=[float(i + 1)] + [1.0] * (DIM - 1)) for i in range(start, start + n)
    ]


_QUERY = [1.0] * DIM


async def _sql(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def test_a_paused_standby_shows_its_lag_and_leaves_the_rotation_until_it_catches_up(
    replicated_db: Replicated,
) -> None:
    config = vecdb.ReplicaConfig(max_lag_bytes=64 * 1024, max_lag_seconds=None, check_interval=3600)
    paused, running = replicated_db.topology.standbys
    name = replicated_db.database
    async with vecdb.connect(
        replicated_db.primary, replicas=replicated_db.standbys, replica_config=config
    ) as db:
        docs = await db.collection("docs", Doc, dim=DIM, metric="l2", index=None)
        await replicated_db.replayed()
        await _sql(paused.dsn(name), "SELECT pg_wal_replay_pause()")
        try:
            await docs.upsert(_docs(2000))  # about 600 kB of WAL
            await replicated_db.replayed(running)
            first, second = await db.replicas()
            assert not first.healthy
            assert "bytes behind (max_lag_bytes=65536)" in first.reason
            assert first.lag_bytes is not None
            assert first.lag_bytes > 64 * 1024
            assert second.healthy
            for _ in range(3):
                assert len(await docs.search(_QUERY, k=2)) == 2
            assert paused.statements(name, "<->") == 0
            assert running.statements(name, "<->") == 3
        finally:
            await _sql(paused.dsn(name), "SELECT pg_wal_replay_resume()")
        await replicated_db.replayed()
        first, _ = await db.replicas()
        assert first.healthy
        assert first.lag_seconds == 0  # all received is replayed, however old the last commit


async def test_with_no_replica_left_reads_go_to_the_primary_and_it_is_logged_once(
    dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    nowhere = f"postgresql://postgres@/postgres?host={tmp_path}&port=5432"
    caplog.set_level(logging.INFO, logger="vecdb.replicas")
    async with vecdb.connect(dsn, replicas=[nowhere]) as db:
        docs = await db.collection("docs", Doc, dim=DIM, metric="l2", index=None)
        await docs.upsert(_docs(5))
        for _ in range(3):
            assert len(await docs.search(_QUERY, k=2)) == 2
        (status,) = await db.replicas()
    assert not status.healthy
    assert status.lag_bytes is None
    fallbacks = [r for r in caplog.records if "reads go to the primary" in r.getMessage()]
    assert len(fallbacks) == 1


async def test_fallback_raise_refuses_reads_but_not_writes(dsn: str, tmp_path: Path) -> None:
    nowhere = f"postgresql://postgres@/postgres?host={tmp_path}&port=5432"
    config = vecdb.ReplicaConfig(fallback="raise", check_interval=3600)
    async with vecdb.connect(dsn, replicas=[nowhere], replica_config=config) as db:
        docs = await db.collection("docs", Doc, dim=DIM, metric="l2", index=None)
        assert await docs.upsert(_docs(3)) == 3
        with pytest.raises(
            vecdb.ReplicaUnavailableError, match="no replica is in rotation"
        ) as info:
            await docs.search(_QUERY, k=2)
        assert str(tmp_path) in str(info.value)
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM docs") == 3


async def test_a_standby_stopped_mid_load_leaves_the_rotation_without_a_failed_call_and_rejoins(
    own_replicated_db: Replicated,
) -> None:
    """Four tasks search without pause; one standby is stopped (immediate) under them.

    A search in flight on it fails, is retried on the other standby, and no
    task sees an error. Started again, the standby rejoins at the next check.
    """
    stopped, _ = own_replicated_db.topology.standbys
    config = vecdb.ReplicaConfig(check_interval=3600)
    async with vecdb.connect(
        own_replicated_db.primary, replicas=own_replicated_db.standbys, replica_config=config
    ) as db:
        docs = await db.collection("docs", Doc, dim=DIM, metric="l2", index=None)
        await docs.upsert(_docs(50))
        await own_replicated_db.replayed()
        done = 0
        warmed, finished = asyncio.Event(), asyncio.Event()
        goal: list[int] = []  # searches to reach once the standby is down

        async def worker() -> None:
            nonlocal done
            while not finished.is_set():
                assert len(await docs.search(_QUERY, k=3)) == 3
                done += 1
                if done >= 40:
                    warmed.set()
                if goal and done >= goal[0]:
                    finished.set()

        async with asyncio.TaskGroup() as group:
            for _ in range(4):
                group.create_task(worker())
            await warmed.wait()
            await asyncio.to_thread(stopped.stop)
            goal.append(done + 100)
        first, second = await db.replicas()
        assert not first.healthy
        assert second.healthy
        await asyncio.to_thread(stopped.start)
        await own_replicated_db.replayed()
        first, _ = await db.replicas()
        assert first.healthy
        assert len(await docs.search(_QUERY, k=3)) == 3


def _caused(error: BaseException, cause: BaseException | None) -> BaseException:
    """``error`` with the chain ``raise error from cause`` gives it."""
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ConnectionResetError("reset by peer"), "down"),
        (_caused(vecdb.QueryTimeoutError("timed out"), TimeoutError()), None),
        (_caused(vecdb.ConnectError("cannot connect"), TimeoutError()), "down"),
    ],
    ids=["connection-reset", "query-timeout", "connect-timeout"],
)
def test_a_query_timeout_does_not_take_a_replica_out_of_rotation(
    error: BaseException, expected: str | None
) -> None:
    """A query past its timeout is the query's failure, not the server's: no retry elsewhere."""
    assert failure(error) == expected
