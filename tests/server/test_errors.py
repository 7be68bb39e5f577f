"""Server errors become vecdb errors through one SQLSTATE table, with the server's own words."""

from __future__ import annotations

import pytest

import vecdb
from vecdb._errors import translating


async def test_a_unique_violation_is_a_duplicate_record_error(db: vecdb.Database) -> None:
    async with db.acquire() as conn:
        await conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        await conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(vecdb.DuplicateRecordError) as caught:
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO t VALUES (2)")
            await conn.execute("INSERT INTO t VALUES (1)")
    error = caught.value
    assert isinstance(error, vecdb.DatabaseError)
    assert (error.sqlstate, error.detail) == ("23505", "Key (id)=(1) already exists.")
    assert "upsert()" in str(error)
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT array_agg(id) FROM t") == [1]  # nothing of it written


async def test_a_statement_timeout_is_a_query_timeout_and_a_vecdb_timeout(
    db: vecdb.Database,
) -> None:
    with pytest.raises(vecdb.TimeoutError) as caught:
        async with db.transaction() as conn:
            await conn.execute("SET LOCAL statement_timeout = '50ms'")
            await conn.execute("SELECT pg_sleep(5)")
    assert isinstance(caught.value, vecdb.QueryTimeoutError)
    assert caught.value.sqlstate == "57014"
    assert "statement_timeout" in str(caught.value)


async def test_a_lock_timeout_is_a_lock_timeout_error(db: vecdb.Database) -> None:
    async with db.acquire() as conn:
        await conn.execute("CREATE TABLE t (id int)")
    async with db.transaction() as holder:
        await holder.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(vecdb.LockTimeoutError) as caught:
            async with db.transaction() as conn:
                await conn.execute("SET LOCAL lock_timeout = '50ms'")
                await conn.execute("SELECT * FROM t")
    assert isinstance(caught.value, vecdb.TimeoutError)
    assert caught.value.sqlstate == "55P03"


async def test_any_other_server_error_keeps_its_sqlstate_and_hint(db: vecdb.Database) -> None:
    # A raw connection from db.acquire() raises asyncpg's errors (it is the user's
    # own); vecdb runs its statements inside translating().
    with pytest.raises(vecdb.DatabaseError) as caught:
        async with db.acquire() as conn:
            with translating():
                await conn.execute("SELECT no_such_function()")
    assert type(caught.value) is vecdb.DatabaseError
    assert caught.value.sqlstate == "42883"
    assert caught.value.hint is not None
    assert f"HINT: {caught.value.hint}" in str(caught.value)
