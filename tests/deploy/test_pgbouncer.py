"""vecdb through PgBouncer (Debian's package) in transaction pooling mode.

Each test starts its own PgBouncer on 127.0.0.1 (a free port) in front of the
test server. With `PoolConfig(pgbouncer=True)` collections, search (with its
``SET LOCAL`` settings) and writes (binary COPY) work through it; migrations
run only through ``migration_dsn``, a direct connection, and are otherwise
refused before anything changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from urllib.parse import urlsplit

import asyncpg
import pytest

import vecdb
from vecdb._errors import translate

from . import _parts

DIM = 3


class Note(vecdb.Record):
    id: int
    topic: str
    embedding: vecdb.Vector


def _database(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/")


@pytest.fixture
def bouncer(admin_dsn: str) -> Iterator[_parts.Bouncer]:
    with _parts.pgbouncer(admin_dsn) as running:
        yield running


@pytest.fixture
def pooled_dsn(bouncer: _parts.Bouncer, dsn: str) -> str:
    """This test's database, through PgBouncer."""
    return bouncer.dsn(_database(dsn))


async def _schemas(dsn: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'vecdb%'")
        return {r["nspname"] for r in rows}
    finally:
        await conn.close()


POOL = vecdb.PoolConfig(pgbouncer=True, min_size=1, max_size=4)


async def test_collections_search_and_writes_work_through_pgbouncer(
    pooled_dsn: str, dsn: str
) -> None:
    async with vecdb.connect(pooled_dsn, pool=POOL, migration_dsn=dsn) as db:
        notes = await db.collection("notes", Note, dim=DIM, filterable=("topic",))
        written = await notes.upsert(
            [Note(id=i, topic=f"t{i % 3}", embedding=[1.0, float(i), 0.5]) for i in range(300)]
        )
        assert written == 300
        assert (
            await notes.upsert(
                [
                    {"id": i, "topic": "late", "embedding": [0.5, 1.0, float(i)]}
                    for i in range(300, 320)
                ],
                batch_size=7,
            )
            == 20
        )
        # Concurrent searches spread over PgBouncer's server connections; each one
        # with settings runs its SET LOCAL in its own transaction.
        results = await asyncio.gather(
            *(
                notes.search([1.0, float(i), 0.5], k=5, where={"topic": "t1"}, ef_search=60)
                for i in range(40)
            ),
            *(notes.search([1.0, float(i), 0.5], k=3) for i in range(40)),
        )
        assert all(len(hits) in (3, 5) for hits in results)
        assert all(h.record.topic == "t1" for hits in results[:40] for h in hits)
        assert await notes.count(where={"topic": "late"}) == 20
        assert await notes.get(7) == Note(id=7, topic="t1", embedding=[1.0, 7.0, 0.5])
        assert len(await notes.get_many([1, 2, 999])) == 2
        assert await notes.delete([1, 2]) == 2
        assert await notes.count() == 318
        statuses = await db.migrations.status()
        assert statuses
        assert {s.state for s in statuses} == {"applied"}


async def test_migrations_through_pgbouncer_are_refused_and_nothing_changes(
    pooled_dsn: str, dsn: str
) -> None:
    with pytest.raises(vecdb.ConfigError, match="migration_dsn") as caught:
        await vecdb.connect(pooled_dsn, pool=POOL)
    assert caught.value.setting == "migration_dsn"
    assert await _schemas(dsn) == set()


async def test_migrations_run_with_a_direct_migration_dsn(pooled_dsn: str, dsn: str) -> None:
    async with vecdb.connect(pooled_dsn, pool=POOL, migration_dsn=dsn) as db:
        assert {s.state for s in await db.migrations.status()} == {"applied"}
    assert "vecdb" in await _schemas(dsn)


async def test_check_mode_through_pgbouncer_reads_but_locked_work_is_refused(
    pooled_dsn: str, dsn: str
) -> None:
    await (await vecdb.connect(dsn)).close()  # migrated directly, as a deploy step would
    async with vecdb.connect(pooled_dsn, pool=POOL, migrate="check") as db:
        assert {s.state for s in await db.migrations.status()} == {"applied"}
        assert await db.migrations.upgrade() == []  # nothing pending: no lock needed
        with pytest.raises(vecdb.ConfigError, match="migration_dsn"):
            await db.migrations.rollback(to=0, source="vecdb")
    assert "vecdb" in await _schemas(dsn)


async def test_session_work_is_refused_through_pgbouncer(pooled_dsn: str, dsn: str) -> None:
    async with vecdb.connect(pooled_dsn, pool=POOL, migration_dsn=dsn) as db:
        notes = await db.collection("notes", Note, dim=DIM)
        before = await _indexes(dsn)
        with pytest.raises(vecdb.ConfigError, match="session of its own"):
            await notes.create_index(vecdb.HNSW(m=8))
        with pytest.raises(vecdb.ConfigError, match="session of its own"):
            await notes.repartition(vecdb.ValuePartitions("topic"))
        assert await _indexes(dsn) == before


async def _indexes(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
        )
        return [r["indexdef"] for r in rows]
    finally:
        await conn.close()


async def test_without_pgbouncer_mode_the_error_says_what_to_set(pooled_dsn: str, dsn: str) -> None:
    """vecdb's startup settings are refused by PgBouncer: the error names the option."""
    with pytest.raises(vecdb.ConfigError, match=r"PoolConfig\(pgbouncer=True\)") as caught:
        await vecdb.connect(pooled_dsn)
    assert isinstance(caught.value.__cause__, vecdb.ConnectError)
    assert await _schemas(dsn) == set()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"statement_cache_size": 50}, "statement_cache_size=50", id="cache"),
        pytest.param({"statement_timeout": 5.0}, "statement_timeout", id="statement-timeout"),
        pytest.param({"server_settings": {"work_mem": "64MB"}}, "work_mem", id="server-settings"),
    ],
)
def test_pgbouncer_mode_refuses_what_cannot_work(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(vecdb.ConfigError, match=message):
        vecdb.PoolConfig(pgbouncer=True, **kwargs)  # type: ignore[arg-type]


def test_pgbouncer_mode_turns_the_statement_cache_off() -> None:
    assert vecdb.PoolConfig(pgbouncer=True).statement_cache_size == 0
    assert vecdb.PoolConfig().statement_cache_size == 100
    from_env = vecdb.PoolConfig.from_env({"VECDB_POOL_PGBOUNCER": "true"})
    assert (from_env.pgbouncer, from_env.statement_cache_size) == (True, 0)


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(
            asyncpg.InvalidSQLStatementNameError(
                'prepared statement "__asyncpg_stmt_1a__" does not exist'
            ),
            id="does-not-exist",
        ),
        pytest.param(
            asyncpg.DuplicatePreparedStatementError(
                'prepared statement "__asyncpg_stmt_1__" already exists'
            ),
            id="already-exists",
        ),
    ],
)
def test_prepared_statement_errors_point_to_pgbouncer_mode(error: asyncpg.PostgresError) -> None:
    """What the statement cache gives through PgBouncer without pgbouncer=True (seen here,
    but not on every run: it depends on which server connection PgBouncer hands out)."""
    translated = translate(error)
    assert isinstance(translated, vecdb.DatabaseError)
    assert "PoolConfig(pgbouncer=True)" in str(translated)
