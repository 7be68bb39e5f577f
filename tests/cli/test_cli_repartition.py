"""The ``vecdb repartition`` command, end to end (the command runs as a subprocess)."""

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


class Event(vecdb.Record):
    id: int
    created_at: dt.datetime
    tenant: str
    embedding: vecdb.Vector


def _vecdb(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vecdb", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(os.environ),
    )


async def _plain(db: vecdb.Database) -> vecdb.Collection[Event]:
    """Unpartitioned, indexed: 30 rows over January to March 2024, two tenants."""
    plain = await db.collection("plain", Event, dim=DIM, filterable=("tenant",))
    await plain.upsert(
        Event(
            id=i,
            created_at=dt.datetime(2024, 1 + i % 3, 10, tzinfo=dt.UTC),
            tenant="acme" if i % 2 else "globex",
            embedding=[1.0, float(i % 5), 0.5, -1.0],
        )
        for i in range(30)
    )
    return plain


async def _rows(db: vecdb.Database) -> list[tuple[Any, ...]]:
    async with db.acquire() as conn:
        rows = await conn.fetch("SELECT id, created_at, tenant, embedding::text FROM plain")
    return sorted(tuple(r) for r in rows)


async def _partitioned(db: vecdb.Database) -> bool:
    async with db.acquire() as conn:
        kind = await conn.fetchval("SELECT relkind FROM pg_class WHERE oid = 'plain'::regclass")
    return bool(kind == b"p")  # "char" comes as bytes


async def test_repartition_by_month_converts_and_keeps_every_row(
    db: vecdb.Database, dsn: str
) -> None:
    await _plain(db)
    before = await _rows(db)
    done = _vecdb("repartition", "plain", "--by", "created_at", "--premake", "0", "--dsn", dsn)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Repartitioned plain by month of created_at: 30 rows")
    # Progress goes to stderr, one line per phase (and tenth) when not a terminal.
    phases = [line.split(":")[0] for line in done.stderr.splitlines()]
    assert "copying" in phases
    assert phases[-1] == "done"
    assert await _partitioned(db)
    assert await _rows(db) == before
    events = await db.collection(
        "plain",
        Event,
        dim=DIM,
        filterable=("tenant",),
        partition=vecdb.TimePartitions("created_at", interval="month", premake=0),
    )
    months = {p.lower for p in await events.partitions() if p.rows}
    assert months == {dt.datetime(2024, m, 1, tzinfo=dt.UTC) for m in (1, 2, 3)}
    assert await events.count() == 30


async def test_repartition_by_value_json_is_the_result(db: vecdb.Database, dsn: str) -> None:
    await _plain(db)
    done = _vecdb("repartition", "plain", "--by", "tenant", "--values", "--json", "--dsn", dsn)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["collection"] == "plain"
    assert result["partition"] == {"kind": "value", "field": "tenant"}
    assert result["rows"] == 30
    assert 0 < result["lock_held_seconds"] < 10
    assert done.stderr == ""  # no progress bar with --json


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("plain", "--by", "tenant"), "tenant"),  # not a time field
        (("plain", "--by", "nope"), "nope"),
        (("plain", "--by", "created_at", "--premake", "-1"), "premake"),
        (("nope", "--by", "created_at"), "no collection named 'nope'"),
    ],
)
async def test_a_bad_input_exits_with_its_message_and_changes_nothing(
    db: vecdb.Database, dsn: str, args: tuple[str, ...], message: str
) -> None:
    await _plain(db)
    before = await _rows(db)
    done = _vecdb("repartition", *args, "--dsn", dsn)
    assert done.returncode == 1, done.stderr
    assert message in done.stderr
    assert done.stdout == ""
    assert not await _partitioned(db)
    assert await _rows(db) == before


def test_an_interval_not_allowed_is_bad_usage() -> None:
    done = _vecdb("repartition", "plain", "--by", "created_at", "--interval", "hour")
    assert done.returncode == 2
    assert "invalid choice: 'hour'" in done.stderr
