"""Fixtures for the replica tests: a real primary with two streaming standbys per test."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence

import asyncpg
import pytest

from ._topology import Server, Topology, topology


async def wait_replayed(
    top: Topology, database: str = "postgres", standbys: Sequence[Server] | None = None
) -> None:
    """Until ``standbys`` (default all) have replayed everything the primary has written so far."""
    primary = await asyncpg.connect(top.primary.dsn(database))
    try:
        target = await primary.fetchval("SELECT pg_current_wal_insert_lsn()::text")
    finally:
        await primary.close()
    for standby in top.standbys if standbys is None else standbys:
        conn = await asyncpg.connect(standby.dsn(database))
        try:
            while not await conn.fetchval(  # noqa: ASYNC110 - polls the server, not an event
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


@pytest.fixture(scope="session")
def shared_topology() -> Iterator[Topology]:
    """A primary and two standbys for this worker's tests that leave them as they found them."""
    with topology(2) as built:
        yield built


@dataclasses.dataclass(frozen=True)
class Replicated:
    """This test's own database on the primary, and the same database on each standby."""

    topology: Topology
    database: str

    @property
    def primary(self) -> str:
        return self.topology.primary.dsn(self.database)

    @property
    def standbys(self) -> list[str]:
        return [s.dsn(self.database) for s in self.topology.standbys]

    async def replayed(self, *standbys: Server) -> None:
        await wait_replayed(self.topology, self.database, standbys or None)


async def _database(top: Topology) -> AsyncIterator[Replicated]:
    name = f"vecdb_rep_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(top.primary.dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    finally:
        await admin.close()
    await wait_replayed(top)
    try:
        yield Replicated(top, name)
    finally:
        admin = await asyncpg.connect(top.primary.dsn())
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def replicated_db(shared_topology: Topology) -> AsyncIterator[Replicated]:
    """A database of this test's own on the shared primary, replayed on both standbys."""
    async for made in _database(shared_topology):
        yield made


@pytest.fixture
async def own_replicated_db(replicated: Topology) -> AsyncIterator[Replicated]:
    """A database on a primary and standbys of this test's own (for tests that stop them)."""
    async for made in _database(replicated):
        yield made
