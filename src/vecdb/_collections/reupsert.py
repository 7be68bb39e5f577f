"""A bulk re-upsert around a rebuilt HNSW index: drop it, merge, build it again concurrently.

Every row version an upsert writes goes into the HNSW graph, which is slow
(pgvector #559): rewriting a large share of an indexed collection costs more
than building the index again. Measured in docs/performance.md
(benchmarks/bench_reupsert.py): from about `REBUILD_SHARE` of the rows, this
path is faster than the plain merge, and the gap grows with the share.

The steps, with the staged rows already COPYed into a session temporary table:

1. ``DROP INDEX CONCURRENTLY`` of the collection's HNSW index(es): no lock that
   blocks readers or writers; searches then run as exact scans (correct, slower:
   ~25x at 20k rows here, proportional to the rows).
2. The merge, in one transaction (only the B-trees take the new rows).
3. ``CREATE INDEX CONCURRENTLY`` of the same definitions: readers and writers
   keep going; rows other sessions write meanwhile are in the new index.

Step 3 runs whatever happens in step 2 (a failed or cancelled merge rolls back
and the index is built again on the old rows), shielded from cancellation and
not limited by the write's ``timeout``: a cancelled call returns once the index
is back. A process killed in between
leaves the collection without its index (or with an INVALID one from a killed
build): `repair` finds that, at the next write or open, and builds it.

A session advisory lock (held on the writer's own connection for the whole
rebuild, so it dies with the session) tells `repair` that a rebuild is under
way elsewhere, and keeps two rebuilds of one collection apart: the second
writer merges the plain way.

Partitioned collections are not rebuilt this way: their writes merge the plain
way (`Writer`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Literal, TypeVar

from .._errors import ConfigError, translating
from .._identifiers import qualified
from .._schema import ddl as _ddl
from .._schema.spec import CollectionSpec
from .._typing import AnyConnection, Connections
from . import indexing as _indexing

__all__ = [
    "REBUILD_MIN_ROWS",
    "REBUILD_SHARE",
    "RebuildChoice",
    "check_choice",
    "expected",
    "needs_repair",
    "rebuild_around",
    "repair",
    "repair_on_open",
    "shielded",
    "should_rebuild",
]

logger = logging.getLogger("vecdb.index")

RebuildChoice = bool | Literal["auto"]
# With rebuild_index="auto", an upsert whose staged rows are at least this share
# of the collection's rows takes the rebuild path. Measured here (384-d, m=16,
# ef_construction=64, 2 busy CPUs; docs/performance.md): the plain merge and
# the rebuild break even between 10% and 25% of 20k rows, and at about 10% of
# 50k rows (the merge's cost per row grows with the graph, a build's is about
# fixed per row). 20% is on the safe side of both: never much slower than the
# plain merge, already 2x faster at 25% of 50k rows.
REBUILD_SHARE = 0.2
# ...and at least this many rows: below it the build's fixed costs dominate.
REBUILD_MIN_ROWS = 2_000

_T = TypeVar("_T")

_VALID_HNSW = """
SELECT c.relname AS name, i.indisvalid AS valid, pg_get_indexdef(i.indexrelid) AS definition
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_am a ON a.oid = c.relam
WHERE i.indrelid = to_regclass($1) AND a.amname = 'hnsw'
ORDER BY c.relname
"""


def check_choice(value: object) -> RebuildChoice:
    """``rebuild_index=`` as given, or a `ConfigError` listing the valid values."""
    if value is True or value is False or value == "auto":
        return value
    raise ConfigError(
        f"rebuild_index must be False (the default), True or 'auto', got {value!r}",
        setting="rebuild_index",
    )


def should_rebuild(choice: RebuildChoice, staged: int, rows: float) -> bool:
    """Whether ``staged`` rows into a collection of about ``rows`` take the rebuild path."""
    if choice is True:
        return True
    if choice is False:
        return False
    return staged >= REBUILD_MIN_ROWS and staged >= REBUILD_SHARE * rows


async def _try_lock(conn: AnyConnection, spec: CollectionSpec) -> bool:
    return await _indexing.try_build_lock(conn, _indexing.rebuild_lock_key(spec))


async def _unlock(conn: AnyConnection, spec: CollectionSpec) -> None:
    await _indexing.release_build_lock(conn, _indexing.rebuild_lock_key(spec))


def expected(spec: CollectionSpec) -> list[str]:
    """The HNSW index names the collection's spec gives its vector fields."""
    if spec.index is None or spec.partitioning is not None:
        return []
    return [_ddl.hnsw_name(spec, v) for v in spec.layout.vectors]


async def _present(conn: AnyConnection, spec: CollectionSpec) -> list[tuple[str, bool, str]]:
    rows = await conn.fetch(_VALID_HNSW, qualified(spec.schema, spec.table))
    return [(row["name"], row["valid"], row["definition"]) for row in rows]


def needs_repair(spec: CollectionSpec, valid_names: set[str]) -> bool:
    """Whether the table has fewer valid HNSW indexes (``valid_names``) than its spec names.

    Counted, not matched by name: an adopted table's index keeps the name it had.
    """
    return len(valid_names) < len(expected(spec))


