"""``vecdb tune``: the settings vecdb recommends for this machine, beside the server's.

Usage::

    vecdb tune [--memory 16GB] [--cores 8] [--apply [--yes]] [--json]

It prints each recommended setting with its reason, the server's current
value and whether it differs; for a server given by DSN, also the ``ALTER
SYSTEM`` statements. Nothing changes without ``--apply``. ``--apply`` on a
server given by DSN also needs ``--yes`` (without it: exit 2, nothing
changed). The values are checked against the server's ``pg_settings`` before
any is written; those read only at start wait for a restart.

Without ``--memory`` and ``--cores`` the machine is this one (its cgroup's
limits, else the host's), which is the embedded server's (where
``VECDB_TUNE_MEMORY`` and ``VECDB_TUNE_CORES`` stand in for it, as when vecdb
starts it), but rarely a remote server's.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from .._config import env_str, redact_dsn
from .._errors import VecdbError
from .._server.autotune import EMBEDDED_FIXED
from .._server.database import Database
from .._server.reconfigure import Change, apply, overrides, plan, wanted
from .._server.settings import read
from .._server.tuning import (
    PRELOAD_LIBRARIES,
    MachineFacts,
    format_size,
    parse_size,
    server_facts,
)
from .output import EXIT_OK, AddCommand, Outcome, table

__all__ = ["EXIT_USAGE", "add_commands"]

EXIT_USAGE = 2
"""As argparse's: the command was refused as given (``--apply`` on a DSN without ``--yes``)."""


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except VecdbError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cores(text: str) -> float:
    try:
        cores = float(text)
    except ValueError:
        cores = 0.0
    if not 0 < cores < float("inf"):
        raise argparse.ArgumentTypeError(f"invalid cores {text!r}: expected a positive number")
    return cores


def _facts(facts: MachineFacts) -> str:
    memory = f"{facts.memory_bytes / 2**30:.3g} GB"
    shm = "" if facts.shm_bytes is None else f", /dev/shm {facts.shm_bytes / 2**20:.0f} MB"
    return (
        f"{memory} of memory ({facts.memory_source}) and {facts.cores:g} cores "
        f"({facts.cores_source}){shm}"
    )


def _row(change: Change) -> dict[str, Any]:
    data = dataclasses.asdict(change)
    data.pop("write")
    data.pop("reset")
    return data


async def _tune(db: Database, args: argparse.Namespace) -> Outcome:
    embedded = db.embedded
    target = (
        f"the embedded server in {embedded.data_dir}"
        if embedded is not None
        else redact_dsn(args.dsn or env_str("VECDB_DSN") or "")
    )
    facts = server_facts(embedded=embedded is not None, memory=args.memory, cores=args.cores)
    async with db.acquire() as conn:
        # Loading the libraries into this session makes their settings checkable.
        state = await read(conn, load=PRELOAD_LIBRARIES)
        max_connections = int(state.settings["max_connections"].setting)
        # VECDB_SERVER_* are the embedded server's (connect() warns that a DSN ignores them).
        given = overrides(None) if embedded is not None else {}
        want = wanted(facts, given, max_connections=max_connections)
        changes = plan(
            want,
            state,
            fixed=EMBEDDED_FIXED if embedded is not None else None,
            # A server given by DSN may preload libraries of its own (timescaledb...).
            merge_libraries=embedded is None,
        )
        refused = args.apply and embedded is None and not args.yes
        written: list[Change] = []
        if args.apply and not refused:
            written = await apply(conn, changes)
    pending = [c.name for c in changes if c.restart and c.differs]
    data: dict[str, Any] = {
        "machine": dataclasses.asdict(facts),
        "server": target,
        "embedded": embedded is not None,
        "settings": [_row(c) for c in changes],
        "applied": [c.name for c in written],
        "pending_restart": pending if args.apply and not refused else [],
    }
    text = _text(changes, facts, target, embedded=embedded is not None)
    if refused:
        message = (
            f"refusing to change {target}: --apply on a server given by DSN also needs --yes "
            "(it runs ALTER SYSTEM on a server that others may be using). Nothing was changed."
        )
        print(f"error: {message}", file=sys.stderr)
        data["error"] = {"type": "UsageError", "message": message}
        return Outcome(data, text, EXIT_USAGE)
    if args.apply:
        text += "\n\n" + _applied(written, pending, embedded=embedded is not None, args=args)
    return Outcome(data, text, EXIT_OK)


