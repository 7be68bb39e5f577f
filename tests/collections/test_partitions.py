"""Partitioned collections: partitions made on demand, ids unique across them, pruned search."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import vecdb

DIM = 4
UTC = dt.UTC


class Event(vecdb.Record):
    id: int
    created_at: dt.datetime
    tenant: str
    note: str | None = None
    embedding: vecdb.Vector


def event(i: int, when: dt.datetime, *, tenant: str = "a", vector: Any = None) -> Event:
    return Event(
        id=i,
        created_at=when,
        tenant=tenant,
        embedding=vector if vector is not None else [1.0, float(i % 7), 0.5, -1.0],
    )


def month(year: int, number: int, day: int = 15) -> dt.datetime:
    return dt.datetime(year, number, day, 12, tzinfo=UTC)


def start(year: int, number: int) -> dt.datetime:
    """Midnight UTC on the first of the month: a partition bound."""
    return dt.datetime(year, number, 1, tzinfo=UTC)


MONTHLY = vecdb.TimePartitions("created_at", interval="month", premake=2)


@pytest.fixture
async def events(db: vecdb.Database) -> vecdb.Collection[Event]:
    return await db.collection("events", Event, dim=DIM, filterable=("tenant",), partition=MONTHLY)


async def _where_rows_live(db: vecdb.Database) -> list[tuple[str, int]]:
    """(partition, id) of every row of events, read from the server."""
    async with db.acquire() as conn:
        rows = await conn.fetch("SELECT tableoid::regclass::text AS p, id FROM events ORDER BY id")
    return [(row["p"], row["id"]) for row in rows]


async def _registry(db: vecdb.Database) -> dict[int, dt.datetime]:
    async with db.acquire() as conn:
        rows = await conn.fetch("SELECT id, created_at FROM _vecdb_ids_events")
    return {row["id"]: row["created_at"] for row in rows}


# -- declaring ----------------------------------------------------------------------------


async def test_creation_makes_this_months_partition_and_premake_more(
    events: vecdb.Collection[Event],
) -> None:
    now = dt.datetime.now(UTC)
    first = dt.datetime(now.year, now.month, 1, tzinfo=UTC)
    infos = await events.partitions()
    assert [p.lower for p in infos] == [
        first,
        vecdb._schema.partitioning.step(first, "month"),
        vecdb._schema.partitioning.step(first, "month", 2),
    ]
    assert infos[0].name == f"events_p{first:%Y%m%d}"
    assert infos[0].upper == infos[1].lower
    assert all(p.rows == 0 and p.total_bytes > 0 and not p.archived for p in infos)


@pytest.mark.parametrize(
    ("partition", "message"),
    [
        (vecdb.TimePartitions("tenant"), "must be a required datetime or date field"),
        (vecdb.TimePartitions("note"), "required"),
        (vecdb.TimePartitions("nope"), "not a field"),
        (vecdb.TimePartitions("embedding"), "vector"),
    ],
    ids=["text-field", "optional-field", "unknown-field", "vector-field"],
)
async def test_a_partition_field_that_cannot_hold_partitions_is_refused(
    db: vecdb.Database, partition: Any, message: str
) -> None:
    with pytest.raises(vecdb.ConfigError, match=message) as caught:
        await db.collection("events", Event, dim=DIM, partition=partition)
    assert caught.value.setting == partition.field
    assert [c.name for c in await db.collections()] == []  # nothing made


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [({"interval": "fortnight"}, "interval"), ({"premake": -1}, "premake")],
    ids=["interval", "premake"],
)
def test_an_interval_or_premake_that_is_not_allowed_is_refused(
    kwargs: dict[str, Any], setting: str
) -> None:
    with pytest.raises(vecdb.ConfigError) as caught:
        vecdb.TimePartitions("created_at", **kwargs)
    assert caught.value.setting == setting
    if setting == "interval":
        assert "day" in str(caught.value)
        assert "quarter" in str(caught.value)


async def test_partition_must_be_a_declaration(db: vecdb.Database) -> None:
    with pytest.raises(vecdb.ConfigError, match="TimePartitions"):
        await db.collection("events", Event, dim=DIM, partition="created_at")  # type: ignore[arg-type]


async def test_names_vecdb_keeps_for_itself_are_refused(db: vecdb.Database) -> None:
    with pytest.raises(vecdb.ConfigError, match="reserved"):
        await db.collection("_vecdb_ids_x", Event, dim=DIM)


async def test_reopening_with_another_partitioning_is_a_schema_mismatch(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    with pytest.raises(vecdb.SchemaMismatchError, match="partition"):
        await db.collection(
            "events",
            Event,
            dim=DIM,
            filterable=("tenant",),
            partition=vecdb.TimePartitions("created_at", interval="day"),
        )
    with pytest.raises(vecdb.SchemaMismatchError, match="partition"):
        await db.collection("events", Event, dim=DIM, filterable=("tenant",))
    # premake only says how far ahead to make partitions: not a different table.
    again = await db.collection(
        "events",
        Event,
        dim=DIM,
        filterable=("tenant",),
        partition=vecdb.TimePartitions("created_at", interval="month", premake=4),
    )
    assert len(await again.partitions()) == 5


async def test_opening_makes_the_partitions_premake_asks_for(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    infos = await events.partitions()
    async with db.acquire() as conn:
        for info in infos[1:]:
            await conn.execute(f"DROP TABLE {info.name}")  # as if time had passed
    await db.collection("events", Event, dim=DIM, filterable=("tenant",), partition=MONTHLY)
    assert [p.name for p in await events.partitions()] == [p.name for p in infos]


# -- writing ------------------------------------------------------------------------------


async def test_a_write_makes_the_partitions_its_rows_need(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    assert await events.upsert([event(1, month(2024, 1)), event(2, month(2024, 3))]) == 2
    assert await _where_rows_live(db) == [("events_p20240101", 1), ("events_p20240301", 2)]
    names = [p.name for p in await events.partitions()]
    assert "events_p20240101" in names
    assert "events_p20240201" not in names  # only what rows need


async def test_a_first_load_goes_straight_into_the_partitions_the_last_record_winning(
    db: vecdb.Database, events: vecdb.Collection[Event], caplog: pytest.LogCaptureFixture
) -> None:
    # 12,000 records in chunks of 5,000, ids repeating within and across
    # chunks, and a repeated id changing month: one row per id, the last one.
    def records() -> Any:
        for i in range(12_000):
            yield event(i % 9_000, month(2024, 1 + i % 5), tenant=f"t{i}")

    caplog.set_level("DEBUG", logger="vecdb.collections")
    assert await events.upsert(records()) == 9_000
    assert "straight into the partitions of events" in caplog.text
    last = {i % 9_000: i for i in range(12_000)}
    async with db.acquire() as conn:
        rows = await conn.fetch("SELECT id, tenant, created_at FROM events")
        registry = await _registry(db)
    assert {r["id"]: r["tenant"] for r in rows} == {k: f"t{v}" for k, v in last.items()}
    assert registry == {r["id"]: r["created_at"] for r in rows}
    # Not empty any more: the next write merges, and moves a row across months.
    caplog.clear()
    await events.upsert([event(0, month(2024, 6))])
    assert "straight into" not in caplog.text
    assert (await events.get(0)).created_at == month(2024, 6)  # type: ignore[union-attr]
    assert await events.count() == 9_000


async def test_bounds_are_utc_whatever_the_offset_of_the_value(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    # 00:30 on 1 March at +02:00 is still February in UTC.
    plus_two = dt.timezone(dt.timedelta(hours=2))
    await events.upsert([event(1, dt.datetime(2024, 3, 1, 0, 30, tzinfo=plus_two))])
    assert await _where_rows_live(db) == [("events_p20240201", 1)]


async def test_a_naive_datetime_is_refused_and_nothing_is_written(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    batch = [event(1, month(2024, 1)), event(2, dt.datetime(2024, 2, 1))]  # noqa: DTZ001
    with pytest.raises(vecdb.RecordValidationError, match="time zone") as caught:
        await events.upsert(batch)
    assert caught.value.position == 1
    assert await events.count() == 0
    assert "events_p20240101" not in [p.name for p in await events.partitions()]


async def test_an_upsert_with_another_time_moves_the_row(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    await events.upsert([event(1, month(2024, 1)), event(2, month(2024, 1))])
    await events.upsert([event(1, month(2025, 6), tenant="b")])
    assert await _where_rows_live(db) == [("events_p20250601", 1), ("events_p20240101", 2)]
    moved = await events.get(1)
    assert moved is not None
    assert (moved.created_at, moved.tenant) == (month(2025, 6), "b")
    assert await events.count() == 2
    assert (await _registry(db))[1] == month(2025, 6)


async def test_get_get_many_count_and_delete_need_no_time(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    await events.upsert([event(i, month(2024, 1 + i % 6)) for i in range(12)])
    one = await events.get(7)
    assert one is not None
    assert one.created_at == month(2024, 2)
    assert await events.get(99) is None
    assert [r.id for r in await events.get_many([11, 3, 99, 0])] == [11, 3, 0]
    assert await events.count() == 12
    assert await events.count(where={"created_at": {"$lt": start(2024, 3)}}) == 4
    assert await events.delete([3, 4, 99]) == 2
    assert await events.delete(where={"created_at": {"$gte": start(2024, 6)}}) == 2
    assert await events.count() == 8
    assert sorted(await _registry(db)) == sorted(r.id for r in await events.get_many(range(12)))


async def test_insert_refuses_an_id_that_lives_in_another_partition(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    await events.upsert([event(1, month(2024, 1))])
    with pytest.raises(vecdb.DuplicateRecordError) as caught:
        await events.insert([event(2, month(2024, 5)), event(1, month(2024, 9))])
    assert caught.value.ids == (1,)
    assert await _where_rows_live(db) == [("events_p20240101", 1)]
    assert list(await _registry(db)) == [1]


async def test_a_failed_write_leaves_no_partition_and_the_next_one_makes_it(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    await events.upsert([event(1, month(2024, 1))])
    with pytest.raises(vecdb.DuplicateRecordError):
        await events.insert([event(2, month(2030, 1)), event(1, month(2030, 2))])
    assert "events_p20300101" not in [p.name for p in await events.partitions()]
    await events.upsert([event(2, month(2030, 1))])  # the writer must not trust a stale cache
    assert ("events_p20300101", 2) in await _where_rows_live(db)


async def test_concurrent_upserts_of_one_id_with_different_times_leave_one_row(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    times = [month(2020 + i // 12, 1 + i % 12) for i in range(24)]
    for _ in range(3):
        await asyncio.gather(*(events.upsert([event(1, when)]) for when in times))
        rows = await _where_rows_live(db)
        assert len(rows) == 1
        registry = await _registry(db)
        assert list(registry) == [1]
        assert rows[0][0] == f"events_p{registry[1]:%Y%m01}"


async def test_processes_writing_new_months_at_once_never_fail_nor_lose_a_row(
    dsn: str, db: vecdb.Database, events: vecdb.Collection[Event], tmp_path: Path
) -> None:
    script = tmp_path / "writer.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import asyncio, datetime as dt, sys
            import vecdb
            sys.path.insert(0, {str(Path(__file__).parent)!r})
            from test_partitions import Event, MONTHLY, event

            async def main(worker):
                async with vecdb.connect({dsn!r}, migrate="off") as db:
                    c = await db.collection(
                        "events", Event, dim=4, filterable=("tenant",), partition=MONTHLY
                    )
                    for batch in range(6):
                        rows = [
                            event(worker * 1000 + batch * 10 + j,
                                  dt.datetime(2031, 1 + (batch + j) % 12, 3, tzinfo=dt.UTC))
                            for j in range(10)
                        ]
                        await c.upsert(rows)

            asyncio.run(main(int(sys.argv[1])))
            """
        )
    )
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable, str(script), str(w), stderr=asyncio.subprocess.PIPE
        )
        for w in range(4)
    ]
    for worker in workers:
        _, err = await asyncio.wait_for(worker.communicate(), timeout=120)
        assert worker.returncode == 0, err.decode()
    assert await events.count() == 4 * 6 * 10
    names = [p.name for p in await events.partitions() if p.name.startswith("events_p2031")]
    assert names == sorted(set(names))
    assert len(names) == 12
    assert len(await _registry(db)) == 240


