"""Archiving old data into the ``vecdb_archive`` schema, restoring it, and purging it.

A partitioned collection archives whole partitions: a partition that ends
before the cutoff is detached (``DETACH PARTITION … CONCURRENTLY``: readers
and writers of the collection never wait for it) and moved into the
``vecdb_archive`` schema with its indexes. No row is rewritten, and since the
partition is one table moving between two places, a row is always in exactly
one of them: there is no copy to lose or to duplicate.

Each move is recorded on the partition itself, in its table comment (the
collection, its key, the checksum taken before the move, and the state).
A move interrupted at any point (the process killed, the connection lost) is
finished by the next call that looks (`recover`): a pending detach is
finalised (``DETACH … FINALIZE``), a detached table is moved on, and its
content is checked against the checksum recorded before the move. A
mismatch (someone wrote into the range while it was being archived) moves
the partition back and raises; nothing is left half-moved.

The checksum (`checksums`) is the count of rows and a sum of per-row hashes of
their whole content: independent of row order and of where the rows live, so
the same rows give the same checksum before and after.

An unpartitioned collection archives by a time field instead (`archive_rows`):
rows move in batches, each batch in one statement (``DELETE … RETURNING``
into ``INSERT``), so again each row is in one place at any moment, and an
interrupted run is resumed by the next. Where archived data is, and the
records of its moves, are `archive_records`.

Restoring moves each partition back in one transaction (checks, columns,
move, ATTACH, checksum): a failure leaves it archived as it was. A partition
archived before the collection evolved keeps the columns of its time; they
are made the collection's first (`conform`), or the restore is refused
before anything changes. Its checksum is compared over the columns recorded
when it was archived.

Archived records keep their ids: a partitioned collection keeps them in its
id registry (foreign keys to them stay valid; ``insert()`` and ``upsert()``
refuse them) until `purge_archive`, the only call that deletes archived data.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from .._errors import (
    ArchiveChecksumError,
    ConfigError,
    DatabaseError,
    SchemaMismatchError,
    translating,
)
from .._identifiers import qualified, quote_ident
from .._schema import partitioning as _partitioning
from .._schema.columns import ColumnType
from .._schema.ddl import registry_name
from .._schema.partitioning import ArchiveReport, PartitionInfo, TimePartitions
from .._schema.spec import CollectionSpec
from .._typing import AnyConnection, Connections
from . import archive_records as _records
from . import archive_rows as _rows
from . import conform as _conform
from . import fulltext as _fulltext
from . import partitions as _partitions
from .archive_records import ARCHIVE_SCHEMA
from .checksums import EMPTY, checksum, combine

__all__ = ["ArchivePlan", "archive", "check_archivable", "plan", "purge", "recover", "restore"]

logger = logging.getLogger("vecdb.archive")


def _check_time_partitioned(spec: CollectionSpec, what: str) -> TimePartitions:
    if not isinstance(spec.partitioning, TimePartitions):
        raise ConfigError(
            f"{what} of collection {spec.name!r} works on time partitions; this collection is "
            + (
                "partitioned by value"
                if spec.partitioning is not None
                else "not partitioned (pass field= to archive by a time field)"
            ),
            setting="older_than",
        )
    return spec.partitioning


_TIME_TYPES = (ColumnType.TIMESTAMPTZ, ColumnType.DATE)


def check_archivable(spec: CollectionSpec, field: str | None) -> str | None:
    """The field rows are archived by: ``None`` for a time-partitioned collection.

    Raises:
        ConfigError: A value-partitioned collection; ``field`` given for a
            partitioned one (other than its key), missing for an unpartitioned
            one, or not one of its datetime or date fields.
    """
    if spec.partitioning is not None:
        _check_time_partitioned(spec, "archive()")
        if field is not None and field != spec.partition_key:
            raise ConfigError(
                f"collection {spec.name!r} is partitioned by {spec.partition_key!r}: it "
                f"archives whole partitions by that field, not by {field!r}",
                setting="field",
            )
        return None
    times = sorted(name for name, kind in spec.layout.filterable.items() if kind in _TIME_TYPES)
    if field is None:
        raise ConfigError(
            f"collection {spec.name!r} is not partitioned: pass field= (a datetime or date "
            f"field: one of {times}) to archive its old rows, e.g. archive(older_than=cutoff, "
            "field='created_at')",
            setting="field",
        )
    if spec.layout.filterable.get(field) not in _TIME_TYPES:
        raise ConfigError(
            f"field={field!r} is not a datetime or date field of {spec.name!r}; choose one "
            f"of {times}",
            setting="field",
        )
    return field


@dataclasses.dataclass(frozen=True, slots=True)
class ArchivePlan:
    """What ``archive(older_than, field=)`` would move (`plan`): nothing is moved.

    Attributes:
        field: The field rows are archived by; ``None`` for whole partitions.
        partitions: The partitions that end at or before the cutoff.
        rows: The rows that would move.
    """

    field: str | None
    partitions: tuple[PartitionInfo, ...]
    rows: int


async def plan(
    conn: AnyConnection, spec: CollectionSpec, older_than: dt.datetime, field: str | None
) -> ArchivePlan:
    """Every check `archive` makes, and what it would move; changes nothing.

    Raises:
        ConfigError: As `check_archivable`; a naive ``older_than``; other
            collections reference an unpartitioned collection (named).
    """
    field = check_archivable(spec, field)
    _records.aware(older_than, "older_than")
    if field is None:
        due = tuple(
            p
            for p in await _partitions.list_partitions(conn, spec)
            if isinstance(p.upper, dt.datetime) and p.upper <= older_than
        )
        return ArchivePlan(None, due, sum(p.rows for p in due))
    referencing = await _rows.referencing(conn, spec)
    if referencing:
        raise ConfigError(
            f"cannot archive rows of {spec.name!r}: collections {referencing} reference "
            "it by foreign key, and archiving deletes rows from the table their keys "
            "point to. Nothing was moved. Partition the collection (its archived ids "
            "stay referable), or drop those foreign keys.",
            setting="field",
        )
    table = qualified(spec.schema, spec.table)
    rows = await conn.fetchval(
        f"SELECT count(*) FROM {table} WHERE {quote_ident(field)} < $1",
        _records.cutoff(spec, field, older_than),
    )
    return ArchivePlan(field, (), int(rows))


async def archive(
    pool: Connections,
    spec: CollectionSpec,
    older_than: dt.datetime,
    *,
    field: str | None,
    batch_size: int,
    progress: _records.ArchiveProgress | None,
) -> ArchiveReport:
    """Archive by `plan`: whole partitions, or rows in batches (see the module docstring)."""
    async with pool.acquire() as conn:
        with translating():
            planned = await plan(conn, spec, older_than, field)
    if planned.field is None:
        return await _archive_partitions(pool, spec, older_than, progress=progress)
    return await _rows.archive_rows(
        pool, spec, planned.field, older_than, batch_size=batch_size, progress=progress
    )


# -- partitioned collections ----------------------------------------------------------------


async def recover(pool: Connections, spec: CollectionSpec) -> None:
    """Finish every move of this collection's partitions that was interrupted."""
    async with pool.acquire() as conn:
        with translating():
            for marked in await _records.marked_tables(conn, spec):
                state = marked.record.get("state")
                if state == "archiving":
                    logger.info("finishing the interrupted archive of %s", marked.name)
                    await _finish_archive(conn, spec, marked)
                elif state == "restoring":
                    logger.info("putting the half-done restore of %s back", marked.name)
                    await _undo_restore(conn, spec, marked)


