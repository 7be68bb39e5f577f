"""kill -9 of the whole server (postmaster and every backend) during a bulk upsert.

The upsert writes 200,000 rows in batches of 10,000, each batch its own
transaction. The server is killed once a given number of batches has committed
and the next one is being written. After a restart the collection holds exactly
the committed batches, row for row, and its HNSW index is valid and used.

(200k rows: the batches after the first are merged into an indexed table, at
about 1,000 rows/s on the 2-core test machine; the kill comes early, so the
test writes at most the first batch and a little of the second.)
"""

from __future__ import annotations

import asyncio
import logging
import time

import anyio
import asyncpg
import pytest

import vecdb

from ._load import DIM, Doc, check_rows, doc, query
from .conftest import OwnServer

pytestmark = pytest.mark.slow

logger = logging.getLogger(__name__)

ROWS = 200_000
BATCH = 10_000

# The statement the app's backend runs when we kill: the first batch is loaded
# into the empty table, its index dropped and built again in the same
# transaction; later batches are copied to a staging table and merged.
_IN_FLIGHT = {0: "CREATE INDEX%", 1: "%"}


async def _wait_for_kill_point(dsn: str, committed: int) -> None:
    """Until ``committed`` batches are visible and the app's backend is writing the next."""
    admin = await asyncpg.connect(dsn)
    try:
        with anyio.fail_after(60):
            while True:
                # Not while the first batch runs: its rebuild holds ACCESS EXCLUSIVE.
                count = await admin.fetchval("SELECT count(*) FROM docs") if committed else 0
                writing = await admin.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'vecdb' "
                    "AND state = 'active' AND query ILIKE $1",
                    _IN_FLIGHT[committed],
                )
                if count == committed * BATCH and writing:
                    return
                assert count <= committed * BATCH, "the kill point was missed"
                await asyncio.sleep(0.02)  # polling another session: there is no event to wait on
    finally:
        await admin.close()


@pytest.mark.parametrize("committed", [0, 1], ids=["during-first-batch", "after-first-batch"])
async def test_kill_9_during_a_bulk_upsert_keeps_exactly_the_committed_batches(
    own_server: OwnServer, committed: int
) -> None:
    config = vecdb.PoolConfig(min_size=1, max_size=2)
    async with vecdb.connect(own_server.dsn, pool=config) as db:
        docs = await db.collection("docs", Doc, dim=DIM)
        upsert = asyncio.create_task(docs.upsert((doc(i) for i in range(ROWS)), batch_size=BATCH))
        await _wait_for_kill_point(own_server.dsn, committed)
        await anyio.to_thread.run_sync(own_server.kill9)
        killed = time.perf_counter()
        with anyio.fail_after(30), pytest.raises(vecdb.ConnectionLostError) as caught:
            await upsert
        cause = caught.value.__cause__
        assert isinstance(cause, asyncpg.PostgresError | asyncpg.InterfaceError | OSError)
        failed_after = time.perf_counter() - killed

        started = time.perf_counter()
        await anyio.to_thread.run_sync(own_server.start)  # crash recovery replays the WAL
        recovered = time.perf_counter() - started
        logger.info(
            "kill -9 after %d batch(es): upsert raised after %.0f ms; restart (recovery) %.0f ms",
            committed,
            failed_after * 1000,
            recovered * 1000,
        )
        # The same Database serves again, and holds exactly the committed batches.
        assert await docs.count() == committed * BATCH
        wanted = list(range(committed * BATCH))
        assert await check_rows(db, "docs", range(ROWS)) == wanted
        async with db.acquire() as conn:
            indexes = await conn.fetch(
                "SELECT a.amname, i.indisvalid, i.indisready FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam "
                "WHERE i.indrelid = 'docs'::regclass ORDER BY a.amname"
            )
        assert [tuple(r) for r in indexes] == [("btree", True, True), ("hnsw", True, True)]
        explained = await docs.explain(query(1), k=5)
        assert explained.uses_vector_index
        assert len(await docs.search(query(1), k=5)) == min(5, committed * BATCH)
