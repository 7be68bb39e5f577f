"""Archiving old data, restoring it and purging it: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import signal
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import vecdb
from vecdb._collections import archive as _archive
from vecdb._collections import checksums
from vecdb._schema.spec import CollectionSpec

from .test_partitions import DIM, Event, event, month, start

MONTHLY = vecdb.TimePartitions("created_at", interval="month", premake=0)


@pytest.fixture
async def events(db: vecdb.Database) -> vecdb.Collection[Event]:
    c = await db.collection("events", Event, dim=DIM, partition=MONTHLY)
    await c.upsert([event(i, month(2024, 1 + i % 6)) for i in range(60)])  # 10 per month
    return c


async def _places(db: vecdb.Database) -> dict[int, list[str]]:
    """Every id and the physical tables holding it: each must hold it exactly once."""
    async with db.acquire() as conn:
        tables = await conn.fetch(
            "SELECT format('%I.%I', n.nspname, c.relname) AS t FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' "
            "AND c.relname LIKE 'events\\_p%' AND n.nspname IN ('public', 'vecdb_archive')"
        )
        places: dict[int, list[str]] = {}
        for row in tables:
            for rec in await conn.fetch(f"SELECT id FROM {row['t']}"):
                places.setdefault(rec["id"], []).append(row["t"])
    return places


# -- partitioned --------------------------------------------------------------------------


async def test_archive_moves_old_partitions_with_their_indexes(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    report = await events.archive(older_than=start(2024, 4))
    assert report.partitions == ("events_p20240101", "events_p20240201", "events_p20240301")
    assert report.rows == 30
    assert report.ok
    assert report.checksum_before == report.checksum_after
    infos = await events.partitions()
    assert [(p.name, p.archived) for p in infos if p.archived] == [
        (name, True) for name in report.partitions
    ]
    async with db.acquire() as conn:
        methods = await conn.fetch(
            "SELECT a.amname FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid "
            "JOIN pg_am a ON a.oid = ic.relam "
            "WHERE x.indrelid = 'vecdb_archive.events_p20240101'::regclass"
        )
    assert "hnsw" in {m["amname"] for m in methods}
    assert all(len(tables) == 1 for tables in (await _places(db)).values())


async def test_archived_records_leave_reads_unless_asked_for(
    events: vecdb.Collection[Event],
) -> None:
    await events.archive(older_than=start(2024, 4))
    assert await events.count() == 30
    assert await events.count(include_archived=True) == 60
    assert await events.count(where={"tenant": "a"}, include_archived=True) == 60
    assert await events.get(0) is None  # month 1: archived
    archived = await events.get(0, include_archived=True)
    assert archived is not None
    assert archived.created_at == month(2024, 1)
    query = [1.0, 0.0, 0.5, -1.0]
    assert len(await events.search(query, k=100)) == 30
    hits = await events.search(query, k=100, include_archived=True)
    assert sorted(h.record.id for h in hits) == list(range(60))


async def test_an_archived_id_cannot_be_written_again(events: vecdb.Collection[Event]) -> None:
    await events.archive(older_than=start(2024, 2))
    with pytest.raises(vecdb.DuplicateRecordError) as caught:
        await events.upsert([event(6, month(2024, 9))])  # id 6 is in archived January
    assert caught.value.ids == (6,)
    with pytest.raises(vecdb.DuplicateRecordError):
        await events.insert([event(6, month(2024, 9))])
    assert await events.count(include_archived=True) == 60


async def test_restore_brings_partitions_back_with_their_content(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    archived = await events.archive(older_than=start(2024, 4))
    report = await events.restore(newer_than=start(2024, 2))
    assert report.partitions == ("events_p20240201", "events_p20240301")
    assert report.rows == 20
    assert report.ok
    assert await events.count() == 50
    rest = await events.restore()
    assert rest.partitions == ("events_p20240101",)
    assert await events.count() == 60
    assert not [p for p in await events.partitions() if p.archived]
    assert _archive.combine([report.checksum_after, rest.checksum_after]) == archived.checksum_after
    assert len(await events.search([1.0, 0.0, 0.5, -1.0], k=100)) == 60
    assert all(len(tables) == 1 for tables in (await _places(db)).values())


async def test_a_restore_into_a_range_that_has_new_rows_is_refused(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    await events.archive(older_than=start(2024, 3))
    await events.upsert([event(500, month(2024, 1))])  # January has a live partition again
    before = await _places(db)
    with pytest.raises(vecdb.ConfigError, match="received new rows") as caught:
        await events.restore()
    assert "events_p20240101" in str(caught.value)
    assert await _places(db) == before  # February was not restored either
    assert sum(p.archived for p in await events.partitions()) == 2


async def test_purge_needs_the_collections_name(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    await events.archive(older_than=start(2024, 3))
    before = await _places(db)
    with pytest.raises(vecdb.ConfigError, match="confirm='events'"):
        await events.purge_archive(start(2024, 3), confirm="event")
    assert await _places(db) == before
    report = await events.purge_archive(start(2024, 2), confirm="events")
    assert (report.partitions, report.rows) == (("events_p20240101",), 10)
    assert await events.count(include_archived=True) == 50
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM _vecdb_ids_events") == 50
    # Its ids are free again.
    await events.insert([event(0, month(2024, 7))])


class Note(vecdb.Record):
    id: int
    event_id: int
    embedding: vecdb.Vector


async def test_purge_refuses_ids_that_other_records_reference(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    notes = await db.collection(
        "notes", Note, dim=DIM, foreign_keys={"event_id": vecdb.ForeignKey("events")}
    )
    await notes.upsert([Note(id=1, event_id=0, embedding=[1, 0, 0, 0])])
    await events.archive(older_than=start(2024, 2))  # references stay valid when archived
    assert await notes.count() == 1
    with pytest.raises(vecdb.ConfigError, match="reference") as caught:
        await events.purge_archive(start(2024, 2), confirm="events")
    assert "notes" in str(caught.value)
    assert await events.count(include_archived=True) == 60


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"older_than": dt.datetime(2024, 4, 1)}, "timezone-aware"),  # noqa: DTZ001
        ({"older_than": start(2024, 4), "field": "tenant"}, "partitioned by 'created_at'"),
        ({"older_than": start(2024, 4), "batch_size": 0}, "batch_size"),
    ],
    ids=["naive-datetime", "other-field", "batch-size"],
)
async def test_bad_archive_arguments_change_nothing(
    db: vecdb.Database, events: vecdb.Collection[Event], kwargs: dict[str, Any], message: str
) -> None:
    before = await _places(db)
    with pytest.raises(vecdb.ConfigError, match=message):
        await events.archive(**kwargs)
    assert await _places(db) == before


async def test_value_partitions_are_not_archived_by_time(db: vecdb.Database) -> None:
    docs = await db.collection("docs", Event, dim=DIM, partition=vecdb.ValuePartitions("tenant"))
    await docs.upsert([event(1, month(2024, 1))])
    with pytest.raises(vecdb.ConfigError, match="by value"):
        await docs.archive(older_than=start(2025, 1))
    assert await docs.count() == 1


async def test_a_partition_changed_while_archived_is_put_back(
    db: vecdb.Database, events: vecdb.Collection[Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = _archive.checksum
    calls = 0

    async def before_a_late_write(conn: Any, table: str, *args: Any, **kwargs: Any) -> str:
        nonlocal calls
        calls += 1
        value = await real(conn, table, *args, **kwargs)
        if calls == 1:  # the checksum "before": as if a row arrived right after it
            rows, total = value.split(":")
            return f"{int(rows) - 1}:{total}"
        return value

    monkeypatch.setattr(_archive, "checksum", before_a_late_write)
    with pytest.raises(vecdb.ArchiveChecksumError) as caught:
        await events.archive(older_than=start(2024, 2))
    assert caught.value.table == "events_p20240101"
    assert await events.count() == 60  # put back, attached, searchable
    assert not [p for p in await events.partitions() if p.archived]
    assert len(await events.search([1.0, 0.0, 0.5, -1.0], k=100)) == 60


async def test_an_archive_killed_at_any_point_is_finished_by_the_next_run(
    dsn: str, db: vecdb.Database, events: vecdb.Collection[Event], tmp_path: Path
) -> None:
    script = tmp_path / "archiver.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import asyncio, datetime as dt, sys
            import vecdb
            sys.path.insert(0, {str(Path(__file__).parent)!r})
            from test_partitions import Event

            async def main():
                async with vecdb.connect({dsn!r}, migrate="off") as db:
                    c = await db.collection(
                        "events", Event, dim=4,
                        partition=vecdb.TimePartitions("created_at", premake=0),
                    )
                    print("ready", flush=True)
                    await c.archive(
                        older_than=dt.datetime(2024, 7, 1, tzinfo=dt.UTC),
                        progress=lambda name, rows: print("moved", flush=True),
                    )
                    print("done", flush=True)

            asyncio.run(main())
            """
        )
    )
    # How long a whole run takes here, so that the kills spread over it.
    began = time.perf_counter()
    await events.archive(older_than=start(2024, 7))
    span = time.perf_counter() - began
    await events.restore()
    rng = random.Random(7)  # noqa: S311 - kill times, not secrets
    killed_mid_way = 0
    for run in range(10):
        worker = await asyncio.create_subprocess_exec(
            sys.executable, str(script), stdout=asyncio.subprocess.PIPE
        )
        assert worker.stdout is not None
        assert await asyncio.wait_for(worker.stdout.readline(), 60) == b"ready\n"
        if run % 3 == 2:
            # Right after its first partition: the other five are still to go. A kill
            # at a random time alone may land only before or after the moves, when
            # the worker runs slower than the in-process run timed above.
            assert await asyncio.wait_for(worker.stdout.readline(), 60) == b"moved\n"
        else:
            await asyncio.sleep(rng.uniform(0, span))
        if worker.returncode is None:
            worker.send_signal(signal.SIGKILL)
        await asyncio.wait_for(worker.wait(), 60)
        assert worker.stdout is not None
        places = await _places(db)
        assert sorted(places) == list(range(60))  # no row in neither place
        assert all(len(tables) == 1 for tables in places.values())  # nor in both
        archived = sum(p.archived for p in await events.partitions())
        finished = (await worker.stdout.read()).endswith(b"done\n")
        killed_mid_way += not finished and 0 < archived < 6
        # The next run finishes what the killed one started.
        report = await events.archive(older_than=start(2024, 7))
        assert report.ok
        assert sum(p.archived for p in await events.partitions()) == 6
        assert await events.count(include_archived=True) == 60
        restored = await events.restore()
        assert restored.ok
        assert await events.count() == 60
    assert killed_mid_way >= 1  # the kills did land inside archive runs


