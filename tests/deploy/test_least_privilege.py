"""A least-privilege runtime role: the GRANTs of `vecdb grant`, and nothing more.

The owner (the test server's superuser) migrates and creates the collections;
a real role with only the printed GRANTs then connects with
``migrate="check"``, opens the collections, searches, writes and deletes. What
needs DDL (a new collection, an index build, dropping, archiving) fails with a
vecdb `DatabaseError` (SQLSTATE 42501) that says what to do, and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

import vecdb
from vecdb._collections.grants import runtime_grants

from . import _parts

DIM = 3


class Chunk(vecdb.Record):
    id: int
    doc: str
    embedding: vecdb.Vector


class Event(vecdb.Record):
    id: int
    tenant: str
    at: dt.datetime
    embedding: vecdb.Vector


def _as_role(dsn: str, role: str, password: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{role}:{password}@{host}"))


async def _tables(dsn: str) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT schemaname, tablename FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
        )
        return [(r["schemaname"], r["tablename"]) for r in rows]
    finally:
        await conn.close()


@pytest.fixture
async def runtime(dsn: str, db: vecdb.Database) -> AsyncIterator[str]:
    """A DSN for a new role that has exactly the runtime GRANTs (cluster-wide, dropped after)."""
    chunks = await db.collection("chunks", Chunk, dim=DIM)
    await chunks.upsert([Chunk(id=i, doc=f"d{i % 2}", embedding=[1.0, i, 0.5]) for i in range(20)])
    events = await db.collection(
        "events", Event, dim=DIM, partition=vecdb.ValuePartitions("tenant")
    )
    await events.upsert(
        [Event(id=1, tenant="a", at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC), embedding=[1, 2, 3])]
    )
    password = uuid.uuid4().hex
    async with _parts.new_role(dsn, password=password) as role:
        owner = await asyncpg.connect(dsn)
        try:
            for statement in await runtime_grants(owner, role):
                await owner.execute(statement)
        finally:
            await owner.close()
        yield _as_role(dsn, role, password)


async def test_runtime_role_connects_searches_and_writes(runtime: str) -> None:
    async with vecdb.connect(
        runtime, migrate="check", pool=vecdb.PoolConfig(min_size=1, max_size=2)
    ) as app:
        assert {s.state for s in await app.migrations.status()} == {"applied"}
        chunks = await app.collection("chunks", Chunk, dim=DIM)
        hits = await chunks.search([1.0, 3.0, 0.5], k=3, where={"doc": "d1"}, ef_search=50)
        assert [h.record.doc for h in hits] == ["d1"] * 3
        assert await chunks.upsert([Chunk(id=100, doc="new", embedding=[0.5, 1.0, 2.0])]) == 1
        assert (
            await chunks.upsert(
                [Chunk(id=i, doc="again", embedding=[1.0, i, 0.0]) for i in range(10)]
            )
            == 10
        )
        assert await chunks.delete([100, 1]) == 2
        assert await chunks.count() == 19
        assert await chunks.get(2) == Chunk(id=2, doc="again", embedding=[1.0, 2.0, 0.0])
        events = await app.collection(
            "events", Event, dim=DIM, partition=vecdb.ValuePartitions("tenant")
        )
        at = dt.datetime(2024, 2, 1, tzinfo=dt.UTC)
        assert await events.upsert([Event(id=2, tenant="a", at=at, embedding=[3, 2, 1])]) == 1
        assert await events.count(where={"tenant": "a"}) == 2


async def test_runtime_role_gets_a_clear_error_for_ddl_and_nothing_changes(
    runtime: str, dsn: str
) -> None:
    before = await _tables(dsn)
    async with vecdb.connect(runtime, migrate="check", pool=vecdb.PoolConfig(min_size=1)) as app:
        chunks = await app.collection("chunks", Chunk, dim=DIM)
        attempts = {
            "create a collection": app.collection("fresh", Chunk, dim=DIM),
            "build an index": chunks.create_index(vecdb.HNSW(m=8)),
            "drop a collection": app.drop_collection("chunks"),
        }
        for what, attempt in attempts.items():
            with pytest.raises(vecdb.DatabaseError, match="vecdb grant ROLE") as caught:
                await attempt
            assert caught.value.sqlstate == "42501", what
        assert await chunks.count() == 20
    assert await _tables(dsn) == before


async def test_grants_refuse_a_missing_role(db: vecdb.Database) -> None:
    async with db.acquire() as conn:
        with pytest.raises(vecdb.ConfigError, match="does not exist; create it first"):
            await runtime_grants(conn, "no_such_role_here")
        with pytest.raises(vecdb.ConfigError, match="invalid role name"):
            await runtime_grants(conn, 'x"; DROP TABLE vecdb.collections; --')
