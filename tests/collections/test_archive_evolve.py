"""Archived data after the collection changed: restore, reads and exports still lose nothing.

An archived partition is detached, so an evolve (or a migration) of the
collection does not reach it. These tests archive first, change the
collection, then restore, read with ``include_archived=True`` or export, and
check that every row comes back whole, or that the restore is refused before
anything changes, with the partition still archived and intact.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import anyio
import pytest

import vecdb
from vecdb._collections import archive as _archive
from vecdb._collections import archive_records as _records
from vecdb._collections import catalog as _catalog
from vecdb._collections.checksums import combine
from vecdb._schema.spec import make_spec

from .test_partitions import DIM, Event, event, month, start

MONTHLY = vecdb.TimePartitions("created_at", interval="month", premake=0)
ARCHIVED = ("events_p20240101", "events_p20240201", "events_p20240301")


class Scored(vecdb.Record):
    """Event and one more optional field, with a default in Python (the column has none)."""

    id: int
    created_at: dt.datetime
    tenant: str
    note: str | None = None
    score: int | None = 5
    embedding: vecdb.Vector


class FloatScored(vecdb.Record):
    id: int
    created_at: dt.datetime
    tenant: str
    note: str | None = None
    score: float | None = None
    embedding: vecdb.Vector


class NoNote(vecdb.Record):
    """Event without its ``note`` field."""

    id: int
    created_at: dt.datetime
    tenant: str
    embedding: vecdb.Vector


class IntNote(vecdb.Record):
    """Event with ``note`` as a number."""

    id: int
    created_at: dt.datetime
    tenant: str
    note: int | None = None
    embedding: vecdb.Vector


async def make(
    db: vecdb.Database, model: type[vecdb.Record] = Event, **values: Any
) -> vecdb.Collection[Any]:
    """60 events over six months (10 a month), then January to March archived."""
    col = await db.collection("events", model, dim=DIM, partition=MONTHLY)
    records = [event(i, month(2024, 1 + i % 6)).model_dump() for i in range(60)]
    await col.upsert(model(**{**r, **values}) for r in records)
    report = await col.archive(older_than=start(2024, 4))
    assert report.partitions == ARCHIVED
    return col


async def migrate(
    db: vecdb.Database,
    model: type[vecdb.Record],
    *statements: str,
    name: str = "events",
    partition: vecdb.TimePartitions | None = MONTHLY,
) -> vecdb.Collection[Any]:
    """What an application's migration does: change the table, then its stored definition."""
    spec = make_spec(
        name, model, dim=DIM, metric="cosine", storage="vector", index=vecdb.HNSW(),
        filterable=(), foreign_keys=None, schema="public", partition=partition,
    )  # fmt: skip
    async with db.acquire() as conn, conn.transaction():
        for statement in statements:
            await conn.execute(statement)
        await _catalog.save_spec(conn, spec)
    return await db.collection(name, model, dim=DIM, partition=partition)


async def archive_state(db: vecdb.Database) -> dict[str, Any]:
    """Each archived table: its schema, attached or not, rows, columns, and vecdb's record."""
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT c.relname, n.nspname, c.relispartition, c.oid, "
            "obj_description(c.oid, 'pg_class') AS comment FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND c.relname = ANY($1) ORDER BY 1",
            list(ARCHIVED),
        )
        state = {}
        for row in rows:
            table = f'"{row["nspname"]}"."{row["relname"]}"'
            columns = await conn.fetch(
                "SELECT attname, format_type(atttypid, atttypmod) AS t FROM pg_attribute "
                "WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                row["oid"],
            )
            comment = json.loads(row["comment"]) if row["comment"] else {}
            state[row["relname"]] = {
                "schema": row["nspname"],
                "attached": row["relispartition"],
                "rows": await conn.fetchval(f"SELECT count(*) FROM {table}"),
                "columns": [(c["attname"], c["t"]) for c in columns],
                "record": comment.get("vecdb_archive"),
            }
    return state


async def checksums_of_archive(db: vecdb.Database, col: vecdb.Collection[Any]) -> list[str]:
    """The checksum of each archived partition now, over the columns it was archived with."""
    async with db.acquire() as conn:
        marked = await _records.marked_tables(conn, col._spec)
        return sorted(
            [await _archive._archived_checksum(conn, col._spec, m) for m in marked]
        )  # fmt: skip


