"""repartition(): an unpartitioned collection converted while in use, nothing lost."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import re
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import vecdb
from tests.conftest import PackageWriter
from vecdb._collections import repartition as _repartition
from vecdb._collections.repartition import RepartitionProgress

DIM = 4
UTC = dt.UTC


class Event(vecdb.Record):
    id: int
    created_at: dt.datetime
    tenant: str
    note: str | None = None
    embedding: vecdb.Vector


MONTHLY = vecdb.TimePartitions("created_at", interval="month", premake=2)
BY_TENANT = vecdb.ValuePartitions("tenant")


def month(year: int, number: int, day: int = 15) -> dt.datetime:
    return dt.datetime(year, number, day, 12, tzinfo=UTC)


def event(
    i: int, when: dt.datetime | None = None, *, tenant: str | None = None, seed: int = 0
) -> Event:
    rng = np.random.default_rng([abs(i), seed])
    return Event(
        id=i,
        created_at=when or month(2024, 1 + i % 12),
        tenant=tenant or "abc"[i % 3],
        note=f"note {i}" if i % 3 else None,
        embedding=rng.normal(size=DIM),
    )


@pytest.fixture
async def events(db: vecdb.Database) -> vecdb.Collection[Event]:
    return await db.collection("events", Event, dim=DIM, filterable=("tenant",))


async def _everything(collection: vecdb.Collection[Event], ids: Iterable[int]) -> dict[int, Event]:
    return {r.id: r for r in await collection.get_many(ids)}


async def _leftovers(db: vecdb.Database) -> list[str]:
    """What a repartition leaves while under way: reserved tables, functions, triggers."""
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT relname AS name FROM pg_class WHERE relname LIKE '\\_vecdb\\_%' "
            "AND relkind IN ('r', 'p') AND relpersistence <> 't' "
            "UNION ALL SELECT proname FROM pg_proc WHERE proname LIKE '\\_vecdb\\_%' "
            "UNION ALL SELECT tgname FROM pg_trigger WHERE NOT tgisinternal "
            "AND tgrelid = to_regclass('events') ORDER BY 1"
        )
    return [row["name"] for row in rows]


async def _state(db: vecdb.Database) -> dict[str, Any]:
    async with db.acquire() as conn:
        row = await conn.fetchrow("SELECT phase, last_id, copied, total FROM _vecdb_repart_events")
        copied = await conn.fetchval("SELECT count(*) FROM _vecdb_new_events")
        registered = await conn.fetchval("SELECT count(*) FROM _vecdb_ids_events")
    assert row is not None
    return {**dict(row), "rows_in_copy": copied, "registered": registered}


async def _where_rows_live(db: vecdb.Database) -> dict[int, str]:
    async with db.acquire() as conn:
        rows = await conn.fetch("SELECT id, tableoid::regclass::text AS part FROM events")
        registry = await conn.fetchval("SELECT count(*) FROM _vecdb_ids_events")
    places = {row["id"]: row["part"] for row in rows}
    assert len(places) == len(rows) == registry  # no id twice, each one registered
    return places


# -- the conversion -----------------------------------------------------------------------


@pytest.mark.parametrize("partition", [MONTHLY, BY_TENANT], ids=["time", "value"])
async def test_every_row_and_every_search_result_survives(
    db: vecdb.Database, events: vecdb.Collection[Event], partition: vecdb.TimePartitions
) -> None:
    await events.upsert([event(i) for i in range(300)])
    before = await _everything(events, range(300))
    rng = np.random.default_rng(1)
    queries = rng.normal(size=(5, DIM)).astype(np.float32)
    exact = [await events.search(q, k=10, exact=True) for q in queries]
    reports: list[RepartitionProgress] = []

    assert await events.repartition(partition, batch_size=40, progress=reports.append) == 300

    assert await _everything(events, range(300)) == before
    assert await events.count() == 300
    assert await events.count(where={"tenant": "a"}) == 100
    for query, expected in zip(queries, exact, strict=True):
        hits = await events.search(query, k=10)
        assert [(h.record.id, h.distance) for h in hits] == [
            (h.record.id, h.distance) for h in expected
        ]
    places = await _where_rows_live(db)
    infos = await events.partitions()
    assert sum(p.rows for p in infos) == 300
    if partition is MONTHLY:
        assert places[14] == "events_p20240301"
    else:
        assert {p.value for p in infos} == {"a", "b", "c"}
    phases = [r.phase for r in reports]
    assert phases[0] == "copying"
    assert [r.rows_done for r in reports if r.phase == "copying"][-1] == 300
    assert phases[-1] == "done"
    assert reports[-1].lock_held is not None
    assert {"indexing", "verifying", "swapping"} <= set(phases)
    assert await _leftovers(db) == ["_vecdb_ids_events"]


async def test_the_same_object_and_a_reopened_one_use_the_new_layout(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    await events.upsert([event(i) for i in range(20)])
    await events.repartition(MONTHLY)
    assert events.spec["partitioning"] == {
        "kind": "time",
        "field": "created_at",
        "interval": "month",
        "premake": 2,
    }
    await events.upsert([event(1, month(2030, 5))])  # moves it: another partition
    with pytest.raises(vecdb.DuplicateRecordError):
        await events.insert([event(2, month(2031, 1))])  # the registry knows id 2
    assert (await _where_rows_live(db))[1] == "events_p20300501"
    assert await events.delete([3]) == 1
    reopened = await db.collection(
        "events", Event, dim=DIM, filterable=("tenant",), partition=MONTHLY
    )
    assert await reopened.count() == 19
    with pytest.raises(vecdb.SchemaMismatchError, match="partition"):
        await db.collection("events", Event, dim=DIM, filterable=("tenant",))


_LAYOUT = """
SELECT 'constraint' AS kind, c.relname AS rel, k.conname AS name, pg_get_constraintdef(k.oid) AS def
FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
WHERE c.relname = ANY($1) OR c.relname LIKE $2
UNION ALL
SELECT 'index', c.relname, i.relname, pg_get_indexdef(x.indexrelid)
FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid
WHERE c.relname = ANY($1) OR c.relname LIKE $2
UNION ALL
SELECT 'partition', c.relname, c.relname, pg_get_expr(c.relpartbound, c.oid)
FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid WHERE h.inhparent = $3::regclass
UNION ALL
SELECT 'trigger', c.relname, t.tgname, '' FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE NOT t.tgisinternal AND (c.relname = ANY($1) OR c.relname LIKE $2)
"""


async def _layout(db: vecdb.Database, table: str) -> set[tuple[str, ...]]:
    """Every constraint, index, partition and trigger of a collection, named as for ``table``."""
    async with db.acquire() as conn:
        rows = await conn.fetch(_LAYOUT, [table, f"_vecdb_ids_{table}"], f"{table}_p%", table)
    found = set()
    for row in rows:
        name, definition = row["name"], row["def"]
        if row["kind"] == "index" and row["rel"] != table and row["rel"].startswith(table):
            # A partition's own index is named by PostgreSQL (ATTACH) or by the
            # HNSW build (create_index): its definition is what matters.
            name = "*"
            definition = re.sub(r"INDEX \S+ ON", "INDEX * ON", definition)
        found.add((row["kind"], *(t.replace(table, "T") for t in (row["rel"], name, definition))))
    return found


async def test_the_layout_is_the_one_db_collection_makes(db: vecdb.Database) -> None:
    class Doc(vecdb.Record):
        id: int
        embedding: vecdb.Vector

    class Linked(vecdb.Record):
        id: int
        created_at: dt.datetime
        tenant: str
        doc_id: int
        embedding: vecdb.Vector

    docs = await db.collection("docs", Doc, dim=DIM)
    await docs.upsert([Doc(id=1, embedding=[1, 0, 0, 0])])
    declared: dict[str, Any] = {
        "dim": DIM,
        "filterable": ("tenant",),
        "foreign_keys": {"doc_id": vecdb.ForeignKey("docs", on_delete="cascade")},
    }
    old = await db.collection("linked", Linked, **declared)
    fresh = await db.collection("fresh", Linked, **declared, partition=MONTHLY)
    rows = [
        Linked(
            id=i, created_at=month(2024, 1 + i % 3), tenant="a", doc_id=1, embedding=[1, i, 0, 0]
        )
        for i in range(1, 30)
    ]
    await old.upsert(rows)
    await fresh.upsert(rows)
    await old.repartition(MONTHLY, batch_size=7)
    layout = await _layout(db, "linked")
    assert ("constraint", "T", "T_pkey", "PRIMARY KEY (id, created_at)") in layout
    assert layout == await _layout(db, "fresh")
    await docs.delete([1])  # the foreign key of every partition still cascades
    assert await old.count() == 0


# -- writes while it runs -----------------------------------------------------------------


class _Writer:
    """Writes (new ids below and above the copy's marker, moves, deletes) and what they leave."""

    def __init__(
        self,
        events: vecdb.Collection[Event],
        expected: dict[int, Event],
        ids: Iterable[int],
        *,
        base: int,
    ) -> None:
        self.events = events
        self.expected = expected
        self.mine = [i for i in ids if i in expected]  # no other writer touches these
        self.fresh = itertools.count(base)  # new ids: base + n and -(base + n)
        self.rng = np.random.default_rng(base)
        self.rounds = 0

    async def round(self) -> None:
        self.rounds += 1
        new = next(self.fresh)
        created = [event(new), event(-new)]
        moved = [
            event(i, month(2025, 1 + self.rounds % 12), seed=self.rounds)
            for i in self.rng.choice(self.mine, size=2, replace=False).tolist()
        ]
        await self.events.upsert(created[:1] + moved)
        await self.events.insert(created[1:])
        for record in created + moved:
            self.expected[record.id] = record
        gone = self.rng.choice(self.mine, size=1).tolist()
        await self.events.delete(gone)
        for i in gone:
            self.expected.pop(i, None)
            self.mine.remove(i)
        self.mine += [r.id for r in created]


async def test_writes_made_while_it_runs_are_all_in_the_result(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    await events.upsert([event(i) for i in range(400)])
    expected = await _everything(events, range(400))
    # Two writers on separate ids, so that the order of each id's writes is known.
    in_step = _Writer(events, expected, range(0, 400, 2), base=10_000)
    alongside = _Writer(events, expected, range(1, 400, 2), base=20_000)
    stop = asyncio.Event()

    async def keep_writing() -> None:
        while not stop.is_set():
            await alongside.round()

    async def progress(report: RepartitionProgress) -> None:
        catching_up = report.phase == "catching up" and report.rows_done <= 3 * 25
        if report.phase in ("copying", "verifying") or catching_up:
            await in_step.round()  # between two transactions of the run
        elif report.phase == "swapping":
            stop.set()  # a write waiting for the swap's lock would fail: see the docs
            await background

    background = asyncio.create_task(keep_writing())
    try:
        rows = await events.repartition(MONTHLY, batch_size=25, progress=progress)
    finally:
        stop.set()
        await background
    assert in_step.rounds > 16  # one per batch at least
    assert alongside.rounds > 0
    assert rows == len(expected)
    assert await _everything(events, expected) == expected
    assert set(await _where_rows_live(db)) == set(expected)
    assert await events.count() == len(expected)


async def test_truncate_is_refused_while_it_runs(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    await events.upsert([event(i) for i in range(50)])
    refused: list[Exception] = []

    async def progress(report: RepartitionProgress) -> None:
        if report.phase == "copying" and not refused:
            async with db.acquire() as conn:
                with pytest.raises(Exception, match="being repartitioned") as caught:
                    await conn.execute("TRUNCATE events")
            refused.append(caught.value)

    await events.repartition(MONTHLY, batch_size=10, progress=progress)
    assert refused
    assert await events.count() == 50


# -- interrupted runs ---------------------------------------------------------------------


class _Stop(Exception):  # noqa: N818 - not an error: the test stops the run here
    pass


async def test_an_interrupted_run_resumes_where_it_stopped(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    await events.upsert([event(i) for i in range(200)])
    expected = await _everything(events, range(200))

    def stop_after_five_batches(report: RepartitionProgress) -> None:
        if report.phase == "copying" and report.rows_done >= 50:
            raise _Stop

    with pytest.raises(_Stop):
        await events.repartition(MONTHLY, batch_size=10, progress=stop_after_five_batches)
    assert await _state(db) == {
        "phase": "copy",
        "last_id": 49,
        "copied": 50,
        "total": 200,
        "rows_in_copy": 50,
        "registered": 50,
    }
    # Still one table: its writes are captured for the copy.
    await events.upsert([event(5, month(2026, 2)), event(500)])
    await events.delete([150])
    for record in (event(5, month(2026, 2)), event(500)):
        expected[record.id] = record
    del expected[150]
    reports: list[RepartitionProgress] = []
    assert await events.repartition(MONTHLY, batch_size=10, progress=reports.append) == 200
    assert reports[0] == RepartitionProgress("copying", 60, 200)  # from the marker on
    assert await _everything(events, expected) == expected
    assert set(await _where_rows_live(db)) == set(expected)


async def test_another_declaration_starts_over(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    await events.upsert([event(i) for i in range(60)])

    def stop(report: RepartitionProgress) -> None:
        if report.phase == "copying":
            raise _Stop

    with pytest.raises(_Stop):
        await events.repartition(MONTHLY, batch_size=10, progress=stop)
    reports: list[RepartitionProgress] = []
    await events.repartition(BY_TENANT, batch_size=10, progress=reports.append)
    assert reports[0] == RepartitionProgress("copying", 10, 60)
    assert {p.value for p in await events.partitions()} == {"a", "b", "c"}
    assert await events.count() == 60


_WORKER = """
import asyncio, sys
import vecdb
sys.path.insert(0, {root!r})
from tests.collections.test_repartition import DIM, MONTHLY, Event

async def main():
    config = vecdb.PoolConfig(min_size=1, max_size=3, application_name="repartition-worker")
    async with vecdb.connect({dsn!r}, migrate="off", pool=config) as db:
        events = await db.collection("events", Event, dim=DIM, filterable=("tenant",))

        def progress(report):
            print(report.phase, report.rows_done, flush=True)
            if report.phase == "copying" and report.rows_done == 300:
                sys.stdin.readline()  # the test takes a lock, then lets us go on

        await events.repartition(MONTHLY, batch_size=10, progress=progress)
        print("finished", flush=True)

asyncio.run(main())
"""


async def _wait_for(db: vecdb.Database, query: str, *args: Any) -> Any:
    """Poll ``query`` (a condition on other sessions) until it returns a truthy value."""
    async with db.acquire() as conn:
        for _ in range(400):
            value = await conn.fetchval(query, *args)
            if value:
                return value
            await asyncio.sleep(0.025)
    raise AssertionError(f"still false after 10 s: {query}")


@pytest.mark.slow
async def test_a_process_killed_mid_copy_is_resumed_with_nothing_lost_or_twice(
    dsn: str, db: vecdb.Database, events: vecdb.Collection[Event], tmp_path: Path
) -> None:
    await events.upsert([event(i) for i in range(1000)])
    expected = await _everything(events, range(1000))
    script = tmp_path / "worker.py"
    root = str(Path(__file__).parents[2])
    script.write_text(textwrap.dedent(_WORKER).format(root=root, dsn=dsn))
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert worker.stdin is not None
    assert worker.stdout is not None
    try:
        while (line := await asyncio.wait_for(worker.stdout.readline(), 60)) != b"copying 300\n":
            assert line, (await worker.communicate())[1].decode()
        # Written while the worker's run is alive: its triggers log them.
        moved, added = event(7, month(2027, 7)), event(5000)
        await events.upsert([moved, added])
        await events.delete([900])
        expected |= {7: moved, 5000: added}
        del expected[900]
        async with db.transaction() as conn:
            # Hold the state row: the worker's next batch copies its rows, then waits here.
            await conn.execute("SELECT * FROM _vecdb_repart_events FOR UPDATE")
            worker.stdin.write(b"go\n")
            pid = await _wait_for(
                db,
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'repartition-worker' "
                "AND wait_event_type = 'Lock'",
            )
            worker.kill()  # kill -9, mid-transaction
            await worker.wait()
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    await _wait_for(db, "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", pid)
    state = await _state(db)
    assert state["phase"] == "copy"
    assert state["copied"] == state["rows_in_copy"] == state["registered"] == 300  # none twice

    reports: list[RepartitionProgress] = []
    assert await events.repartition(MONTHLY, batch_size=10, progress=reports.append) == 1000
    assert reports[0] == RepartitionProgress("copying", 310, 1000)
    assert await _everything(events, expected) == expected
    assert set(await _where_rows_live(db)) == set(expected)
    assert await _leftovers(db) == ["_vecdb_ids_events"]


# -- verification and the swap ------------------------------------------------------------


async def test_a_copy_that_does_not_match_is_discarded_and_the_collection_kept(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    await events.upsert([event(i) for i in range(100)])
    before = await _everything(events, range(100))

    async def corrupt(report: RepartitionProgress) -> None:
        if report.phase == "verifying":
            async with db.acquire() as conn:
                await conn.execute("UPDATE _vecdb_new_events SET note = 'damaged' WHERE id = 42")

    with pytest.raises(vecdb.ArchiveChecksumError, match="discarded") as caught:
        await events.repartition(MONTHLY, batch_size=30, progress=corrupt)
    assert caught.value.before != caught.value.after
    assert caught.value.before.startswith("100:")
    assert await _leftovers(db) == []
    assert (await db.collections())[0].spec["partitioning"] is None
    assert await _everything(events, range(100)) == before
    await events.upsert([event(100)])  # still the old table, and writable
    assert await events.repartition(MONTHLY) == 101  # and a new run starts over


async def test_the_swap_gives_up_on_a_long_transaction_and_keeps_the_copy(
    db: vecdb.Database, events: vecdb.Collection[Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_repartition, "LOCK_ATTEMPTS", 2)
    monkeypatch.setattr(_repartition, "RETRY_BACKOFF", 0.01)
    await events.upsert([event(i) for i in range(50)])
    reader = await db.acquire()
    transaction = reader.transaction()

    async def hold_the_table(report: RepartitionProgress) -> None:
        if report.phase == "swapping" and not reader.is_in_transaction():
            await transaction.start()
            await reader.execute("SELECT count(*) FROM events")  # ACCESS SHARE until it ends

    try:
        with pytest.raises(vecdb.LockTimeoutError, match="copy is kept"):
            await events.repartition(MONTHLY, progress=hold_the_table)
        assert (await _state(db))["phase"] == "catchup"
        await events.upsert([event(50)])  # the collection works meanwhile, writes captured
    finally:
        await transaction.rollback()
        await db.release(reader)
    assert await events.repartition(MONTHLY) == 51
    assert await events.get(50) == event(50)


# -- refusals: each one changes nothing ---------------------------------------------------


async def _refused(
    db: vecdb.Database, events: vecdb.Collection[Event], partition: Any, match: str
) -> vecdb.ConfigError:
    with pytest.raises(vecdb.ConfigError, match=match) as caught:
        await events.repartition(partition)
    assert await _leftovers(db) == []
    info = next(c for c in await db.collections() if c.name == "events")
    assert info.spec["partitioning"] is None
    return caught.value


@pytest.mark.parametrize(
    ("partition", "message"),
    [
        (vecdb.TimePartitions("tenant"), "must be a required datetime or date field"),
        (vecdb.TimePartitions("note"), "required"),
        (vecdb.TimePartitions("nope"), "not a field"),
        (vecdb.TimePartitions("embedding"), "vector"),
        (vecdb.ValuePartitions("id"), "primary key"),
    ],
    ids=["text-field", "optional-field", "unknown-field", "vector-field", "the-id"],
)
async def test_a_field_that_cannot_partition_is_refused(
    db: vecdb.Database, events: vecdb.Collection[Event], partition: Any, message: str
) -> None:
    await events.upsert([event(i) for i in range(5)])
    error = await _refused(db, events, partition, message)
    assert error.setting == partition.field


async def test_rows_without_a_value_are_refused_and_counted(db: vecdb.Database) -> None:
    class Seen(vecdb.Record):
        id: int
        seen_at: dt.datetime | None = None
        embedding: vecdb.Vector

    seen = await db.collection("events", Seen, dim=DIM)
    await seen.upsert([Seen(id=i, seen_at=month(2024, 1) if i % 2 else None, embedding=[1, i, 0, 0])
                       for i in range(5)])  # fmt: skip
    error = await _refused(db, seen, vecdb.TimePartitions("seen_at"), "3 row")  # type: ignore[arg-type]
    assert "optional" in str(error)


async def test_rows_whose_not_null_was_dropped_by_hand_are_refused_and_counted(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    await events.upsert([event(i) for i in range(6)])
    async with db.acquire() as conn:
        await conn.execute("ALTER TABLE events ALTER COLUMN created_at DROP NOT NULL")
        await conn.execute("UPDATE events SET created_at = NULL WHERE id < 2")
    await _refused(db, events, MONTHLY, "2 row")


async def test_an_already_partitioned_collection_is_refused(db: vecdb.Database) -> None:
    partitioned = await db.collection("events", Event, dim=DIM, partition=MONTHLY)
    with pytest.raises(vecdb.ConfigError, match="already partitioned"):
        await partitioned.repartition(BY_TENANT)


async def test_a_stale_object_is_refused_once_another_converted_it(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    other = await db.collection("events", Event, dim=DIM, filterable=("tenant",))
    await other.repartition(MONTHLY)
    with pytest.raises(vecdb.ConfigError, match="already partitioned"):
        await events.repartition(MONTHLY)


async def test_a_declaration_is_required(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    await _refused(db, events, "created_at", "TimePartitions")


async def test_a_collection_that_others_reference_is_refused_naming_them(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    class Note(vecdb.Record):
        id: int
        event_id: int
        embedding: vecdb.Vector

    fks = {"event_id": vecdb.ForeignKey("events")}
    await db.collection("notes", Note, dim=DIM, foreign_keys=fks)
    await _refused(db, events, MONTHLY, "collection 'notes' reference")


async def test_a_collection_that_references_itself_is_refused(db: vecdb.Database) -> None:
    class Node(vecdb.Record):
        id: int
        created_at: dt.datetime
        parent_id: int
        embedding: vecdb.Vector

    nodes = await db.collection(
        "events", Node, dim=DIM, foreign_keys={"parent_id": vecdb.ForeignKey("events")}
    )
    await _refused(db, nodes, MONTHLY, "foreign key to itself")  # type: ignore[arg-type]


async def test_a_table_in_the_way_of_a_partition_is_refused(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    await events.upsert([event(i) for i in range(5)])
    async with db.acquire() as conn:
        await conn.execute("CREATE TABLE events_p20240201 (x int)")
    await _refused(db, events, MONTHLY, "events_p20240201")


async def test_a_second_run_at_once_is_refused_naming_the_first(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    async with db.acquire() as conn:
        key = "public.events"
        await conn.execute("SELECT pg_advisory_lock($1, hashtext($2))", 0x76657270, key)
        pid = conn.get_server_pid()
        try:
            await _refused(db, events, MONTHLY, f"repartitioned by server process {pid}")
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1, hashtext($2))", 0x76657270, key)


async def test_archived_rows_are_refused(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    await events.upsert([event(i) for i in range(12)])
    await events.archive(older_than=month(2024, 3, 1), field="created_at")
    await _refused(db, events, MONTHLY, "restore")


# -- from a migration ---------------------------------------------------------------------


_MIGRATION = '''
import datetime as dt

import vecdb


class Event(vecdb.Record):
    id: int
    created_at: dt.datetime
    tenant: str
    note: str | None = None
    embedding: vecdb.Vector


class PartitionEvents(vecdb.Migration):
    """Partition events by month."""

    version = 1
    transactional = False  # the copy commits batch by batch; a rerun resumes it

    async def up(self, conn):
        # The collection API needs a pool: open one beside the migration's connection.
        async with vecdb.connect({dsn!r}, migrate="off") as db:
            info = next(c for c in await db.collections() if c.name == "events")
            if info.spec["partitioning"] is None:  # not converted by an earlier, killed run
                events = await db.collection("events", Event, dim=4, filterable=("tenant",))
                await events.repartition(
                    vecdb.TimePartitions("created_at", interval="month", premake=2)
                )
'''


async def test_a_migration_can_repartition(
    dsn: str, events: vecdb.Collection[Event], packages: PackageWriter
) -> None:
    await events.upsert([event(i) for i in range(40)])
    expected = await _everything(events, range(40))
    source = packages.write("app_repartition", {"v0001_partition": _MIGRATION.format(dsn=dsn)})
    async with vecdb.connect(dsn, migrations=[source]) as db:
        converted = await db.collection(
            "events", Event, dim=DIM, filterable=("tenant",), partition=MONTHLY
        )
        assert await _everything(converted, range(40)) == expected
        assert [s.state for s in await db.migrations.status() if s.source == source] == ["applied"]


async def test_a_view_on_the_table_is_refused_naming_it(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    async with db.acquire() as conn:
        await conn.execute("CREATE VIEW recent_events AS SELECT id FROM events")
    await _refused(db, events, MONTHLY, "recent_events")
