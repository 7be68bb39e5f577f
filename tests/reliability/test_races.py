"""Races: many writers of one row, many creators of one collection, a write racing a drop."""

from __future__ import annotations

import asyncio

import anyio
import pytest

import vecdb

from ._load import DIM, Doc, doc


async def test_50_concurrent_upserts_of_one_id_leave_one_row_equal_to_one_write(
    db: vecdb.Database,
) -> None:
    docs = await db.collection("docs", Doc, dim=DIM)
    writes = [doc(7).model_copy(update={"text": f"write {n}", "year": n}) for n in range(50)]
    assert await asyncio.gather(*(docs.upsert([w]) for w in writes)) == [1] * 50
    assert await docs.count() == 1
    stored = await docs.get(7)
    assert stored is not None
    assert (stored.text, stored.year) in {(w.text, w.year) for w in writes}


async def test_20_concurrent_creates_of_one_collection_make_one_table(dsn: str) -> None:
    # Two Database objects, two pools: as two processes would race.
    pool = vecdb.PoolConfig(min_size=1, max_size=10)
    async with vecdb.connect(dsn, pool=pool) as one, vecdb.connect(dsn, pool=pool) as two:
        made = await asyncio.gather(*(d.collection("docs", Doc, dim=DIM) for d in [one, two] * 10))
        assert {c.name for c in made} == {"docs"}
        assert [c.name for c in await one.collections()] == ["docs"]
        async with one.acquire() as conn:
            tables = await conn.fetchval(
                "SELECT count(*) FROM pg_class WHERE relname = 'docs' AND relkind IN ('r', 'p')"
            )
            rows = await conn.fetchval("SELECT count(*) FROM vecdb.collections")
        assert (tables, rows) == (1, 1)
        # Every handle works on the one table.
        await made[0].upsert([doc(1)])
        assert [await c.count() for c in made] == [1] * 20


async def test_an_upsert_racing_drop_collection_ends_in_a_typed_error(db: vecdb.Database) -> None:
    docs = await db.collection("docs", Doc, dim=DIM)
    await docs.upsert([doc(i) for i in range(100)])
    outcomes: list[object] = []

    async def write(n: int) -> None:
        try:
            outcomes.append(await docs.upsert([doc(1000 + n * 10 + j) for j in range(10)]))
        except vecdb.VecdbError as exc:
            outcomes.append(exc)

    with anyio.fail_after(60):
        writers = [asyncio.create_task(write(n)) for n in range(20)]
        await asyncio.sleep(0)  # let the writers start before the drop
        await db.drop_collection("docs")
        await asyncio.gather(*writers)  # a non-vecdb error would surface here
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    # After the drop, a write finds no table: a clear error, not a crash.
    with pytest.raises((vecdb.CollectionNotFoundError, vecdb.DatabaseError)) as caught:
        await docs.upsert([doc(1)])
    for exc in [*errors, caught.value]:
        assert isinstance(exc, vecdb.CollectionNotFoundError | vecdb.DatabaseError), repr(exc)
        assert "docs" in str(exc)
        assert "db.collection()" in str(exc) or isinstance(exc, vecdb.CollectionNotFoundError)
    assert [c.name for c in await db.collections()] == []
