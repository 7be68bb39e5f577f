"""Exceptions raised by vecdb, and the one place driver errors are translated.

The tree::

    VecdbError
    ├── ConfigError                   bad argument, environment variable or server set-up
    ├── ConnectError                  the server cannot be reached or refused us
    │   └── ReplicaUnavailableError   no replica in rotation, and fallback="raise"
    ├── DatabaseClosedError           the Database was closed
    ├── TimeoutError                  something did not finish in time (the four below)
    │   ├── PoolTimeoutError          no pooled connection within acquire_timeout
    │   ├── QueryTimeoutError *       statement_timeout / command_timeout hit
    │   ├── LockTimeoutError *        a table lock was not granted within lock_timeout
    │   └── MigrationLockTimeout *    another process holds the migration lock
    ├── DatabaseError                 any other server error (sqlstate, detail, hint)
    │   ├── QueryTimeoutError *
    │   ├── LockTimeoutError *
    │   ├── ReplicaConflictError      a standby cancelled a read twice (conflict with recovery)
    │   └── DuplicateRecordError *
    ├── MigrationError                a migration failed (source, version)
    │   ├── MigrationChainError       gaps / duplicates / bad classes in a source
    │   ├── MigrationLockTimeout *
    │   ├── PendingMigrationsError    migrate="check" found pending migrations
    │   ├── SchemaTooNewError         the database knows versions this code does not
    │   ├── IrreversibleMigrationError  a migration on a rollback path has no down()
    │   └── MigrationDriftError       an applied migration's code changed
    ├── ArchiveChecksumError          an archive or restore found the content changed; undone
    ├── CollectionNotFoundError
    ├── SchemaMismatchError           stored collection definition differs from the call
    ├── DimensionMismatchError
    ├── InvalidVectorError            NaN, infinity, empty, zero vector under cosine
    ├── FilterError
    ├── RecordValidationError
    └── DuplicateRecordError *        an id that exists already

(* has two bases: ``except vecdb.TimeoutError`` and ``except vecdb.DatabaseError``
both catch a `QueryTimeoutError`.)

Every message says what was wrong and what to do about it; every subclass carries
the data a program needs to react (versions, field names, ids).

Driver errors become vecdb errors here and nowhere else: `translate` (and the
`translating` block) maps a server error through `_SQLSTATES`, one row per
SQLSTATE with its class and advice, the way asyncpg registers its exception
classes by sqlstate; anything else from the driver or the network becomes a
`ConnectError`, a `QueryTimeoutError` or a plain `VecdbError`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import asyncpg

__all__ = [
    "DRIVER_ERRORS",
    "INVALID_SCHEMA_NAME",
    "UNDEFINED_TABLE",
    "ArchiveChecksumError",
    "CollectionNotFoundError",
    "ConfigError",
    "ConnectError",
    "DatabaseClosedError",
    "DatabaseError",
    "DimensionMismatchError",
    "DuplicateRecordError",
    "FilterError",
    "InvalidVectorError",
    "IrreversibleMigrationError",
    "LockTimeoutError",
    "MigrationChainError",
    "MigrationDriftError",
    "MigrationError",
    "MigrationLockTimeout",
    "PendingMigrationsError",
    "PoolTimeoutError",
    "QueryTimeoutError",
    "RecordValidationError",
    "ReplicaConflictError",
    "ReplicaUnavailableError",
    "SchemaMismatchError",
    "SchemaTooNewError",
    "TimeoutError",
    "VecdbError",
    "translate",
    "translating",
]


class VecdbError(Exception):
    """Base class of every error vecdb raises."""


class ConfigError(VecdbError):
    """A configuration value, argument or the server's set-up is not usable.

    Attributes:
        setting: The argument or environment variable at fault, when there is one.
    """

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class ConnectError(VecdbError):
    """The database server could not be reached, or refused the connection."""


class DatabaseClosedError(VecdbError):
    """The `Database` was closed; open a new one with `vecdb.connect()`."""


class TimeoutError(VecdbError):
    """Something did not finish in time: a pool acquire, a query, a lock or the migration lock.

    Catch it to handle every vecdb timeout alike; each subclass says which.
    (It is not Python's built-in ``TimeoutError``, which is an ``OSError``.)
    """


class PoolTimeoutError(TimeoutError):
    """No pooled connection became free within the acquire timeout."""


class DatabaseError(VecdbError):
    """An error reported by PostgreSQL.

    Attributes:
        sqlstate: The five-character SQLSTATE code.
        detail: The server's DETAIL line, if any.
        hint: The server's HINT line, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        sqlstate: str | None = None,
        detail: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.detail = detail
        self.hint = hint


class ReplicaUnavailableError(ConnectError):
    """No replica is in rotation (down or lagging) and ``ReplicaConfig(fallback="raise")``."""


class ReplicaConflictError(DatabaseError):
    """A read was cancelled by a standby's "conflict with recovery" (SQLSTATE 40001), twice.

    vecdb retries such a read once on another server; this is the second failure.
    """


class QueryTimeoutError(DatabaseError, TimeoutError):
    """A statement ran longer than `statement_timeout` or the command timeout."""


class LockTimeoutError(DatabaseError, TimeoutError):
    """A lock was not granted within `lock_timeout` (SQLSTATE 55P03); safe to retry."""


class MigrationError(VecdbError):
    """A migration could not be applied or rolled back.

    Attributes:
        source: The migration source (``"vecdb"`` for the bundled one).
        version: The migration version, when one is concerned.
        server_message: The database's own message, when it raised.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        version: int | None = None,
        server_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.source = source
        self.version = version
        self.server_message = server_message


class MigrationChainError(MigrationError):
    """A migration source is malformed: duplicate or missing versions, or bad classes.

    Attributes:
        duplicates: Versions defined more than once.
        missing: Versions absent from the sequence 1..N.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        duplicates: Sequence[int] = (),
        missing: Sequence[int] = (),
    ) -> None:
        super().__init__(message, source=source)
        self.duplicates = tuple(duplicates)
        self.missing = tuple(missing)