# -- indexes and search -------------------------------------------------------------------


async def test_every_partition_carries_the_hnsw_and_filter_indexes(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    await events.upsert([event(1, month(2024, 1))])
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT c.relname AS part, array_agg(a.amname ORDER BY a.amname) AS methods "
            "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_index x ON x.indrelid = c.oid JOIN pg_class ic ON ic.oid = x.indexrelid "
            "JOIN pg_am a ON a.oid = ic.relam "
            "WHERE i.inhparent = 'events'::regclass GROUP BY 1"
        )
    assert rows
    # the primary key, the tenant filter index (both B-tree) and the HNSW index
    assert all(row["methods"] == ["btree", "btree", "hnsw"] for row in rows)


async def test_a_time_filter_reads_only_the_partitions_in_range(
    events: vecdb.Collection[Event],
) -> None:
    rng = np.random.default_rng(3)
    await events.upsert(
        [event(i, month(2024, 1 + i % 12), vector=rng.normal(size=DIM)) for i in range(240)]
    )
    await events.analyze()
    where = {"created_at": {"$gte": start(2024, 3), "$lt": start(2024, 5)}}
    explained = await events.explain(rng.normal(size=DIM), k=5, where=where)
    scanned = _relations(explained.plan["Plan"])
    assert scanned == {"events_p20240301", "events_p20240401"}
    hits = await events.search(rng.normal(size=DIM), k=5, where=where)
    assert len(hits) == 5
    assert all(start(2024, 3) <= h.record.created_at < start(2024, 5) for h in hits)


