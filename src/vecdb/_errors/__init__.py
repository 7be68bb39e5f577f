"""Exceptions raised by vecdb, and the one place driver errors are translated.

The tree::

    VecdbError
    ├── ConfigError                   bad argument, environment variable or server set-up
    ├── ConnectError                  the server cannot be reached or refused us
    │   ├── ConnectionLostError       the connection died during a call (and was discarded)
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

Driver errors become vecdb errors in one place, `vecdb._errors.translate`, whose
names (`translate`, `translating`, `DRIVER_ERRORS` and the SQLSTATEs callers
test) are re-exported here. A connection that died under a call is a
`ConnectionLostError`, and the pool discards that connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "DRIVER_ERRORS",
    "INVALID_SCHEMA_NAME",
    "READ_ONLY",
    "UNDEFINED_TABLE",
    "ArchiveChecksumError",
    "CollectionNotFoundError",
    "ConfigError",
    "ConnectError",
    "ConnectionLostError",
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


class ConnectionLostError(ConnectError):
    """The connection died during the call: the server restarted, crashed or ended it.

    The connection was discarded (never handed out again); the pool opens a new
    one on the next call. A read can simply be retried. A write that was cut off
    before it returned was rolled back by the server, unless the connection was
    lost while the commit itself was in flight: then read back to know.
    """


class DatabaseClosedError(VecdbError):
    """The `Database` was closed; open a new one with `vecdb.connect()`."""


class TimeoutError(VecdbError):
    """Something did not finish in time: a pool acquire, a query, a lock or the migration lock.

    Catch it to handle every vecdb timeout alike; each subclass says which.
    (It is not Python's built-in ``TimeoutError``, which is an ``OSError``.)
    """


class PoolTimeoutError(TimeoutError):
    """No pooled connection became free within the acquire timeout.

    Attributes:
        timeout: The seconds waited.
        in_use: Connections handed out when the wait ended.
        max_size: The pool's limit.
        waiting: Tasks waiting for a connection then, this one included.
    """

    def __init__(
        self,
        message: str,
        *,
        timeout: float | None = None,
        in_use: int | None = None,
        max_size: int | None = None,
        waiting: int | None = None,
    ) -> None:
        super().__init__(message)
        self.timeout = timeout
        self.in_use = in_use
        self.max_size = max_size
        self.waiting = waiting


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


# The translation lives in its own module, which needs the classes above; these
# names stay importable from here, where every module has always found them.
from .translate import (  # noqa: E402
    DRIVER_ERRORS,
    INVALID_SCHEMA_NAME,
    READ_ONLY,
    UNDEFINED_TABLE,
    translate,
    translating,
)