def assert_archived_intact(state: dict[str, Any], columns: list[tuple[str, str]]) -> None:
    for name in ARCHIVED:
        assert state[name]["schema"] == "vecdb_archive"
        assert not state[name]["attached"]
        assert state[name]["rows"] == 10
        assert state[name]["record"]["state"] == "archived"
        assert state[name]["columns"] == columns


# -- a field added since ------------------------------------------------------------------


async def test_restore_after_an_evolve_added_a_field(db: vecdb.Database) -> None:
    """The archived partitions get the column, NULL as the live rows of their time hold it."""
    col = await make(db)
    archived = combine(await checksums_of_archive(db, col))
    evolved = await db.collection("events", Scored, dim=DIM, partition=MONTHLY, evolve=True)
    restored = await evolved.restore()
    assert restored.partitions == ARCHIVED
    assert restored.rows == 30
    assert restored.ok  # over the archived columns: the new one is not in the checksum
    assert restored.checksum_before == archived
    state = await archive_state(db)
    assert all(s["schema"] == "public" and s["attached"] for s in state.values())
    assert all(s["record"] is None for s in state.values())
    assert all(("score", "bigint") in s["columns"] for s in state.values())
    assert await evolved.count() == 60
    old_live, old_restored = await evolved.get(59), await evolved.get(0)  # June, January
    assert old_live is not None
    assert old_restored is not None
    assert old_live.score is None  # what an evolve gives the rows already there
    assert old_restored.score is None


async def test_restore_gives_the_default_a_migration_gave_the_live_rows(
    db: vecdb.Database,
) -> None:
    """A column added by a migration with a default: the archived rows get that default too."""
    col = await make(db)
    evolved = await migrate(
        db, Scored, "ALTER TABLE events ADD COLUMN score bigint NOT NULL DEFAULT 7"
    )
    report = await evolved.restore()
    assert report.ok
    assert {r.score for r in await evolved.get_many(range(60))} == {7}
    assert await col.count() == 60


async def test_the_archive_records_the_columns_its_checksum_covers(db: vecdb.Database) -> None:
    await make(db)
    state = await archive_state(db)
    assert state["events_p20240101"]["record"]["columns"] == [
        "id", "created_at", "tenant", "note", "embedding",
    ]  # fmt: skip


async def test_a_partition_archived_without_its_columns_recorded_compares_over_those_it_has(
    db: vecdb.Database,
) -> None:
    """An earlier vecdb recorded no ``columns``: today's columns the table has are used."""
    await make(db)
    async with db.acquire() as conn:
        for name in ARCHIVED:
            table = f"vecdb_archive.{name}"
            comment = await conn.fetchval("SELECT obj_description($1::regclass, 'pg_class')", table)
            record = json.loads(comment)
            del record["vecdb_archive"]["columns"]
            statement = await conn.fetchval(
                "SELECT format('COMMENT ON TABLE %s IS %L', $1::text, $2::text)",
                table,
                json.dumps(record),
            )
            await conn.execute(statement)
    evolved = await db.collection("events", Scored, dim=DIM, partition=MONTHLY, evolve=True)
    report = await evolved.restore()
    assert report.ok
    assert report.rows == 30


async def test_include_archived_reads_after_an_evolve_see_null_for_the_new_field(
    db: vecdb.Database,
) -> None:
    await make(db)
    evolved = await db.collection("events", Scored, dim=DIM, partition=MONTHLY, evolve=True)
    await evolved.upsert([Scored(**event(100, month(2024, 5)).model_dump(), score=3)])
    assert await evolved.count() == 31
    assert await evolved.count(include_archived=True) == 61
    assert await evolved.count({"score": {"$eq": 3}}, include_archived=True) == 1
    assert await evolved.get(0) is None
    found = await evolved.get(0, include_archived=True)
    assert found is not None
    assert found.score is None
    assert found.created_at == month(2024, 1)
    hits = await evolved.search([1.0, 0.0, 0.5, -1.0], k=61, include_archived=True, exact=True)
    assert len(hits) == 61
    assert {h.record.score for h in hits} == {None, 3}
    # Reading changed nothing: the archive still lacks the column.
    state = await archive_state(db)
    assert_archived_intact(state, state["events_p20240101"]["columns"])
    assert "score" not in dict(state["events_p20240101"]["columns"])


