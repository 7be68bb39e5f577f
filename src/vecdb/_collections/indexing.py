"""Building HNSW indexes on loaded collections, with progress and INVALID-index recovery.

``CREATE INDEX CONCURRENTLY`` cannot run in a transaction block, so each
statement is its own ``execute``. A rebuild is made under a temporary name and
swapped in, so searches keep their index until the new one is ready. A
concurrent build that failed leaves an INVALID index (``pg_index.indisvalid =
false``) that PostgreSQL keeps updating but never uses: it is found, dropped
and built again.

A large first load into an empty collection drops its HNSW indexes and builds
them again inside the load's transaction (`hnsw_indexes`, `drop_indexes`,
`rebuild_indexes`): one build is several times faster than inserting every row
into the graph (pgvector #559).

Index builds take as long as they take: asyncpg applies the pool's
``command_timeout`` to a statement whose ``timeout`` is ``None``, so every
long statement here gets `statement_limit` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .._errors import DatabaseError, LockTimeoutError, translating
from .._identifiers import qualified, quote_ident
from .._schema import ddl as _ddl
from .._schema.spec import HNSW, CollectionSpec
from .._shm import SHM_HEADROOM, shm_bytes
from .._typing import AnyConnection, Connections

__all__ = [
    "NO_LIMIT",
    "IndexProgress",
    "ProgressCallback",
    "build_hnsw",
    "drop_indexes",
    "hnsw_indexes",
    "rebuild_indexes",
    "rebuild_lock_key",
    "release_build_lock",
    "session_settings",
    "statement_limit",
    "try_build_lock",
]

logger = logging.getLogger("vecdb.index")

POLL_INTERVAL = 0.25  # seconds between reads of pg_stat_progress_create_index
_BUILD_MEMORY_FLOOR = 1 << 30  # what a build may take on any server (more only if asked)
# Of effective_cache_size: pgtune (and vecdb's tuning) set it to 3/4 of memory,
# so a third of it is a quarter of memory, beside shared_buffers' quarter.
_BUILD_MEMORY_SHARE = 3
_MEMORY_SETTINGS = (
    "SELECT pg_size_bytes(current_setting('maintenance_work_mem')) AS current, "
    "pg_size_bytes(current_setting('effective_cache_size')) AS cache"
)
# asyncpg reads ``timeout=None`` as "the pool's command_timeout"; its own "no
# timeout" sentinel is private, so "no limit" is a timeout nobody will reach.
NO_LIMIT = 10.0 * 365 * 24 * 3600


def statement_limit(timeout: float | None) -> float:
    """``timeout=`` for a long statement: the caller's, else `NO_LIMIT` (not command_timeout)."""
    return NO_LIMIT if timeout is None else timeout


def _server_limit(timeout: float | None) -> str:
    """``statement_timeout`` for a build: the caller's timeout, else 0 (none)."""
    return "0" if timeout is None else f"{max(1, int(timeout * 1000))}ms"