# -- unpartitioned ------------------------------------------------------------------------


@pytest.fixture
async def flat(db: vecdb.Database) -> vecdb.Collection[Event]:
    c = await db.collection("flat", Event, dim=DIM)
    await c.upsert([event(i, month(2024, 1 + i % 6)) for i in range(60)])
    return c


async def test_an_unpartitioned_collection_archives_rows_by_a_time_field(
    flat: vecdb.Collection[Event],
) -> None:
    with pytest.raises(vecdb.ConfigError, match="field="):
        await flat.archive(older_than=start(2024, 4))
    with pytest.raises(vecdb.ConfigError, match="not a datetime"):
        await flat.archive(older_than=start(2024, 4), field="tenant")
    moved: list[int] = []
    report = await flat.archive(
        older_than=start(2024, 4),
        field="created_at",
        batch_size=7,
        progress=lambda _name, rows: moved.append(rows),
    )
    assert (report.rows, report.ok) == (30, True)
    assert moved == [7, 14, 21, 28, 30]
    assert await flat.count() == 30
    assert await flat.count(include_archived=True) == 60
    assert (await flat.get(0, include_archived=True)) is not None
    again = await flat.archive(older_than=start(2024, 4), field="created_at")
    assert again.rows == 0  # resumable: nothing left to move
    back = await flat.restore(newer_than=start(2024, 3))
    assert back.rows == 10
    assert back.ok
    assert await flat.count() == 40