# -- a field dropped or retyped since ---------------------------------------------------


async def test_restore_refuses_to_lose_the_values_of_a_dropped_field(
    db: vecdb.Database, tmp_path: Path
) -> None:
    col = await make(db, note="kept")
    columns = (await archive_state(db))["events_p20240101"]["columns"]
    sums = await checksums_of_archive(db, col)
    dropped = await migrate(db, NoNote, "ALTER TABLE events DROP COLUMN note")
    with pytest.raises(vecdb.SchemaMismatchError, match="field 'note' was dropped") as caught:
        await dropped.restore()
    message = str(caught.value)
    assert "10 archived rows hold a value in it" in message
    assert "Add the field back" in message
    assert "Nothing was changed." in message
    assert len(caught.value.differences) == 3  # one per partition, each named
    assert caught.value.differences[0].startswith("events_p20240101: ")
    assert_archived_intact(await archive_state(db), columns)
    assert await checksums_of_archive(db, col) == sums
    assert await dropped.count() == 30
    with pytest.raises(vecdb.ConfigError, match=r"would leave out\. Nothing was written"):
        await dropped.export_archive(tmp_path / "events.parquet")
    assert [p async for p in anyio.Path(tmp_path).iterdir()] == []  # nor a .partial
    # What the message says to do: the field back, then restore keeps the values.
    back = await db.collection("events", Event, dim=DIM, partition=MONTHLY, evolve=True)
    report = await back.restore()
    assert report.ok
    assert {r.note for r in await back.get_many(range(60)) if r.created_at < start(2024, 4)} == {
        "kept"
    }


async def test_restore_drops_a_dropped_field_that_held_no_value(db: vecdb.Database) -> None:
    """Every archived ``note`` is NULL: dropping the column loses nothing, the checksum agrees."""
    await make(db)
    dropped = await migrate(db, NoNote, "ALTER TABLE events DROP COLUMN note")
    report = await dropped.restore()
    assert report.ok
    assert report.rows == 30
    assert await dropped.count() == 60
    state = await archive_state(db)
    assert all("note" not in dict(s["columns"]) for s in state.values())


async def test_restore_converts_a_field_whose_values_survive_the_new_type(
    db: vecdb.Database,
) -> None:
    await make(db, Scored, score=41)
    retyped = await migrate(
        db, FloatScored, "ALTER TABLE events ALTER COLUMN score TYPE double precision"
    )
    report = await retyped.restore()
    assert report.ok  # hashed as the archived bigint: the same values
    assert {r.score for r in await retyped.get_many(range(60))} == {41.0}
    state = await archive_state(db)
    assert all(("score", "double precision") in s["columns"] for s in state.values())


@pytest.mark.parametrize(
    ("model", "values", "statement", "why"),
    [
        (
            FloatScored,
            {"score": 1.5},
            "ALTER TABLE events ALTER COLUMN score TYPE bigint",
            "10 archived values would change",
        ),
        (
            Event,
            {"note": "not a number"},
            "ALTER TABLE events ALTER COLUMN note TYPE bigint USING NULL",
            "archived values do not convert",
        ),
    ],
    ids=["double-to-bigint-loses-the-fraction", "text-to-bigint-does-not-parse"],
)
async def test_restore_refuses_a_type_change_that_would_change_archived_values(
    db: vecdb.Database,
    model: type[vecdb.Record],
    values: dict[str, Any],
    statement: str,
    why: str,
) -> None:
    col = await make(db, model, **values)
    columns = (await archive_state(db))["events_p20240101"]["columns"]
    sums = await checksums_of_archive(db, col)
    target = Scored if model is FloatScored else IntNote
    retyped = await migrate(db, target, statement)
    field = "score" if model is FloatScored else "note"
    with pytest.raises(vecdb.SchemaMismatchError, match=f"field '{field}' is bigint") as caught:
        await retyped.restore()
    assert why in str(caught.value)
    assert "Nothing was changed." in str(caught.value)
    assert_archived_intact(await archive_state(db), columns)
    assert await checksums_of_archive(db, col) == sums