def _graph_memory(spec: CollectionSpec, m: int, rows: float, current: int, cache: int) -> str:
    """``maintenance_work_mem`` for building ``rows`` into the graph (bytes in, kB out).

    Enough for the graph (vectors plus 2*m neighbours per node), never below
    the server's setting ``current``. Capped at the larger of 1 GB and a third
    of ``effective_cache_size`` (``cache``): the server's own word for its
    memory, a quarter of it on a server tuned as vecdb tunes its own. The
    server-wide setting stays at 1/16 of memory because every autovacuum
    worker may take as much; one build at a time may take more, and a graph
    that fits is built many times faster than one that spills to disk.
    """
    per_row = sum(4 * v.dim for v in spec.layout.vectors) + m * 2 * 8 + 96
    wanted = int(rows * per_row * 1.3)
    cap = max(_BUILD_MEMORY_FLOOR, cache // _BUILD_MEMORY_SHARE)
    size = max(current, min(wanted, cap))
    return f"{size // 1024}kB"


async def _build_memory(conn: AnyConnection, spec: CollectionSpec, m: int, rows: float) -> str:
    """`_graph_memory` for ``rows``, from the server's settings."""
    row = await conn.fetchrow(_MEMORY_SETTINGS)
    assert row is not None  # noqa: S101 - one row, always
    return _graph_memory(spec, m, rows or 0.0, int(row["current"]), int(row["cache"]))


_WORKERS = """
SELECT current_setting('max_parallel_maintenance_workers')::int AS workers,
       inet_server_addr() IS NULL AS local,
       current_setting('dynamic_shared_memory_type') AS dsm,
       pg_size_bytes($1) AS memory
"""


async def _workers_that_fit(conn: AnyConnection, memory: str) -> int:
    """The server's ``max_parallel_maintenance_workers``, or 0 if ``memory`` overflows /dev/shm.

    A parallel build of ``memory`` that would not fit ``/dev/shm`` (`vecdb._shm`)
    fails; one process that fits is the better build. Known only on the
    server's host: a Unix-socket connection (``inet_server_addr()`` is NULL) to
    a server sharing memory through ``/dev/shm``.
    """
    row = await conn.fetchrow(_WORKERS, memory)
    assert row is not None  # noqa: S101 - one row, always
    workers = int(row["workers"])
    if workers == 0 or not row["local"] or row["dsm"] != "posix":
        return workers
    shm = shm_bytes()
    if shm is None or shm >= int(row["memory"]) * SHM_HEADROOM:
        return workers
    logger.warning(
        "building in one process, not %d workers: /dev/shm is %d MB, smaller than the "
        "build's maintenance_work_mem of %d MB (+25%%) that a parallel build keeps there "
        "(enlarge it, e.g. docker run --shm-size, to build in parallel)",
        workers,
        shm >> 20,
        int(row["memory"]) >> 20,
    )
    return 0


@dataclasses.dataclass(frozen=True, slots=True)
class IndexProgress:
    """One report of an index build, from ``pg_stat_progress_create_index``.

    Attributes:
        index: The index being built.
        phase: PostgreSQL's phase (``"building index: loading tuples"``, ...),
            or ``"done"`` in the last report.
        blocks_done: Table blocks processed in this phase.
        blocks_total: Table blocks to process in this phase.
        tuples_done: Tuples processed in this phase.
        tuples_total: Tuples to process in this phase (0 when unknown).
    """

    index: str
    phase: str
    blocks_done: int = 0
    blocks_total: int = 0
    tuples_done: int = 0
    tuples_total: int = 0

    @property
    def fraction(self) -> float | None:
        """Progress of the current phase from 0 to 1, when PostgreSQL knows the total."""
        if self.phase == "done":
            return 1.0
        if self.blocks_total:
            return self.blocks_done / self.blocks_total
        if self.tuples_total:
            return self.tuples_done / self.tuples_total
        return None


ProgressCallback = Callable[[IndexProgress], Awaitable[None] | None]

_PROGRESS = """
SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total
FROM pg_stat_progress_create_index WHERE pid = $1
"""


async def _report(callback: ProgressCallback, progress: IndexProgress) -> None:
    result = callback(progress)
    if inspect.isawaitable(result):
        await result


async def _poll(pool: Connections, pid: int, index: str, callback: ProgressCallback) -> None:
    """Report the build's progress, read from a second connection, until cancelled."""
    async with pool.acquire() as conn:
        while True:
            with translating():
                row = await conn.fetchrow(_PROGRESS, pid)
            if row is not None:
                await _report(callback, IndexProgress(index, **dict(row)))
            await asyncio.sleep(POLL_INTERVAL)


async def _index_state(conn: AnyConnection, spec: CollectionSpec, name: str) -> bool | None:
    """``True`` valid, ``False`` INVALID, ``None`` absent."""
    valid: bool | None = await conn.fetchval(
        "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass($1)",
        qualified(spec.schema, name),
    )
    return valid


async def session_settings(
    conn: AnyConnection,
    spec: CollectionSpec,
    *,
    index: HNSW,
    maintenance_work_mem: str | None,
    parallel_workers: int | None,
    timeout: float | None,
) -> None:
    """Session settings for the build; the pool's reset (RESET ALL) undoes them on release."""
    if maintenance_work_mem is None:
        rows = await conn.fetchval(
            "SELECT greatest(reltuples, 0)::float8 FROM pg_class WHERE oid = to_regclass($1)",
            qualified(spec.schema, spec.table),
        )
        maintenance_work_mem = await _build_memory(conn, spec, index.m, rows)
    await conn.execute("SELECT set_config('maintenance_work_mem', $1, false)", maintenance_work_mem)
    if parallel_workers is None:
        parallel_workers = await _workers_that_fit(conn, maintenance_work_mem)
    await conn.execute(
        "SELECT set_config('max_parallel_maintenance_workers', $1, false)", str(parallel_workers)
    )
    # A long build must not be cut by the pool's statement_timeout (0: no limit).
    await conn.execute("SELECT set_config('statement_timeout', $1, false)", _server_limit(timeout))


async def _drop(
    conn: AnyConnection,
    spec: CollectionSpec,
    name: str,
    *,
    concurrently: bool,
    timeout: float | None = None,
) -> None:
    # DROP INDEX CONCURRENTLY waits for every transaction that could use the index.
    how = "CONCURRENTLY " if concurrently else ""
    await conn.execute(
        f"DROP INDEX {how}IF EXISTS {qualified(spec.schema, name)}",
        timeout=statement_limit(timeout),
    )


async def build_hnsw(
    pool: Connections,
    spec: CollectionSpec,
    *,
    concurrently: bool,
    progress: ProgressCallback | None,
    maintenance_work_mem: str | None,
    parallel_workers: int | None,
    timeout: float | None,
) -> None:
    """(Re)build the HNSW index of every vector field to ``spec.index``.

    Raises:
        DatabaseError: The build failed (an INVALID leftover is dropped first).
    """
    assert spec.index is not None  # noqa: S101 - the caller passes the index to build
    key = rebuild_lock_key(spec)
    async with pool.acquire() as conn:
        with translating():
            await session_settings(
                conn,
                spec,
                index=spec.index,
                maintenance_work_mem=maintenance_work_mem,
                parallel_workers=parallel_workers,
                timeout=timeout,
            )
            # One build of a collection's index at a time (this, a re-upsert's
            # rebuild, a repair): two would each drop the other's half-built
            # index. A session lock: the pool's reset on release unlocks it too.
            await _take_build_lock(conn, key, timeout)
            try:
                for vector in spec.layout.vectors:
                    await _build_one(
                        pool,
                        conn,
                        spec,
                        vector=vector,
                        concurrently=concurrently,
                        progress=progress,
                        timeout=timeout,
                    )
            finally:
                with contextlib.suppress(Exception):
                    await release_build_lock(conn, key)


async def _take_build_lock(conn: AnyConnection, key: str, timeout: float | None) -> None:
    """Wait for the build lock by trying, never inside a statement.

    A session blocked in ``pg_advisory_lock`` is in a statement, and ``CREATE
    INDEX CONCURRENTLY`` waits for every running statement's snapshot: the
    holder's build would wait for the waiter, which waits for the holder (a
    deadlock PostgreSQL reports). Between tries this session runs nothing.

    Raises:
        LockTimeoutError: ``timeout`` passed first.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.02
    while not await try_build_lock(conn, key):
        if deadline is not None and time.monotonic() + pause > deadline:
            raise LockTimeoutError(
                f"another build of this collection's index was still running after "
                f"{timeout:g}s (create_index timeout=); nothing was changed"
            )
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.5)


def rebuild_lock_key(spec: CollectionSpec) -> str:
    """The session advisory lock's key of builds of ``spec``'s index (`try_build_lock`)."""
    return "vecdb.rebuild:" + qualified(spec.schema, spec.table)


async def try_build_lock(conn: AnyConnection, key: str) -> bool:
    """Take the build lock ``key`` (`rebuild_lock_key`) for the session, if it is free."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key))


async def release_build_lock(conn: AnyConnection, key: str) -> None:
    """Release the build lock ``key`` taken by `try_build_lock`."""
    await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)


