"""Exceptions raised by vecdb, and the one place driver errors are translated.

The tree::

    VecdbError
    ├── ConfigError                   bad argument, environment variable or server set-up
    ├── ConnectError                  the server cannot be reached or refused us
    ├── DatabaseClosedError           the Database was closed
    ├── PoolTimeoutError              no pooled connection within acquire_timeout
    ├── QueryTimeoutError             statement_timeout / command_timeout hit
    ├── LockTimeoutError              a table lock was not granted within lock_timeout
    ├── DatabaseError                 any other server error (sqlstate, detail, hint)
    ├── MigrationError                a migration failed (source, version)
    │   ├── MigrationChainError       gaps / duplicates / bad classes in a source
    │   ├── MigrationLockTimeout      another process holds the migration lock
    │   ├── PendingMigrationsError    migrate="check" found pending migrations
    │   ├── SchemaTooNewError         the database knows versions this code does not
    │   ├── IrreversibleMigrationError  a migration on a rollback path has no down()
    │   └── MigrationDriftError       an applied migration's code changed
    ├── CollectionNotFoundError
    ├── SchemaMismatchError           stored collection definition differs from the call
    ├── DimensionMismatchError
    ├── InvalidVectorError            NaN, infinity, empty, zero vector under cosine
    ├── FilterError
    ├── RecordValidationError
    └── DuplicateRecordError

Every message says what was wrong and what to do about it; every subclass carries
the data a program needs to react (versions, field names, ids).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import asyncpg

__all__ = [
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
    "SchemaMismatchError",
    "SchemaTooNewError",
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


class PoolTimeoutError(VecdbError):
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


class QueryTimeoutError(DatabaseError):
    """A statement ran longer than `statement_timeout` or the command timeout."""


class LockTimeoutError(DatabaseError):
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


class MigrationLockTimeout(MigrationError):  # noqa: N818 - name fixed by the public contract
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
    """

    def __init__(
        self,
        message: str,
        *,
        position: int | None = None,
        errors: Sequence[Any] = (),
    ) -> None:
        super().__init__(message)
        self.position = position
        self.errors = tuple(errors)


class DuplicateRecordError(VecdbError):
    """`insert()` met ids that already exist.

    Attributes:
        ids: The conflicting ids.
    """

    def __init__(self, message: str, *, ids: Sequence[Any]) -> None:
        super().__init__(message)
        self.ids = tuple(ids)


def _server_error(exc: asyncpg.PostgresError) -> DatabaseError:
    sqlstate = getattr(exc, "sqlstate", None)
    detail = getattr(exc, "detail", None)
    hint = getattr(exc, "hint", None)
    message = str(exc)
    if detail:
        message += f"\nDETAIL: {detail}"
    if hint:
        message += f"\nHINT: {hint}"
    cls: type[DatabaseError] = DatabaseError
    if sqlstate == "55P03":
        cls = LockTimeoutError
        message += "\nThe lock was not granted within lock_timeout; retry when the other work ends."
    elif sqlstate == "57014":
        cls = QueryTimeoutError
        message += (
            "\nRaise statement_timeout (PoolConfig / VECDB_POOL_STATEMENT_TIMEOUT) if needed."
        )
    return cls(message, sqlstate=sqlstate, detail=detail, hint=hint)


def translate(exc: BaseException) -> VecdbError | None:
    """Return the vecdb error for a driver or network error, or ``None`` if it is not one.

    This is the only place asyncpg's exceptions become vecdb's.
    """
    if isinstance(exc, VecdbError):
        return exc
    if isinstance(exc, asyncpg.PostgresError):
        return _server_error(exc)
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError):
        return VecdbError(f"database client error: {exc}")
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return QueryTimeoutError(
            "the query did not finish within its timeout; pass a larger timeout= "
            "or raise PoolConfig.command_timeout"
        )
    if isinstance(exc, OSError):
        return ConnectError(f"lost or could not open the database connection: {exc}")
    return None


@contextlib.contextmanager
def translating() -> Iterator[None]:
    """Re-raise driver errors raised inside the block as vecdb errors (``from`` the original)."""
    try:
        yield
    except VecdbError:
        raise
    except (
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,
        OSError,
    ) as exc:
        translated = translate(exc)
        assert translated is not None  # noqa: S101 - translate() covers every type caught above
        raise translated from exc
