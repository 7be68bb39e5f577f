"""Driver errors into vecdb errors: the one place asyncpg's exceptions are translated.

`translate` (and the `translating` block) maps a server error through
`_SQLSTATES`, one row per SQLSTATE with its class and advice, the way asyncpg
registers its exception classes by sqlstate; anything else from the driver or
the network becomes a `ConnectError`, a `QueryTimeoutError` or a plain
`VecdbError`. A connection that died under a call (the server restarted,
crashed or terminated the backend; the socket reset; the client left
mid-protocol) is a `ConnectionLostError`, and the pool discards that
connection. `vecdb._errors` re-exports these names.
"""

from __future__ import annotations

import asyncio
import builtins
import socket
from collections.abc import Mapping
from types import TracebackType

import asyncpg

from . import (
    ConnectError,
    ConnectionLostError,
    DatabaseError,
    DuplicateRecordError,
    LockTimeoutError,
    QueryTimeoutError,
    VecdbError,
)

__all__ = [
    "DRIVER_ERRORS",
    "INVALID_SCHEMA_NAME",
    "READ_ONLY",
    "UNDEFINED_TABLE",
    "translate",
    "translating",
]

_PGBOUNCER_ADVICE = (
    "Through PgBouncer in transaction mode? Connect with pool=vecdb.PoolConfig(pgbouncer=True) "
    "(no prepared statement cache) and migration_dsn= a direct connection; see "
    "docs/deployment.md."
)

# SQLSTATE -> (class, what to do). Codes not listed become a plain DatabaseError.
_SQLSTATES: Mapping[str, tuple[type[DatabaseError], str]] = {
    "55P03": (
        LockTimeoutError,
        "The lock was not granted within lock_timeout; retry when the other work ends.",
    ),
    "57014": (
        QueryTimeoutError,
        "Raise statement_timeout (PoolConfig / VECDB_POOL_STATEMENT_TIMEOUT) if needed.",
    ),
    "42P01": (
        DatabaseError,
        "A table this needs does not exist: if it is a collection's, the collection was "
        "dropped (perhaps by another session just now). Create or open it again with "
        "db.collection().",
    ),
    "25006": (
        DatabaseError,
        "The server is read-only: a standby, or default_transaction_read_only is on. "
        "Connect to the primary for writes and migrations (or connect with "
        'migrate="check" or "off" to only read).',
    ),
    "53100": (
        DatabaseError,
        "The server's disk (or the table's tablespace) is full; nothing of the statement "
        "was written. Free space on the server, then retry.",
    ),
    "53400": (
        DatabaseError,
        "A server limit was exceeded (such as temp_file_limit); nothing of the statement "
        "was written. Raise the limit, or write in smaller batches (batch_size=).",
    ),
    # A prepared statement missing, or there already, on a server connection: the
    # mark of PgBouncer in transaction mode with asyncpg's statement cache on.
    "26000": (DatabaseError, _PGBOUNCER_ADVICE),
    "42P05": (DatabaseError, _PGBOUNCER_ADVICE),
    "42501": (
        DatabaseError,
        "This role lacks the privilege. A runtime role (`vecdb grant ROLE`) reads and writes "
        "collections but changes no schema: create or drop collections, build indexes, "
        "archive, restore and migrate as the owner role (e.g. through migration_dsn or the "
        "CLI's --dsn), or run `vecdb grant ROLE` again after new collections were made.",
    ),
    "23505": (
        DuplicateRecordError,
        "A record with this key exists already (perhaps written by another session just "
        "now); nothing of the statement was written. Use upsert() to replace it.",
    ),
}

# SQLSTATEs that callers react to by value (a table or schema not created yet).
UNDEFINED_TABLE = "42P01"
INVALID_SCHEMA_NAME = "3F000"
READ_ONLY = "25006"  # read_only_sql_transaction: a standby, or default_transaction_read_only

# What the driver and the network raise: cleanup code that must not fail on
# them (closing a broken connection) catches exactly these.
DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)


def _server_error(exc: asyncpg.PostgresError) -> DatabaseError:
    sqlstate = getattr(exc, "sqlstate", None)
    detail = getattr(exc, "detail", None)
    hint = getattr(exc, "hint", None)
    # asyncpg's text may carry DETAIL and HINT lines of its own (two spaces, as
    # psql prints them): keep the message, then one DETAIL and one HINT line.
    message = "\n".join(
        line for line in str(exc).splitlines() if not line.startswith(("DETAIL:  ", "HINT:  "))
    )
    if detail:
        message += f"\nDETAIL: {detail}"
    if hint:
        message += f"\nHINT: {hint}"
    cls, advice = _SQLSTATES.get(sqlstate or "", (DatabaseError, ""))
    if advice:
        message += f"\n{advice}"
    return cls(message, sqlstate=sqlstate, detail=detail, hint=hint)