async def test_an_unpartitioned_collection_that_others_reference_is_not_archived(
    db: vecdb.Database, flat: vecdb.Collection[Event]
) -> None:
    await db.collection("notes", Note, dim=DIM, foreign_keys={"event_id": vecdb.ForeignKey("flat")})
    with pytest.raises(vecdb.ConfigError, match="notes"):
        await flat.archive(older_than=start(2024, 4), field="created_at")
    assert await flat.count() == 60


# -- off the database ---------------------------------------------------------------------


async def test_an_exported_archive_comes_back_from_its_file(
    events: vecdb.Collection[Event], tmp_path: Path
) -> None:
    def old(records: list[Event]) -> list[tuple[Any, ...]]:
        return sorted(
            (r.id, r.created_at, r.tenant, r.embedding.tolist())
            for r in records
            if r.created_at < start(2024, 3)
        )

    before = old(await events.get_many(range(60)))
    archived = await events.archive(older_than=start(2024, 3))
    path = tmp_path / "events-2024.parquet"
    exported = await events.export_archive(path)
    assert (exported.rows, exported.checksum_before) == (20, archived.checksum_after)
    manifest = json.loads((tmp_path / "events-2024.parquet.manifest.json").read_text())
    assert (manifest["collection"], manifest["rows"]) == ("events", 20)
    await events.purge_archive(start(2024, 3), confirm="events")
    assert await events.count(include_archived=True) == 40
    report = await events.restore(from_file=path)
    assert report.rows == 20
    assert report.checksum_before == report.checksum_after == archived.checksum_after
    after = old(await events.get_many(range(60)))
    assert after == before
    assert await events.count() == 60


