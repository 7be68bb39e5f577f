"""The ``vecdb`` commands for partitions and the archive: list, archive, restore.

Like ``collections`` and ``create-index`` they work from the catalog alone,
without the application's model: the stored definition says how a
collection is partitioned, and the moves themselves are those of
`vecdb._collections.archive` (what `Collection.archive` and
`Collection.restore` call).

Dates on the command line are ISO dates or datetimes. The library refuses
a naive datetime, whose meaning would depend on the machine; the command
line says instead, in its help, that a date or a datetime without an offset
is UTC, and converts it so before it calls the library.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import uuid
from collections.abc import Sequence
from typing import Any, TextIO

from .._collections import archive as _archive
from .._collections import archive_records as _records
from .._collections import archive_rows as _archive_rows
from .._collections import catalog as _catalog
from .._collections import partitions as _partitions
from .._errors import CollectionNotFoundError, ConfigError, translating
from .._schema.partitioning import ArchiveReport, PartitionInfo, TimePartitions
from .._schema.spec import CollectionSpec
from .._server.database import Database, connections
from .output import EXIT_ERROR, EXIT_OK, AddCommand, Outcome, bar, table, when

__all__ = ["RowProgress", "add_commands", "moment", "positive", "stored_spec"]

_UNITS = ("kB", "MB", "GB", "TB")


# -- arguments ----------------------------------------------------------------------------


def moment(text: str) -> dt.datetime:
    """An ISO date or datetime from the command line, as an aware datetime.

    A date is its midnight, and a date or datetime without an offset is UTC:
    said in the commands' help, and done here rather than left to the local
    time zone of whichever machine runs the command.

    Example:
        >>> moment("2025-01-01")
        datetime.datetime(2025, 1, 1, 0, 0, tzinfo=datetime.timezone.utc)

    Raises:
        argparse.ArgumentTypeError: Not an ISO date or datetime (argparse exits 2).
    """
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid date {text!r}: expected an ISO date or datetime, e.g. 2025-01-01, "
            "2025-01-01T12:00:00 (UTC) or 2025-01-01T12:00:00+02:00"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"invalid batch size {text!r}: expected an integer >= 1")
    return number


# -- output -------------------------------------------------------------------------------


def _size(size: int) -> str:
    """A size for reading: ``"512 bytes"``, ``"48 kB"``, ``"1.5 MB"`` (powers of 1024)."""
    if size < 1024:
        return f"{size} bytes"
    value = float(size)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if value >= 10 else f"{value:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def _bound(value: object) -> str:
    """A time bound as a date when it is a midnight in UTC (they all are), else in full."""
    if not isinstance(value, dt.datetime):
        return "-"
    utc = value.astimezone(dt.UTC)
    return utc.date().isoformat() if utc.time() == dt.time() else when(utc)


def _cutoff(value: dt.datetime) -> str:
    return f"{when(value)} UTC"


def _jsonable(value: object) -> object:
    """A partition value JSON can hold (``to_json`` handles datetimes itself)."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _partition(info: PartitionInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "lower": info.lower,
        "upper": info.upper,
        "value": _jsonable(info.value),
        "rows": info.rows,
        "total_bytes": info.total_bytes,
        "archived": info.archived,
    }


def _partition_table(spec: CollectionSpec, infos: Sequence[PartitionInfo]) -> str:
    """The partitions as columns: bounds for time partitions, the value for value ones."""
    if isinstance(spec.partitioning, TimePartitions):
        headers = ["name", "lower", "upper", "rows", "size", "archived"]
        rows = [
            [i.name, _bound(i.lower), _bound(i.upper), f"{i.rows:,}", _size(i.total_bytes)]
            for i in infos
        ]
    else:
        headers = ["name", "value", "rows", "size", "archived"]
        rows = [[i.name, str(i.value), f"{i.rows:,}", _size(i.total_bytes)] for i in infos]
    for row, info in zip(rows, infos, strict=True):
        row.append("yes" if info.archived else "no")
    rows_column = headers.index("rows")
    return table(headers, rows, right=(rows_column, rows_column + 1))


