"""The pool: acquiring, transactions, statistics, timeouts, cancellation, lifetime, settings."""

from __future__ import annotations

import asyncio
import time

import pytest

import vecdb


async def _wait_until(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


async def test_acquire_works_with_async_with_and_with_await(db: vecdb.Database) -> None:
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT 1") == 1
    conn = await db.acquire()
    try:
        assert await conn.fetchval("SELECT 2") == 2
    finally:
        await db.release(conn)
    assert db.pool_stats().in_use == 0


async def test_transaction_commits_on_success_and_rolls_back_on_error(db: vecdb.Database) -> None:
    async with db.transaction() as conn:
        await conn.execute("CREATE TABLE t (x int)")
        await conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(ZeroDivisionError):
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO t VALUES (2)")
            _ = 1 / 0
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT array_agg(x) FROM t") == [1]


async def test_server_errors_inside_a_transaction_are_translated(db: vecdb.Database) -> None:
    with pytest.raises(vecdb.DatabaseError) as caught:
        async with db.transaction() as conn:
            await conn.execute("SELECT * FROM no_such_table")
    assert caught.value.sqlstate == "42P01"


async def test_pool_stats_show_waiting_tasks(dsn: str) -> None:
    async with vecdb.connect(dsn, pool=vecdb.PoolConfig(min_size=0, max_size=2)) as db:
        first, second = await db.acquire(), await db.acquire()
        waiter = asyncio.create_task(db.acquire().__aenter__())
        await _wait_until(lambda: db.pool_stats().waiting == 1)
        stats = db.pool_stats()
        assert (stats.size, stats.in_use, stats.idle, stats.max_size) == (2, 2, 0, 2)
        await db.release(first)
        third = await waiter
        await db.release(second)
        await db.release(third)
        stats = db.pool_stats()
        assert (stats.waiting, stats.in_use, stats.acquisitions, stats.timeouts) == (0, 0, 3, 0)
        assert stats.wait_ms_max > 0


async def test_exhausted_pool_raises_pool_timeout_naming_the_limit(dsn: str) -> None:
    config = vecdb.PoolConfig(min_size=0, max_size=1, acquire_timeout=0.05)
    async with vecdb.connect(dsn, pool=config) as db, db.acquire():
        with pytest.raises(vecdb.PoolTimeoutError, match="max_size=1"):
            await db.acquire()
        assert db.pool_stats().timeouts == 1


async def test_cancelled_task_still_returns_its_connection(dsn: str) -> None:
    async with vecdb.connect(dsn, pool=vecdb.PoolConfig(min_size=0, max_size=1)) as db:
        entered = asyncio.Event()

        async def hold() -> None:
            async with db.acquire() as conn:
                entered.set()
                await conn.execute("SELECT pg_sleep(30)")

        task = asyncio.create_task(hold())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with db.acquire(timeout=5) as conn:
            assert await conn.fetchval("SELECT 1") == 1


async def test_connection_past_its_lifetime_is_replaced(dsn: str) -> None:
    config = vecdb.PoolConfig(min_size=0, max_size=1, max_lifetime=0.05)
    async with vecdb.connect(dsn, pool=config) as db:
        async with db.acquire() as conn:
            first_pid = await conn.fetchval("SELECT pg_backend_pid()")
            await asyncio.sleep(0.1)  # the behaviour under test is an age limit
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") != first_pid
        # The first was retired; on a loaded machine the second may outlive 50 ms too.
        assert db.pool_stats().retired >= 1


async def test_statement_timeout_raises_query_timeout(dsn: str) -> None:
    config = vecdb.PoolConfig(min_size=0, max_size=1, statement_timeout=0.05)
    async with vecdb.connect(dsn, pool=config) as db:
        with pytest.raises(vecdb.QueryTimeoutError, match="statement_timeout"):
            async with db.transaction() as conn:
                await conn.execute("SELECT pg_sleep(5)")


async def test_server_settings_and_application_name_reach_every_connection(dsn: str) -> None:
    config = vecdb.PoolConfig(
        application_name="my-service", server_settings={"work_mem": "8MB"}, max_size=2
    )
    async with vecdb.connect(dsn, pool=config) as db, db.acquire() as conn:
        assert await conn.fetchval("SHOW work_mem") == "8MB"
        assert await conn.fetchval("SHOW application_name") == "my-service"


async def test_health_reports_versions_and_pool(db: vecdb.Database) -> None:
    health = await db.health()
    assert health.ok
    assert health.server_version.split(".")[0].isdigit()
    assert health.pgvector_version is not None
    assert health.in_recovery is False
    assert health.pool.max_size == 4


async def test_schema_change_through_db_renews_pooled_connections(
    dsn: str,
) -> None:
    class AddTable(vecdb.Migration):
        """Add a table."""

        version = 1
        source = "renew"

        async def up(self, conn: vecdb.Migration) -> None:  # type: ignore[override]
            await conn.execute("CREATE TABLE renewed (id int)")  # type: ignore[attr-defined]

    pool = vecdb.PoolConfig(min_size=1, max_size=1)
    async with vecdb.connect(dsn, migrations=[AddTable], migrate="off", pool=pool) as db:
        await db.migrations.upgrade(source="vecdb")
        async with db.acquire() as conn:
            before = await conn.fetchval("SELECT pg_backend_pid()")
        await db.migrations.upgrade()
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") != before
            assert await conn.fetchval("SELECT to_regclass('renewed') IS NOT NULL")
