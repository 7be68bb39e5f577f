"""The ``vecdb partitions``, ``vecdb archive`` and ``vecdb restore`` commands, end to end.

The collections are made in-process with the library; only the command under
test runs as a subprocess, against the same database, without the model.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from typing import Any

import pytest

import vecdb

DIM = 4
MONTHLY = vecdb.TimePartitions("created_at", interval="month", premake=0)


class Event(vecdb.Record):
    id: int
    created_at: dt.datetime
    tenant: str
    embedding: vecdb.Vector


def _event(i: int, when: dt.datetime, tenant: str = "acme") -> Event:
    return Event(id=i, created_at=when, tenant=tenant, embedding=[1.0, float(i % 5), 0.5, -1.0])


def _start(year: int, month: int) -> dt.datetime:
    return dt.datetime(year, month, 1, tzinfo=dt.UTC)


def _vecdb(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vecdb", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def _ok(*args: str) -> str:
    done = _vecdb(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _json(*args: str) -> Any:
    return json.loads(_ok(*args, "--json"))


async def _events(db: vecdb.Database) -> vecdb.Collection[Event]:
    """Monthly partitions: 4 rows in each of January, February and March 2024."""
    events = await db.collection("events", Event, dim=DIM, index=None, partition=MONTHLY)
    await events.upsert(
        _event(i, dt.datetime(2024, 1 + i % 3, 10, tzinfo=dt.UTC)) for i in range(12)
    )
    return events


async def _plain(db: vecdb.Database) -> vecdb.Collection[Event]:
    """Unpartitioned: 5 rows in January 2024, 3 in March."""
    plain = await db.collection("plain", Event, dim=DIM, index=None)
    await plain.upsert(
        _event(i, dt.datetime(2024, 1 if i < 5 else 3, 10, tzinfo=dt.UTC)) for i in range(8)
    )
    return plain


async def _docs(db: vecdb.Database) -> vecdb.Collection[Event]:
    """Partitioned by tenant: 2 rows of acme, 1 of globex."""
    docs = await db.collection(
        "docs", Event, dim=DIM, index=None, partition=vecdb.ValuePartitions("tenant")
    )
    when = dt.datetime(2024, 1, 10, tzinfo=dt.UTC)
    await docs.upsert([_event(1, when), _event(2, when), _event(3, when, tenant="globex")])
    return docs


def _names(infos: list[vecdb.PartitionInfo], *, archived: bool) -> list[str]:
    return [p.name for p in infos if p.archived is archived]


# -- partitions ---------------------------------------------------------------------------


async def test_partitions_prints_live_then_archived_partitions(
    db: vecdb.Database, dsn: str
) -> None:
    events = await _events(db)
    await events.archive(older_than=_start(2024, 2))
    lines = _ok("partitions", "events", "--dsn", dsn).splitlines()
    assert lines[0].split() == ["name", "lower", "upper", "rows", "size", "archived"]
    rows = [line.split() for line in lines[2:-1]]
    assert [r[0] for r in rows][:2] == ["events_p20240201", "events_p20240301"]
    assert rows[0][1:4] == ["2024-02-01", "2024-03-01", "4"]
    assert rows[0][-1] == "no"
    assert rows[-1][:4] == ["events_p20240101", "2024-01-01", "2024-02-01", "4"]
    assert rows[-1][-1] == "yes"
    assert rows[-1][-2] in ("bytes", "kB", "MB")  # the size, for reading
    # The current month is made at creation (premake=0): 4 partitions in all.
    assert lines[-1].startswith("4 partitions (1 archived), 12 rows, ")


async def test_partitions_json_has_every_partition_with_its_bounds(
    db: vecdb.Database, dsn: str
) -> None:
    events = await _events(db)
    await events.archive(older_than=_start(2024, 2))
    listed = _json("partitions", "events", "--dsn", dsn)
    assert [(p["name"], p["archived"]) for p in listed][:2] == [
        ("events_p20240201", False),
        ("events_p20240301", False),
    ]
    assert listed[-1] == {
        "name": "events_p20240101",
        "lower": "2024-01-01T00:00:00+00:00",
        "upper": "2024-02-01T00:00:00+00:00",
        "value": None,
        "rows": 4,
        "total_bytes": listed[-1]["total_bytes"],
        "archived": True,
    }
    assert listed[-1]["total_bytes"] > 0
    assert [p["name"] for p in listed] == [p.name for p in await events.partitions()]
    # Counted anew (the archived partition's recorded count is the default).
    exact = _json("partitions", "events", "--exact", "--dsn", dsn)
    assert [(p["name"], p["rows"]) for p in exact] == [(p["name"], p["rows"]) for p in listed]


async def test_partitions_of_a_value_partitioned_collection_show_the_values(
    db: vecdb.Database, dsn: str
) -> None:
    await _docs(db)
    lines = _ok("partitions", "docs", "--dsn", dsn).splitlines()
    assert lines[0].split() == ["name", "value", "rows", "size", "archived"]
    assert sorted(line.split()[1:3] for line in lines[2:-1]) == [["acme", "2"], ["globex", "1"]]
    listed = _json("partitions", "docs", "--dsn", dsn)
    assert sorted((p["value"], p["rows"], p["lower"]) for p in listed) == [
        ("acme", 2, None),
        ("globex", 1, None),
    ]


async def test_partitions_of_an_unpartitioned_collection_is_a_config_error(
    db: vecdb.Database, dsn: str
) -> None:
    await _plain(db)
    done = _vecdb("partitions", "plain", "--dsn", dsn)
    assert done.returncode == 1
    assert "collection 'plain' is not partitioned; create it with partition=" in done.stderr


# -- archive --dry-run --------------------------------------------------------------------


async def test_dry_run_lists_the_partitions_due_and_changes_nothing(
    db: vecdb.Database, dsn: str
) -> None:
    events = await _events(db)
    before = await events.partitions()
    text = _ok("archive", "events", "--older-than", "2024-03-01", "--dry-run", "--dsn", dsn)
    first, *rest = text.splitlines()
    assert first == (
        "Would archive 2 partitions of events (8 rows), ending at or before "
        "2024-03-01 00:00:00 UTC:"
    )
    assert [line.split()[0] for line in rest[2:-1]] == ["events_p20240101", "events_p20240201"]
    assert rest[-1] == "Nothing was changed (--dry-run)."
    planned = _json("archive", "events", "--older-than", "2024-03-01", "--dry-run", "--dsn", dsn)
    assert planned["dry_run"] is True
    assert planned["rows"] == 8
    assert [p["name"] for p in planned["partitions"]] == ["events_p20240101", "events_p20240201"]
    assert await events.partitions() == before
    assert await events.count() == 12


async def test_dry_run_of_an_unpartitioned_collection_counts_the_rows_due(
    db: vecdb.Database, dsn: str
) -> None:
    plain = await _plain(db)
    args = ("archive", "plain", "--older-than", "2024-02-01", "--field", "created_at")
    text = _ok(*args, "--dry-run", "--dsn", dsn)
    assert text.splitlines() == [
        "Would archive 5 rows of plain whose created_at is before 2024-02-01 00:00:00 UTC.",
        "Nothing was changed (--dry-run).",
    ]
    planned = _json(*args, "--dry-run", "--dsn", dsn)
    assert (planned["rows"], planned["field"], planned["partitions"]) == (5, "created_at", [])
    assert await plain.count() == 8
    assert await plain.count(include_archived=True) == 8


# -- archive and restore ------------------------------------------------------------------


async def test_archive_then_restore_moves_partitions_out_and_back(
    db: vecdb.Database, dsn: str
) -> None:
    events = await _events(db)
    done = _vecdb("archive", "events", "--older-than", "2024-03-01", "--dsn", dsn)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        "Archived 8 rows of events in 2 partitions: events_p20240101, events_p20240201."
    )
    assert lines[1].startswith("Checksum 8:")
    assert lines[1].endswith(": ok.")
    # Not a terminal: one progress line per partition, on stderr.
    assert done.stderr.splitlines() == [
        "events_p20240101: 4 of 8 rows archived",
        "events_p20240201: 8 of 8 rows archived",
    ]
    assert await events.count() == 4
    assert await events.count(include_archived=True) == 12
    assert _names(await events.partitions(), archived=True) == [
        "events_p20240101",
        "events_p20240201",
    ]

    restored = _json("restore", "events", "--dsn", dsn)
    assert restored["rows"] == 8
    assert restored["partitions"] == ["events_p20240101", "events_p20240201"]
    assert restored["ok"] is True
    assert restored["checksum_before"] == restored["checksum_after"]
    assert restored["newer_than"] is None
    assert await events.count() == 12
    assert _names(await events.partitions(), archived=True) == []


async def test_archive_json_is_the_report(db: vecdb.Database, dsn: str) -> None:
    events = await _events(db)
    done = _vecdb("archive", "events", "--older-than", "2024-02-01", "--json", "--dsn", dsn)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no progress bar with --json
    report = json.loads(done.stdout)
    assert report == {
        "collection": "events",
        "older_than": "2024-02-01T00:00:00+00:00",
        "rows": 4,
        "partitions": ["events_p20240101"],
        "checksum_before": report["checksum_before"],
        "checksum_after": report["checksum_before"],
        "ok": True,
    }
    assert report["checksum_before"].startswith("4:")
    assert await events.count() == 8


async def test_restore_newer_than_brings_back_only_the_later_partitions(
    db: vecdb.Database, dsn: str
) -> None:
    events = await _events(db)
    await events.archive(older_than=_start(2024, 3))
    text = _ok("restore", "events", "--newer-than", "2024-02-01", "--dsn", dsn)
    assert text.splitlines()[0] == "Restored 4 rows of events in 1 partition: events_p20240201."
    assert _names(await events.partitions(), archived=True) == ["events_p20240101"]
    assert await events.count() == 8


async def test_archive_and_restore_rows_of_an_unpartitioned_collection(
    db: vecdb.Database, dsn: str
) -> None:
    plain = await _plain(db)
    args = ("--field", "created_at", "--batch-size", "2", "--dsn", dsn)
    done = _vecdb("archive", "plain", "--older-than", "2024-02-01", *args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "Archived 5 rows of plain."
    assert done.stderr.splitlines()[-1] == "plain: 5 of 5 rows archived"
    assert await plain.count() == 3
    assert await plain.count(include_archived=True) == 8

    restored = _json("restore", "plain", "--dsn", dsn)
    assert (restored["rows"], restored["ok"], restored["partitions"]) == (5, True, [])
    assert await plain.count() == 8


@pytest.mark.parametrize(
    ("cutoff", "archived"),
    [
        ("2024-02-01", ["events_p20240101"]),
        ("2024-02-01T00:00:00", ["events_p20240101"]),
        ("2024-02-01T00:00:00Z", ["events_p20240101"]),
        # Two hours before midnight UTC: January's partition has not ended yet.
        ("2024-02-01T00:00:00+02:00", []),
    ],
    ids=["date", "naive-datetime", "utc", "offset"],
)
async def test_a_date_without_an_offset_is_utc_whatever_the_local_time_zone(
    db: vecdb.Database, dsn: str, cutoff: str, archived: list[str]
) -> None:
    events = await _events(db)
    # At UTC+14, a naive midnight read as local time would be 10:00 UTC on 31 January.
    done = _vecdb(
        "archive", "events", "--older-than", cutoff, "--json", "--dsn", dsn, env={"TZ": "UTC-14"}
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["partitions"] == archived
    assert _names(await events.partitions(), archived=True) == archived


# -- bad inputs ---------------------------------------------------------------------------


async def _state(
    db: vecdb.Database, collections: tuple[vecdb.Collection[Event], ...]
) -> dict[str, Any]:
    """Everything a refused command must leave as it was."""
    events, docs, plain = collections
    async with db.acquire() as conn:
        archived = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'vecdb_archive' ORDER BY 1"
        )
    return {
        "events": await events.partitions(),
        "docs": await docs.partitions(),
        "counts": [await c.count(include_archived=True) for c in (events, docs, plain)],
        "live": [await c.count() for c in (events, docs, plain)],
        "archive tables": [r["tablename"] for r in archived],
    }


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ("archive", "nope", "--older-than", "2024-03-01"),
            1,
            "no collection named 'nope'; collections: docs, events, plain",
        ),
        (("restore", "nope"), 1, "no collection named 'nope'; collections: docs, events, plain"),
        (("partitions", "nope"), 1, "no collection named 'nope'"),
        (
            ("archive", "events", "--older-than", "last tuesday"),
            2,
            "argument --older-than: invalid date 'last tuesday': expected an ISO date",
        ),
        (("archive", "events", "--older-than", "2024-13-01"), 2, "invalid date '2024-13-01'"),
        (("restore", "events", "--newer-than", "soon"), 2, "invalid date 'soon'"),
        (("archive", "events"), 2, "the following arguments are required: --older-than"),
        (
            ("archive", "events", "--older-than", "2024-03-01", "--batch-size", "0"),
            2,
            "invalid batch size '0'",
        ),
        (
            ("archive", "docs", "--older-than", "2024-03-01"),
            1,
            "archive() of collection 'docs' works on time partitions; this collection is "
            "partitioned by value",
        ),
        (
            ("archive", "docs", "--older-than", "2024-03-01", "--dry-run"),
            1,
            "archive() of collection 'docs' works on time partitions",
        ),
        (("restore", "docs"), 1, "restore() of collection 'docs' works on time partitions"),
        (
            ("archive", "plain", "--older-than", "2024-03-01"),
            1,
            "collection 'plain' is not partitioned: pass field= (a datetime or date field: "
            "one of ['created_at'])",
        ),
        (
            ("archive", "plain", "--older-than", "2024-03-01", "--field", "tenant"),
            1,
            "field='tenant' is not a datetime or date field of 'plain'; choose one of "
            "['created_at']",
        ),
        (
            ("archive", "events", "--older-than", "2024-03-01", "--field", "tenant"),
            1,
            "collection 'events' is partitioned by 'created_at'",
        ),
    ],
    ids=[
        "unknown-collection",
        "restore-unknown-collection",
        "partitions-unknown-collection",
        "not-a-date",
        "month-13",
        "restore-not-a-date",
        "no-older-than",
        "batch-size-0",
        "value-partitioned",
        "value-partitioned-dry-run",
        "restore-value-partitioned",
        "unpartitioned-without-field",
        "field-not-a-time",
        "field-not-the-partition-key",
    ],
)
async def test_a_bad_input_exits_with_its_message_and_changes_nothing(
    db: vecdb.Database, dsn: str, args: tuple[str, ...], code: int, message: str
) -> None:
    collections = (await _events(db), await _docs(db), await _plain(db))
    before = await _state(db, collections)
    done = _vecdb(*args, "--dsn", dsn)
    assert done.returncode == code, done.stderr
    assert message in done.stderr
    assert done.stdout == ""
    assert await _state(db, collections) == before


async def test_an_error_with_json_is_json_on_stdout(db: vecdb.Database, dsn: str) -> None:
    await _events(db)
    done = _vecdb("archive", "nope", "--older-than", "2024-03-01", "--json", "--dsn", dsn)
    assert done.returncode == 1
    assert json.loads(done.stdout) == {
        "error": {
            "type": "CollectionNotFoundError",
            "message": "no collection named 'nope'; collections: events",
        }
    }


async def test_archiving_rows_other_collections_reference_is_refused_even_on_dry_run(
    db: vecdb.Database, dsn: str
) -> None:
    plain = await _plain(db)

    class Note(vecdb.Record):
        id: int
        event_id: int
        embedding: vecdb.Vector

    await db.collection(
        "notes",
        Note,
        dim=DIM,
        index=None,
        foreign_keys={"event_id": vecdb.ForeignKey("plain")},
    )
    for extra in ((), ("--dry-run",)):
        args = ("--older-than", "2024-02-01", "--field", "created_at", *extra)
        done = _vecdb("archive", "plain", *args, "--dsn", dsn)
        assert done.returncode == 1
        assert "cannot archive rows of 'plain': collections ['notes'] reference it" in (done.stderr)
    assert await plain.count(include_archived=True) == await plain.count() == 8
