"""No driver exception escapes vecdb's API.

Each public call is made to fail in each way it can: the server gone, the
connection lost mid-query (``pg_terminate_backend`` from another session while
the call waits on a lock), a timeout, and a read-only server. The error is
always a `vecdb.VecdbError` of the kind that says what happened, with the
driver's error as its ``__cause__``. (Cancellation is not an error: a
cancelled call raises `asyncio.CancelledError`; see test_cancellation.py.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import anyio
import asyncpg
import pytest

import vecdb

from ._load import DIM, Doc, doc, query
from .conftest import OwnServer

Call = Callable[[vecdb.Database, vecdb.Collection[Doc]], Awaitable[object]]

# The calls that read or write the collection's table.
TABLE_CALLS: dict[str, Call] = {
    "upsert": lambda db, c: c.upsert([doc(1), doc(2)]),
    "insert": lambda db, c: c.insert([doc(10_001)]),
    "get": lambda db, c: c.get(1),
    "get_many": lambda db, c: c.get_many([1, 2]),
    "count": lambda db, c: c.count(where={"year": {"$gte": 2000}}),
    "delete": lambda db, c: c.delete([3]),
    "search": lambda db, c: c.search(query(1), k=3, where={"year": {"$gte": 2000}}),
    "search_many": lambda db, c: c.search_many([query(1), query(2)], k=3),
    "explain": lambda db, c: c.explain(query(1), k=3, analyze=True),
}
# The calls that read or write vecdb's catalog.
CATALOG_CALLS: dict[str, Call] = {
    "collection": lambda db, c: db.collection("docs", Doc, dim=DIM),
    "collections": lambda db, c: db.collections(),
    "drop_collection": lambda db, c: db.drop_collection("docs"),
}
OTHER_CALLS: dict[str, Call] = {
    "health": lambda db, c: db.health(),
    "migrations.status": lambda db, c: db.migrations.status(),
    "migrations.history": lambda db, c: db.migrations.history(),
    "acquire": lambda db, c: _acquire_and_query(db),
}
ALL_CALLS = {**TABLE_CALLS, **CATALOG_CALLS, **OTHER_CALLS}
DRIVER = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)


async def _acquire_and_query(db: vecdb.Database) -> object:
    async with db.transaction() as conn:
        return await conn.fetchval("SELECT 1")


async def _fill(db: vecdb.Database) -> vecdb.Collection[Doc]:
    docs = await db.collection("docs", Doc, dim=DIM)
    await docs.upsert([doc(i) for i in range(1, 200)])
    return docs


def _check(name: str, exc: BaseException, kind: type[vecdb.VecdbError]) -> str | None:
    """What is wrong with ``exc`` as the error of call ``name`` (``None``: nothing)."""
    if not isinstance(exc, kind):
        return f"{name}: {type(exc).__module__}.{type(exc).__name__}: {exc}"
    if not isinstance(exc.__cause__, DRIVER):
        return f"{name}: {exc!r} has no driver error as its cause ({exc.__cause__!r})"
    return None


async def test_with_the_server_gone_every_call_raises_a_connect_error(
    own_server: OwnServer,
) -> None:
    pool = vecdb.PoolConfig(min_size=2, max_size=4, acquire_timeout=5)
    async with vecdb.connect(own_server.dsn, pool=pool) as db:
        docs = await _fill(db)
        await anyio.to_thread.run_sync(own_server.stop, "fast")
        problems = []
        for name, call in ALL_CALLS.items():
            with anyio.fail_after(30):
                try:
                    await call(db, docs)
                    problems.append(f"{name}: returned with the server stopped")
                except Exception as exc:  # noqa: BLE001 - the point is to see every kind
                    problems.append(_check(name, exc, vecdb.ConnectError))
        assert [p for p in problems if p] == []
        await anyio.to_thread.run_sync(own_server.start)
        assert await docs.count() == 199  # the same Database serves again


class Blocker:
    """Another session that holds a table's lock until told, and sees who waits for it."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def waiting_pid(self) -> int:
        """The backend of the app (application_name vecdb) that waits on a lock."""
        with anyio.fail_after(20):
            while True:
                pid = await self.conn.fetchval(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = 'vecdb' "
                    "AND wait_event_type = 'Lock' AND datname = current_database()"
                )
                if pid is not None:
                    return int(pid)
                await asyncio.sleep(0.02)  # another session's state: polled