def _text(changes: list[Change], facts: MachineFacts, target: str, *, embedded: bool) -> str:
    rows = [
        [
            c.name,
            c.current if c.current is not None else "(not loaded)",
            c.value,
            "*" if c.differs else "",
            "yes" if c.restart else "",
        ]
        for c in changes
    ]
    differing = [c for c in changes if c.differs]
    remote = not embedded and "given" not in facts.memory_source + facts.cores_source
    lines = [
        f"Recommended for {_facts(facts)}; {target}:",
        *(
            ["(this machine's figures: pass --memory and --cores for the server's machine)"]
            if remote
            else []
        ),
        "",
        table(["setting", "current", "recommended", "differs", "restart"], rows),
        "",
        "Why:",
        *(f"  {c.name}: {c.reason}" for c in changes),
        "",
        f"{len(differing)} of {len(changes)} differ from the server's values."
        if differing
        else "The server runs with every recommended value.",
    ]
    to_write = [c for c in changes if c.write]
    if not embedded and to_write:
        lines += [
            "",
            "To apply them (vecdb tune --apply --yes runs exactly these, as a superuser):",
            *(f"  {c.statement};" for c in to_write),
            "  SELECT pg_reload_conf();",
        ]
        if any(c.restart for c in to_write):
            lines.append("then restart the server for those marked restart.")
    return "\n".join(lines)


def _applied(
    written: list[Change], pending: list[str], *, embedded: bool, args: argparse.Namespace
) -> str:
    if not written:
        lines = ["Nothing to apply: postgresql.auto.conf already holds every value."]
    else:
        lines = [
            f"Applied {len(written)} setting(s) with ALTER SYSTEM and reloaded the "
            f"configuration: {', '.join(c.name for c in written)}."
        ]
    if pending and embedded:
        lines.append(
            f"Waiting for a restart: {', '.join(pending)}. They take effect when vecdb next "
            "starts the embedded server (once every process using it has exited)."
        )
    elif pending:
        lines.append(f"Waiting for a restart of the server: {', '.join(pending)}.")
    if embedded and (args.memory is not None or args.cores is not None):
        given = " ".join(
            f"VECDB_TUNE_{name}={value}"
            for name, value in (
                ("MEMORY", None if args.memory is None else format_size(args.memory)),
                ("CORES", None if args.cores is None else f"{args.cores:g}"),
            )
            if value is not None
        )
        lines.append(
            "vecdb derives the embedded server's settings again each time it starts it: "
            f"set {given} to keep these."
        )
    return "\n".join(lines)


def add_commands(command: AddCommand) -> None:
    """Register ``tune`` on the ``vecdb`` parser."""
    tune = command(
        "tune",
        _tune,
        "recommended server settings for this machine (or --memory/--cores), each with its "
        "reason, against the server's; --apply applies them",
    )
    tune.add_argument(
        "--memory",
        type=_size,
        metavar="SIZE",
        help="the server's memory, e.g. 16GB (default: this machine's cgroup limit, else its RAM)",
    )
    tune.add_argument(
        "--cores", type=_cores, metavar="N", help="the server's CPU cores (default: this machine's)"
    )
    tune.add_argument(
        "--apply",
        action="store_true",
        help="apply them with ALTER SYSTEM and reload; those read only at start wait for a "
        "restart (on a server given by DSN, also needs --yes)",
    )
    tune.add_argument(
        "--yes", action="store_true", help="with --apply: change a server given by DSN"
    )
