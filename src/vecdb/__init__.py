"""vecdb: keep and search embeddings in PostgreSQL, from async Python.

Example:
    >>> import vecdb
    >>> async with vecdb.connect() as db:  # doctest: +SKIP
    ...     print(await db.migrations.status())
"""

from __future__ import annotations

from ._catalog import CollectionInfo
from ._collection import Collection
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
from ._indexing import IndexProgress
from ._migration import Migration
from ._migrator import MigrationStatus
from ._pool import PoolStats
from ._record import Dim, Record, Vector
from ._search import Explain
from ._searching import Hit
from ._spec import HNSW, ForeignKey, Metric, Storage
from ._typing import Connection
from ._version import __version__

__all__ = [
    "HNSW",
    "Collection",
    "CollectionInfo",
    "CollectionNotFoundError",
    "ConfigError",
    "ConnectCall",
    "ConnectError",
    "Connection",
    "Database",
    "DatabaseClosedError",
    "DatabaseError",
    "Dim",
    "DimensionMismatchError",
    "DuplicateRecordError",
    "EmbeddedServer",
    "Explain",
    "FilterError",
    "ForeignKey",
    "Health",
    "HistoryEvent",
    "Hit",
    "IndexProgress",
    "InvalidVectorError",
    "IrreversibleMigrationError",
    "LockTimeoutError",
    "Metric",
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
    "Record",
    "RecordValidationError",
    "SchemaMismatchError",
    "SchemaTooNewError",
    "Storage",
    "VecdbError",
    "Vector",
    "__version__",
    "connect",
]
