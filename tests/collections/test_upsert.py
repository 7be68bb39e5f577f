"""Writing and reading records: upsert, insert, get, get_many, delete, count.

Also first loads: the straight COPY into an empty table, the index rebuild of a
large first load, and statement timeouts of writes and index builds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import numpy as np
import pydantic
import pytest

import vecdb
from vecdb._collections import indexing as _indexing

DIM = 4


class Meta(pydantic.BaseModel):
    source: str
    page: int


class Item(vecdb.Record):
    id: int
    team: str
    year: int
    tags: list[str] = pydantic.Field(default_factory=list)
    meta: Meta | None = None
    embedding: vecdb.Vector


def item(i: int, *, team: str = "g", year: int = 2020, vector: Any = None) -> Item:
    return Item(
        id=i,
        team=team,
        year=year,
        embedding=vector if vector is not None else [1.0, float(i), 0.5, -1.0],
    )


@pytest.fixture
async def items(db: vecdb.Database) -> vecdb.Collection[Item]:
    return await db.collection("items", Item, dim=DIM, filterable=("team", "year"))


async def _snapshot(c: vecdb.Collection[Item]) -> list[Item]:
    return await c.get_many(range(-5, 20_000))


async def test_upsert_returns_the_rows_written(items: vecdb.Collection[Item]) -> None:
    assert await items.upsert([item(i) for i in range(10)]) == 10
    assert await items.count() == 10


async def test_upsert_round_trips_every_field(items: vecdb.Collection[Item]) -> None:
    record = Item(
        id=1, team="a", year=1999, tags=["x", "y"], meta=Meta(source="s", page=3),
        embedding=[0.25, -1.5, 3.0, 8.0],
    )  # fmt: skip
    await items.upsert([record])
    assert await items.get(1) == record


async def test_upsert_accepts_dicts(items: vecdb.Collection[Item]) -> None:
    await items.upsert([{"id": 1, "team": "a", "year": 2001, "embedding": [1, 2, 3, 4]}])
    got = await items.get(1)
    assert got is not None
    assert got.embedding.tolist() == [1, 2, 3, 4]


async def test_upsert_updates_existing_rows(items: vecdb.Collection[Item]) -> None:
    await items.upsert([item(1, team="old"), item(2, team="old")])
    assert await items.upsert([item(1, team="new", vector=[9, 9, 9, 9])]) == 1
    got = await items.get_many([1, 2])
    assert [(r.team, r.embedding[0]) for r in got] == [("new", 9.0), ("old", 1.0)]


async def test_the_last_record_of_a_repeated_id_wins(items: vecdb.Collection[Item]) -> None:
    assert await items.upsert([item(1, team="first"), item(1, team="last")]) == 1
    got = await items.get(1)
    assert got is not None
    assert got.team == "last"


async def test_repeated_id_across_chunks_keeps_the_last(
    items: vecdb.Collection[Item], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("vecdb._collections.writer.WRITE_CHUNK", 3)
    records = [item(i) for i in range(5)] + [item(1, team="last")]
    assert await items.upsert(records) == 5
    got = await items.get(1)
    assert got is not None
    assert got.team == "last"


async def test_upsert_accepts_generators(items: vecdb.Collection[Item]) -> None:
    def generate() -> Iterator[Item]:
        for i in range(7):
            yield item(i)

    assert await items.upsert(generate()) == 7


async def test_upsert_accepts_async_iterables(items: vecdb.Collection[Item]) -> None:
    async def generate() -> AsyncIterator[dict[str, Any]]:
        for i in range(7):
            yield {"id": i, "team": "g", "year": 2000, "embedding": [1, 1, 1, i]}

    assert await items.upsert(generate(), batch_size=3) == 7
    assert await items.count() == 7


async def test_empty_input_writes_nothing(items: vecdb.Collection[Item]) -> None:
    assert await items.upsert([]) == 0


async def test_batch_size_commits_each_batch(items: vecdb.Collection[Item]) -> None:
    records: list[Any] = [item(i) for i in range(6)]
    records[4] = {"id": 4, "team": "g"}  # missing fields: fails in the second batch
    with pytest.raises(vecdb.RecordValidationError):
        await items.upsert(records, batch_size=3)
    assert await items.count() == 3


def _bad(kind: str) -> Any:
    return {
        "dimension": item(5000, vector=[1.0, 2.0, 3.0]),
        "nan": item(5000, vector=[1.0, math.nan, 0.0, 0.0]),
        "inf": item(5000, vector=[1.0, math.inf, 0.0, 0.0]),
        "empty": item(5000, vector=[]),
        "zero": item(5000, vector=[0.0, 0.0, 0.0, 0.0]),
        "pydantic": {"id": 5000, "team": "g", "year": "not a year", "embedding": [1, 2, 3, 4]},
        "not-a-record": ("id", 5000),
    }[kind]


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("dimension", vecdb.DimensionMismatchError),
        ("nan", vecdb.InvalidVectorError),
        ("inf", vecdb.InvalidVectorError),
        ("empty", vecdb.InvalidVectorError),
        ("zero", vecdb.InvalidVectorError),
        ("pydantic", vecdb.RecordValidationError),
        ("not-a-record", vecdb.RecordValidationError),
    ],
    ids=["dimension", "nan", "inf", "empty", "zero-under-cosine", "pydantic", "not-a-record"],
)
async def test_a_bad_record_midway_leaves_the_collection_unchanged(
    items: vecdb.Collection[Item], kind: str, error: type[Exception]
) -> None:
    await items.upsert([item(i, team="before") for i in range(3)])
    before = await _snapshot(items)
    records: list[Any] = [item(i, team="after") for i in range(10_000)]
    records[5000] = _bad(kind)
    with pytest.raises(error) as info:
        await items.upsert(records)
    assert info.value.position == 5000  # type: ignore[attr-defined]
    assert await _snapshot(items) == before
    assert await items.count() == 3


async def test_dimension_error_carries_expected_got_and_id(items: vecdb.Collection[Item]) -> None:
    with pytest.raises(vecdb.DimensionMismatchError) as info:
        await items.upsert([item(1), item(7, vector=[1.0] * 5)])
    error = info.value
    assert (error.expected, error.got, error.record_id, error.position) == (4, 5, 7, 1)
    assert "id=7" in str(error)
    assert "expects 4" in str(error)


async def test_nan_error_names_the_record_and_field(items: vecdb.Collection[Item]) -> None:
    with pytest.raises(vecdb.InvalidVectorError, match="NaN") as info:
        await items.upsert([item(3, vector=[math.nan, 1, 1, 1])])
    assert (info.value.record_id, info.value.position, info.value.field) == (3, 0, "embedding")


async def test_zero_vector_is_fine_under_l2(db: vecdb.Database) -> None:
    c = await db.collection("l2items", Item, dim=DIM, metric="l2")
    assert await c.upsert([item(1, vector=[0, 0, 0, 0])]) == 1


async def test_halfvec_range_is_checked(db: vecdb.Database) -> None:
    c = await db.collection("halfitems", Item, dim=DIM, storage="halfvec")
    with pytest.raises(vecdb.InvalidVectorError, match="halfvec"):
        await c.upsert([item(1, vector=[1e6, 0, 0, 0])])
    assert await c.count() == 0


async def test_pydantic_errors_are_kept(items: vecdb.Collection[Item]) -> None:
    with pytest.raises(vecdb.RecordValidationError) as info:
        await items.upsert([{"id": 1, "team": "g", "year": "x", "embedding": [1, 2, 3, 4]}])
    assert info.value.position == 0
    assert info.value.errors[0]["loc"] == ("year",)
    assert "id=1" in str(info.value)


async def test_records_read_without_vectors_cannot_be_written_back(
    items: vecdb.Collection[Item],
) -> None:
    await items.upsert([item(1)])
    hit = (await items.search([1, 1, 0.5, -1], k=1))[0]
    with pytest.raises(vecdb.InvalidVectorError, match="include_vectors=True"):
        await items.upsert([hit.record])


async def test_insert_refuses_existing_ids_and_names_them(items: vecdb.Collection[Item]) -> None:
    await items.upsert([item(1), item(2)])
    with pytest.raises(vecdb.DuplicateRecordError) as info:
        await items.insert([item(2), item(3), item(1)])
    assert sorted(info.value.ids) == [1, 2]
    assert await items.count() == 2


async def test_insert_refuses_ids_given_twice(items: vecdb.Collection[Item]) -> None:
    with pytest.raises(vecdb.DuplicateRecordError) as info:
        await items.insert([item(1), item(2), item(1)])
    assert info.value.ids == (1,)
    assert await items.count() == 0


async def test_insert_writes_new_records(items: vecdb.Collection[Item]) -> None:
    assert await items.insert([item(1), item(2)]) == 2


async def test_get_returns_none_for_a_missing_id(items: vecdb.Collection[Item]) -> None:
    assert await items.get(42) is None


async def test_get_without_vectors(items: vecdb.Collection[Item]) -> None:
    await items.upsert([item(1)])
    got = await items.get(1, include_vectors=False)
    assert got is not None
    assert got.embedding is None
    assert "embedding" not in got.model_fields_set


async def test_get_many_keeps_the_order_and_skips_missing(items: vecdb.Collection[Item]) -> None:
    await items.upsert([item(i) for i in range(5)])
    got = await items.get_many([4, 99, 0, 2])
    assert [r.id for r in got] == [4, 0, 2]


async def test_ids_of_the_wrong_type_are_refused(items: vecdb.Collection[Item]) -> None:
    with pytest.raises(vecdb.RecordValidationError, match="not a valid id"):
        await items.get("abc")


async def test_delete_by_ids_returns_the_count(items: vecdb.Collection[Item]) -> None:
    await items.upsert([item(i) for i in range(5)])
    assert await items.delete([1, 2, 99]) == 2
    assert await items.count() == 3


async def test_delete_by_filter(items: vecdb.Collection[Item]) -> None:
    await items.upsert([item(i, team="a" if i % 2 else "b") for i in range(6)])
    assert await items.delete(where={"team": "a"}) == 3
    assert await items.count(where={"team": "a"}) == 0
    assert await items.count() == 3


@pytest.mark.parametrize("where", [{}], ids=["empty-dict"])
async def test_delete_everything_needs_allow_all(
    items: vecdb.Collection[Item], where: dict[str, Any]
) -> None:
    await items.upsert([item(i) for i in range(3)])
    with pytest.raises(vecdb.FilterError, match="allow_all=True"):
        await items.delete(where=where)
    assert await items.count() == 3
    assert await items.delete(where=where, allow_all=True) == 3


@pytest.mark.parametrize(
    "kwargs", [{}, {"ids": [1], "where": {"team": "a"}}], ids=["neither", "both"]
)
async def test_delete_needs_ids_or_where(
    items: vecdb.Collection[Item], kwargs: dict[str, Any]
) -> None:
    with pytest.raises(vecdb.FilterError, match="ids or where"):
        await items.delete(**kwargs)


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (None, 10),
        ({"year": {"$gte": 2005}}, 5),
        ({"team": "a", "year": {"$lt": 2004}}, 2),
        ({"$or": [{"team": "a"}, {"year": 2009}]}, 6),
        ({"tags": {"$contains": "odd"}}, 5),
        ({"id": {"$in": [1, 2, 3]}}, 3),
    ],
    ids=["all", "gte", "and", "or", "contains", "in-ids"],
)
async def test_count_with_filters(
    items: vecdb.Collection[Item], where: dict[str, Any] | None, expected: int
) -> None:
    await items.upsert(
        [
            Item(
                id=i, team="a" if i % 2 == 0 else "b", year=2000 + i,
                tags=["odd"] if i % 2 else [], embedding=[1, 1, 1, i],
            )
            for i in range(10)
        ]
    )  # fmt: skip
    assert await items.count(where=where) == expected


async def test_unknown_filter_field_is_a_filter_error(items: vecdb.Collection[Item]) -> None:
    with pytest.raises(vecdb.FilterError, match="not a declared field"):
        await items.count(where={"colour": "red"})


class Event(vecdb.Record):
    id: uuid.UUID
    at: dt.datetime
    day: dt.date
    embedding: vecdb.Vector


async def test_uuid_ids_and_times_round_trip(db: vecdb.Database) -> None:
    events = await db.collection("events", Event, dim=2, metric="l2")
    key = uuid.uuid4()
    record = Event(
        id=key, at=dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC), day=dt.date(2024, 5, 1),
        embedding=[1, 2],
    )  # fmt: skip
    await events.upsert([record])
    assert await events.get(str(key)) == record
    assert await events.count(where={"at": {"$gte": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}}) == 1


async def test_many_rows_are_written_through_copy(items: vecdb.Collection[Item]) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(12_000, DIM)).astype(np.float32)
    written = await items.upsert(
        {"id": i, "team": "g", "year": 2000, "embedding": vectors[i]} for i in range(12_000)
    )
    assert written == 12_000
    got = await items.get(11_999)
    assert got is not None
    np.testing.assert_array_equal(got.embedding, vectors[11_999])


# -- first loads: a straight COPY into an empty table, index rebuilds, timeouts ---------------

STRAIGHT = "straight into the empty table"
STAGED = "through a staging table"
REBUILT = "dropping its HNSW index"


def _paths(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Which path each write took, in order, from the writer's log."""
    paths = []
    for record in caplog.records:
        if record.name == "vecdb.collections":
            message = record.getMessage()
            paths += [name for name in (STRAIGHT, STAGED, REBUILT) if name in message]
    return paths