async def _build_one(
    pool: Connections,
    conn: AnyConnection,
    spec: CollectionSpec,
    *,
    vector: Any,
    concurrently: bool,
    progress: ProgressCallback | None,
    timeout: float | None,
) -> None:
    if spec.partitioning is not None:
        await _build_partitioned(
            pool,
            conn,
            spec,
            vector=vector,
            concurrently=concurrently,
            progress=progress,
            timeout=timeout,
        )
        return
    name = _ddl.hnsw_name(spec, vector)
    temp = _ddl.index_name(spec.table, vector.name, "hnsw_new")
    limit = statement_limit(timeout)
    # A leftover from a build that failed or was interrupted: never valid to use.
    await _drop(conn, spec, temp, concurrently=concurrently, timeout=timeout)
    state = await _index_state(conn, spec, name)
    if state is False:
        logger.warning("dropping INVALID index %s.%s left by a failed build", spec.schema, name)
        await _drop(conn, spec, name, concurrently=concurrently, timeout=timeout)
        state = None
    target = temp if state else name
    statement = _ddl.hnsw_index(spec, vector, name=target, concurrently=concurrently)
    await _run_build(
        pool, conn, spec, statement, target, concurrently=concurrently, progress=progress,
        timeout=timeout,
    )  # fmt: skip
    if target != name:
        # Swap: the old index serves searches until the new one is valid.
        await _drop(conn, spec, name, concurrently=concurrently, timeout=timeout)
        await conn.execute(
            f"ALTER INDEX {qualified(spec.schema, target)} RENAME TO {quote_ident(name)}",
            timeout=limit,
        )
    if progress is not None:
        await _report(progress, IndexProgress(name, "done"))
    logger.info("built %s on %s.%s", name, spec.schema, spec.table)


