"""The ``vecdb repartition`` command: convert an unpartitioned collection, online.

It runs `vecdb._collections.repartition` (what `Collection.repartition`
calls) from the stored definition, without the application's model. The
run is resumable: a second command after a kill or a failure picks up the
copy where it stopped, as the library call does.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from .._collections import repartition as _repartition
from .._schema.partitioning import INTERVALS, Partitioning, TimePartitions, ValuePartitions
from .._server.database import Database, connections
from .output import AddCommand, Outcome, bar
from .partitions import positive, stored_spec

__all__ = ["RepartitionBar", "add_commands"]

# The copy holds one connection for the run; the index builds and the swap's
# retries take a second one from the pool.
POOL_SIZE = 2


class RepartitionBar:
    """Draws `RepartitionProgress` reports: one bar per phase, redrawn on a terminal.

    On anything else (a log, a CI job), a line per phase and per tenth of it.

    Args:
        stream: Where to draw (stderr: stdout is the result).
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._shown: tuple[str, int] | None = None
        self._width = 0

    def __call__(self, report: _repartition.RepartitionProgress) -> None:
        """Show one report of the run."""
        fraction = report.fraction
        of = f" of {report.rows_total:,}" if report.rows_total else ""
        detail = f" ({report.detail})" if report.detail else ""
        message = f"{report.phase}{detail}: {report.rows_done:,}{of}"
        if self._tty:
            line = bar(fraction, message)
            if self._shown is not None and self._shown[0] != report.phase:
                self._stream.write("\n")  # the finished phase keeps its line
                self._width = 0
            self._stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
            self._shown = (report.phase, 0)
        else:
            tenth = -1 if fraction is None else int(fraction * 10)
            if self._shown == (report.phase, tenth):
                return
            self._stream.write(message + "\n")
            self._shown = (report.phase, tenth)
        self._stream.flush()

    def close(self) -> None:
        """End the redrawn line."""
        if self._tty and self._width:
            self._stream.write("\n")
            self._stream.flush()
            self._width = 0


def _partitioning(args: argparse.Namespace) -> Partitioning:
    if args.by_value:
        return ValuePartitions(args.field)
    return TimePartitions(args.field, interval=args.interval, premake=args.premake)


async def _command(db: Database, args: argparse.Namespace) -> Outcome:
    spec = await stored_spec(db, args.collection)
    partitioning = _partitioning(args)  # its own checks, before anything runs
    drawer = None if args.json else RepartitionBar(sys.stderr)
    held: list[float] = []

    def progress(report: _repartition.RepartitionProgress) -> None:
        if report.lock_held is not None:
            held.append(report.lock_held)
        if drawer is not None:
            drawer(report)

    pool = connections(db)
    try:
        rows = await _repartition.repartition(
            pool,
            spec,
            partitioning,
            batch_size=args.batch_size,
            progress=progress,
            timeout=args.timeout,
        )
    finally:
        if drawer is not None:
            drawer.close()
        await pool.schema_changed()  # the table was swapped: asyncpg #103
    lock = held[-1] if held else None
    data = {
        "collection": spec.name,
        "partition": {
            "kind": "value" if args.by_value else "time",
            "field": args.field,
            **({} if args.by_value else {"interval": args.interval, "premake": args.premake}),
        },
        "rows": rows,
        "lock_held_seconds": lock,
    }
    how = f"by value of {args.field}" if args.by_value else f"by {args.interval} of {args.field}"
    held_text = f"; the swap held its exclusive lock {lock * 1000:.0f} ms" if lock else ""
    text = (
        f"Repartitioned {spec.name} {how}: {rows:,} rows, counts and checksum verified"
        f"{held_text}.\nOther processes must open it again with partition= before they write."
    )
    return Outcome(data, text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"invalid timeout {text!r}: expected seconds > 0")
    return value


def add_commands(command: AddCommand) -> None:
    """Register ``repartition`` on the ``vecdb`` parser."""
    sub = command(
        "repartition",
        _command,
        "convert an unpartitioned collection into a partitioned one while it stays in use "
        "(copied in batches, writes captured, verified by checksum, resumable)",
    )
    sub.set_defaults(pool_size=POOL_SIZE)
    sub.add_argument("collection", help="the collection")
    sub.add_argument("--by", dest="field", required=True, metavar="FIELD", help="the field")
    kind = sub.add_mutually_exclusive_group()
    kind.add_argument(
        "--interval",
        choices=INTERVALS,
        default="month",
        help="time partitions of a datetime or date field, one per interval (default: month)",
    )
    kind.add_argument(
        "--values",
        dest="by_value",
        action="store_true",
        help="value partitions: one LIST partition per distinct value of FIELD",
    )
    sub.add_argument(
        "--premake",
        metavar="N",
        type=int,
        default=3,
        help="time partitions made ahead of now (default: 3)",
    )
    sub.add_argument(
        "--batch-size",
        metavar="N",
        type=positive,
        default=10_000,
        help="rows copied, or captured writes replayed, per transaction (default: 10000)",
    )
    sub.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_seconds,
        default=None,
        help="the longest any one statement may take (a batch, an index build); default none",
    )
