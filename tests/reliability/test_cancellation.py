"""Cancelled calls: the server stops their work, and nothing they touched is left behind.

A search cancelled while the server runs it gets its backend's statement
cancelled (asyncpg sends the cancel request, and the pool's release waits for
it): ``pg_stat_activity`` shows the backend idle again, not still at work. A
storm of 200 searches (with settings and filters) and 50 upserts, 50 of them
cancelled at random points, leaves every connection back in the pool and
idle, no backend idle in a transaction, no setting leaked into a pooled
session, and no upsert half-written.
"""

from __future__ import annotations

import asyncio
import logging
import random

import anyio
import asyncpg
import pytest

import vecdb

from ._load import DIM, Doc, check_rows, doc, query

logger = logging.getLogger(__name__)


async def _state(observer: asyncpg.Connection, pid: int) -> tuple[str | None, str | None]:
    row = await observer.fetchrow(
        "SELECT state, wait_event_type FROM pg_stat_activity WHERE pid = $1", pid
    )
    return (row["state"], row["wait_event_type"]) if row is not None else (None, None)


async def _until(observer: asyncpg.Connection, pid: int | None, wanted: set[object]) -> int:
    """Poll another session's state (there is no event to wait on) until it is ``wanted``."""
    with anyio.fail_after(20):
        while True:
            if pid is None:
                found = await observer.fetchval(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = 'vecdb' "
                    "AND wait_event_type = 'Lock' AND datname = current_database()"
                )
                if found is not None:
                    return int(found)
            elif (await _state(observer, pid))[0] in wanted:
                return pid
            await asyncio.sleep(0.02)


async def test_a_cancelled_search_gets_its_backend_cancelled(dsn: str) -> None:
    async with vecdb.connect(dsn, pool=vecdb.PoolConfig(min_size=1, max_size=2)) as db:
        docs = await db.collection("docs", Doc, dim=DIM)
        await docs.upsert([doc(i) for i in range(1, 100)])
        locker, observer = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
        try:
            async with locker.transaction():
                # The search's statement waits on this lock for as long as it is held:
                # it stops only if the server is told to stop it.
                await locker.execute("LOCK TABLE docs IN ACCESS EXCLUSIVE MODE")
                search = asyncio.create_task(docs.search(query(1), k=5, ef_search=64))
                pid = await _until(observer, None, set())
                assert await _state(observer, pid) == ("active", "Lock")
                search.cancel()
                with anyio.fail_after(10), pytest.raises(asyncio.CancelledError):
                    await search
                # Still under our lock: had the statement not been cancelled on the
                # server, it would wait for it, active, for as long as we hold it.
                await _until(observer, pid, {"idle", None})
                assert (
                    await locker.fetchval(
                        "SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted", pid
                    )
                    == 0
                )
        finally:
            await locker.close()
            await observer.close()
        assert db.pool_stats().in_use == 0
        assert len(await docs.search(query(1), k=5)) == 5


SEARCHES = 200
UPSERTS = 50
CANCELLED = 50
BATCH = 20


async def test_a_cancellation_storm_leaves_nothing_behind(dsn: str) -> None:
    rng = random.Random(10)  # noqa: S311 - cancel points, not secrets
    config = vecdb.PoolConfig(min_size=2, max_size=8, acquire_timeout=60, statement_timeout=30)
    async with vecdb.connect(dsn, pool=config) as db:
        docs = await db.collection("docs", Doc, dim=DIM, filterable=("year",))
        await docs.upsert([doc(i) for i in range(1, 2001)])

        async def search(n: int) -> object:
            # Settings (SET LOCAL ef_search, iterative scans under a filter) and filters.
            return await docs.search(
                query(n), k=10, ef_search=40 + n % 60, where={"year": {"$gte": 2000 + n % 20}}
            )

        async def upsert(n: int) -> object:
            first = 100_000 + n * BATCH
            return await docs.upsert([doc(i) for i in range(first, first + BATCH)])

        calls = [search(n) for n in range(SEARCHES)] + [upsert(n) for n in range(UPSERTS)]
        tasks = [asyncio.create_task(c) for c in calls]
        victims = rng.sample(range(len(tasks)), CANCELLED)

        async def cancel_later(index: int) -> None:
            await asyncio.sleep(rng.uniform(0, 0.3))  # a random point in the call's life
            tasks[index].cancel()

        with anyio.fail_after(120):
            await asyncio.gather(*(cancel_later(i) for i in victims))
            results = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert all(isinstance(e, asyncio.CancelledError) for e in errors), errors
        cancelled = len(errors)
        logger.info(
            "storm: %d of %d calls cancelled (%d cancels sent); pool %s",
            cancelled,
            len(tasks),
            CANCELLED,
            db.pool_stats(),
        )

        # Every connection back in the pool and idle.
        stats = db.pool_stats()
        assert (stats.in_use, stats.waiting) == (0, 0)
        assert stats.idle == stats.size
        # No backend left idle in a transaction, nor still working for a cancelled call.
        admin = await asyncpg.connect(dsn)
        try:
            states = await admin.fetch(
                "SELECT state, count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = 'vecdb' GROUP BY state"
            )
        finally:
            await admin.close()
        assert {r["state"] for r in states} <= {"idle"}, [tuple(r) for r in states]
        # No setting leaked into any pooled session: hold them all at once and look.
        held = [await db.acquire() for _ in range(config.max_size)]
        try:
            for conn in held:
                assert await conn.fetchval("SHOW hnsw.ef_search") == "40"
                assert await conn.fetchval("SHOW hnsw.iterative_scan") == "off"
                assert await conn.fetchval("SHOW statement_timeout") == "30s"
                assert not conn.is_in_transaction()
        finally:
            for conn in held:
                await db.release(conn)
        # Each upsert is all there (returned, or its commit won the race) or not at all.
        present = 0
        for n in range(UPSERTS):
            first = 100_000 + n * BATCH
            stored = len(await check_rows(db, "docs", range(first, first + BATCH)))
            assert stored in {0, BATCH}, n
            if not isinstance(results[SEARCHES + n], BaseException):
                assert stored == BATCH, n
            present += stored
        logger.info("storm: %d of %d upserts stored", present // BATCH, UPSERTS)
        assert await docs.count() == 2000 + present
        assert cancelled > 0