def _report(
    spec: CollectionSpec, report: ArchiveReport, extra: dict[str, Any], done: str
) -> Outcome:
    """An `ArchiveReport` as JSON and as text; exit 1 when its checksums disagree."""
    data = {
        "collection": spec.name,
        **extra,
        "rows": report.rows,
        "partitions": list(report.partitions),
        "checksum_before": report.checksum_before,
        "checksum_after": report.checksum_after,
        "ok": report.ok,
    }
    where = ""
    if report.partitions:
        count = len(report.partitions)
        where = f" in {count} partition{'s' if count != 1 else ''}: {', '.join(report.partitions)}"
    verdict = "ok" if report.ok else "MISMATCH: the rows did not arrive intact"
    text = (
        f"{done} {report.rows:,} rows of {spec.name}{where}.\n"
        f"Checksum {report.checksum_before} before, {report.checksum_after} after: {verdict}."
    )
    return Outcome(data, text, EXIT_OK if report.ok else EXIT_ERROR)


class RowProgress:
    """Draws the progress of an archive or a restore: rows moved against rows expected.

    On a terminal, one line redrawn in place. On anything else (a log file, a
    CI job), one line per partition, or per tenth of the rows for an
    unpartitioned collection's batches, so the output stays short.

    Args:
        stream: Where to draw (the command uses stderr: stdout is the result).
        verb: What is being done, e.g. ``"archived"``.
        total: The rows expected, or ``None`` when not known beforehand.
    """

    def __init__(self, stream: TextIO, verb: str, total: int | None) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._verb = verb
        self._total = total
        self._shown: tuple[str, int] | None = None
        self._width = 0

    def _fraction(self, rows: int) -> float | None:
        if not self._total:
            return None
        return min(rows / self._total, 1.0)

    def __call__(self, name: str, rows: int) -> None:
        """Show that ``rows`` rows were moved so far, the last of them from ``name``."""
        fraction = self._fraction(rows)
        of = f" of {self._total:,}" if self._total else ""
        message = f"{name}: {rows:,}{of} rows {self._verb}"
        if self._tty:
            line = bar(fraction, message)
            self._stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            tenth = -1 if fraction is None else int(fraction * 10)
            if self._shown is not None and self._shown == (name, tenth):
                return
            self._stream.write(message + "\n")
            self._shown = (name, tenth)
        self._stream.flush()

    def close(self) -> None:
        """End the redrawn line, so that what follows starts on a line of its own."""
        if self._tty and self._width:
            self._stream.write("\n")
            self._stream.flush()
            self._width = 0


# -- the collection -----------------------------------------------------------------------


async def stored_spec(db: Database, name: str) -> CollectionSpec:
    """The stored definition of collection ``name``.

    Raises:
        CollectionNotFoundError: No such collection; the message lists those there are.
    """
    async with db.acquire() as conn:
        info = await _catalog.load(conn, name)
    if info is None:
        known = ", ".join(i.name for i in await db.collections()) or "none"
        raise CollectionNotFoundError(
            f"no collection named {name!r}; collections: {known}", name=name
        )
    return _catalog.stored_spec(info)


# -- the commands -------------------------------------------------------------------------


async def _list(db: Database, args: argparse.Namespace) -> Outcome:
    spec = await stored_spec(db, args.collection)
    if spec.partitioning is None:
        raise ConfigError(
            f"collection {spec.name!r} is not partitioned; create it with "
            "partition=vecdb.TimePartitions(...) or vecdb.ValuePartitions(...)",
            setting="partition",
        )
    async with db.acquire() as conn:
        with translating():
            infos = await _partitions.list_partitions(conn, spec, exact=args.exact)
            infos += await _records.archived_partitions(conn, spec, exact=args.exact)
    archived = sum(i.archived for i in infos)
    count = len(infos)
    summary = (
        f"{count} partition{'s' if count != 1 else ''} ({archived} archived), "
        f"{sum(i.rows for i in infos):,} rows, {_size(sum(i.total_bytes for i in infos))}."
    )
    text = f"{_partition_table(spec, infos)}\n{summary}" if infos else "No partitions."
    return Outcome([_partition(i) for i in infos], text)


def _dry_run(
    spec: CollectionSpec,
    field: str | None,
    older_than: dt.datetime,
    due: list[PartitionInfo],
    rows: int,
) -> Outcome:
    data: dict[str, Any] = {
        "collection": spec.name,
        "older_than": older_than,
        "dry_run": True,
        "rows": rows,
        "partitions": [_partition(p) for p in due],
    }
    cutoff = _cutoff(older_than)
    if field is not None:
        data["field"] = field
        text = f"Would archive {rows:,} rows of {spec.name} whose {field} is before {cutoff}."
    elif due:
        count = len(due)
        text = (
            f"Would archive {count} partition{'s' if count != 1 else ''} of {spec.name} "
            f"({rows:,} rows), ending at or before {cutoff}:\n{_partition_table(spec, due)}"
        )
    else:
        text = f"No partition of {spec.name} ends at or before {cutoff}: nothing to archive."
    return Outcome(data, text + "\nNothing was changed (--dry-run).")


