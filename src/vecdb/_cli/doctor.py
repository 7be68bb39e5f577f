"""``vecdb doctor``: is this server, and are these collections, healthy for vector search?

Read-only: the command connects with ``migrate="off"`` like every other, and
the checks (`vecdb._server.doctor`) only read. Exit codes: 0 when nothing
failed, 1 on any ``fail``, 3 on a ``warn`` with ``--strict``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .._errors import VecdbError
from .._server.database import Database
from .._server.doctor import Check, diagnose
from .._server.tuning import parse_size, server_facts
from .output import EXIT_CHECK_FAILED, EXIT_ERROR, EXIT_OK, AddCommand, Outcome, table

__all__ = ["add_commands", "exit_code"]


def exit_code(checks: Sequence[Check], *, strict: bool) -> int:
    """1 if any check failed; 3 if any warned and ``strict``; else 0 (``skip`` never counts)."""
    statuses = {check.status for check in checks}
    if "fail" in statuses:
        return EXIT_ERROR
    if strict and "warn" in statuses:
        return EXIT_CHECK_FAILED
    return EXIT_OK


def _text(checks: Sequence[Check]) -> str:
    rows = [[c.name, c.status, c.evidence, c.fix or "-"] for c in checks]
    counts = {s: sum(c.status == s for c in checks) for s in ("ok", "warn", "fail", "skip")}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    return table(["check", "status", "evidence", "fix"], rows) + f"\n\n{summary}."


async def _doctor(db: Database, args: argparse.Namespace) -> Outcome:
    facts = None
    if args.memory is not None or args.cores is not None:
        # What the user says the server has; the rest as `vecdb tune` reads it.
        facts = server_facts(embedded=db.embedded is not None, memory=args.memory, cores=args.cores)
    checks = await diagnose(db, facts=facts)
    return Outcome(checks, _text(checks), exit_code(checks, strict=args.strict))


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except (VecdbError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cores(text: str) -> float:
    try:
        cores = float(text)
    except ValueError:
        cores = 0.0
    if cores <= 0:
        raise argparse.ArgumentTypeError(f"--cores must be a positive number, got {text!r}")
    return cores


def add_commands(command: AddCommand) -> None:
    """Register ``doctor`` on the ``vecdb`` parser."""
    doctor = command(
        "doctor",
        _doctor,
        "read-only health checks for vector search: each ok, warn, fail or skip, with its "
        "evidence and fix",
    )
    doctor.add_argument(
        "--strict", action="store_true", help="exit 3 when a check warns (1 when one fails)"
    )
    doctor.add_argument(
        "--memory",
        type=_size,
        metavar="SIZE",
        help="the server's memory, e.g. 16GB (default: this machine's, for the embedded "
        "server only)",
    )
    doctor.add_argument(
        "--cores", type=_cores, metavar="N", help="the server's CPU cores (as --memory)"
    )
