"""Many starters at once, crashes, cancellation, blocked DDL and concurrent index builds."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import asyncpg
import pytest

import vecdb
from vecdb._migrate import lock as _lock

from ..conftest import PackageWriter

SLOW = """
import os
import vecdb

class Slow(vecdb.Migration):
    '''Create a table slowly, with a side effect we can count.'''
    version = 1

    async def up(self, conn):
        await conn.execute("CREATE TABLE IF NOT EXISTS side_effects (pid int, at timestamptz)")
        await conn.execute("INSERT INTO side_effects VALUES (pg_backend_pid(), now())")
        await conn.execute("SELECT pg_sleep($1)", float(os.environ.get("MIGRATION_SLEEP", "0.3")))
        await conn.execute("CREATE TABLE slow_done (id int)")
"""

WORKER = """
import asyncio, sys
import vecdb

async def main():
    async with vecdb.connect(sys.argv[1], migrations=[sys.argv[2]]) as db:
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM slow_done") == 0
    print("connected")

asyncio.run(main())
"""


async def _assert_applied_exactly_once(dsn: str, source: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        applied = await conn.fetch(
            "SELECT source, version FROM vecdb.migration_events WHERE event = 'applied' ORDER BY id"
        )
        assert [(r[0], r[1]) for r in applied] == [("vecdb", 1), (source, 1)]
        assert await conn.fetchval("SELECT count(*) FROM side_effects") == 1
        locks = await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND classid = $1 AND objid = $2",
            *_lock.LOCK_KEY,
        )
        assert locks == 0
    finally:
        await conn.close()


@pytest.mark.slow
async def test_eight_processes_starting_at_once_migrate_exactly_once(
    dsn: str, packages: PackageWriter, tmp_path: Path
) -> None:
    pkg = packages.write("conc_procs", {"v0001_slow": SLOW})
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    env = {**os.environ, "PYTHONPATH": str(packages.root)}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            dsn,
            pkg,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(8)
    ]
    results = await asyncio.gather(*(p.communicate() for p in procs))
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err.decode()
        assert out.decode().strip() == "connected"
    await _assert_applied_exactly_once(dsn, pkg)


async def test_thirty_two_tasks_starting_at_once_migrate_exactly_once(
    dsn: str, packages: PackageWriter
) -> None:
    pkg = packages.write("conc_tasks", {"v0001_slow": SLOW})
    pool = vecdb.PoolConfig(min_size=0, max_size=1)
    databases = await asyncio.gather(
        *(vecdb.connect(dsn, migrations=[pkg], pool=pool) for _ in range(32))
    )
    await asyncio.gather(*(d.close() for d in databases))
    await _assert_applied_exactly_once(dsn, pkg)


async def _wait_for_query(dsn: str, fragment: str, timeout: float = 20.0) -> int:
    """The pid of the backend running a query containing ``fragment`` (polls pg_stat_activity)."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = await conn.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND state = 'active' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()",
                fragment,
            )
            if pid is not None:
                return int(pid)
            await asyncio.sleep(0.02)
    finally:
        await conn.close()
    raise AssertionError(f"no backend ran {fragment!r} within {timeout}s")


