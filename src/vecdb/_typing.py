"""Type aliases and protocols shared by the modules.

asyncpg's classes are generic only to type checkers, hence the two branches.

``Connection`` is a direct connection (migrations); ``PoolConnection`` is what
the pool hands out (``db.acquire()``); ``AnyConnection`` is either, for code
that runs on both. `Connections` is what the collection layer needs from the
server layer (a pool, in practice), so that it depends on no class of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar

import asyncpg
import asyncpg.pool
import numpy.typing as npt

if TYPE_CHECKING:
    from ._config import PoolConfig
    from ._monitor.recorder import Monitor
    from ._schema.record import Record

__all__ = [
    "AnyConnection",
    "Connection",
    "Connections",
    "M",
    "Pool",
    "PoolConnection",
    "VectorInput",
]

if TYPE_CHECKING:
    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record]
    PoolConnection: TypeAlias = asyncpg.pool.PoolConnectionProxy[asyncpg.Record]
    AnyConnection: TypeAlias = Connection | PoolConnection
    Pool: TypeAlias = asyncpg.Pool[asyncpg.Record]
else:
    Connection = asyncpg.Connection
    PoolConnection = asyncpg.pool.PoolConnectionProxy
    AnyConnection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
    Pool = asyncpg.Pool

M = TypeVar("M", bound="Record")
"""A collection's record class."""

VectorInput: TypeAlias = Sequence[float] | npt.NDArray[Any]
"""What a query vector may be: a sequence of numbers or a 1-d numpy array."""


class Connections(Protocol):
    """Where collections get their connections: `vecdb._server.pool.ConnectionPool`."""

    @property
    def config(self) -> PoolConfig:
        """The pool's configuration."""

    @property
    def monitor(self) -> Monitor:
        """The recorder of operations (and their spans)."""

    def check_open(self) -> None:
        """Raise `DatabaseClosedError` once closed."""

    def acquire(
        self,
        *,
        timeout: float | None = None,
        readonly: bool = False,
        consistent: bool | None = None,
    ) -> AbstractAsyncContextManager[PoolConnection]:
        """A pooled connection, for ``async with``; ``readonly``: a replica's, if there are any.

        ``consistent`` (with ``readonly``): ``True``, a replica that has replayed
        everything the primary had written when the read began, else the primary;
        ``False``, any replica in rotation; ``None``, as ``read_your_writes`` says.
        Ignored without replicas.
        """

    def transaction(
        self, *, readonly: bool = False, timeout: float | None = None
    ) -> AbstractAsyncContextManager[PoolConnection]:
        """A pooled connection inside a transaction."""

    async def schema_changed(self) -> None:
        """Renew every connection after DDL."""