async def test_restore_refuses_a_new_required_column_without_a_default(
    db: vecdb.Database,
) -> None:
    col = await make(db)
    columns = (await archive_state(db))["events_p20240101"]["columns"]

    class Required(vecdb.Record):
        id: int
        created_at: dt.datetime
        tenant: str
        note: str | None = None
        score: int
        embedding: vecdb.Vector

    required = await migrate(
        db,
        Required,
        "ALTER TABLE events ADD COLUMN score bigint NOT NULL DEFAULT 0",
        "ALTER TABLE events ALTER COLUMN score DROP DEFAULT",
    )
    with pytest.raises(vecdb.SchemaMismatchError, match="NOT NULL without a default"):
        await required.restore()
    assert_archived_intact(await archive_state(db), columns)
    assert await col.count(include_archived=True) == 60


# -- a failure half-way ----------------------------------------------------------------------


async def test_a_restore_failing_half_way_leaves_the_partition_archived_and_intact(
    db: vecdb.Database,
) -> None:
    """A view named like an archived index: SET SCHEMA fails after the column was added."""
    col = await make(db)
    columns = (await archive_state(db))["events_p20240101"]["columns"]
    sums = await checksums_of_archive(db, col)
    evolved = await db.collection("events", Scored, dim=DIM, partition=MONTHLY, evolve=True)
    async with db.acquire() as conn:
        index = await conn.fetchval(
            "SELECT indexrelid::regclass::text FROM pg_index "
            "WHERE indrelid = 'vecdb_archive.events_p20240101'::regclass LIMIT 1"
        )
        name = index.split(".", 1)[1]
        await conn.execute(f"CREATE VIEW public.{name} AS SELECT 1 AS x")
    with pytest.raises(vecdb.VecdbError, match="already exists"):
        await evolved.restore()
    assert_archived_intact(await archive_state(db), columns)  # the new column rolled back too
    assert await checksums_of_archive(db, col) == sums
    assert await evolved.count() == 30
    assert await evolved.count(include_archived=True) == 60
    async with db.acquire() as conn:
        await conn.execute(f"DROP VIEW public.{name}")
    report = await evolved.restore()
    assert report.ok
    assert report.rows == 30
    assert await evolved.count() == 60