async def _finish_archive(
    conn: AnyConnection, spec: CollectionSpec, marked: _records.Marked
) -> str:
    """The rest of an archive, from wherever it stopped; returns the verified checksum."""
    parent = qualified(spec.schema, spec.table)
    name, schema = marked.name, marked.schema
    if marked.attached and marked.pending:
        await conn.execute(
            f"ALTER TABLE {parent} DETACH PARTITION {qualified(schema, name)} FINALIZE"
        )
    elif marked.attached:
        # Outside a transaction: CONCURRENTLY runs in two of its own.
        await conn.execute(
            f"ALTER TABLE {parent} DETACH PARTITION {qualified(schema, name)} CONCURRENTLY"
        )
    if schema != ARCHIVE_SCHEMA:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(ARCHIVE_SCHEMA)}")
        await conn.execute(
            f"ALTER TABLE {qualified(schema, name)} SET SCHEMA {quote_ident(ARCHIVE_SCHEMA)}"
        )
    after = await _archived_checksum(conn, spec, marked)
    before = marked.record["checksum"]
    if after != before:
        # Written to while it was being archived: put it back as it is now.
        await _move_back(conn, spec, name, marked.record)
        raise ArchiveChecksumError(
            f"partition {name} of {spec.name!r} changed while it was being archived "
            f"(checksum {before} before, {after} after): rows were written into a range "
            "older than older_than. It was put back; nothing was archived. Archive again "
            "once writes to that range have stopped.",
            table=name,
            before=before,
            after=after,
        )
    record = {**marked.record, "state": "archived", "archived_at": _records.now()}
    await _records.set_record(conn, ARCHIVE_SCHEMA, name, record)
    logger.info("archived partition %s of %s (%s)", name, spec.name, after)
    return after