async def shielded(make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run ``make()`` to the end even when the caller is cancelled; then re-raise that."""
    task = asyncio.ensure_future(make())
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


async def _build(
    conn: AnyConnection,
    spec: CollectionSpec,
    definitions: list[tuple[str, str]],
    *,
    timeout: float | None,
) -> None:
    """``CREATE INDEX CONCURRENTLY`` each of ``definitions`` (an INVALID leftover dropped first)."""
    assert spec.index is not None  # noqa: S101 - only indexed collections get here
    await _indexing.session_settings(
        conn, spec, index=spec.index, maintenance_work_mem=None, parallel_workers=None,
        timeout=timeout,
    )  # fmt: skip
    limit = _indexing.statement_limit(timeout)
    for name, definition in definitions:
        valid = await conn.fetchval(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)",
            qualified(spec.schema, name),
        )
        if valid:
            continue
        if valid is False:
            logger.warning("dropping INVALID index %s.%s left by a killed build", spec.schema, name)
            await conn.execute(
                f"DROP INDEX CONCURRENTLY IF EXISTS {qualified(spec.schema, name)}", timeout=limit
            )
        started = time.perf_counter()
        # The server's own pg_get_indexdef() text, or vecdb's DDL: never user input.
        await conn.execute(definition, timeout=limit)
        logger.info(
            "built %s on %s.%s concurrently in %.1fs",
            name,
            spec.schema,
            spec.table,
            time.perf_counter() - started,
        )


def _concurrent(definition: str) -> str:
    """``pg_get_indexdef()``'s ``CREATE INDEX name ON ...`` made ``CONCURRENTLY``."""
    head = "CREATE INDEX "
    assert definition.startswith(head)  # noqa: S101 - the server's own text
    return "CREATE INDEX CONCURRENTLY " + definition[len(head) :]


async def rebuild_around(
    conn: AnyConnection,
    spec: CollectionSpec,
    merge: Callable[[], Awaitable[int]],
    *,
    rows: int,
    timeout: float | None,
) -> int | None:
    """Drop the HNSW index(es), run ``merge()``, build them again; ``None``: not possible here.

    ``None`` (nothing done) when another rebuild of the collection holds the
    lock, or its HNSW indexes are not the ones its definition names (an adopted
    table, or one being repaired): the caller merges the plain way then.

    Raises:
        Whatever ``merge()`` raises, after the index was built again.
    """
    names = expected(spec)
    if not names or not await _try_lock(conn, spec):
        return None
    try:
        present = await _present(conn, spec)
        if sorted(name for name, valid, _ in present if valid) != sorted(names) or len(
            present
        ) != len(names):
            logger.info(
                "rebuild_index: the HNSW indexes of %r are not %s; merging the plain way",
                spec.name,
                names,
            )
            return None
        definitions = [(name, _concurrent(definition)) for name, _, definition in present]
        logger.info(
            "re-upsert of %d rows into %r: dropping its HNSW index(es) %s concurrently, "
            "merging, then building them again concurrently (searches meanwhile scan exactly)",
            rows,
            spec.name,
            ", ".join(names),
        )
        limit = _indexing.statement_limit(timeout)
        try:
            for name in names:
                await conn.execute(
                    f"DROP INDEX CONCURRENTLY IF EXISTS {qualified(spec.schema, name)}",
                    timeout=limit,
                )
            return await merge()
        finally:
            # Not cut by ``timeout``: it puts back what was there, rows merged or not.
            await shielded(lambda: _build(conn, spec, definitions, timeout=None))
    finally:
        await shielded(lambda: _unlock(conn, spec))


async def repair(conn: AnyConnection, spec: CollectionSpec, *, timeout: float | None) -> bool:
    """Build the HNSW index(es) a killed rebuild left missing or INVALID; whether it did.

    Runs on ``conn``, outside a transaction. Nothing happens while another
    session's rebuild holds the collection's lock.
    """
    names = expected(spec)
    if not names:
        return False
    valid = {name for name, ok, _ in await _present(conn, spec) if ok}
    if not needs_repair(spec, valid) or not await _try_lock(conn, spec):
        return False
    try:
        # Read again under the lock: a rebuild may have finished meanwhile.
        valid = {name for name, ok, _ in await _present(conn, spec) if ok}
        if not needs_repair(spec, valid):
            return False
        missing = [
            (name, _ddl.hnsw_index(spec, v, name=name, concurrently=True))
            for name, v in zip(names, spec.layout.vectors, strict=True)
            if name not in valid
        ]
        logger.warning(
            "the HNSW index(es) %s of %r are missing or INVALID (a rebuild was "
            "interrupted); building them again concurrently",
            ", ".join(name for name, _ in missing),
            spec.name,
        )
        await shielded(lambda: _build(conn, spec, missing, timeout=timeout))
        return True
    finally:
        await shielded(lambda: _unlock(conn, spec))


async def repair_on_open(pool: Connections, spec: CollectionSpec) -> None:
    """`repair` when a collection is opened, on a connection of its own."""
    if not expected(spec):
        return
    async with pool.acquire() as conn:
        with translating():
            await repair(conn, spec, timeout=None)