class MigrationLockTimeout(MigrationError, TimeoutError):  # noqa: N818 - name fixed by the public contract
    """Another session held the migration lock for longer than the lock wait.

    Attributes:
        holder: What the server knows of the holder (pid, application_name,
            client address, backend_start, state, query), or ``None`` if it was
            released just as we gave up.
    """

    def __init__(self, message: str, *, holder: dict[str, Any] | None) -> None:
        super().__init__(message)
        self.holder = holder


class PendingMigrationsError(MigrationError):
    """`migrate="check"` found migrations that are not applied yet.

    Attributes:
        pending: ``(source, version, description)`` for each pending migration.
    """

    def __init__(self, message: str, *, pending: Sequence[tuple[str, int, str]]) -> None:
        super().__init__(message)
        self.pending = tuple(pending)


class SchemaTooNewError(MigrationError):
    """The database was migrated by a newer version of the code than this one.

    Attributes:
        known: The highest version this code knows for the source.
        found: The highest version recorded in the database.
    """

    def __init__(self, message: str, *, source: str, known: int, found: int) -> None:
        super().__init__(message, source=source, version=found)
        self.known = known
        self.found = found


class IrreversibleMigrationError(MigrationError):
    """A rollback path contains a migration without ``down()``; nothing was changed."""


class MigrationDriftError(MigrationError):
    """An applied migration's code no longer matches what was applied.

    Attributes:
        recorded: The checksum stored when the migration was applied.
        current: The checksum of the code now.
    """

    def __init__(
        self, message: str, *, source: str, version: int, recorded: str, current: str
    ) -> None:
        super().__init__(message, source=source, version=version)
        self.recorded = recorded
        self.current = current


