"""The ``vecdb`` commands about migrations: status, plan, migrate, rollback, history, ..."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .._migrate.engine import MigrationStatus
from .._migrate.state import HistoryEvent
from .._server.database import Database
from .output import EXIT_CHECK_FAILED, EXIT_OK, AddCommand, Outcome, duration, short, table, when

__all__ = ["add_commands"]


def _status_table(rows: Sequence[MigrationStatus]) -> str:
    cells = [
        [
            r.source,
            str(r.version),
            r.description,
            r.state,
            when(r.applied_at),
            (r.checksum or r.recorded_checksum or "-")[:12],
            "yes" if r.drift else "no",
        ]
        for r in rows
    ]
    headers = ["source", "version", "description", "state", "applied_at", "checksum", "drift"]
    return table(headers, cells, right=[1])


def _steps(title: str, rows: Sequence[MigrationStatus], empty: str) -> str:
    if not rows:
        return empty
    cells = [[r.source, str(r.version), r.description] for r in rows]
    return f"{title} {len(rows)} migration(s):\n" + table(
        ["source", "version", "description"], cells, right=[1]
    )


def _history_table(events: Sequence[HistoryEvent]) -> str:
    if not events:
        return "No migration events recorded."
    cells = [
        [
            str(e.id),
            when(e.started_at),
            e.source,
            str(e.version),
            e.event,
            duration(e.duration_ms),
            short(e.error),
        ]
        for e in events
    ]
    headers = ["id", "time (UTC)", "source", "version", "event", "duration", "error"]
    return table(headers, cells, right=[0, 3, 5])


# -- commands -----------------------------------------------------------------------------


async def _status(db: Database, args: argparse.Namespace) -> Outcome:
    rows = await db.migrations.status()
    unsettled = any(r.state != "applied" or r.drift for r in rows)
    code = EXIT_CHECK_FAILED if args.check and unsettled else EXIT_OK
    return Outcome(rows, _status_table(rows), code)


async def _plan(db: Database, args: argparse.Namespace) -> Outcome:
    rows = await db.migrations.plan(args.to, args.source)
    return Outcome(rows, _steps("Would apply", rows, "Nothing to do: already at head."))


async def _migrate(db: Database, args: argparse.Namespace) -> Outcome:
    rows = await db.migrations.upgrade(args.to, args.source)
    return Outcome(rows, _steps("Applied", rows, "Already at head."))


async def _rollback(db: Database, args: argparse.Namespace) -> Outcome:
    rows = await db.migrations.rollback(args.to, args.source)
    return Outcome(rows, _steps("Rolled back", rows, "Nothing to roll back."))


async def _history(db: Database, args: argparse.Namespace) -> Outcome:
    events = await db.migrations.history()
    return Outcome(events, _history_table(events))


async def _repair(db: Database, args: argparse.Namespace) -> Outcome:
    rows = await db.migrations.repair()
    return Outcome(rows, _steps("Repaired", rows, "Nothing to repair: no checksum changed."))


async def _baseline(db: Database, args: argparse.Namespace) -> Outcome:
    rows = await db.migrations.baseline(args.to, args.source)
    return Outcome(rows, _steps("Baselined", rows, "Nothing to baseline: already recorded."))


async def _invalid_indexes(db: Database, args: argparse.Namespace) -> Outcome:
    names = await db.migrations.invalid_indexes()
    text = "\n".join(names) if names else "No invalid indexes."
    return Outcome(names, text)


def add_commands(command: AddCommand) -> None:
    """Register the migration commands on the ``vecdb`` parser."""

    def target(sub: argparse.ArgumentParser, *, required: bool) -> None:
        sub.add_argument(
            "--to", type=int, required=required, metavar="N", help="target version of the source"
        )
        sub.add_argument("--source", help="migration source (default: the only application source)")

    status = command("status", _status, "every migration per source, and its state")
    status.add_argument(
        "--check",
        action="store_true",
        help="exit 3 if anything is pending, incomplete, unknown or drifted",
    )
    target(command("plan", _plan, "what `migrate` would run; applies nothing"), required=False)
    target(command("migrate", _migrate, "apply pending migrations"), required=False)
    target(command("rollback", _rollback, "roll a source back to version N"), required=True)
    command("history", _history, "every migration event, oldest first")
    command("repair", _repair, "accept the changed code of applied migrations")
    target(
        command("baseline", _baseline, "record versions 1..N as applied without running them"),
        required=True,
    )
    command("invalid-indexes", _invalid_indexes, "INVALID indexes left by failed builds")