async def _index_oid(db: vecdb.Database, name: str) -> tuple[int, bool] | None:
    """The index's oid and ``indisvalid``, or ``None`` when it does not exist."""
    async with db.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT indexrelid::oid::int8 AS oid, indisvalid FROM pg_index "
            "WHERE indexrelid = to_regclass($1)",
            name,
        )
    return None if row is None else (row["oid"], row["indisvalid"])


async def _wait_for_lock_wait(
    db: vecdb.Database, task: asyncio.Task[Any], *, longer_than: float = 0.0
) -> None:
    """Until a statement of this database has waited ``longer_than`` seconds for a lock.

    Read from ``pg_stat_activity`` (in a transaction of its own each time: the
    view is a snapshot per transaction); returns early if ``task`` ends (it failed).
    """
    deadline = time.monotonic() + 60
    while not task.done():
        async with db.acquire() as conn:
            waiting = await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock' "
                "AND clock_timestamp() - query_start > make_interval(secs => $1))",
                longer_than,
            )
        if waiting:
            return
        assert time.monotonic() < deadline, "the write never waited for the lock"
        await asyncio.sleep(0.02)  # polling the server's state, not waiting for it to change


def _mixed_input() -> list[Item]:
    """Ids repeated within a chunk and across chunks (of 3): the last record wins."""
    records = [item(i, team=f"first-{i}") for i in range(8)]
    records += [item(2, team="2-last"), item(9), item(9, team="9-last"), item(0, team="0-last")]
    return records


