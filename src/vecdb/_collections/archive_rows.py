"""Archiving an unpartitioned collection's old rows by a time field, and restoring them.

The rows move into one table, ``vecdb_archive.<table>``, made ``LIKE`` the
collection's table at the first archive. One statement per batch moves them
(``DELETE … RETURNING`` feeding an ``INSERT``): a batch is archived whole or
not at all, so every row is in one place at every moment, and an interrupted
run is resumed by the next. The checksum (`checksums`) of what moved is taken
on both sides and compared. A restore moves the rows back in one
transaction, refused with nothing changed when archived ids were written
again since.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging

from .._errors import ArchiveChecksumError, ConfigError, SchemaMismatchError, translating
from .._identifiers import qualified, quote_ident
from .._schema.partitioning import ArchiveReport
from .._schema.spec import CollectionSpec
from .._typing import AnyConnection, Connections
from . import archive_records as _records
from . import conform as _conform
from .archive_records import ARCHIVE_SCHEMA
from .checksums import EMPTY, checksum, subtract

__all__ = ["archive_rows", "referencing", "restore_rows"]

logger = logging.getLogger("vecdb.archive")


async def referencing(conn: AnyConnection, spec: CollectionSpec) -> list[str]:
    """Collections with a foreign key to ``spec``'s ids."""
    rows = await conn.fetch("SELECT name, spec FROM vecdb.collections WHERE name <> $1", spec.name)
    found = []
    for row in rows:
        data = json.loads(row["spec"]) if isinstance(row["spec"], str) else row["spec"]
        if any(fk.get("collection") == spec.name for fk in data.get("foreign_keys", {}).values()):
            found.append(row["name"])
    return sorted(found)


async def archive_rows(
    pool: Connections,
    spec: CollectionSpec,
    field: str,
    older_than: dt.datetime,
    *,
    batch_size: int,
    progress: _records.ArchiveProgress | None,
) -> ArchiveReport:
    """Move rows whose ``field`` is before ``older_than`` into ``vecdb_archive.<table>``.

    One statement per batch moves it (``DELETE … RETURNING`` feeding an
    ``INSERT``): a batch is archived whole or not at all, so an interrupted
    run leaves every row in one place, and the next run moves the rest.
    """
    live = qualified(spec.schema, spec.table)
    store = qualified(ARCHIVE_SCHEMA, spec.table)
    column = quote_ident(field)
    id_col = quote_ident(spec.layout.id.name)
    # Named columns: a FullText column is generated, so it cannot be copied.
    cols = ", ".join(quote_ident(c) for c in spec.layout.columns)
    cutoff = _records.cutoff(spec, field, older_than)
    async with pool.acquire() as conn:
        with translating():
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(ARCHIVE_SCHEMA)}")
            await conn.execute(f"CREATE TABLE IF NOT EXISTS {store} (LIKE {live} INCLUDING ALL)")
            async with conn.transaction():
                await _conform_store(conn, spec, store, live, restoring=False)
            record = {"collection": spec.name, "kind": "rows", "field": field, "state": "rows"}
            await _records.set_record(conn, ARCHIVE_SCHEMA, spec.table, record)
            where = f"{column} < $1"
            before = await checksum(conn, spec, live, where, cutoff)
            stored_before = await checksum(conn, spec, store, where, cutoff)
            moved = 0
            while True:
                status = await conn.execute(
                    f"WITH batch AS (SELECT {id_col} FROM {live} WHERE {where} "
                    f"ORDER BY {id_col} LIMIT $2 FOR UPDATE SKIP LOCKED), "
                    f"moved AS (DELETE FROM {live} t USING batch WHERE t.{id_col} = "
                    f"batch.{id_col} RETURNING t.*) INSERT INTO {store} ({cols}) "
                    f"SELECT {cols} FROM moved",
                    cutoff,
                    batch_size,
                )
                n = int(status.rsplit(maxsplit=1)[-1])
                moved += n
                if progress is not None and n:
                    await _records.report_progress(progress, spec.table, moved)
                if n < batch_size:
                    break
            stored_after = await checksum(conn, spec, store, where, cutoff)
    after = subtract(stored_after, stored_before)
    if after != before:
        raise ArchiveChecksumError(
            f"the rows of {spec.name!r} archived by this call have checksum {after}, the rows "
            f"that matched before it {before}: rows older than older_than were written while "
            "it ran. Every row is in one place (the table or the archive); archive again to "
            "move the rest.",
            table=spec.table,
            before=before,
            after=after,
        )
    logger.info("archived %d rows of %s into %s", moved, spec.name, store)
    return ArchiveReport(rows=moved, partitions=(), checksum_before=before, checksum_after=after)


