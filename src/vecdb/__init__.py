"""vecdb: keep and search embeddings in PostgreSQL, from async Python.

Example:
    >>> import vecdb
    >>> async with vecdb.connect() as db:  # doctest: +SKIP
    ...     print(await db.migrations.status())
"""

from __future__ import annotations

from ._config import MigrationConfig, PoolConfig
from ._connect import ConnectCall, connect
from ._database import Database, Health, Migrations
from ._embedded import EmbeddedServer
from ._errors import (
    CollectionNotFoundError,
    ConfigError,
    ConnectError,
    DatabaseClosedError,
    DatabaseError,
    DimensionMismatchError,
    DuplicateRecordError,
    FilterError,
    InvalidVectorError,
    IrreversibleMigrationError,
    LockTimeoutError,
    MigrationChainError,
    MigrationDriftError,
    MigrationError,
    MigrationLockTimeout,
    PendingMigrationsError,
    PoolTimeoutError,
    QueryTimeoutError,
    RecordValidationError,
    SchemaMismatchError,
    SchemaTooNewError,
    VecdbError,
)
from ._history import HistoryEvent
from ._migration import Migration
from ._migrator import MigrationStatus
from ._pool import PoolStats
from ._version import __version__

__all__ = [
    "CollectionNotFoundError",
    "ConfigError",
    "ConnectCall",
    "ConnectError",
    "Database",
    "DatabaseClosedError",
    "DatabaseError",
    "DimensionMismatchError",
    "DuplicateRecordError",
    "EmbeddedServer",
    "FilterError",
    "Health",
    "HistoryEvent",
    "InvalidVectorError",
    "IrreversibleMigrationError",
    "LockTimeoutError",
    "Migration",
    "MigrationChainError",
    "MigrationConfig",
    "MigrationDriftError",
    "MigrationError",
    "MigrationLockTimeout",
    "MigrationStatus",
    "Migrations",
    "PendingMigrationsError",
    "PoolConfig",
    "PoolStats",
    "PoolTimeoutError",
    "QueryTimeoutError",
    "RecordValidationError",
    "SchemaMismatchError",
    "SchemaTooNewError",
    "VecdbError",
    "__version__",
    "connect",
]