async def test_a_write_into_an_empty_collection_copies_straight_into_it(
    items: vecdb.Collection[Item], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="vecdb.collections"):
        assert await items.upsert([item(i) for i in range(10)]) == 10
    assert _paths(caplog) == [STRAIGHT]
    assert await items.count() == 10


async def test_a_write_into_a_collection_with_rows_merges(
    items: vecdb.Collection[Item], caplog: pytest.LogCaptureFixture
) -> None:
    await items.upsert([item(100)])
    with caplog.at_level(logging.DEBUG, logger="vecdb.collections"):
        assert await items.upsert([item(i) for i in range(10)]) == 10
    assert _paths(caplog) == [STAGED]


async def test_straight_copy_and_merge_store_the_same_rows(
    db: vecdb.Database,
    items: vecdb.Collection[Item],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr("vecdb._collections.writer.WRITE_CHUNK", 3)
    merged = await db.collection("merged", Item, dim=DIM, filterable=("team", "year"))
    await merged.upsert([item(10_000)])  # not empty: merged through the staging table
    with caplog.at_level(logging.DEBUG, logger="vecdb.collections"):
        written = [await items.upsert(_mixed_input()), await merged.upsert(_mixed_input())]
    assert _paths(caplog) == [STRAIGHT, STAGED]
    assert written == [9, 9]
    straight = await items.get_many(range(10))
    assert straight == await merged.get_many(range(10))
    assert {r.id: r.team for r in straight if r.id in (0, 2, 9)} == {
        0: "0-last",
        2: "2-last",
        9: "9-last",
    }


async def test_batches_after_the_first_are_merged(
    items: vecdb.Collection[Item], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="vecdb.collections"):
        assert await items.upsert([item(i) for i in range(7)], batch_size=3) == 7
    assert _paths(caplog) == [STRAIGHT, STAGED, STAGED]
    assert await items.count() == 7


async def test_insert_of_ids_repeated_across_chunks_writes_nothing_into_an_empty_collection(
    items: vecdb.Collection[Item], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("vecdb._collections.writer.WRITE_CHUNK", 2)
    with pytest.raises(vecdb.DuplicateRecordError) as info:
        await items.insert([item(1), item(2), item(3), item(1)])
    assert info.value.ids == (1,)
    assert await items.count() == 0


async def _other_writer(dsn: str) -> asyncpg.Connection:
    """A connection with an open transaction that inserted id 1 and has not committed."""
    conn: asyncpg.Connection = await asyncpg.connect(dsn)
    await conn.execute("BEGIN")
    await conn.execute(
        "INSERT INTO items (id, team, year, tags, embedding) "
        "VALUES (1, 'theirs', 1999, '{}', '[1, 1, 1, 1]')"
    )
    return conn


async def test_a_row_committed_while_a_first_load_waits_for_its_lock_is_merged_with(
    dsn: str, db: vecdb.Database, items: vecdb.Collection[Item], caplog: pytest.LogCaptureFixture
) -> None:
    other = await _other_writer(dsn)
    try:
        with caplog.at_level(logging.DEBUG, logger="vecdb.collections"):
            # The table looks empty (id 1 is not committed), so the write locks it,
            # and waits for the other writer to finish.
            write = asyncio.create_task(items.upsert([item(i, team="ours") for i in range(5)]))
            await _wait_for_lock_wait(db, write)
            await other.execute("COMMIT")
            assert await write == 5
    finally:
        await other.close()
    assert _paths(caplog) == [STAGED]
    got = await items.get(1)
    assert got is not None
    assert got.team == "ours"
    assert await items.count() == 5


async def test_insert_refuses_an_id_committed_while_it_waits_for_its_lock(
    dsn: str, db: vecdb.Database, items: vecdb.Collection[Item]
) -> None:
    other = await _other_writer(dsn)
    try:
        write = asyncio.create_task(items.insert([item(i, team="ours") for i in range(5)]))
        await _wait_for_lock_wait(db, write)
        await other.execute("COMMIT")
        with pytest.raises(vecdb.DuplicateRecordError) as info:
            await write
    finally:
        await other.close()
    assert info.value.ids == (1,)
    assert [r.team for r in await _snapshot(items)] == ["theirs"]


@pytest.fixture
def small_loads(monkeypatch: pytest.MonkeyPatch) -> int:
    """ "Large" first loads from 500 rows, in chunks of 200; returns the threshold."""
    monkeypatch.setattr("vecdb._collections.writer.REBUILD_MIN_ROWS", 500)
    monkeypatch.setattr("vecdb._collections.writer.WRITE_CHUNK", 200)
    return 500


HNSW_INDEX = "public.items_embedding_hnsw"


async def test_a_large_first_load_rebuilds_the_index_before_commit(
    db: vecdb.Database,
    items: vecdb.Collection[Item],
    small_loads: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = await _index_oid(db, HNSW_INDEX)
    assert before is not None
    with caplog.at_level(logging.INFO, logger="vecdb.collections"):
        assert await items.upsert(item(i) for i in range(2 * small_loads)) == 2 * small_loads
    assert _paths(caplog) == [REBUILT]
    after = await _index_oid(db, HNSW_INDEX)
    assert after is not None
    assert after[0] != before[0]  # built again
    assert after[1] is True  # and valid
    assert await items.count() == 2 * small_loads


async def test_a_small_first_load_keeps_the_index(
    db: vecdb.Database, items: vecdb.Collection[Item], small_loads: int
) -> None:
    before = await _index_oid(db, HNSW_INDEX)
    await items.upsert(item(i) for i in range(small_loads - 1))
    assert await _index_oid(db, HNSW_INDEX) == before


async def test_a_bad_record_late_in_a_large_first_load_leaves_it_empty_with_its_index(
    db: vecdb.Database, items: vecdb.Collection[Item], small_loads: int
) -> None:
    before = await _index_oid(db, HNSW_INDEX)
    records: list[Any] = [item(i) for i in range(2 * small_loads)]
    records[-50] = _bad("nan")  # in a chunk validated after the index was dropped
    with pytest.raises(vecdb.InvalidVectorError):
        await items.upsert(records)
    assert await items.count() == 0
    assert await _index_oid(db, HNSW_INDEX) == before


COMMAND_TIMEOUT = 1.0


@pytest.fixture
async def impatient(dsn: str) -> AsyncIterator[vecdb.Database]:
    """A database whose pool cuts a statement after COMMAND_TIMEOUT seconds by default."""
    pool = vecdb.PoolConfig(min_size=1, max_size=4, command_timeout=COMMAND_TIMEOUT)
    database = await vecdb.connect(dsn, pool=pool)
    try:
        yield database
    finally:
        await database.close()


async def _blocker(dsn: str, mode: str) -> asyncpg.Connection:
    """A connection holding a ``mode`` lock on ``items`` until it commits."""
    conn: asyncpg.Connection = await asyncpg.connect(dsn)
    await conn.execute("BEGIN")
    await conn.execute(f"LOCK TABLE items IN {mode} MODE")
    return conn


async def test_a_large_first_load_is_not_cut_by_command_timeout(
    dsn: str, impatient: vecdb.Database, small_loads: int
) -> None:
    items = await impatient.collection("items", Item, dim=DIM)
    blocker = await _blocker(dsn, "SHARE")  # readers pass, the load's lock waits
    try:
        load = asyncio.create_task(items.upsert(item(i) for i in range(2 * small_loads)))
        await _wait_for_lock_wait(impatient, load, longer_than=2 * COMMAND_TIMEOUT)
        await blocker.execute("COMMIT")
        assert await load == 2 * small_loads
    finally:
        await blocker.close()
    assert await _index_oid(impatient, HNSW_INDEX) is not None


async def test_a_write_timeout_bounds_its_statements(
    dsn: str, items: vecdb.Collection[Item]
) -> None:
    blocker = await _blocker(dsn, "SHARE")
    try:
        with pytest.raises(vecdb.QueryTimeoutError):
            await items.upsert([item(1)], timeout=0.2)
    finally:
        await blocker.close()
    assert await items.count() == 0


async def test_create_index_is_not_cut_by_command_timeout(
    dsn: str, impatient: vecdb.Database
) -> None:
    items = await impatient.collection("items", Item, dim=DIM, index=None)
    await items.upsert([item(i) for i in range(200)])
    blocker = await _blocker(dsn, "SHARE UPDATE EXCLUSIVE")  # as a running build would
    try:
        build = asyncio.create_task(items.create_index(vecdb.HNSW(m=8, ef_construction=32)))
        await _wait_for_lock_wait(impatient, build, longer_than=2 * COMMAND_TIMEOUT)
        await blocker.execute("COMMIT")
        await build
    finally:
        await blocker.close()
    state = await _index_oid(impatient, HNSW_INDEX)
    assert state is not None
    assert state[1] is True


async def test_a_rebuild_after_create_index_sizes_its_memory_from_the_new_parameters(
    dsn: str, small_loads: int, caplog: pytest.LogCaptureFixture
) -> None:
    """create_index() changes the definition; the writer must not keep the old one.

    A later first load rebuilds the index with maintenance_work_mem sized from m:
    with the old m=16 it would ask for less than with the new m=48.
    """
    pool = vecdb.PoolConfig(server_settings={"maintenance_work_mem": "1MB"})
    rows = 4 * small_loads
    async with vecdb.connect(dsn, pool=pool) as db:
        c = await db.collection("items", Item, dim=DIM)
        await c.create_index(vecdb.HNSW(m=48, ef_construction=96), concurrently=False)
        spec = c._spec
        old = _indexing._graph_memory(spec, 16, rows, 1 << 20, 4 << 30)
        new = _indexing._graph_memory(spec, 48, rows, 1 << 20, 4 << 30)
        assert old != new  # the sizes this test tells apart
        with caplog.at_level(logging.INFO, logger="vecdb.index"):
            await c.upsert(item(i) for i in range(rows))
    built = [r.getMessage() for r in caplog.records if "after loading" in r.getMessage()]
    assert len(built) == 1
    assert built[0].endswith(f"(maintenance_work_mem {new})")


@pytest.mark.parametrize(
    ("cache", "current", "rows", "expected"),
    [
        # 20M rows of DIM 4 at m=16 want ~9.6 GB: a third of the cache caps it,
        ("12GB", "64MB", 20_000_000, 4 << 20),
        # but never below 1 GB, whatever the cache says,
        ("2GB", "64MB", 20_000_000, 1 << 20),
        # nor below the server's own setting;
        ("12GB", "6GB", 20_000_000, 6 << 20),
        # a small graph takes what it needs, or the setting if that is more.
        ("12GB", "64MB", 1_000_000, 1_000_000 * 368 * 13 // 10 // 1024),
        ("12GB", "64MB", 1_000, 64 << 10),
    ],
)
async def test_a_build_sizes_its_memory_from_the_graph_and_the_servers_memory(
    items: vecdb.Collection[Item], cache: str, current: str, rows: int, expected: int
) -> None:
    """The build's maintenance_work_mem: the graph's size between the server's setting
    and the larger of 1 GB and a third of effective_cache_size (kB)."""
    async with items._pool.acquire() as conn:
        await conn.execute("SELECT set_config('effective_cache_size', $1, false)", cache)
        await conn.execute("SELECT set_config('maintenance_work_mem', $1, false)", current)
        memory = await _indexing._build_memory(conn, items._spec, 16, rows)
    assert memory == f"{expected}kB"


@pytest.mark.parametrize("shm", [1 << 20, 64 << 30])
async def test_a_parallel_build_that_would_overflow_dev_shm_runs_in_one_process(
    items: vecdb.Collection[Item],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    shm: int,
) -> None:
    """A parallel build keeps its graph in /dev/shm: one too small for it means no workers.

    /dev/shm's size is the server's only over a Unix socket (the embedded server's
    connection); over TCP the server's setting stands.
    """
    monkeypatch.setattr(_indexing, "shm_bytes", lambda: shm)
    await items.upsert(item(i) for i in range(50))
    async with items._pool.acquire() as conn:
        await conn.execute("SELECT set_config('max_parallel_maintenance_workers', '2', false)")
        local = await conn.fetchval("SELECT inet_server_addr() IS NULL")
        with caplog.at_level(logging.WARNING, logger="vecdb.index"):
            workers = await _indexing._workers_that_fit(conn, "64MB")
    fits = not local or shm >= (64 << 20) * 1.25
    assert workers == (2 if fits else 0)
    warned = [r.getMessage() for r in caplog.records if "in one process" in r.getMessage()]
    assert bool(warned) is not fits
    # And the build itself goes through, in one process or not, with a valid index.
    with caplog.at_level(logging.WARNING, logger="vecdb.index"):
        await items.create_index(vecdb.HNSW(m=8, ef_construction=16), parallel_workers=None)
    hits = await items.search([1.0, 3.0, 0.5, -1.0], k=3)
    assert hits[0].record.id == 3