async def test_unfiltered_search_over_partitions_is_exact_search_with_the_indexes(
    events: vecdb.Collection[Event],
) -> None:
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(300, DIM)).astype(np.float32)
    await events.upsert(
        [event(i, month(2024, 1 + i % 12), vector=v) for i, v in enumerate(vectors)]
    )
    query = rng.normal(size=DIM).astype(np.float32)
    hits = await events.search(query, k=10)
    exact = await events.search(query, k=10, exact=True)
    assert [h.record.id for h in hits] == [h.record.id for h in exact]
    explained = await events.explain(query, k=10)
    assert explained.uses_vector_index


def _relations(plan: dict[str, Any]) -> set[str]:
    found = {plan["Relation Name"]} if "Relation Name" in plan else set()
    for child in plan.get("Plans", ()):
        found |= _relations(child)
    return found


# -- value partitions ---------------------------------------------------------------------


async def test_value_partitions_make_one_partition_per_value(db: vecdb.Database) -> None:
    docs = await db.collection("docs", Event, dim=DIM, partition=vecdb.ValuePartitions("tenant"))
    assert await docs.partitions() == []
    tenants = ["acme", "O'Brien", "Zoë & co", "acme"]
    await docs.upsert([event(i, month(2024, 1), tenant=t) for i, t in enumerate(tenants)])
    infos = await docs.partitions()
    assert sorted((p.value, p.rows) for p in infos) == [
        ("O'Brien", 1),
        ("Zoë & co", 1),
        ("acme", 2),
    ]
    assert all(p.lower is None and p.upper is None for p in infos)


