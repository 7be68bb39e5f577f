"""Bulk re-upsert with ``rebuild_index=``: the HNSW index dropped, the merge, a concurrent rebuild.

Where a test needs the rebuild to stand still in the middle (index dropped,
merge not committed), a test-only trigger makes the merge's row for id 5 wait
for an advisory lock the test holds, and the test waits until the server shows
the writer waiting on it: no sleeps. (A row lock would not do: the index's
``DROP INDEX CONCURRENTLY`` waits for every transaction holding the table.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import numpy as np
import pytest

import vecdb
from vecdb._collections import reupsert as _reupsert

DIM = 8
ROWS = 300
INDEX = "docs_embedding_hnsw"


class Doc(vecdb.Record):
    id: int
    bucket: str
    embedding: vecdb.Vector


def vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


OLD = vectors(ROWS, 1)
NEW = vectors(ROWS, 2)


def old_docs(n: int = ROWS) -> list[Doc]:
    return [Doc(id=i, bucket="old", embedding=OLD[i].tolist()) for i in range(n)]


def new_docs(n: int = ROWS) -> list[Doc]:
    return [Doc(id=i, bucket="new", embedding=NEW[i].tolist()) for i in range(n)]


@pytest.fixture
async def docs(db: vecdb.Database) -> vecdb.Collection[Doc]:
    c = await db.collection("docs", Doc, dim=DIM, filterable=("bucket",))
    await c.upsert(old_docs())
    return c


async def _hnsw(dsn: str) -> list[tuple[str, bool]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = "
            "i.indexrelid JOIN pg_am a ON a.oid = c.relam WHERE i.indrelid = 'docs'::regclass "
            "AND a.amname = 'hnsw' ORDER BY 1"
        )
        return [(r[0], r[1]) for r in rows]
    finally:
        await conn.close()


async def _assert_all_new(c: vecdb.Collection[Doc], n: int = ROWS) -> None:
    got = await c.get_many(range(n))
    assert len(got) == n
    for d in got:
        assert d.bucket == "new"
        assert np.allclose(d.embedding, NEW[d.id], atol=1e-6)


async def _assert_all_old(c: vecdb.Collection[Doc]) -> None:
    got = await c.get_many(range(ROWS))
    assert len(got) == ROWS
    assert all(d.bucket == "old" and np.allclose(d.embedding, OLD[d.id], atol=1e-6) for d in got)


_HOLD = 4242  # the advisory lock the test trigger waits for


@contextlib.asynccontextmanager
async def _merge_held(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """Until the block ends, a write of id 5 into docs waits (in a trigger) for the test."""
    conn = await asyncpg.connect(dsn)
    await conn.execute(
        "CREATE OR REPLACE FUNCTION test_hold() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$BEGIN PERFORM pg_advisory_xact_lock_shared({_HOLD}); RETURN NEW; END$$"
    )
    await conn.execute(
        "CREATE OR REPLACE TRIGGER test_hold BEFORE INSERT ON docs FOR EACH ROW "
        "WHEN (NEW.id = 5) EXECUTE FUNCTION test_hold()"
    )
    await conn.execute("SELECT pg_advisory_lock($1)", _HOLD)
    try:
        yield conn
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _HOLD)
        await conn.close()


async def _until_merge_waits(lock: asyncpg.Connection, writer: asyncio.Future[object]) -> None:
    """Until a session's INSERT into docs waits on a lock (the merge held mid-way)."""
    while True:
        waiting = await lock.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE 'INSERT INTO %docs%ON CONFLICT%'"
        )
        if waiting:
            return
        if writer.done():
            writer.result()  # raise what went wrong
            raise AssertionError("the upsert finished without waiting for the row lock")
        await asyncio.sleep(0.02)


async def _until(conn: asyncpg.Connection, sql: str) -> None:
    """Until ``sql`` (a boolean) is true: the server's state, which no event announces."""
    while not await conn.fetchval(sql):  # noqa: ASYNC110 - polling the server, see above
        await asyncio.sleep(0.02)


# -- correctness ------------------------------------------------------------------------


async def test_a_rebuilt_upsert_writes_every_row_and_keeps_the_index(
    dsn: str, docs: vecdb.Collection[Doc], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="vecdb.index"):
        written = await docs.upsert(new_docs(), rebuild_index=True)
    assert written == ROWS
    assert any("re-upsert of 300 rows" in r.getMessage() for r in caplog.records)
    assert await docs.count() == ROWS
    await _assert_all_new(docs)
    assert await _hnsw(dsn) == [(INDEX, True)]
    # Search finds the new vectors (through the rebuilt index), and filters work.
    hits = await docs.search(NEW[7].tolist(), k=1)
    assert hits[0].record.id == 7
    assert (await docs.explain(NEW[7].tolist(), k=1)).strategy == "hnsw"
    assert await docs.count(where={"bucket": "new"}) == ROWS
    assert await docs.count(where={"bucket": "old"}) == 0
    hits = await docs.search(NEW[9].tolist(), k=3, where={"bucket": "new"})
    assert hits[0].record.id == 9