class ArchiveChecksumError(VecdbError):
    """The content after a move differs from the content before; the move was undone.

    Attributes:
        table: The partition (or table) concerned.
        before: The checksum before the move.
        after: The checksum after it.
    """

    def __init__(self, message: str, *, table: str, before: str, after: str) -> None:
        super().__init__(message)
        self.table = table
        self.before = before
        self.after = after


class CollectionNotFoundError(VecdbError):
    """No collection of that name exists.

    Attributes:
        name: The collection name asked for.
    """

    def __init__(self, message: str, *, name: str) -> None:
        super().__init__(message)
        self.name = name


class SchemaMismatchError(VecdbError):
    """The stored collection definition differs from the one given.

    Attributes:
        differences: One human-readable line per difference.
    """

    def __init__(self, message: str, *, differences: Sequence[str]) -> None:
        super().__init__(message)
        self.differences = tuple(differences)


class DimensionMismatchError(VecdbError):
    """A vector has the wrong number of dimensions.

    Attributes:
        expected: The collection's dimension.
        got: The vector's length.
        record_id: The id of the offending record, when known.
        position: The record's position in the batch, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        expected: int,
        got: int,
        record_id: Any = None,
        position: int | None = None,
    ) -> None:
        super().__init__(message)
        self.expected = expected
        self.got = got
        self.record_id = record_id
        self.position = position


class InvalidVectorError(VecdbError):
    """A vector holds NaN or infinity, is empty, or is all zeros under cosine.

    Attributes:
        record_id: The id of the offending record, when known.
        position: The record's position in the batch, when known.
        field: The vector field.
    """

    def __init__(
        self,
        message: str,
        *,
        record_id: Any = None,
        position: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.record_id = record_id
        self.position = position
        self.field = field


class FilterError(VecdbError):
    """A `where=` filter is malformed or names an unknown field or operator."""


class RecordValidationError(VecdbError):
    """A record failed validation against its model.

    Attributes:
        position: The record's position in the batch, when known.
        errors: Pydantic's error list, when pydantic raised.
        record_id: The record's id, when known.
        field: The field whose value was refused, when one was.
    """

    def __init__(
        self,
        message: str,
        *,
        position: int | None = None,
        errors: Sequence[Any] = (),
        record_id: Any = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.position = position
        self.errors = tuple(errors)
        self.record_id = record_id
        self.field = field


class DuplicateRecordError(DatabaseError):
    """`insert()` met ids that already exist (or the server reported a unique violation).

    Attributes:
        ids: The conflicting ids, when vecdb found them itself (empty when the
            server reported the violation: its ``detail`` names the key).
    """

    def __init__(
        self,
        message: str,
        *,
        ids: Sequence[Any] = (),
        sqlstate: str | None = None,
        detail: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, sqlstate=sqlstate, detail=detail, hint=hint)
        self.ids = tuple(ids)


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


def _driver_error(exc: BaseException) -> VecdbError | None:
    if isinstance(exc, asyncpg.PostgresError):
        return _server_error(exc)
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError):
        return VecdbError(f"database client error: {exc}")
    if isinstance(exc, builtins.TimeoutError | asyncio.TimeoutError):
        return QueryTimeoutError(
            "the query did not finish within its timeout; pass a larger timeout= "
            "or raise PoolConfig.command_timeout"
        )
    if isinstance(exc, OSError):
        return ConnectError(f"lost or could not open the database connection: {exc}")
    return None


@contextlib.contextmanager
def translating(*, connecting_to: str | None = None) -> Iterator[None]:
    """Re-raise driver errors raised inside the block as vecdb errors (``from`` the original).

    Args:
        connecting_to: As for `translate`: the block opens a connection to this server.
    """
    try:
        yield
    except VecdbError:
        raise
    except DRIVER_ERRORS as exc:
        translated = translate(exc, connecting_to=connecting_to)
        assert translated is not None  # noqa: S101 - translate() covers every DRIVER_ERRORS type
        raise translated from exc