async def _move_back(
    conn: AnyConnection, spec: CollectionSpec, name: str, record: dict[str, Any]
) -> None:
    async with conn.transaction():
        await conn.execute(
            f"ALTER TABLE {qualified(ARCHIVE_SCHEMA, name)} SET SCHEMA {quote_ident(spec.schema)}"
        )
        await _partitions.attach(
            conn, spec, _records.stored_key(spec, record["key"]), qualified(spec.schema, name)
        )
        await _records.set_record(conn, spec.schema, name, None)


async def _archive_partitions(
    pool: Connections,
    spec: CollectionSpec,
    older_than: dt.datetime,
    *,
    progress: _records.ArchiveProgress | None,
) -> ArchiveReport:
    """Archive every partition that ends at or before ``older_than``."""
    partitioning = _check_time_partitioned(spec, "archive()")
    await recover(pool, spec)
    async with pool.acquire() as conn:
        with translating():
            live = await _partitions.list_partitions(conn, spec)
            todo = [p for p in live if isinstance(p.upper, dt.datetime) and p.upper <= older_than]
            before_all: list[str] = []
            after_all: list[str] = []
            rows = 0
            for info in todo:
                assert info.lower is not None  # noqa: S101 - time partitions have bounds
                table = qualified(spec.schema, info.name)
                before = await checksum(conn, spec, table)
                record = {
                    "collection": spec.name,
                    "key": _partitions.literal(spec, info.lower),
                    "interval": partitioning.interval,
                    "checksum": before,
                    "rows": info.rows,
                    # What the checksum covers: an evolve may change the collection's.
                    "columns": list(spec.layout.columns),
                    "state": "archiving",
                }
                await _records.set_record(conn, spec.schema, info.name, record)
                marked = _records.Marked(info.name, spec.schema, True, False, record)
                after = await _finish_archive(conn, spec, marked)
                before_all.append(before)
                after_all.append(after)
                rows += int(before.split(":", 1)[0])
                if progress is not None:
                    await _records.report_progress(progress, info.name, rows)
    return ArchiveReport(
        rows=rows,
        partitions=tuple(p.name for p in todo),
        checksum_before=combine(before_all),
        checksum_after=combine(after_all),
    )


def _hashed_columns(
    spec: CollectionSpec, record: dict[str, Any], archived: Mapping[str, _conform.Column]
) -> list[str]:
    """The columns an archived partition's checksum covers, in order.

    `archive` records them (the collection's columns then). A partition
    archived by a vecdb that did not record them was checksummed over the
    collection's columns of its time: those of today's it still has.
    """
    recorded = record.get("columns")
    if isinstance(recorded, list):
        return [str(name) for name in recorded]
    return [name for name in spec.layout.columns if name in archived]


async def _archived_checksum(
    conn: AnyConnection, spec: CollectionSpec, marked: _records.Marked
) -> str:
    """An archived partition's checksum now, over the columns it was archived with."""
    table = qualified(ARCHIVE_SCHEMA, marked.name)
    archived = (await _conform.columns(conn, [table]))[table]
    return await checksum(conn, spec, table, columns=_hashed_columns(spec, marked.record, archived))


def _refused(
    spec: CollectionSpec, plans: Mapping[str, _conform.Conformance]
) -> SchemaMismatchError:
    lines = [f"{name}: {why}" for name, planned in plans.items() for why in planned.refusals]
    listed = "\n".join(f"  - {line}" for line in lines)
    return SchemaMismatchError(
        f"cannot restore archived partitions of {spec.name!r}: their columns differ from the "
        f"collection's in a way restoring cannot resolve without losing or changing data "
        f"({len(lines)} difference(s)):\n{listed}\nNothing was changed.",
        differences=lines,
    )


async def _conformance(
    conn: AnyConnection, spec: CollectionSpec, name: str
) -> _conform.Conformance:
    return await _conform.plan(
        conn, qualified(ARCHIVE_SCHEMA, name), qualified(spec.schema, spec.table)
    )


