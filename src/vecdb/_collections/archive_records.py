"""Where a collection's archived data is, and the record of each move.

Each table vecdb archives, or is moving, carries a record in its table
comment: vecdb's JSON under the ``vecdb_archive`` key (the collection, the
partition's key, the checksum taken before the move, and the state). A
record survives a killed process, so the next call that looks finds a move
that was interrupted (`archive.recover`). A partitioned collection's archived
partitions are tables of their own in the ``vecdb_archive`` schema; an
unpartitioned collection's archived rows are in one table there
(state ``"rows"``, `archive_rows`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from .._errors import ConfigError
from .._identifiers import qualified
from .._schema import partitioning as _partitioning
from .._schema.columns import ColumnType
from .._schema.partitioning import PartitionInfo, TimePartitions
from .._schema.spec import CollectionSpec
from .._typing import AnyConnection

__all__ = [
    "ARCHIVE_SCHEMA",
    "MARK",
    "ArchiveProgress",
    "Marked",
    "archived_partitions",
    "archived_tables",
    "aware",
    "cutoff",
    "marked_tables",
    "now",
    "report_progress",
    "set_record",
    "stored_key",
]


ARCHIVE_SCHEMA = "vecdb_archive"
MARK = "vecdb_archive"  # the key of vecdb's JSON in a partition's table comment

ArchiveProgress = Callable[[str, int], Awaitable[None] | None]


@dataclasses.dataclass(frozen=True, slots=True)
class Marked:
    """A partition vecdb is moving or has archived: where it is, and its record."""

    name: str
    schema: str
    attached: bool
    pending: bool  # a DETACH … CONCURRENTLY that did not finish
    record: dict[str, Any]


_MARKED = """
SELECT c.relname AS name, n.nspname AS schema, obj_description(c.oid, 'pg_class') AS comment,
       i.inhrelid IS NOT NULL AS attached, coalesce(i.inhdetachpending, false) AS pending
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
WHERE c.relkind = 'r' AND n.nspname IN ($1, $2)
  AND obj_description(c.oid, 'pg_class') LIKE '{"vecdb_archive":%'
"""


async def marked_tables(conn: AnyConnection, spec: CollectionSpec) -> list[Marked]:
    rows = await conn.fetch(_MARKED, spec.schema, ARCHIVE_SCHEMA)
    found = []
    for row in rows:
        try:
            record = json.loads(row["comment"])[MARK]
        except (ValueError, KeyError, TypeError):
            continue
        if record.get("collection") == spec.name:
            found.append(
                Marked(row["name"], row["schema"], row["attached"], row["pending"], record)
            )
    return found


async def set_record(
    conn: AnyConnection, schema: str, name: str, record: dict[str, Any] | None
) -> None:
    text = None if record is None else json.dumps({MARK: record})
    # COMMENT takes a literal, not a parameter: the server quotes it (%L of NULL is NULL).
    statement = await conn.fetchval(
        "SELECT format('COMMENT ON TABLE %s IS %L', $1::text, $2::text)",
        qualified(schema, name),
        text,
    )
    await conn.execute(statement)


def stored_key(spec: CollectionSpec, text: str) -> Any:
    """A partition key back from the text `archive` recorded."""
    ctype = spec.layout.filterable[spec.partition_key or ""]
    if isinstance(spec.partitioning, TimePartitions):
        if ctype is ColumnType.DATE:
            return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), dt.UTC)
        return dt.datetime.fromisoformat(text)
    converters: dict[ColumnType, Callable[[str], Any]] = {
        ColumnType.BIGINT: int,
        ColumnType.BOOLEAN: lambda s: s == "true",
        ColumnType.UUID: uuid.UUID,
        ColumnType.DATE: dt.date.fromisoformat,
    }
    return converters.get(ctype, str)(text)


def aware(value: dt.datetime, name: str) -> dt.datetime:
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise ConfigError(
            f"{name} must be a timezone-aware datetime (e.g. datetime.now(datetime.UTC) - "
            f"timedelta(days=365)), got {value!r}",
            setting=name,
        )
    return value


def cutoff(spec: CollectionSpec, field: str, value: dt.datetime) -> dt.datetime | dt.date:
    """A cutoff as the column compares: a date field against the cutoff's UTC date."""
    if spec.layout.filterable[field] is ColumnType.DATE:
        return value.astimezone(dt.UTC).date()
    return value


async def archived_partitions(
    conn: AnyConnection, spec: CollectionSpec, *, exact: bool = True
) -> list[PartitionInfo]:
    """The archived partitions, as `PartitionInfo` with ``archived=True``.

    ``exact=False``: the row count recorded when the partition was archived
    (its rows cannot change there), instead of counting them again.
    """
    infos = []
    interval = spec.partitioning.interval if isinstance(spec.partitioning, TimePartitions) else None
    for marked in sorted(await marked_tables(conn, spec), key=lambda m: m.name):
        if marked.schema != ARCHIVE_SCHEMA or marked.record.get("state") != "archived":
            continue  # (an unpartitioned collection's archive table is "rows", not listed)
        lower = stored_key(spec, marked.record["key"])
        table = qualified(ARCHIVE_SCHEMA, marked.name)
        rows = None if exact else marked.record.get("rows")
        if not isinstance(rows, int):
            rows = await conn.fetchval(f"SELECT count(*) FROM {table}")
        size = await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
        infos.append(
            PartitionInfo(
                name=marked.name,
                lower=lower if interval else None,
                upper=_partitioning.step(lower, interval) if interval else None,
                value=None if interval else lower,
                rows=int(rows),
                total_bytes=int(size),
                archived=True,
            )
        )
    return infos


async def archived_tables(conn: AnyConnection, spec: CollectionSpec) -> list[str]:
    """The qualified archive tables holding this collection's archived rows."""
    names = [
        qualified(ARCHIVE_SCHEMA, m.name)
        for m in await marked_tables(conn, spec)
        if m.schema == ARCHIVE_SCHEMA and m.record.get("state") in ("archived", "rows")
    ]
    return sorted(names)


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


async def report_progress(progress: ArchiveProgress, name: str, rows: int) -> None:
    result = progress(name, rows)
    if result is not None:
        await result
