"""Type aliases shared by the modules (asyncpg's classes are generic only to type checkers).

``Connection`` is a direct connection (migrations); ``PoolConnection`` is what
the pool hands out (``db.acquire()``); ``AnyConnection`` is either, for code
that runs on both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

import asyncpg
import asyncpg.pool

__all__ = ["AnyConnection", "Connection", "Pool", "PoolConnection"]

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