async def _restore_one(conn: AnyConnection, spec: CollectionSpec, marked: _records.Marked) -> str:
    """Move one archived partition back and attach it; returns the restored rows' checksum.

    One transaction: the checks, the columns made the collection's (`conform`),
    the move, the ATTACH and the checksum. Any failure, or (when the columns
    were changed) a checksum that differs from the archive's just before,
    rolls it all back: the partition is then where it was, archived and
    unchanged.
    """
    name = marked.name
    archived, table = qualified(ARCHIVE_SCHEMA, name), qualified(spec.schema, name)
    async with conn.transaction():
        await _check_restorable(conn, spec, name, marked.record)
        planned = await _conformance(conn, spec, name)
        if planned.refusals:
            raise _refused(spec, {name: planned})
        hashed = _hashed_columns(spec, marked.record, planned.archived)
        # Taken again only when conforming rewrites the table: ATTACH alone
        # rewrites no row, and one checksum of a partition is the cost of a restore.
        before = marked.record["checksum"]
        if planned.changes:
            before = await checksum(conn, spec, archived, columns=hashed)
            logger.info(
                "conforming %s to %s: adding %s, dropping %s, converting %s",
                archived,
                spec.name,
                [c.name for c in planned.add],
                list(planned.drop),
                [have.name for have, _ in planned.retype],
            )
        await _conform.apply(conn, planned)
        await conn.execute(f"ALTER TABLE {archived} SET SCHEMA {quote_ident(spec.schema)}")
        # An evolve since it was archived may have changed the FullText columns.
        await _fulltext.conform(conn, spec, name)
        await _partitions.attach(conn, spec, _records.stored_key(spec, marked.record["key"]), table)
        after = await checksum(
            conn, spec, table, columns=hashed, as_type=planned.hashed_as(), absent=planned.drop
        )
        if after != before and planned.changes:
            raise ArchiveChecksumError(
                f"restoring {name} of {spec.name!r} would change its content (checksum "
                f"{before} in the archive, {after} restored); it was left in the archive, "
                "unchanged.",
                table=name,
                before=before,
                after=after,
            )
        if after != marked.record["checksum"]:
            logger.warning(
                "restored partition %s of %s has checksum %s, %s when archived",
                name,
                spec.name,
                after,
                marked.record["checksum"],
            )
        await _records.set_record(conn, spec.schema, name, None)
    logger.info("restored partition %s of %s (%s)", name, spec.name, after)
    return after


async def _undo_restore(conn: AnyConnection, spec: CollectionSpec, marked: _records.Marked) -> None:
    """A restore an earlier vecdb left marked "restoring": finished, or put back in the archive.

    `_restore_one` moves a partition in one transaction and never leaves this
    mark; earlier versions moved it in steps, and a failure could leave it
    detached in the collection's schema, its rows in neither place.
    """
    name = marked.name
    if marked.attached:  # attached: only the mark was left to clear
        await _records.set_record(conn, marked.schema, name, None)
        return
    async with conn.transaction():
        if marked.schema != ARCHIVE_SCHEMA:
            await conn.execute(
                f"ALTER TABLE {qualified(marked.schema, name)} "
                f"SET SCHEMA {quote_ident(ARCHIVE_SCHEMA)}"
            )
        await _records.set_record(
            conn, ARCHIVE_SCHEMA, name, {**marked.record, "state": "archived"}
        )


async def _check_restorable(
    conn: AnyConnection, spec: CollectionSpec, name: str, record: dict[str, Any]
) -> None:
    """Refuse a restore that would overlap live data; nothing is changed then.

    Raises:
        ConfigError: The range has a live partition again (rows arrived since),
            or some of the archived ids now live elsewhere.
    """
    if await conn.fetchval("SELECT to_regclass($1)", qualified(spec.schema, name)):
        rows = await conn.fetchval(f"SELECT count(*) FROM {qualified(spec.schema, name)}")
        raise ConfigError(
            f"cannot restore {name} of {spec.name!r}: its range has received new rows since it "
            f"was archived (the live partition {spec.schema}.{name} holds {rows}). Nothing was "
            "changed. Move those rows elsewhere (or delete them), then restore again.",
            setting="newer_than",
        )
    key = quote_ident(spec.partition_key or "")
    id_col = quote_ident(spec.layout.id.name)
    registry = qualified(spec.schema, registry_name(spec))
    moved = await conn.fetch(
        f"SELECT a.{id_col} AS id FROM {qualified(ARCHIVE_SCHEMA, name)} a "
        f"JOIN {registry} r ON r.{id_col} = a.{id_col} WHERE r.{key} IS DISTINCT FROM a.{key} "
        f"LIMIT 20"
    )
    if moved:
        raise ConfigError(
            f"cannot restore {name} of {spec.name!r}: ids {[r['id'] for r in moved]} were "
            "written again since they were archived and live in another partition. Nothing "
            "was changed.",
            setting="newer_than",
        )


