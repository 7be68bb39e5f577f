"""How each driver and network error that a dying connection raises is translated.

The end-to-end tests (restart, kill -9, terminate) meet these at random; this
pins each one down, including those that are hard to provoke on purpose.
"""

from __future__ import annotations

import asyncpg
import pytest

import vecdb
from vecdb._errors import translating


def _server(cls: type[asyncpg.PostgresError], message: str) -> asyncpg.PostgresError:
    return cls(message)


CASES: list[tuple[str, BaseException, type[vecdb.VecdbError]]] = [
    (
        "server closed the connection",
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        vecdb.ConnectionLostError,
    ),
    (
        "shutdown or pg_terminate_backend",
        _server(asyncpg.AdminShutdownError, "terminating connection due to administrator command"),
        vecdb.ConnectionLostError,
    ),
    (
        "another backend crashed",
        _server(asyncpg.CrashShutdownError, "terminating connection because of crash"),
        vecdb.ConnectionLostError,
    ),
    (
        "left mid-protocol",
        asyncpg.InternalClientError("cannot switch to state 15; another operation is in progress"),
        vecdb.ConnectionLostError,
    ),
    (
        "used while busy",
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        vecdb.ConnectionLostError,
    ),
    (
        "closed under a transaction",
        asyncpg.InterfaceError(
            "cannot call Transaction.__aexit__(): the underlying connection is closed"
        ),
        vecdb.ConnectionLostError,
    ),
    (
        "socket reset",
        ConnectionResetError(104, "Connection reset by peer"),
        vecdb.ConnectionLostError,
    ),
    ("socket gone", BrokenPipeError(32, "Broken pipe"), vecdb.ConnectionLostError),
    ("closed socket", OSError(9, "Bad file descriptor"), vecdb.ConnectionLostError),
    ("server not there", ConnectionRefusedError(111, "Connection refused"), vecdb.ConnectError),
    (
        "socket file not there",
        FileNotFoundError(2, "No such file or directory"),
        vecdb.ConnectError,
    ),
    (
        "server starting up",
        _server(asyncpg.CannotConnectNowError, "the database system is starting up"),
        vecdb.ConnectError,
    ),
    (
        "read-only server",
        _server(asyncpg.ReadOnlySQLTransactionError, "cannot execute INSERT in a read-only tx"),
        vecdb.DatabaseError,
    ),
    ("disk full", _server(asyncpg.DiskFullError, "could not extend file"), vecdb.DatabaseError),
]


@pytest.mark.parametrize(("error", "kind"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_driver_error_becomes_the_vecdb_error_that_says_what_happened(
    error: BaseException, kind: type[vecdb.VecdbError]
) -> None:
    with pytest.raises(vecdb.VecdbError) as caught, translating():
        raise error
    assert type(caught.value) is kind
    assert caught.value.__cause__ is error
    if kind is vecdb.ConnectionLostError:
        assert "discarded" in str(caught.value)
        assert "retry" in str(caught.value)


def test_a_stale_schema_cache_is_not_a_lost_connection() -> None:
    error = asyncpg.exceptions.OutdatedSchemaCacheError("cache lookup failed for type 1234")
    with pytest.raises(vecdb.VecdbError) as caught, translating():
        raise error
    assert not isinstance(caught.value, vecdb.ConnectError)


def test_connection_lost_is_a_connect_error() -> None:
    assert issubclass(vecdb.ConnectionLostError, vecdb.ConnectError)
    assert vecdb.ConnectionLostError.__module__ == "vecdb"
