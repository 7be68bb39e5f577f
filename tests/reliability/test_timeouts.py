"""Timeouts: each is a typed vecdb.TimeoutError with its numbers, and costs no connection."""

from __future__ import annotations

import asyncpg
import pytest

import vecdb


async def test_an_exhausted_pool_raises_pool_timeout_with_the_numbers(dsn: str) -> None:
    config = vecdb.PoolConfig(min_size=0, max_size=2, acquire_timeout=0.2)
    async with vecdb.connect(dsn, pool=config) as db, db.acquire(), db.acquire():
        with pytest.raises(vecdb.PoolTimeoutError) as caught:
            await db.acquire()
        error = caught.value
        assert (error.timeout, error.in_use, error.max_size, error.waiting) == (0.2, 2, 2, 1)
        assert "within 0.2s (2 in use of max_size=2, 1 waiting)" in str(error)
        assert "Raise PoolConfig.max_size" in str(error)
        assert isinstance(error, vecdb.TimeoutError)
        stats = db.pool_stats()
        assert (stats.timeouts, stats.waiting, stats.in_use) == (1, 0, 2)


async def test_a_statement_timeout_leaves_its_connection_clean_for_the_next_call(dsn: str) -> None:
    config = vecdb.PoolConfig(min_size=1, max_size=1, statement_timeout=0.1)
    async with vecdb.connect(dsn, pool=config) as db:
        async with db.acquire() as conn:
            pid = await conn.fetchval("SELECT pg_backend_pid()")
        with pytest.raises(vecdb.QueryTimeoutError) as caught:
            async with db.transaction() as conn:
                await conn.execute("SET LOCAL work_mem = '7MB'")
                await conn.execute("SELECT pg_sleep(5)")
        assert isinstance(caught.value.__cause__, asyncpg.QueryCanceledError)
        assert caught.value.sqlstate == "57014"
        # The same connection (max_size=1) serves on: out of the transaction, no setting left.
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == pid
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SHOW work_mem") != "7MB"
            assert await conn.fetchval("SELECT 1") == 1