async def _blocked(
    dsn: str,
    db: vecdb.Database,
    docs: vecdb.Collection[Doc],
    name: str,
    call: Call,
    *,
    terminate: bool,
) -> BaseException | None:
    """Run ``call`` while its table is locked; terminate its backend, or let it time out."""
    admin = await asyncpg.connect(dsn)
    try:
        blocker = Blocker(admin)
        table = "docs" if name in TABLE_CALLS else "vecdb.collections"
        async with admin.transaction():
            await admin.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            task = asyncio.create_task(call(db, docs))
            pid = await blocker.waiting_pid()
            if terminate:
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            with anyio.fail_after(30):
                try:
                    await task
                except Exception as exc:  # noqa: BLE001 - the point is to see every kind
                    return exc
        return None
    finally:
        await admin.close()


@pytest.mark.parametrize("name", [*TABLE_CALLS, *CATALOG_CALLS])
async def test_a_connection_lost_mid_query_is_a_connection_lost_error(dsn: str, name: str) -> None:
    async with vecdb.connect(dsn, pool=vecdb.PoolConfig(min_size=1, max_size=4)) as db:
        docs = await _fill(db)
        exc = await _blocked(dsn, db, docs, name, ALL_CALLS[name], terminate=True)
        assert exc is not None, f"{name} returned though its backend was terminated"
        assert _check(name, exc, vecdb.ConnectionLostError) is None, _check(
            name, exc, vecdb.ConnectionLostError
        )
        assert "discarded" in str(exc)
        # The pool dropped the dead connection: the next call works.
        assert await docs.count() == 199
        assert db.pool_stats().in_use == 0


@pytest.mark.parametrize("name", [*TABLE_CALLS, *CATALOG_CALLS])
async def test_a_call_past_its_lock_timeout_is_a_typed_timeout(dsn: str, name: str) -> None:
    pool = vecdb.PoolConfig(min_size=1, max_size=4, server_settings={"lock_timeout": "300ms"})
    async with vecdb.connect(dsn, pool=pool) as db:
        docs = await _fill(db)
        exc = await _blocked(dsn, db, docs, name, ALL_CALLS[name], terminate=False)
        assert exc is not None, f"{name} returned though its table was locked"
        assert _check(name, exc, vecdb.TimeoutError) is None, _check(name, exc, vecdb.TimeoutError)
        assert await docs.count() == 199  # nothing was written, and the connection serves on


async def _read_only(admin_dsn: str, dsn: str) -> None:
    database = urlsplit(dsn).path.lstrip("/")
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
    finally:
        await admin.close()


WRITES: dict[str, Call] = {
    "upsert": TABLE_CALLS["upsert"],
    "insert": TABLE_CALLS["insert"],
    "delete": TABLE_CALLS["delete"],
    "drop_collection": CATALOG_CALLS["drop_collection"],
    "collection (create)": lambda db, c: db.collection("other", Doc, dim=DIM),
}


def _says_read_only(exc: Exception) -> str | None:
    if getattr(exc, "sqlstate", None) != "25006" or "read-only" not in str(exc):
        return f"{exc!r} does not say the server is read-only"
    return None if "primary" in str(exc) else f"{exc!r} does not say where to write"


async def test_on_a_read_only_server_reads_work_and_writes_raise_a_clear_error(
    admin_dsn: str, dsn: str
) -> None:
    async with vecdb.connect(dsn) as db:
        await _fill(db)
    await _read_only(admin_dsn, dsn)
    # A schema that is current needs no write: connect() (migrate="apply") works.
    async with vecdb.connect(dsn, pool=vecdb.PoolConfig(min_size=1, max_size=4)) as db:
        docs = await db.collection("docs", Doc, dim=DIM)
        reads = [n for n in ALL_CALLS if n not in WRITES and n != "collection"]
        for name in reads:
            await ALL_CALLS[name](db, docs)
        problems = []
        for name, call in WRITES.items():
            try:
                await call(db, docs)
                problems.append(f"{name}: wrote on a read-only server")
            except Exception as exc:  # noqa: BLE001 - the point is to see every kind
                problems.append(_check(name, exc, vecdb.DatabaseError) or _says_read_only(exc))
        assert [p for p in problems if p] == []
        assert await docs.count() == 199
        assert [c.name for c in await db.collections()] == ["docs"]


async def test_connect_to_a_read_only_server_with_pending_migrations_says_where_to_apply_them(
    admin_dsn: str, dsn: str
) -> None:
    await _read_only(admin_dsn, dsn)
    with pytest.raises(vecdb.ConfigError, match=r"read-only.*primary") as caught:
        await vecdb.connect(dsn)
    assert isinstance(caught.value.__cause__, asyncpg.ReadOnlySQLTransactionError)
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT to_regnamespace('vecdb')") is None  # nothing made
    finally:
        await conn.close()
    # Reading with the schema as it is stays possible.
    async with vecdb.connect(dsn, migrate="off") as db:
        assert (await db.health()).ok
