"""Fixtures for the replica tests: a real primary with two streaming standbys per test."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest

from ._topology import Topology, topology


async def wait_replayed(top: Topology, database: str = "postgres") -> None:
    """Until every running standby has replayed everything the primary has written so far."""
    primary = await asyncpg.connect(top.primary.dsn(database))
    try:
        target = await primary.fetchval("SELECT pg_current_wal_lsn()::text")
    finally:
        await primary.close()
    for standby in top.standbys:
        conn = await asyncpg.connect(standby.dsn(database))
        try:
            while not await conn.fetchval(
                "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", target
            ):
                await asyncio.sleep(0.01)
        finally:
            await conn.close()


@pytest.fixture
def replicated() -> Iterator[Topology]:
    """A primary and two standbys of this test's own; stopped and removed after it."""
    with topology(2) as built:
        yield built