async def _archive_command(db: Database, args: argparse.Namespace) -> Outcome:
    spec = await stored_spec(db, args.collection)
    older_than: dt.datetime = args.older_than
    pool = connections(db)
    async with pool.acquire() as conn:
        with translating():
            # The library's own checks: --dry-run refuses what the run would.
            planned = await _archive.plan(conn, spec, older_than, args.field)
    field, due, rows = planned.field, list(planned.partitions), planned.rows
    if args.dry_run:
        return _dry_run(spec, field, older_than, due, rows)
    progress = None if args.json else RowProgress(sys.stderr, "archived", rows)
    try:
        report = await _archive.archive(
            pool,
            spec,
            older_than,
            field=field,
            batch_size=args.batch_size,
            progress=progress,
        )
    finally:
        if progress is not None:
            progress.close()
        await pool.schema_changed()  # partitions detached and moved: asyncpg #103
    extra: dict[str, Any] = {"older_than": older_than}
    if field is not None:
        extra["field"] = field
    return _report(spec, report, extra, "Archived")


async def _restore_command(db: Database, args: argparse.Namespace) -> Outcome:
    spec = await stored_spec(db, args.collection)
    newer_than: dt.datetime | None = args.newer_than
    pool = connections(db)
    total = None
    if spec.partitioning is not None:
        async with db.acquire() as conn:
            with translating():
                archived = await _records.archived_partitions(conn, spec)
        total = sum(
            p.rows
            for p in archived
            if newer_than is None or (isinstance(p.upper, dt.datetime) and p.upper > newer_than)
        )
    progress = None if args.json else RowProgress(sys.stderr, "restored", total)
    try:
        if spec.partitioning is None:
            report = await _archive_rows.restore_rows(pool, spec, newer_than, progress=progress)
        else:
            report = await _archive.restore(pool, spec, newer_than, progress=progress)
    finally:
        if progress is not None:
            progress.close()
        await pool.schema_changed()  # partitions moved back and attached: asyncpg #103
    return _report(spec, report, {"newer_than": newer_than}, "Restored")


_UTC_NOTE = (
    "an ISO date or datetime (2025-01-01, 2025-01-01T12:00:00+02:00); a date, or a datetime "
    "without an offset, is UTC"
)


def add_commands(command: AddCommand) -> None:
    """Register ``partitions``, ``archive`` and ``restore`` on the ``vecdb`` parser."""
    listing = command(
        "partitions",
        _list,
        "a partitioned collection's partitions, live then archived: bounds or value, rows, size",
    )
    listing.add_argument("collection", help="the collection")
    listing.add_argument(
        "--exact",
        action="store_true",
        help="count every partition's rows (default: the statistics' estimate for "
        "partitions of 100,000 rows or more, the archived count for archived ones)",
    )

    archive = command(
        "archive",
        _archive_command,
        "move a collection's old data into the vecdb_archive schema, checked by checksum",
    )
    archive.add_argument("collection", help="the collection")
    archive.add_argument(
        "--older-than",
        metavar="DATE",
        type=moment,
        required=True,
        help="archive the partitions that end at or before DATE (or, with --field, the rows "
        f"before it): {_UTC_NOTE}",
    )
    archive.add_argument(
        "--field",
        metavar="F",
        help="for an unpartitioned collection: the datetime or date field to archive rows by",
    )
    archive.add_argument(
        "--batch-size",
        metavar="N",
        type=positive,
        default=10_000,
        help="rows moved per statement, for an unpartitioned collection (default: 10000)",
    )
    archive.add_argument(
        "--dry-run",
        action="store_true",
        help="list what would be archived (partitions and rows), and change nothing",
    )

    restore = command(
        "restore",
        _restore_command,
        "bring archived data back into a collection, checked by checksum",
    )
    restore.add_argument("collection", help="the collection")
    restore.add_argument(
        "--newer-than",
        metavar="DATE",
        type=moment,
        help="restore only the partitions that end after DATE (or, for an unpartitioned "
        f"collection, the rows at or after it; default: everything): {_UTC_NOTE}",
    )