async def _run_build(
    pool: Connections,
    conn: AnyConnection,
    spec: CollectionSpec,
    statement: str,
    target: str,
    *,
    concurrently: bool,
    progress: ProgressCallback | None,
    timeout: float | None,
) -> None:
    """Run one ``CREATE INDEX`` with progress reports; an INVALID result is dropped and raised.

    Raises:
        DatabaseError: The build failed or left the index INVALID (it was dropped).
    """
    logger.info("building %s on %s.%s: %s", target, spec.schema, spec.table, spec.index)
    limit = statement_limit(timeout)
    poller = None
    if progress is not None:
        poller = asyncio.create_task(_poll(pool, conn.get_server_pid(), target, progress))
    try:
        if concurrently:
            await conn.execute(statement, timeout=limit)
        else:
            async with conn.transaction():
                await conn.execute(statement, timeout=limit)
    except BaseException:
        if concurrently:
            with contextlib.suppress(Exception):
                await _drop(conn, spec, target, concurrently=True)
        raise
    finally:
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
    if await _index_state(conn, spec, target) is not True:
        await _drop(conn, spec, target, concurrently=concurrently, timeout=timeout)
        raise DatabaseError(
            f"building index {target} on {spec.schema}.{spec.table} left it INVALID; it was "
            "dropped. Check the server log (out of memory or disk?), then call create_index() again"
        )


_PARTITIONS = """
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = to_regclass($1) ORDER BY c.relname
"""


async def _build_partitioned(
    pool: Connections,
    conn: AnyConnection,
    spec: CollectionSpec,
    *,
    vector: Any,
    concurrently: bool,
    progress: ProgressCallback | None,
    timeout: float | None,
) -> None:
    """(Re)build one vector field's HNSW index on every partition, then swap it in.

    PostgreSQL refuses ``CREATE INDEX CONCURRENTLY`` on a partitioned table.
    So: an index ``ON ONLY`` the parent (INVALID until complete), a build per
    partition (``CONCURRENTLY`` when asked: no partition is locked against
    writes), each attached to it; once every partition's is attached the
    parent's index is valid, and replaces the old one. Partitions made while
    this runs get the index the parent has when they are attached.
    """
    name = _ddl.hnsw_name(spec, vector)
    temp = _ddl.index_name(spec.table, vector.name, "hnsw_new")
    parent = qualified(spec.schema, spec.table)
    # Leftovers of an interrupted build (a partitioned index cannot be dropped
    # CONCURRENTLY; dropping it drops its partitions' indexes too).
    await _drop(conn, spec, temp, concurrently=False, timeout=timeout)
    definition = _ddl.hnsw_index(spec, vector, name=temp)
    await conn.execute(definition.replace(f"ON {parent} USING", f"ON ONLY {parent} USING", 1))
    children = [row[0] for row in await conn.fetch(_PARTITIONS, parent)]
    for child in children:
        child_spec = dataclasses.replace(spec, table=child, partitioning=None)
        index = _ddl.index_name(child, vector.name, "hnsw_new")
        await _drop(conn, child_spec, index, concurrently=concurrently, timeout=timeout)
        statement = _ddl.hnsw_index(child_spec, vector, name=index, concurrently=concurrently)
        await _run_build(
            pool, conn, child_spec, statement, index, concurrently=concurrently,
            progress=progress, timeout=timeout,
        )  # fmt: skip
        await conn.execute(
            f"ALTER INDEX {qualified(spec.schema, temp)} "
            f"ATTACH PARTITION {qualified(spec.schema, index)}"
        )
    if await _index_state(conn, spec, temp) is not True:
        raise DatabaseError(
            f"the new index {temp} of {spec.schema}.{spec.table} is not valid after building "
            "it on every partition (a partition was added meanwhile?); call create_index() again"
        )
    async with conn.transaction():
        await _drop(conn, spec, name, concurrently=False, timeout=timeout)
        await _rename(conn, spec, temp, name)
        for child in children:
            # Standard names again, so that the next build's temporary ones are free.
            new = _ddl.index_name(child, vector.name, "hnsw_new")
            await _rename(conn, spec, new, _ddl.index_name(child, vector.name, "hnsw"))
    if progress is not None:
        await _report(progress, IndexProgress(name, "done"))
    logger.info(
        "built %s on %s.%s and its %d partitions", name, spec.schema, spec.table, len(children)
    )