@pytest.mark.slow
async def test_process_killed_inside_a_migration_leaves_nothing_behind(
    dsn: str, packages: PackageWriter, tmp_path: Path
) -> None:
    pkg = packages.write("conc_kill", {"v0001_slow": SLOW})
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    env = {**os.environ, "PYTHONPATH": str(packages.root), "MIGRATION_SLEEP": "60"}
    victim = subprocess.Popen(  # noqa: ASYNC220 - killed below, never waited on while running
        [sys.executable, str(script), dsn, pkg],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await _wait_for_query(dsn, "pg_sleep")
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()

    started = time.monotonic()
    os.environ["MIGRATION_SLEEP"] = "0"
    try:
        async with vecdb.connect(
            dsn, migrations=[pkg], migration_config=vecdb.MigrationConfig(lock_wait=30)
        ) as db:
            states = {s.version: s.state for s in await db.migrations.status() if s.source == pkg}
    finally:
        del os.environ["MIGRATION_SLEEP"]
    assert states == {1: "applied"}
    assert time.monotonic() - started < 10
    await _assert_applied_exactly_once(dsn, pkg)


async def test_cancelled_connect_rolls_back_and_releases_the_lock(
    dsn: str, packages: PackageWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = packages.write("conc_cancel", {"v0001_slow": SLOW})
    monkeypatch.setenv("MIGRATION_SLEEP", "60")
    task = asyncio.create_task(vecdb.connect(dsn, migrations=[pkg]).__aenter__())
    await _wait_for_query(dsn, "pg_sleep")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    monkeypatch.setenv("MIGRATION_SLEEP", "0")
    config = vecdb.MigrationConfig(lock_wait=10)
    async with vecdb.connect(dsn, migrations=[pkg], migration_config=config) as db:
        assert {s.state for s in await db.migrations.status()} == {"applied"}
    await _assert_applied_exactly_once(dsn, pkg)


ALTER_BLOCKED = """
import vecdb

class CreateT(vecdb.Migration):
    '''Create t.'''
    version = 1

    async def up(self, conn):
        await conn.execute("CREATE TABLE t (id int)")

class AlterT(vecdb.Migration):
    '''Add a column to t.'''
    version = 2

    async def up(self, conn):
        await conn.execute("ALTER TABLE t ADD COLUMN extra text")
"""


class _RetrySignal(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.retried = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "lock_timeout" in record.getMessage():
            self.retried.set()


async def test_ddl_blocked_by_a_long_transaction_times_out_retries_then_succeeds(
    dsn: str, packages: PackageWriter
) -> None:
    pkg = packages.write("ddl_retry", {"v0001": ALTER_BLOCKED.split("class AlterT", maxsplit=1)[0]})
    await (await vecdb.connect(dsn, migrations=[pkg])).close()
    pkg = packages.write("ddl_retry", {"v0001": ALTER_BLOCKED})

    blocker = await asyncpg.connect(dsn)
    blocking = blocker.transaction()
    await blocking.start()
    await blocker.fetch("SELECT * FROM t")  # ACCESS SHARE until the transaction ends
    signal_ = _RetrySignal()
    logger = logging.getLogger("vecdb.migrations")
    logger.addHandler(signal_)
    config = vecdb.MigrationConfig(ddl_lock_timeout=0.1, ddl_retries=50, retry_backoff=0.05)
    try:
        opening = asyncio.create_task(
            vecdb.connect(dsn, migrations=[pkg], migration_config=config).__aenter__()
        )
        await asyncio.wait_for(signal_.retried.wait(), timeout=20)
        assert not opening.done()
        await blocking.commit()
        db = await asyncio.wait_for(opening, timeout=20)
    finally:
        logger.removeHandler(signal_)
        await blocker.close()
    try:
        async with db.acquire() as conn:
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM information_schema.columns WHERE column_name = 'extra'"
                )
                == 1
            )
    finally:
        await db.close()


async def test_ddl_blocked_past_its_retries_fails_cleanly(
    dsn: str, packages: PackageWriter
) -> None:
    pkg = packages.write("ddl_fail", {"v0001": ALTER_BLOCKED.split("class AlterT", maxsplit=1)[0]})
    await (await vecdb.connect(dsn, migrations=[pkg])).close()
    pkg = packages.write("ddl_fail", {"v0001": ALTER_BLOCKED})
    blocker = await asyncpg.connect(dsn)
    try:
        async with blocker.transaction():
            await blocker.fetch("SELECT * FROM t")
            config = vecdb.MigrationConfig(ddl_lock_timeout=0.05, ddl_retries=2, retry_backoff=0.01)
            with pytest.raises(vecdb.MigrationError) as caught:
                await vecdb.connect(dsn, migrations=[pkg], migration_config=config)
        assert caught.value.version == 2
        assert "lock" in str(caught.value)
        events = await blocker.fetch(
            "SELECT event FROM vecdb.migration_events WHERE source = $1 ORDER BY id", pkg
        )
        assert [e[0] for e in events] == ["applied", "failed"]
    finally:
        await blocker.close()


CONCURRENT_INDEX = """
import vecdb

class Items(vecdb.Migration):
    '''Create items with duplicates in code.'''
    version = 1

    async def up(self, conn):
        await conn.execute("CREATE TABLE items (id int, code text)")
        await conn.execute(
            "INSERT INTO items SELECT g, (g % 10)::text FROM generate_series(1, 1000) g"
        )

class IndexItems(vecdb.Migration):
    '''Index items concurrently.'''
    version = 2
    transactional = False

    async def up(self, conn):
        await conn.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS items_id ON items (id)")

    async def down(self, conn):
        await conn.execute("DROP INDEX CONCURRENTLY IF EXISTS items_id")
"""


async def test_non_transactional_migration_builds_an_index_concurrently(
    dsn: str, packages: PackageWriter
) -> None:
    pkg = packages.write("cic_ok", {"v0001": CONCURRENT_INDEX})
    async with vecdb.connect(dsn, migrations=[pkg]) as db:
        async with db.acquire() as conn:
            valid = await conn.fetchval(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_id'::regclass"
            )
            assert valid is True
        assert [s.state for s in await db.migrations.status() if s.source == pkg] == [
            "applied",
            "applied",
        ]
        await db.migrations.rollback(to=1)
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT to_regclass('items_id')") is None


async def test_failed_concurrent_index_build_is_reported_as_invalid(
    dsn: str, packages: PackageWriter
) -> None:
    failing = CONCURRENT_INDEX.replace(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS items_id ON items (id)",
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS items_code ON items (code)",
    )
    pkg = packages.write("cic_bad", {"v0001": failing})
    with pytest.raises(vecdb.MigrationError) as caught:
        await vecdb.connect(dsn, migrations=[pkg])
    assert "INVALID" in str(caught.value)
    assert "items_code" in str(caught.value)
    async with vecdb.connect(dsn, migrations=[pkg], migrate="off") as db:
        assert await db.migrations.invalid_indexes() == ["public.items_code"]
        states = {s.version: s.state for s in await db.migrations.status() if s.source == pkg}
        assert states == {1: "applied", 2: "incomplete"}
        failed = (await db.migrations.history())[-1]
        assert failed.event == "failed"
        assert failed.detail is not None
        assert failed.detail["invalid_indexes"] == ["public.items_code"]