async def test_a_rebuilt_upsert_may_add_rows_and_repeat_ids(docs: vecdb.Collection[Doc]) -> None:
    """New ids are inserted; an id given twice keeps its last record, as in the plain merge."""
    extra = [Doc(id=ROWS + i, bucket="new", embedding=NEW[i].tolist()) for i in range(5)]
    twice = [Doc(id=3, bucket="first", embedding=OLD[3].tolist())]
    written = await docs.upsert(twice + new_docs() + extra, rebuild_index=True)
    assert written == ROWS + 5
    assert await docs.count() == ROWS + 5
    await _assert_all_new(docs)


async def test_auto_rebuilds_from_the_threshold_share_only(
    db: vecdb.Database, caplog: pytest.LogCaptureFixture
) -> None:
    rows = 2 * _reupsert.REBUILD_MIN_ROWS
    big = vectors(rows, 3)
    c = await db.collection("docs", Doc, dim=DIM, filterable=("bucket",))
    await c.upsert(Doc(id=i, bucket="old", embedding=big[i].tolist()) for i in range(rows))
    below = int(rows * _reupsert.REBUILD_SHARE) - 1
    with caplog.at_level(logging.DEBUG, logger="vecdb"):
        await c.upsert(
            (Doc(id=i, bucket="new", embedding=big[i].tolist()) for i in range(below)),
            rebuild_index="auto",
        )
    assert not any("re-upsert of" in r.getMessage() for r in caplog.records)
    assert any("merging the plain way" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vecdb.index"):
        written = await c.upsert(
            (Doc(id=i, bucket="new", embedding=big[i].tolist()) for i in range(rows // 2)),
            rebuild_index="auto",
        )
    assert written == rows // 2
    assert any(f"re-upsert of {rows // 2} rows" in r.getMessage() for r in caplog.records)
    assert await c.count(where={"bucket": "new"}) == rows // 2


@pytest.mark.parametrize(
    ("choice", "staged", "rows", "expected"),
    [
        (False, 10**6, 10**6, False),
        (True, 1, 10**6, True),
        ("auto", _reupsert.REBUILD_MIN_ROWS - 1, 100, False),
        ("auto", 19_999, 100_000, False),
        ("auto", 20_000, 100_000, True),
        ("auto", 20_000, 10_000, True),
    ],
    ids=["off", "forced", "auto-too-few", "auto-below-share", "auto-at-share", "auto-more-rows"],
)
def test_the_threshold(
    choice: _reupsert.RebuildChoice, staged: int, rows: int, expected: bool
) -> None:
    assert _reupsert.should_rebuild(choice, staged, rows) is expected


async def test_an_empty_or_unindexed_collection_takes_the_ordinary_path(
    db: vecdb.Database, dsn: str
) -> None:
    c = await db.collection("docs", Doc, dim=DIM, filterable=("bucket",))
    assert await c.upsert(old_docs(), rebuild_index=True) == ROWS  # the first load
    plain = await db.collection("plain", Doc, dim=DIM, index=None)
    await plain.upsert(old_docs())
    assert await plain.upsert(new_docs(), rebuild_index=True) == ROWS
    await _assert_all_new(plain)
    assert await _hnsw(dsn) == [(INDEX, True)]


async def test_a_partitioned_collection_merges_the_plain_way(db: vecdb.Database) -> None:
    c = await db.collection(
        "parts", Doc, dim=DIM, partition=vecdb.ValuePartitions("bucket"), filterable=("bucket",)
    )
    await c.upsert(old_docs())
    assert await c.upsert(new_docs(), rebuild_index=True) == ROWS
    await _assert_all_new(c)
    assert await db.migrations.invalid_indexes() == []


# -- bad inputs ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["yes", 1, None, "AUTO"], ids=["str", "int", "none", "case"])
async def test_a_bad_rebuild_index_is_refused_and_nothing_is_written(
    docs: vecdb.Collection[Doc], value: object
) -> None:
    with pytest.raises(vecdb.ConfigError, match="rebuild_index must be False") as info:
        await docs.upsert(new_docs(), rebuild_index=value)  # type: ignore[arg-type]
    assert info.value.setting == "rebuild_index"
    await _assert_all_old(docs)


async def test_rebuild_with_a_batch_size_is_refused_and_nothing_is_written(
    docs: vecdb.Collection[Doc],
) -> None:
    with pytest.raises(vecdb.ConfigError, match="batch_size=None"):
        await docs.upsert(new_docs(), rebuild_index=True, batch_size=100)
    await _assert_all_old(docs)
    # "auto" with batches merges each batch the plain way.
    assert await docs.upsert(new_docs(), rebuild_index="auto", batch_size=100) == ROWS
    await _assert_all_new(docs)


async def test_a_bad_record_mid_stream_writes_nothing_and_keeps_the_index(
    dsn: str, docs: vecdb.Collection[Doc]
) -> None:
    def stream() -> object:
        yield from new_docs()[:200]
        yield {"id": 999, "bucket": "new", "embedding": [0.0] * DIM}  # zero under cosine

    with pytest.raises(vecdb.InvalidVectorError):
        await docs.upsert(stream(), rebuild_index=True)  # type: ignore[arg-type]
    await _assert_all_old(docs)
    assert await _hnsw(dsn) == [(INDEX, True)]


# -- readers, writers, cancellation, kills -------------------------------------------------


async def test_readers_and_writers_keep_working_while_the_index_is_rebuilt(
    dsn: str, db: vecdb.Database, docs: vecdb.Collection[Doc]
) -> None:
    async with _merge_held(dsn) as lock:
        writer = asyncio.ensure_future(docs.upsert(new_docs(), rebuild_index=True))
        await _until_merge_waits(lock, writer)
        assert await _hnsw(dsn) == []  # dropped: searches are exact meanwhile
        for i in range(0, ROWS, 10):
            hits = await docs.search(OLD[i].tolist(), k=5)
            assert len(hits) == 5
            assert hits[0].record.id == i  # the old rows: the merge has not committed
        # Another writer is not blocked either, and its rows are not lost.
        other = await db.collection("docs", Doc, dim=DIM, filterable=("bucket",))
        assert (
            await other.upsert(
                [Doc(id=1000 + i, bucket="other", embedding=NEW[i].tolist()) for i in range(20)]
            )
            == 20
        )
    assert await writer == ROWS
    await _assert_all_new(docs)
    assert await docs.count() == ROWS + 20
    assert await docs.count(where={"bucket": "other"}) == 20
    assert await _hnsw(dsn) == [(INDEX, True)]
    hits = await docs.search(NEW[3].tolist(), k=2)
    assert {h.record.id for h in hits} == {3, 1003}


async def test_concurrent_readers_all_succeed_during_a_rebuild(
    docs: vecdb.Collection[Doc],
) -> None:
    failures: list[BaseException] = []
    done = asyncio.Event()
    searches = 0

    async def reader() -> None:
        nonlocal searches
        while not done.is_set():
            try:
                hits = await docs.search(OLD[searches % ROWS].tolist(), k=5)
                assert len(hits) == 5
            except Exception as exc:  # noqa: BLE001 - every failure is collected
                failures.append(exc)
            searches += 1
            await asyncio.sleep(0)

    readers = [asyncio.create_task(reader()) for _ in range(3)]
    try:
        assert await docs.upsert(new_docs(), rebuild_index=True) == ROWS
    finally:
        done.set()
        await asyncio.gather(*readers)
    assert failures == []
    assert searches > 0
    await _assert_all_new(docs)


async def test_a_cancelled_rebuild_keeps_the_old_rows_and_builds_the_index_again(
    dsn: str, db: vecdb.Database, docs: vecdb.Collection[Doc]
) -> None:
    async with _merge_held(dsn) as lock:
        writer = asyncio.ensure_future(docs.upsert(new_docs(), rebuild_index=True))
        await _until_merge_waits(lock, writer)
        writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer
    await _assert_all_old(docs)
    assert await docs.count() == ROWS
    assert await _hnsw(dsn) == [(INDEX, True)]
    assert await db.migrations.invalid_indexes() == []
    assert (await docs.explain(OLD[1].tolist(), k=1)).strategy == "hnsw"


async def test_a_failed_merge_keeps_the_old_rows_and_the_index(
    dsn: str, db: vecdb.Database, docs: vecdb.Collection[Doc]
) -> None:
    """The merge times out (rolled back); the index is built again."""
    async with _merge_held(dsn):
        with pytest.raises(vecdb.QueryTimeoutError):
            await docs.upsert(new_docs(), rebuild_index=True, timeout=0.5)
    await _assert_all_old(docs)
    assert await _hnsw(dsn) == [(INDEX, True)]
    assert await db.migrations.invalid_indexes() == []


async def test_a_rebuild_killed_mid_way_is_repaired_by_the_next_open(
    dsn: str, db: vecdb.Database, docs: vecdb.Collection[Doc], tmp_path: Path
) -> None:
    script = tmp_path / "rebuilder.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import asyncio, sys
            import vecdb
            sys.path.insert(0, {str(Path(__file__).parent)!r})
            from test_reupsert import DIM, Doc, new_docs

            async def main():
                async with vecdb.connect({dsn!r}, migrate="off") as db:
                    c = await db.collection("docs", Doc, dim=DIM, filterable=("bucket",))
                    await c.upsert(new_docs(), rebuild_index=True)

            asyncio.run(main())
            """
        )
    )
    async with _merge_held(dsn) as lock:
        worker = await asyncio.create_subprocess_exec(sys.executable, str(script))
        waited = asyncio.ensure_future(worker.wait())
        await _until_merge_waits(lock, waited)
        assert await _hnsw(dsn) == []
        worker.send_signal(signal.SIGKILL)
        await waited
    # The killed client's server session ends once it finds the socket closed,
    # which it does after the lock wait: until then it holds the rebuild lock.
    conn = await asyncpg.connect(dsn)
    try:
        await _until(
            conn,
            "SELECT count(*) = 0 FROM pg_locks WHERE locktype = 'advisory' "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
    finally:
        await conn.close()
    await _assert_all_old(docs)  # the merge never committed
    # A search meanwhile still succeeds (exactly); the next open builds the index.
    assert len(await docs.search(OLD[0].tolist(), k=3)) == 3
    await db.collection("docs", Doc, dim=DIM, filterable=("bucket",))
    assert await _hnsw(dsn) == [(INDEX, True)]
    assert await db.migrations.invalid_indexes() == []
    await _assert_all_old(docs)


async def test_an_invalid_index_left_by_a_killed_build_is_repaired_by_the_next_upsert(
    dsn: str, db: vecdb.Database, docs: vecdb.Collection[Doc]
) -> None:
    """The state a build killed mid-way leaves: the index there but INVALID."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP INDEX {INDEX}")
        holder = await asyncpg.connect(dsn)
        try:
            async with holder.transaction():
                # A writer in flight: the concurrent build waits for it, times out,
                # and leaves its index INVALID, as a killed build does.
                await holder.execute("UPDATE docs SET bucket = 'old' WHERE id = 1")
                await conn.execute("SET lock_timeout = '200ms'")
                with pytest.raises(asyncpg.LockNotAvailableError):
                    await conn.execute(
                        f"CREATE INDEX CONCURRENTLY {INDEX} ON docs "
                        "USING hnsw (embedding vector_cosine_ops)"
                    )
        finally:
            await holder.close()
    finally:
        await conn.close()
    assert await _hnsw(dsn) == [(INDEX, False)]
    assert await docs.upsert(new_docs(10)) == 10
    assert await _hnsw(dsn) == [(INDEX, True)]
    assert await db.migrations.invalid_indexes() == []
    assert await docs.count() == ROWS


@pytest.mark.parametrize("concurrently", [True, False], ids=["concurrently", "in-transaction"])
async def test_two_create_index_calls_at_once_both_finish_with_one_valid_index(
    dsn: str, db: vecdb.Database, docs: vecdb.Collection[Doc], concurrently: bool
) -> None:
    """Builds of one collection take turns: each would drop the other's half-built index.

    A writer's open transaction holds the builds at their start, so that
    without turns they would run side by side when it commits.
    """
    other = await db.collection("docs", Doc, dim=DIM, filterable=("bucket",))
    writer = await asyncpg.connect(dsn)
    try:
        await writer.execute("BEGIN; LOCK TABLE docs IN ROW EXCLUSIVE MODE")
        builds = asyncio.gather(
            docs.create_index(vecdb.HNSW(m=8, ef_construction=32), concurrently=concurrently),
            other.create_index(vecdb.HNSW(m=12, ef_construction=40), concurrently=concurrently),
        )
        # Both builds wait on the table, or (taking turns) one does, holding the
        # build lock that the other tries for.
        until_waiting = _until(
            writer,
            "WITH w AS (SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = "
            "'Lock' AND pid <> pg_backend_pid()) SELECT n = 2 OR (n = 1 AND EXISTS (SELECT 1 "
            "FROM pg_locks WHERE locktype = 'advisory' AND granted)) FROM w",
        )
        await asyncio.wait_for(until_waiting, 30)
        await writer.execute("COMMIT")
        await asyncio.wait_for(builds, 60)  # builds that ran into each other hung here
    finally:
        await writer.close()
    assert await _hnsw(dsn) == [(INDEX, True)]
    await _assert_all_old(docs)
    assert len(await docs.search(OLD[0], k=10)) == 10