async def test_a_restore_whose_content_would_change_is_rolled_back(
    db: vecdb.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Conforming that changed a value (here: injected) fails the checksum, and undoes all."""
    col = await make(db)
    columns = (await archive_state(db))["events_p20240101"]["columns"]
    sums = await checksums_of_archive(db, col)
    evolved = await db.collection("events", Scored, dim=DIM, partition=MONTHLY, evolve=True)
    real = _archive._conform.apply

    async def apply_and_corrupt(conn: Any, planned: Any) -> None:
        await real(conn, planned)
        await conn.execute(f"UPDATE {planned.table} SET tenant = 'changed' WHERE id = 0")

    monkeypatch.setattr(_archive._conform, "apply", apply_and_corrupt)
    with pytest.raises(vecdb.ArchiveChecksumError, match="left in the archive") as caught:
        await evolved.restore()
    assert caught.value.table == "events_p20240101"
    assert_archived_intact(await archive_state(db), columns)
    assert await checksums_of_archive(db, col) == sums
    found = await evolved.get(0, include_archived=True)
    assert found is not None
    assert found.tenant == "a"


async def test_a_partition_left_half_restored_by_an_earlier_version_is_put_back(
    db: vecdb.Database,
) -> None:
    """Before this fix a failed restore left a partition detached in the live schema."""
    col = await make(db)
    async with db.acquire() as conn:
        comment = await conn.fetchval(
            "SELECT obj_description('vecdb_archive.events_p20240101'::regclass, 'pg_class')"
        )
        record = json.loads(comment)
        record["vecdb_archive"]["state"] = "restoring"
        await conn.execute("ALTER TABLE vecdb_archive.events_p20240101 SET SCHEMA public")
        statement = await conn.fetchval(
            "SELECT format('COMMENT ON TABLE public.events_p20240101 IS %L', $1::text)",
            json.dumps(record),
        )
        await conn.execute(statement)
    evolved = await db.collection("events", Scored, dim=DIM, partition=MONTHLY, evolve=True)
    report = await evolved.restore()
    assert report.partitions == ARCHIVED
    assert report.ok
    assert await evolved.count() == 60
    assert await col.count(include_archived=True) == 60


# -- unpartitioned collections and files --------------------------------------------------


class Log(vecdb.Record):
    id: int
    created_at: dt.datetime
    text: str
    embedding: vecdb.Vector


class ScoredLog(vecdb.Record):
    id: int
    created_at: dt.datetime
    text: str
    score: int | None = None
    embedding: vecdb.Vector


async def test_an_unpartitioned_archive_keeps_working_after_an_evolve(db: vecdb.Database) -> None:
    logs = await db.collection("logs", Log, dim=DIM)
    vector = [1.0, 0.0, 0.5, -1.0]
    await logs.upsert(Log(id=i, created_at=month(2024, 1 + i % 6), text="t", embedding=vector)
                      for i in range(60))  # fmt: skip
    first = await logs.archive(older_than=start(2024, 3), field="created_at")
    assert first.rows == 20
    evolved = await db.collection("logs", ScoredLog, dim=DIM, evolve=True)
    assert await evolved.count(include_archived=True) == 60
    await evolved.upsert([ScoredLog(id=100, created_at=month(2024, 1), text="t", score=9,
                                    embedding=vector)])  # fmt: skip
    second = await evolved.archive(older_than=start(2024, 4), field="created_at", batch_size=7)
    assert second.ok
    assert second.rows == 11  # March, and the new January row
    assert await evolved.count(include_archived=True) == 61
    assert await evolved.count({"score": {"$eq": 9}}, include_archived=True) == 1
    restored = await evolved.restore()
    assert restored.ok
    assert restored.rows == 31
    back = await evolved.get_many([0, 100])
    assert [r.score for r in back] == [None, 9]


async def test_an_export_made_after_an_evolve_comes_back_from_its_file(
    db: vecdb.Database, tmp_path: Path
) -> None:
    pytest.importorskip("pyarrow")
    await make(db)
    evolved = await db.collection("events", Scored, dim=DIM, partition=MONTHLY, evolve=True)
    path = tmp_path / "events.parquet"
    exported = await evolved.export_archive(path)
    assert exported.rows == 30
    await evolved.purge_archive(start(2024, 4), confirm="events")
    assert await evolved.count(include_archived=True) == 30
    report = await evolved.restore(from_file=path)
    assert report.rows == 30
    assert report.checksum_after == exported.checksum_after
    assert await evolved.count() == 60
    assert {r.score for r in await evolved.get_many(range(30))} == {None}


class UntitledLog(vecdb.Record):
    """Log without its ``text`` field."""

    id: int
    created_at: dt.datetime
    embedding: vecdb.Vector


async def test_an_unpartitioned_restore_refuses_to_leave_a_dropped_fields_values_behind(
    db: vecdb.Database,
) -> None:
    logs = await db.collection("logs", Log, dim=DIM)
    vector = [1.0, 0.0, 0.5, -1.0]
    await logs.upsert(Log(id=i, created_at=month(2024, 1 + i % 6), text="kept", embedding=vector)
                      for i in range(60))  # fmt: skip
    archived = await logs.archive(older_than=start(2024, 3), field="created_at")
    assert archived.rows == 20
    dropped = await migrate(
        db, UntitledLog, "ALTER TABLE logs DROP COLUMN text", name="logs", partition=None
    )
    with pytest.raises(vecdb.SchemaMismatchError, match="field 'text' was dropped") as caught:
        await dropped.restore()
    assert "20 archived rows hold a value in it" in str(caught.value)
    assert "Nothing was changed." in str(caught.value)
    assert await dropped.count() == 40
    assert await dropped.count(include_archived=True) == 60
    async with db.acquire() as conn:
        assert await conn.fetchval(
            "SELECT count(*) FROM vecdb_archive.logs WHERE text = 'kept'"
        ) == 20  # fmt: skip