def translate(exc: BaseException, *, connecting_to: str | None = None) -> VecdbError | None:
    """Return the vecdb error for a driver or network error, or ``None`` if it is not one.

    This is the only place asyncpg's exceptions become vecdb's.

    Args:
        exc: The error.
        connecting_to: The server being connected to (a redacted DSN): any
            driver error is then a `ConnectError` that names it.
    """
    if isinstance(exc, VecdbError):
        return exc
    translated = _driver_error(exc)
    if translated is not None and connecting_to is not None:
        return ConnectError(
            f"cannot connect to {connecting_to}: {translated}. Check that the server is "
            "running and the DSN's host, port, database, user and password are right."
        )
    return translated


# A session the server ended under us: a fast or immediate shutdown and
# pg_terminate_backend (57P01), a crash of another backend (57P02); class 08 is
# the connection itself (asyncpg reports a socket that died as 08003).
_LOST_SQLSTATES = ("57P01", "57P02")
# What asyncpg says of a connection that is closed, or that was left in the
# middle of the protocol (a cut-off call): either way it cannot serve again.
_LOST_CLIENT_MESSAGES = ("connection is closed", "another operation is in progress")
# OSErrors that mean the server was not there to connect to, rather than lost.
_NOT_REACHED = (ConnectionRefusedError, FileNotFoundError, PermissionError, socket.gaierror)
_RETRY = (
    "The connection was discarded and the pool opens a new one on the next call: "
    "retry once the server is back. A write that was cut off was rolled back, unless "
    "its commit was in flight (then read back to know)."
)


def _driver_error(exc: BaseException) -> VecdbError | None:
    if isinstance(exc, asyncpg.PostgresError):
        return _reported_error(exc)
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError):
        return _client_error(exc)
    if isinstance(exc, builtins.TimeoutError | asyncio.TimeoutError):
        return QueryTimeoutError(
            "the query did not finish within its timeout; pass a larger timeout= "
            "or raise PoolConfig.command_timeout"
        )
    if isinstance(exc, _NOT_REACHED):
        return ConnectError(
            f"could not open a database connection: {exc}. Check that the server is running."
        )
    if isinstance(exc, OSError):
        return ConnectionLostError(f"the database connection was lost: {exc}. {_RETRY}")
    return None


def _reported_error(exc: asyncpg.PostgresError) -> VecdbError:
    sqlstate = getattr(exc, "sqlstate", None) or ""
    if sqlstate in _LOST_SQLSTATES or sqlstate.startswith("08"):
        return ConnectionLostError(f"the database connection was lost: {exc}. {_RETRY}")
    if sqlstate == "57P03":
        return ConnectError(
            f"the server does not accept connections now: {exc}. It is starting up, "
            "shutting down or recovering: retry in a moment."
        )
    return _server_error(exc)


def _client_error(exc: BaseException) -> VecdbError:
    # A stale schema cache is the client's own bookkeeping, not a lost connection.
    if not isinstance(exc, asyncpg.exceptions.OutdatedSchemaCacheError) and (
        isinstance(exc, asyncpg.InternalClientError)
        or any(text in str(exc) for text in _LOST_CLIENT_MESSAGES)
    ):
        return ConnectionLostError(
            f"the database connection was left in an unknown state: {exc}. {_RETRY}"
        )
    return VecdbError(f"database client error: {exc}")


class translating:  # noqa: N801 - used as a function: ``with translating():``
    """Re-raise driver errors raised inside the block as vecdb errors (``from`` the original).

    A class, not a generator context manager: every search enters it twice,
    and this costs a fifth of what ``@contextmanager`` does.

    Args:
        connecting_to: As for `translate`: the block opens a connection to this server.
    """

    __slots__ = ("_connecting_to",)

    def __init__(self, *, connecting_to: str | None = None) -> None:
        self._connecting_to = connecting_to

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None or isinstance(exc, VecdbError) or not isinstance(exc, DRIVER_ERRORS):
            return
        translated = translate(exc, connecting_to=self._connecting_to)
        assert translated is not None  # noqa: S101 - translate() covers every DRIVER_ERRORS type
        raise translated from exc
