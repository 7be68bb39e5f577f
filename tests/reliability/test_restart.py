"""The embedded server stops (fast, or immediate) and starts again while 10 tasks use it.

Eight tasks search and two upsert in batches through one `Database`, which is
never reconnected. Every call either returns or raises a typed vecdb error
(`ConnectError`, `ConnectionLostError`, or a timeout) inside its bound; no
call hangs. Once the server is back, the same `Database` serves again, and the
table holds every batch whose upsert returned, no batch that raised half-written.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable

import anyio
import pytest

import vecdb

from ._load import DIM, Doc, Outcomes, check_rows, doc, query
from .conftest import OwnServer, StopMode

pytestmark = pytest.mark.slow

logger = logging.getLogger(__name__)

SEED = 500
BATCH = 50
CALL_BOUND = 15.0  # seconds: no single call may take longer (its own timeouts are far lower)
# The typed errors a call may raise while the server is away.
WHILE_DOWN = (vecdb.ConnectError, vecdb.TimeoutError)


class Load:
    """Eight searching and two upserting tasks over one collection, noting every outcome."""

    def __init__(self, docs: vecdb.Collection[Doc]) -> None:
        self.docs = docs
        self.outcomes = Outcomes()
        self.returned: list[list[int]] = []
        self.raised: list[list[int]] = []
        self.stop = asyncio.Event()
        self.progress = asyncio.Condition()
        self.restarted_at: float | None = None
        self.served_after_restart = asyncio.Event()

    async def note(self, kind: str, exc: vecdb.VecdbError | None) -> None:
        if exc is None:
            self.outcomes.ok(kind)
            if self.restarted_at is not None and kind == "search":
                self.served_after_restart.set()
        else:
            assert isinstance(exc, WHILE_DOWN), repr(exc)
            # The driver's error is kept as the cause (a pool timeout has none).
            assert exc.__cause__ is not None or isinstance(exc, vecdb.PoolTimeoutError)
            self.outcomes.failed(kind, exc)
        async with self.progress:
            self.progress.notify_all()

    async def search(self, worker: int) -> None:
        for n in itertools.count():
            if self.stop.is_set():
                return
            try:
                with anyio.fail_after(CALL_BOUND):
                    hits = await self.docs.search(query(worker + n), k=5)
                assert len(hits) == 5
                await self.note("search", None)
            except vecdb.VecdbError as exc:
                await self.note("search", exc)
                await asyncio.sleep(0.02)  # a client's back-off while the server is away

    async def upsert(self, worker: int) -> None:
        for n in itertools.count():
            if self.stop.is_set():
                return
            first = 1_000_000 * (worker + 1) + n * BATCH
            ids = list(range(first, first + BATCH))
            try:
                with anyio.fail_after(CALL_BOUND):
                    assert await self.docs.upsert([doc(i) for i in ids]) == BATCH
                self.returned.append(ids)
                await self.note("upsert", None)
            except vecdb.VecdbError as exc:
                self.raised.append(ids)
                await self.note("upsert", exc)
                await asyncio.sleep(0.02)

    async def until(self, check: Callable[[], object]) -> None:
        with anyio.fail_after(30):
            async with self.progress:
                await self.progress.wait_for(check)


async def restart_under(load: Load, server: OwnServer, mode: StopMode) -> dict[str, float]:
    """Stop and start ``server`` while ``load`` runs; the times it took, in ms."""
    counts = load.outcomes.counts
    async with asyncio.TaskGroup() as group:
        for worker in range(8):
            group.create_task(load.search(worker))
        for worker in range(2):
            group.create_task(load.upsert(worker))
        await load.until(lambda: counts["search ok"] >= 40 and counts["upsert ok"] >= 4)
        started = time.perf_counter()
        await anyio.to_thread.run_sync(server.stop, mode)
        stopped = time.perf_counter()
        await load.until(lambda: load.outcomes.errors)
        await anyio.to_thread.run_sync(server.start)
        load.restarted_at = time.perf_counter()
        # The same Database, no new connect(): it must have dropped its dead connections.
        with anyio.fail_after(2):
            await load.served_after_restart.wait()
        served = time.perf_counter()
        written = counts["upsert ok"]
        await load.until(lambda: counts["upsert ok"] >= written + 4)
        load.stop.set()
    return {
        "stop_ms": (stopped - started) * 1000,
        "serving_again_ms": (served - load.restarted_at) * 1000,
    }


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_a_restart_under_load_gives_typed_errors_then_the_same_database_serves(
    own_server: OwnServer, mode: StopMode
) -> None:
    config = vecdb.PoolConfig(
        min_size=2, max_size=10, acquire_timeout=5, command_timeout=5, statement_timeout=5
    )
    async with vecdb.connect(own_server.dsn, pool=config) as db:
        docs = await db.collection("docs", Doc, dim=DIM)
        await docs.upsert([doc(i) for i in range(SEED)])
        load = Load(docs)
        times = await restart_under(load, own_server, mode)
        logger.info("restart (%s): %s; %s", mode, times, dict(load.outcomes.counts))

        assert load.outcomes.errors, "the server was stopped, yet no call failed"
        assert db.pool_stats().in_use == 0
        # Every upsert that returned is there, row for row.
        wrote = [i for ids in load.returned for i in ids]
        assert await check_rows(db, "docs", wrote) == sorted(wrote)
        # A batch that raised is all there (its commit was in flight) or not at all.
        present_raised = 0
        for ids in load.raised:
            present = len(await check_rows(db, "docs", ids))
            assert present in {0, BATCH}, ids
            present_raised += present
        assert await docs.count() == SEED + len(wrote) + present_raised
        assert await check_rows(db, "docs", range(SEED)) == list(range(SEED))