async def restore(
    pool: Connections,
    spec: CollectionSpec,
    newer_than: dt.datetime | None,
    *,
    progress: _records.ArchiveProgress | None,
) -> ArchiveReport:
    """Bring archived partitions back (all, or those ending after ``newer_than``)."""
    _check_time_partitioned(spec, "restore()")
    if newer_than is not None:
        _records.aware(newer_than, "newer_than")
    await recover(pool, spec)
    async with pool.acquire() as conn:
        with translating():
            todo = []
            for marked in await _records.marked_tables(conn, spec):
                if marked.schema != ARCHIVE_SCHEMA or marked.record.get("state") != "archived":
                    continue
                lower = _records.stored_key(spec, marked.record["key"])
                interval = spec.partitioning.interval  # type: ignore[union-attr]
                if newer_than is None or _partitioning.step(lower, interval) > newer_than:
                    todo.append(marked)
            todo.sort(key=lambda m: m.name)
            plans = {}
            for marked in todo:  # every check first: a refusal changes nothing
                await _check_restorable(conn, spec, marked.name, marked.record)
                plans[marked.name] = await _conformance(conn, spec, marked.name)
            if any(planned.refusals for planned in plans.values()):
                raise _refused(spec, {n: p for n, p in plans.items() if p.refusals})
            rows = 0
            before_all, after_all = [], []
            for marked in todo:
                after = await _restore_one(conn, spec, marked)
                before_all.append(marked.record["checksum"])
                after_all.append(after)
                rows += int(after.split(":", 1)[0])
                if progress is not None:
                    await _records.report_progress(progress, marked.name, rows)
    return ArchiveReport(
        rows=rows,
        partitions=tuple(m.name for m in todo),
        checksum_before=combine(before_all),
        checksum_after=combine(after_all),
    )


async def purge(pool: Connections, spec: CollectionSpec, older_than: dt.datetime) -> ArchiveReport:
    """Delete archived partitions that end at or before ``older_than``, and their ids.

    Raises:
        ConfigError: Another collection's records still reference archived ids
            (a foreign key with ``on_delete="restrict"``); nothing was deleted.
    """
    _check_time_partitioned(spec, "purge_archive()")
    _records.aware(older_than, "older_than")
    await recover(pool, spec)
    interval = spec.partitioning.interval  # type: ignore[union-attr]
    id_col = quote_ident(spec.layout.id.name)
    registry = qualified(spec.schema, registry_name(spec))
    async with pool.transaction() as conn:
        todo = [
            m
            for m in await _records.marked_tables(conn, spec)
            if m.schema == ARCHIVE_SCHEMA
            and m.record.get("state") == "archived"
            and _partitioning.step(_records.stored_key(spec, m.record["key"]), interval)
            <= older_than
        ]
        rows = 0
        sums = []
        for marked in sorted(todo, key=lambda m: m.name):
            table = qualified(ARCHIVE_SCHEMA, marked.name)
            sums.append(await _archived_checksum(conn, spec, marked))
            try:
                with translating():
                    deleted = await conn.execute(
                        f"DELETE FROM {registry} r USING {table} a WHERE r.{id_col} = a.{id_col}"
                    )
            except DatabaseError as exc:
                if exc.sqlstate not in ("23001", "23503"):  # restrict / foreign key violation
                    raise
                raise ConfigError(
                    f"cannot purge {marked.name} of {spec.name!r}: other records still "
                    f"reference its ids ({exc.detail}). Nothing was deleted. Delete those "
                    "records first, or make their foreign key on_delete='cascade'.",
                    setting="older_than",
                ) from exc
            rows += int(deleted.rsplit(maxsplit=1)[-1])
            await conn.execute(f"DROP TABLE {table}")
            logger.info("purged archived partition %s of %s", marked.name, spec.name)
    return ArchiveReport(
        rows=rows,
        partitions=tuple(sorted(m.name for m in todo)),
        checksum_before=combine(sums),
        checksum_after=EMPTY,
    )
