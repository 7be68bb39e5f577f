"""Type aliases shared by the modules (asyncpg's classes are generic only to type checkers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

import asyncpg

__all__ = ["Connection", "Pool"]

if TYPE_CHECKING:
    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record]
    Pool: TypeAlias = asyncpg.Pool[asyncpg.Record]
else:
    Connection = asyncpg.Connection
    Pool = asyncpg.Pool