async def test_a_file_is_not_restored_over_the_archive_it_came_from(
    events: vecdb.Collection[Event], tmp_path: Path
) -> None:
    await events.archive(older_than=start(2024, 2))
    path = tmp_path / "jan.parquet"
    await events.export_archive(path)
    with pytest.raises(vecdb.DuplicateRecordError):
        await events.restore(from_file=path)  # the archive still holds those ids
    assert await events.count(include_archived=True) == 60


async def test_export_refuses_to_overwrite_or_to_export_nothing(
    events: vecdb.Collection[Event], tmp_path: Path
) -> None:
    with pytest.raises(vecdb.ConfigError, match="no archived data"):
        await events.export_archive(tmp_path / "none.parquet")
    await events.archive(older_than=start(2024, 2))
    taken = tmp_path / "taken.parquet"
    taken.write_text("mine")
    with pytest.raises(vecdb.ConfigError, match="never overwrites"):
        await events.export_archive(taken)
    assert taken.read_text() == "mine"


async def test_a_changed_or_foreign_file_restores_nothing(
    db: vecdb.Database, events: vecdb.Collection[Event], tmp_path: Path
) -> None:
    await events.archive(older_than=start(2024, 2))
    path = tmp_path / "jan.parquet"
    await events.export_archive(path)
    await events.purge_archive(start(2024, 2), confirm="events")
    manifest = tmp_path / "jan.parquet.manifest.json"
    original = json.loads(manifest.read_text())
    other = await db.collection("other", Event, dim=DIM)
    with pytest.raises(vecdb.ConfigError, match="collection 'events'"):
        await other.restore(from_file=path)
    manifest.write_text(json.dumps({**original, "checksum": "10:1"}))
    with pytest.raises(vecdb.ArchiveChecksumError):
        await events.restore(from_file=path)
    manifest.write_text(json.dumps({**original, "rows": 11}))
    with pytest.raises(vecdb.ArchiveChecksumError):
        await events.restore(from_file=path)
    assert await events.count(include_archived=True) == 50  # nothing came back


async def test_export_without_pyarrow_names_the_extra(
    events: vecdb.Collection[Event], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await events.archive(older_than=start(2024, 2))
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ImportError, match=r"vecdb\[parquet\]"):
        await events.export_archive(tmp_path / "x.parquet")


async def test_a_checksum_does_not_depend_on_the_sessions_time_zone_or_formats(
    db: vecdb.Database, events: vecdb.Collection[Event]
) -> None:
    # An export made in one session is checked in another (another process,
    # another TimeZone): the text of a timestamptz would differ, its bytes do not.
    spec: CollectionSpec = events._spec
    sums = []
    for zone, style in (("UTC", "ISO, MDY"), ("Asia/Kathmandu", "SQL, DMY")):
        async with db.acquire() as conn:
            await conn.execute(f"SET TimeZone = '{zone}'")
            await conn.execute(f"SET DateStyle = '{style}'")
            await conn.execute("SET extra_float_digits = -3")
            sums.append(await checksums.checksum(conn, spec, "events"))
            await conn.execute("RESET ALL")
    assert sums[0] == sums[1]
    assert sums[0].startswith("60:")
    # And it sees every column: one field changed changes it.
    await events.upsert([event(0, month(2024, 1)).model_copy(update={"tenant": "b"})])
    async with db.acquire() as conn:
        assert await checksums.checksum(conn, spec, "events") != sums[0]
