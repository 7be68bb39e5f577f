"""vecdb: keep and search embeddings in PostgreSQL, from async Python.

Example:
    >>> import vecdb
    >>> async with vecdb.connect() as db:  # doctest: +SKIP
    ...     print(await db.migrations.status())
"""

from __future__ import annotations

from ._collections.catalog import CollectionInfo
from ._collections.collection import Collection
from ._collections.indexing import IndexProgress
from ._config import MigrationConfig, PoolConfig
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
from ._migrate.base import Migration
from ._migrate.engine import MigrationStatus
from ._migrate.state import HistoryEvent
from ._schema.record import Dim, Record, Vector
from ._schema.spec import HNSW, ForeignKey, Metric, Storage
from ._search.planner import Explain
from ._search.searcher import Hit
from ._server.connect import ConnectCall, connect
from ._server.database import Database, Health, Migrations
from ._server.embedded import EmbeddedServer
from ._server.pool import PoolStats
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