async def test_a_filter_on_the_value_searches_that_partitions_own_index(
    db: vecdb.Database,
) -> None:
    docs = await db.collection("docs", Event, dim=DIM, partition=vecdb.ValuePartitions("tenant"))
    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(9000, DIM)).astype(np.float32)
    tenants = ["big", "mid", "small"]
    weights = [0.7, 0.25, 0.05]
    chosen = rng.choice(3, size=len(vectors), p=weights)
    await docs.upsert(
        event(i, month(2024, 1), tenant=tenants[t], vector=v)
        for i, (t, v) in enumerate(zip(chosen, vectors, strict=True))
    )
    await docs.analyze()
    query = rng.normal(size=DIM).astype(np.float32)
    explained = await docs.explain(query, k=10, where={"tenant": "big"})
    assert _relations(explained.plan["Plan"]) == {docs_partition(infos=await docs.partitions())}
    assert explained.uses_vector_index
    # Within its partition the filter keeps every row: not a 70% filter to be compensated.
    assert explained.estimated_rows == pytest.approx(explained.total_rows, rel=0.05)
    hits = await docs.search(query, k=10, where={"tenant": "big"})
    exact = await docs.search(query, k=10, where={"tenant": "big"}, exact=True)
    overlap = {h.record.id for h in hits} & {h.record.id for h in exact}
    assert len(overlap) >= 9