async def _rename(conn: AnyConnection, spec: CollectionSpec, old: str, new: str) -> None:
    await conn.execute(f"ALTER INDEX {qualified(spec.schema, old)} RENAME TO {quote_ident(new)}")


_HNSW_INDEXES = """
SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS definition
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_am a ON a.oid = c.relam
WHERE i.indrelid = to_regclass($1) AND a.amname = 'hnsw'
ORDER BY c.relname
"""


async def hnsw_indexes(conn: AnyConnection, spec: CollectionSpec) -> list[tuple[str, str]]:
    """The table's HNSW indexes: ``(name, CREATE INDEX statement)``, as the server has them.

    Read from the catalog rather than from ``spec``, so that a rebuild keeps
    exactly what exists (parameters changed by another process's
    ``create_index()``, or an index added by a migration).
    """
    rows = await conn.fetch(_HNSW_INDEXES, qualified(spec.schema, spec.table))
    return [(row["name"], row["definition"]) for row in rows]


async def drop_indexes(
    conn: AnyConnection,
    spec: CollectionSpec,
    indexes: list[tuple[str, str]],
    *,
    timeout: float | None,
) -> None:
    """Drop ``indexes`` inside the caller's transaction (ACCESS EXCLUSIVE until it ends)."""
    for name, _ in indexes:
        await conn.execute(
            f"DROP INDEX {qualified(spec.schema, name)}", timeout=statement_limit(timeout)
        )


async def rebuild_indexes(
    conn: AnyConnection,
    spec: CollectionSpec,
    indexes: list[tuple[str, str]],
    *,
    rows: int,
    timeout: float | None,
) -> None:
    """Build ``indexes`` again after a load, inside the caller's transaction.

    ``maintenance_work_mem`` is sized for ``rows`` as in `create_index` and
    ``statement_timeout`` is ``timeout`` (none when ``None``), both ``SET
    LOCAL``: nothing outlives the transaction. The parallel workers are the
    server's ``max_parallel_maintenance_workers`` (a parallel build needs
    ``/dev/shm`` larger than its memory, so the tuned server sizes it to both).
    """
    memory = await _build_memory(conn, spec, (spec.index or HNSW()).m, rows)
    await conn.execute(
        "SELECT set_config('maintenance_work_mem', $1, true), "
        "set_config('statement_timeout', $2, true), "
        "set_config('max_parallel_maintenance_workers', $3, true)",
        memory,
        _server_limit(timeout),
        str(await _workers_that_fit(conn, memory)),
    )
    for name, definition in indexes:
        logger.info(
            "building %s on %s.%s after loading %d rows (maintenance_work_mem %s)",
            name,
            spec.schema,
            spec.table,
            rows,
            memory,
        )
        started = time.perf_counter()
        # The server's own pg_get_indexdef() text, not built from input.
        await conn.execute(definition, timeout=statement_limit(timeout))
        logger.info(
            "built %s on %s.%s in %.1fs",
            name,
            spec.schema,
            spec.table,
            time.perf_counter() - started,
        )
