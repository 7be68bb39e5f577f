"""The ``vecdb`` command: inspect and change the migration state of a database.

Usage::

    vecdb status [--check]             every migration per source, and its state
    vecdb plan [--to N] [--source S]   what `migrate` would run; applies nothing
    vecdb migrate [--to N] [--source S]
    vecdb rollback --to N [--source S]
    vecdb history                      every migration event, oldest first
    vecdb repair                       accept the changed code of applied migrations
    vecdb baseline --to N [--source S] record 1..N as applied without running them
    vecdb invalid-indexes              INVALID indexes left by failed concurrent builds
    vecdb collections                  every collection: table, vectors, metric, storage, index
    vecdb create-index NAME            (re)build a collection's HNSW index, with a progress bar
    vecdb partitions NAME              a partitioned collection's partitions, live then archived
    vecdb archive NAME --older-than DATE [--field F] [--batch-size N] [--dry-run]
                                       move old partitions (or rows) into vecdb_archive
    vecdb restore NAME [--newer-than DATE]
                                       bring archived partitions (or rows) back
    vecdb repartition NAME --by FIELD [--interval I | --values]
                                       convert an unpartitioned collection, online
    vecdb init PATH                    create a migrations package (no database)
    vecdb new-migration TITLE --package PKG
                                       write the package's next migration (no database)
    vecdb grant ROLE [--apply]         the GRANTs of a least-privilege runtime role

Every command takes ``--dsn`` (default ``$VECDB_DSN``, else the embedded server),
``--data-dir``, ``--migrations PKG`` (repeatable; the current directory is
importable), ``--json`` and ``-v``. Exit codes: 0 success, 1 a vecdb error,
2 bad usage, 3 ``status --check`` found pending, incomplete, unknown or
drifted migrations.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from .._config import PoolConfig
from .._errors import VecdbError
from .._server.connect import connect
from .._version import __version__
from . import collections as _cli_collections
from . import doctor as _cli_doctor
from . import grant as _cli_grant
from . import migrations as _cli_migrations
from . import partitions as _cli_partitions
from . import repartition as _cli_repartition
from . import scaffold as _cli_scaffold
from . import tune as _cli_tune
from .output import EXIT_ERROR, Command, Outcome, to_json

__all__ = ["main"]


# -- arguments ----------------------------------------------------------------------------


def _add_common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The options every command takes, accepted before and after the command's name.

    Subcommands use ``SUPPRESS`` defaults so that an option given before the
    command is not overwritten by the subcommand's default.
    """

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--dsn",
        default=default(None),
        help="PostgreSQL DSN (default: $VECDB_DSN, else the embedded server)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="PATH",
        default=default(None),
        help="data directory of the embedded server (default: $VECDB_DATA_DIR)",
    )
    parser.add_argument(
        "--migrations",
        metavar="PKG",
        action="append",
        dest="more_migrations" if suppress else "migrations",
        default=default([]),
        help="application migration package (repeatable), importable from the current directory",
    )
    parser.add_argument(
        "--json", action="store_true", default=default(False), help="machine-readable output"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default(False),
        help="log migration steps to stderr",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vecdb",
        description="Inspect and change the migration state of a vecdb database.",
        epilog="Exit codes: 0 success, 1 a vecdb error, 2 bad usage, "
        "3 `status --check` found something not applied or drifted.",
    )
    parser.add_argument("--version", action="version", version=f"vecdb {__version__}")
    _add_common(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _add_common(common, suppress=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Command, help_: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help_, description=help_)
        sub.set_defaults(func=func)
        return sub

    _cli_migrations.add_commands(command)
    _cli_collections.add_commands(command)
    _cli_partitions.add_commands(command)
    _cli_repartition.add_commands(command)
    _cli_doctor.add_commands(command)
    _cli_tune.add_commands(command)
    _cli_scaffold.add_commands(command)
    _cli_grant.add_commands(command)
    return parser


# -- running ------------------------------------------------------------------------------


def _setup_logging(*, verbose: bool) -> None:
    """Send vecdb's log to stderr: every step with ``-v``, else only warnings.

    A command-line tool is an application: the one place vecdb installs a handler.
    Without ``-v``, ERROR records are dropped: each one comes with a raised error
    that `main` prints as ``error: ...``, so showing both would say it twice.
    """
    handler = logging.StreamHandler(sys.stderr)
    logger = logging.getLogger("vecdb")
    if verbose:
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.setLevel(logging.INFO)
    else:
        handler.setFormatter(logging.Formatter("warning: %(message)s"))
        handler.addFilter(lambda record: record.levelno < logging.ERROR)
        logger.setLevel(logging.WARNING)
    logger.addHandler(handler)
    logger.propagate = False


async def _run(args: argparse.Namespace, migrations: Sequence[str]) -> Outcome:
    async with connect(
        args.dsn,
        data_dir=args.data_dir,
        migrations=migrations,
        migrate="off",
        # One connection, unless the command needs more (repartition: two).
        pool=PoolConfig(min_size=0, max_size=getattr(args, "pool_size", 1)),
    ) as db:
        func: Command = args.func
        return await func(db, args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``vecdb`` command line.

    Example:
        >>> main(["status", "--dsn", "postgresql://app@db/app"])  # doctest: +SKIP
        0

    Args:
        argv: The arguments, without the program name (default ``sys.argv[1:]``).

    Returns:
        The exit code: 0 success, 1 a vecdb error, 2 bad usage (argparse exits
        itself), 3 ``status --check`` found something not applied or drifted.
    """
    args = _parser().parse_args(argv)
    migrations = [*args.migrations, *getattr(args, "more_migrations", [])]
    _setup_logging(verbose=args.verbose)
    if migrations and os.getcwd() not in sys.path:
        # `--migrations myapp.migrations` from a project root, as `python -m` would.
        sys.path.insert(0, os.getcwd())
    offline: _cli_scaffold.Offline | None = getattr(args, "offline", None)
    try:
        outcome = offline(args) if offline else asyncio.run(_run(args, migrations))
    except VecdbError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps({"error": {"type": type(exc).__name__, "message": str(exc)}}))
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(to_json(outcome.data) if args.json else outcome.text)
    return outcome.code