async def test_exact_search_on_a_value_partition_reads_no_index(db: vecdb.Database) -> None:
    # PostgreSQL 18 scans the one pruned LIST partition's HNSW index even with
    # enable_indexscan off, unless the order is one no index provides.
    docs = await db.collection("docs", Event, dim=DIM, partition=vecdb.ValuePartitions("tenant"))
    rng = np.random.default_rng(12)
    vectors = rng.normal(size=(2000, DIM)).astype(np.float32)
    tenants = ["a" if i % 4 else "b" for i in range(len(vectors))]
    await docs.upsert(
        event(i, month(2024, 1), tenant=t, vector=v)
        for i, (t, v) in enumerate(zip(tenants, vectors, strict=True))
    )
    await docs.analyze()
    query = rng.normal(size=DIM).astype(np.float32)
    explained = await docs.explain(query, k=10, where={"tenant": "a"}, exact=True)
    assert explained.strategy == "exact"
    assert not explained.uses_vector_index
    hits = await docs.search(query, k=10, where={"tenant": "a"}, exact=True)
    mine = np.array([i for i, t in enumerate(tenants) if t == "a"])
    norms = np.linalg.norm(vectors[mine], axis=1) * np.linalg.norm(query)
    order = np.argsort(1 - vectors[mine] @ query / norms, kind="stable")[:10]
    assert [h.record.id for h in hits] == [int(i) for i in mine[order]]


async def test_a_filter_keeping_a_whole_partition_is_searched_as_without_a_filter(
    db: vecdb.Database,
) -> None:
    docs = await db.collection("docs", Event, dim=DIM, partition=vecdb.ValuePartitions("tenant"))
    rng = np.random.default_rng(13)
    vectors = rng.normal(size=(3000, DIM)).astype(np.float32)
    await docs.upsert(
        event(i, month(2024, 1), tenant="a" if i % 3 else "b", vector=v)
        for i, v in enumerate(vectors)
    )
    await docs.analyze()
    query = rng.normal(size=DIM).astype(np.float32)
    explained = await docs.explain(query, k=10, where={"tenant": "a"})
    # 2,000 rows: above the exact scan's limit for a whole partition (1,000 at
    # 384 dims and below), so its own index at the unfiltered ef_search.
    assert explained.uses_vector_index
    assert explained.settings["hnsw.ef_search"] == "100"
    hits = await docs.search(query, k=10, where={"tenant": "a"})
    assert len(hits) == 10
    assert all(h.record.tenant == "a" for h in hits)
    # A smaller whole partition is cheaper to scan exactly.
    small = await docs.explain(query, k=10, where={"tenant": "b"})
    assert small.strategy == "exact"
    assert not small.uses_vector_index


def docs_partition(*, infos: list[vecdb.PartitionInfo]) -> str:
    return next(p.name for p in infos if p.value == "big")


# -- the rest of the collection -----------------------------------------------------------