async def _conform_store(
    conn: AnyConnection, spec: CollectionSpec, store: str, live: str, *, restoring: bool
) -> None:
    """Give an unpartitioned collection's row archive the table's columns (`conform`).

    The archive was made ``LIKE`` the table at the first archive; an evolve
    since added columns (NULL for the rows archived before, as for the live
    rows of that time) or a migration changed them. Columns the table no
    longer has are kept: archiving leaves them NULL, and a restore that would
    leave their values behind, or put NULLs into a NOT NULL column, is refused.

    Raises:
        SchemaMismatchError: A difference that cannot be resolved without
            changing data; nothing was changed.
    """
    planned = await _conform.plan(conn, store, live, keep_extra=True)
    blocking = ("add", "retype", "not_null", "held") if restoring else ("add", "retype")
    problems = tuple(p for p in planned.problems if p[0] in blocking)
    if problems:
        what = "restore archived rows of" if restoring else "archive rows of"
        lines = [line for _, line in problems]
        listed = "\n".join(f"  - {line}" for line in lines)
        raise SchemaMismatchError(
            f"cannot {what} {spec.name!r}: {store} has columns that differ from the "
            f"collection's ({len(lines)} difference(s)):\n{listed}\nNothing was changed.",
            differences=lines,
        )
    # NOT NULL is the table's to enforce: the archive keeps rows of any age.
    planned = dataclasses.replace(planned, not_null=())
    if planned.changes:
        logger.info("conforming %s to %s: adding %s", store, spec.name, planned.add)
        await _conform.apply(conn, planned)


async def restore_rows(
    pool: Connections,
    spec: CollectionSpec,
    newer_than: dt.datetime | None,
    *,
    progress: _records.ArchiveProgress | None,
) -> ArchiveReport:
    """Move archived rows of an unpartitioned collection back (all, or ``field >= newer_than``).

    Raises:
        ConfigError: Nothing was archived, or archived ids exist in the table
            again (written since); nothing is moved then.
    """
    live = qualified(spec.schema, spec.table)
    store = qualified(ARCHIVE_SCHEMA, spec.table)
    id_col = quote_ident(spec.layout.id.name)
    cols = ", ".join(quote_ident(c) for c in spec.layout.columns)  # see archive_rows
    async with pool.acquire() as conn:
        with translating():
            marked = [
                m
                for m in await _records.marked_tables(conn, spec)
                if m.record.get("kind") == "rows"
            ]
            if not marked:
                return ArchiveReport(
                    rows=0, partitions=(), checksum_before=EMPTY, checksum_after=EMPTY
                )
            where, in_store, args = "TRUE", "TRUE", []
            if newer_than is not None:
                _records.aware(newer_than, "newer_than")
                field = marked[0].record["field"]
                column = quote_ident(field)
                where, in_store = f"{column} >= $1", f"a.{column} >= $1"
                args = [_records.cutoff(spec, field, newer_than)]
            async with conn.transaction():
                await _conform_store(conn, spec, store, live, restoring=True)
                clash = await conn.fetch(
                    f"SELECT a.{id_col} AS id FROM {store} a JOIN {live} t USING ({id_col}) "
                    f"WHERE {in_store} LIMIT 20",
                    *args,
                )
                if clash:
                    raise ConfigError(
                        f"cannot restore into {spec.name!r}: ids {[r['id'] for r in clash]} "
                        "were written again since they were archived. Nothing was changed.",
                        setting="newer_than",
                    )
                before = await checksum(conn, spec, store, where, *args)
                live_before = await checksum(conn, spec, live, where, *args)
                status = await conn.execute(
                    f"WITH moved AS (DELETE FROM {store} a WHERE {where} RETURNING a.*) "
                    f"INSERT INTO {live} ({cols}) SELECT {cols} FROM moved",
                    *args,
                )
                after = subtract(await checksum(conn, spec, live, where, *args), live_before)
                if after != before:  # in the transaction: raising undoes the move
                    raise ArchiveChecksumError(
                        f"restoring into {spec.name!r} gave checksum {after}, the archived "
                        f"rows had {before}; nothing was restored.",
                        table=spec.table,
                        before=before,
                        after=after,
                    )
            rows = int(status.rsplit(maxsplit=1)[-1])
            if progress is not None:
                await _records.report_progress(progress, spec.table, rows)
    return ArchiveReport(rows=rows, partitions=(), checksum_before=before, checksum_after=after)
