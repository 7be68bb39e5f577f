"""The hot path: settings kept per connection, never leaked; search_many in one statement."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import numpy as np
import pytest

import vecdb
from vecdb._schema.ddl import hnsw_name
from vecdb._search.statements import uses_index
from vecdb._server.pool import PooledConnection

from ..deploy import _parts
from .test_search import clustered, load, numpy_distances

# Every setting a search may change (planner.py), and a server setting none does.
SEARCH_SETTINGS = (
    "hnsw.ef_search",
    "hnsw.iterative_scan",
    "hnsw.max_scan_tuples",
    "jit",
    "enable_indexscan",
)


async def shown(conn: Any) -> dict[str, str]:
    return {
        name: await conn.fetchval("SELECT current_setting($1)", name) for name in SEARCH_SETTINGS
    }


class Statements:
    """The statements pooled connections send (a spy on the driver's methods, not the server)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.executed: list[str] = []
        self.fetched: list[tuple[str, tuple[Any, ...]]] = []
        execute, fetch = PooledConnection.execute, PooledConnection.fetch

        async def spy_execute(conn: Any, query: str, *args: Any, **kwargs: Any) -> Any:
            self.executed.append(query)
            return await execute(conn, query, *args, **kwargs)

        async def spy_fetch(conn: Any, query: str, *args: Any, **kwargs: Any) -> Any:
            self.fetched.append((query, args))
            return await fetch(conn, query, *args, **kwargs)

        monkeypatch.setattr(PooledConnection, "execute", spy_execute)
        monkeypatch.setattr(PooledConnection, "fetch", spy_fetch)

    def set_configs(self) -> int:
        return sum("set_config" in q for q in self.executed)

    def clear(self) -> None:
        self.executed.clear()
        self.fetched.clear()


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Statements:
    return Statements(monkeypatch)


@pytest.fixture
async def one_connection(dsn: str) -> Any:
    # One connection: every search and acquire below runs on it.
    async with vecdb.connect(dsn, pool=vecdb.PoolConfig(min_size=1, max_size=1)) as db:
        yield db


async def test_settings_are_sent_only_when_they_change(
    one_connection: vecdb.Database, statements: Statements
) -> None:
    vectors, labels = clustered(500)
    c = await load(one_connection, vectors, labels)
    statements.clear()
    for q in vectors[:3]:
        await c.search(q, k=10, ef_search=100)
    assert statements.set_configs() == 1  # the first search only
    assert len(statements.fetched) == 3  # and otherwise one statement each
    assert not any("BEGIN" in q or "COMMIT" in q or "RESET" in q for q in statements.executed)
    await c.search(vectors[0], k=10, ef_search=50)
    await c.search(vectors[0], k=10, ef_search=50)
    assert statements.set_configs() == 2
    await c.search(vectors[0], k=10)  # back to the connection's own: reset once
    await c.search(vectors[0], k=10)
    assert statements.set_configs() == 3


async def test_an_unfiltered_search_is_planned_once_per_connection(
    one_connection: vecdb.Database,
) -> None:
    """Its k is written into the statement, so PostgreSQL keeps a generic plan."""
    db = one_connection
    vectors, labels = clustered(500)
    c = await load(db, vectors, labels)
    first = [h.record.id for h in await c.search(vectors[0], k=10)]
    for q in vectors[1:12]:
        await c.search(q, k=10)
        await c.search(q, k=10, where={"bucket": {"$lt": 50}})
    assert [h.record.id for h in await c.search(vectors[0], k=10)] == first
    # A strategy whose plan differs has a statement of its own: exact stays exact.
    distances = numpy_distances("cosine", vectors, vectors[0])  # the collection's metric
    exact = [h.record.id for h in await c.search(vectors[0], k=10, exact=True)]
    assert exact == [int(i) for i in np.argsort(distances, kind="stable")[:10]]
    async with db.acquire() as conn:
        plans = {
            r["statement"]: (r["generic_plans"], r["custom_plans"])
            for r in await conn.fetch(
                "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements "
                "WHERE statement LIKE '%_vecdb_distance%'"
            )
            if "pg_prepared_statements" not in r["statement"]  # this query's own
        }
    hnsw = [sql for sql in plans if "WHERE" not in sql and "+ 0" not in sql]
    assert len(hnsw) == 1
    assert hnsw[0].endswith("LIMIT 10")
    assert plans[hnsw[0]][0] >= 6  # a generic plan, reused
    # A filtered search's k stays bound, as it was.
    assert all("LIMIT $2" in sql for sql in plans if "WHERE" in sql)


def searches(vectors: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "ef_search", {"ef_search": 123}
    yield "k above the default ef_search", {"k": 60}
    yield "exact", {"exact": True}
    yield "filtered", {"where": {"bucket": {"$lt": 50}}}


@pytest.mark.parametrize("case", [name for name, _ in searches(None)])
async def test_no_search_setting_reaches_the_next_user(
    one_connection: vecdb.Database, case: str
) -> None:
    db = one_connection
    vectors, labels = clustered(500)
    c = await load(db, vectors, labels)
    async with db.acquire() as conn:
        before = await shown(conn)
    kwargs = dict(searches(vectors))[case]
    await c.search(vectors[0], **{"k": 10, **kwargs})
    await c.search_many(vectors[:40], **{"k": 10, **kwargs})
    async with db.acquire() as conn:
        assert not conn.is_in_transaction()
        assert await shown(conn) == before
        await conn.execute("SET hnsw.ef_search = 7")  # the user's own, reset by the pool
    assert len(await c.search(vectors[0], k=10)) == 10
    async with db.acquire() as conn:
        assert await shown(conn) == before


async def test_the_pools_own_settings_survive_searches(dsn: str) -> None:
    pool = vecdb.PoolConfig(min_size=1, max_size=1, server_settings={"hnsw.ef_search": "64"})
    async with vecdb.connect(dsn, pool=pool) as db:
        vectors, labels = clustered(500)
        c = await load(db, vectors, labels)
        await c.search(vectors[0], k=10, ef_search=300)
        assert len(await c.search(vectors[0], k=70)) == 70  # max(70, 64), not max(70, 300)
        await c.search(vectors[0], k=10)
        async with db.acquire() as conn:
            assert await conn.fetchval("SHOW hnsw.ef_search") == "64"


async def test_a_cancelled_search_leaks_nothing(dsn: str, one_connection: vecdb.Database) -> None:
    db = one_connection
    vectors, labels = clustered(500)
    c = await load(db, vectors, labels)
    async with db.acquire() as conn:
        before = await shown(conn)
    blocker = await asyncpg.connect(dsn)
    watcher = await asyncpg.connect(dsn)
    try:
        # The search's SELECT waits on this lock, after its set_config has applied.
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute(f"LOCK TABLE {c.name} IN ACCESS EXCLUSIVE MODE")
        task = asyncio.create_task(c.search(vectors[0], k=10, ef_search=321, exact=True))
        for _ in range(3000):  # until the search waits on the lock (at most ~30 s)
            if task.done():
                await task  # it failed: say how
            # Outside the blocker's transaction, which would see one snapshot of the view.
            if await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE '%_vecdb_distance%'"
            ):
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the search never reached its statement")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await tx.rollback()
    finally:
        await blocker.close()
        await watcher.close()
    async with db.acquire() as conn:
        assert not conn.is_in_transaction()
        assert await shown(conn) == before
    assert len(await c.search(vectors[0], k=10, ef_search=321)) == 10


CASES: dict[str, dict[str, Any]] = {
    "unfiltered": {},
    "ef_search": {"ef_search": 80},
    "iterative": {"where": {"bucket": {"$lt": 50}}},
    "exact by filter": {"where": {"bucket": 3}},
    "exact": {"exact": True},
    "vectors": {"include_vectors": True},
}


@pytest.mark.parametrize("case", list(CASES))
async def test_search_many_is_one_statement_per_chunk_and_returns_what_search_returns(
    db: vecdb.Database, statements: Statements, case: str
) -> None:
    vectors, labels = clustered(2000, spread=0.7)
    c = await load(db, vectors, labels)
    queries = clustered(100, seed=5)[0]
    kwargs = CASES[case]
    singles = [await c.search(q, k=10, **kwargs) for q in queries]
    statements.clear()
    many = await c.search_many(queries, k=10, concurrency=2, **kwargs)
    batches = [sql for sql, _ in statements.fetched if "unnest" in sql]
    assert len(batches) == 2  # 100 queries over two connections: two statements
    assert len(statements.fetched) == 2
    assert len(many) == len(singles)
    for got, want in zip(many, singles, strict=True):
        assert [h.record.id for h in got] == [h.record.id for h in want]
        assert [h.distance for h in got] == pytest.approx([h.distance for h in want], abs=1e-6)
        if kwargs.get("include_vectors"):
            np.testing.assert_array_equal(got[0].record.embedding, want[0].record.embedding)


@pytest.mark.parametrize("storage", ["vector", "halfvec"])
async def test_each_query_of_a_batch_scans_the_hnsw_index(
    db: vecdb.Database, statements: Statements, storage: str
) -> None:
    vectors, labels = clustered(2000, spread=0.7)
    c = await load(db, vectors, labels, storage=storage)
    queries = clustered(40, seed=6)[0]
    many = await c.search_many(queries, k=10, concurrency=1)
    assert [len(hits) for hits in many] == [10] * 40
    ((sql, args),) = [(q, a) for q, a in statements.fetched if "unnest" in q]
    async with db.acquire() as conn:
        raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
    plan = json.loads(raw)[0]["Plan"]
    spec = c._spec
    assert uses_index(plan, {hnsw_name(spec, spec.layout.vectors[0])})
    assert "Nested Loop" in raw


async def test_search_many_refuses_bad_input_and_changes_nothing(
    one_connection: vecdb.Database,
) -> None:
    db = one_connection
    vectors, labels = clustered(300)
    c = await load(db, vectors, labels)
    async with db.acquire() as conn:
        before = await shown(conn)
    with pytest.raises(vecdb.VecdbError, match="concurrency"):
        await c.search_many(vectors[:5], k=10, concurrency=0)
    with pytest.raises(vecdb.VecdbError, match="k"):
        await c.search_many(vectors[:5], k=0)
    bad = np.ones((3, 5), dtype=np.float32)
    with pytest.raises(vecdb.VecdbError, match="dim"):
        await c.search_many(bad, k=10, ef_search=99)
    nan = vectors[:3].copy()
    nan[1, 0] = np.nan
    with pytest.raises(vecdb.VecdbError):
        await c.search_many(nan, k=10, ef_search=99)
    assert await c.search_many([], k=10) == []
    async with db.acquire() as conn:
        assert await shown(conn) == before
    assert await c.count() == 300


async def test_a_cached_plan_still_refuses_bad_arguments(db: vecdb.Database) -> None:
    vectors, labels = clustered(300)
    c = await load(db, vectors, labels)
    assert len(await c.search(vectors[0], k=1, ef_search=40)) == 1  # planned and cached
    for bad in ({"k": 1.0}, {"k": True}, {"k": 1, "ef_search": 40.0}):
        with pytest.raises(vecdb.VecdbError):
            await c.search(vectors[0], **{"ef_search": 40, **bad})
    with pytest.raises(vecdb.VecdbError, match="dim"):
        await c.search(vectors[0][:5], k=1, ef_search=40)
    assert await c.count() == 300


async def test_behind_pgbouncer_searches_keep_set_local(admin_dsn: str, dsn: str) -> None:
    # Transaction pooling: a session setting would reach whichever client gets
    # that server connection next; searches and batches use SET LOCAL there.
    with _parts.pgbouncer(admin_dsn) as bouncer:
        through = bouncer.dsn(urlsplit(dsn).path.lstrip("/"))
        pool = vecdb.PoolConfig(pgbouncer=True, min_size=1, max_size=2)
        async with vecdb.connect(through, pool=pool, migration_dsn=dsn) as db:
            vectors, labels = clustered(500)
            c = await load(db, vectors, labels)
            singles = [await c.search(q, k=5, ef_search=77) for q in vectors[:40]]
            many = await c.search_many(vectors[:40], k=5, ef_search=77)
            assert [[h.record.id for h in hits] for hits in many] == [
                [h.record.id for h in hits] for hits in singles
            ]
            for _ in range(4):  # whichever server connection PgBouncer picks
                async with db.acquire() as conn:
                    value = await conn.fetchval("SELECT current_setting('hnsw.ef_search', true)")
                    assert value in {None, "", "40"}
