"""vecdb: keep and search embeddings in PostgreSQL, from async Python.

Example:
    >>> import vecdb
    >>> async with vecdb.connect() as db:  # doctest: +SKIP
    ...     print(await db.migrations.status())
"""

from __future__ import annotations

import inspect

from ._collections.catalog import CollectionInfo
from ._collections.collection import Collection
from ._collections.indexing import IndexProgress
from ._config import MigrationConfig, PoolConfig
from ._errors import (
    ArchiveChecksumError,
    CollectionNotFoundError,
    ConfigError,
    ConnectError,
    ConnectionLostError,
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
    ReplicaConflictError,
    ReplicaUnavailableError,
    SchemaMismatchError,
    SchemaTooNewError,
    TimeoutError,
    VecdbError,
)
from ._migrate.base import Migration
from ._migrate.engine import MigrationStatus
from ._migrate.state import HistoryEvent
from ._monitor.stats import (
    CollectionStats,
    OperationStats,
    ServerStats,
    Statements,
    StatementStats,
    Stats,
)
from ._schema.fulltext import FullText
from ._schema.partitioning import ArchiveReport, PartitionInfo, TimePartitions, ValuePartitions
from ._schema.record import Dim, Record, Vector
from ._schema.spec import HNSW, ForeignKey, Metric, Storage
from ._search.hybrid import RRF
from ._search.searcher import Explain, Hit
from ._server.connect import ConnectCall, connect
from ._server.database import Database, Health, Migrations
from ._server.embedded import EmbeddedServer
from ._server.pool import PoolStats
from ._server.replica_config import ReplicaConfig
from ._server.replica_state import ReplicaStatus
from ._typing import Connection
from ._version import __version__

__all__ = [
    "HNSW",
    "RRF",
    "ArchiveChecksumError",
    "ArchiveReport",
    "Collection",
    "CollectionInfo",
    "CollectionNotFoundError",
    "CollectionStats",
    "ConfigError",
    "ConnectCall",
    "ConnectError",
    "Connection",
    "ConnectionLostError",
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
    "FullText",
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
    "OperationStats",
    "PartitionInfo",
    "PendingMigrationsError",
    "PoolConfig",
    "PoolStats",
    "PoolTimeoutError",
    "QueryTimeoutError",
    "Record",
    "RecordValidationError",
    "ReplicaConfig",
    "ReplicaConflictError",
    "ReplicaStatus",
    "ReplicaUnavailableError",
    "SchemaMismatchError",
    "SchemaTooNewError",
    "ServerStats",
    "StatementStats",
    "Statements",
    "Stats",
    "Storage",
    "TimePartitions",
    "TimeoutError",
    "ValuePartitions",
    "VecdbError",
    "Vector",
    "__version__",
    "connect",
]

# Public names read as vecdb.X in tracebacks and reprs, not vecdb._errors.X
# (as httpx does). Only vecdb's own classes and functions: ``Connection`` is
# asyncpg's class, ``Vector`` and ``Metric`` are typing constructs.
for _name in __all__:
    _obj = globals()[_name]
    if (inspect.isclass(_obj) or inspect.isfunction(_obj)) and _obj.__module__.startswith("vecdb."):
        _obj.__module__ = "vecdb"
del _name, _obj