async def test_dropping_a_partitioned_collection_drops_its_partitions_and_registry(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    await events.upsert([event(1, month(2024, 1))])
    await db.drop_collection("events")
    async with db.acquire() as conn:
        left = await conn.fetchval(
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'events%' "
            "OR relname = '_vecdb_ids_events'"
        )
    assert left == 0


class Note(vecdb.Record):
    id: int
    event_id: int
    embedding: vecdb.Vector


async def test_a_foreign_key_to_a_partitioned_collection_follows_its_ids(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    notes = await db.collection(
        "notes",
        Note,
        dim=DIM,
        foreign_keys={"event_id": vecdb.ForeignKey("events", on_delete="cascade")},
    )
    await events.upsert([event(1, month(2024, 1)), event(2, month(2024, 2))])
    await notes.upsert([Note(id=10, event_id=1, embedding=[1, 0, 0, 0])])
    with pytest.raises(vecdb.DatabaseError, match="foreign key"):
        await notes.upsert([Note(id=11, event_id=99, embedding=[1, 0, 0, 0])])
    await events.upsert([event(1, month(2025, 1))])  # moving it keeps the note
    assert await notes.count() == 1
    await events.delete([1])
    assert await notes.count() == 0  # cascaded


@pytest.mark.parametrize("concurrently", [True, False], ids=["concurrently", "blocking"])
async def test_create_index_rebuilds_every_partitions_index(
    db: vecdb.Database, events: vecdb.Collection[Event], concurrently: bool
) -> None:
    await events.upsert([event(i, month(2024, 1 + i % 3)) for i in range(30)])
    await events.create_index(vecdb.HNSW(m=24, ef_construction=64), concurrently=concurrently)
    await events.upsert([event(100, month(2029, 5))])  # a partition made after the build
    async with db.acquire() as conn:
        definitions = await conn.fetch(
            "SELECT c.relname AS part, pg_get_indexdef(x.indexrelid) AS definition, x.indisvalid "
            "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_index x ON x.indrelid = c.oid JOIN pg_class ic ON ic.oid = x.indexrelid "
            "JOIN pg_am a ON a.oid = ic.relam "
            "WHERE i.inhparent = 'events'::regclass AND a.amname = 'hnsw'"
        )
        parent_valid = await conn.fetchval(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'events_embedding_hnsw'::regclass"
        )
    assert parent_valid is True
    parts = {p.name for p in await events.partitions()}
    assert {row["part"] for row in definitions} == parts  # one HNSW index each
    assert all("m='24'" in row["definition"] and row["indisvalid"] for row in definitions)
    assert len(await events.search([1, 2, 0.5, -1], k=5)) == 5
    assert events.spec["index"] == {"m": 24, "ef_construction": 64}


async def test_a_new_partition_does_not_wait_for_readers_nor_make_them_wait(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    await events.upsert([event(1, month(2024, 1))])
    async with db.transaction() as reader:
        # A long reader holds ACCESS SHARE on the parent and its partitions:
        # CREATE TABLE ... PARTITION OF (ACCESS EXCLUSIVE) would wait for it.
        assert await reader.fetchval("SELECT count(*) FROM events") == 1
        await asyncio.wait_for(events.upsert([event(2, month(2031, 7))]), timeout=30)
    async with db.transaction() as writer:
        # A write that made a partition holds SHARE UPDATE EXCLUSIVE until it
        # commits; searches and reads of the other partitions go on meanwhile.
        await writer.execute("LOCK TABLE ONLY events IN SHARE UPDATE EXCLUSIVE MODE")
        hits = await asyncio.wait_for(events.search([1, 1, 0.5, -1], k=5), timeout=30)
        assert {h.record.id for h in hits} == {1, 2}
        assert await asyncio.wait_for(events.count(), timeout=30) == 2


async def test_partitions_report_large_partitions_from_statistics_unless_exact(
    db: vecdb.Database, events: vecdb.Collection[Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A count reads every row: past the threshold, ``rows`` is the statistics' estimate."""
    await events.upsert([event(i, month(2024, 1)) for i in range(30)])
    await events.upsert([event(100 + i, month(2024, 2)) for i in range(3)])
    await events.analyze()
    monkeypatch.setattr(vecdb._collections.partitions, "EXACT_ROWS_BELOW", 10)
    await events.delete(list(range(10)))  # the statistics still say 30

    def rows(infos: list[vecdb.PartitionInfo]) -> dict[str, int]:
        return {p.name: p.rows for p in infos if p.name in {"events_p20240101", "events_p20240201"}}

    assert rows(await events.partitions()) == {"events_p20240101": 30, "events_p20240201": 3}
    assert rows(await events.partitions(exact=True)) == {
        "events_p20240101": 20,
        "events_p20240201": 3,
    }
    await events.analyze()
    assert rows(await events.partitions()) == {"events_p20240101": 20, "events_p20240201": 3}
