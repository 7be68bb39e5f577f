"""Converting an unpartitioned collection into a partitioned one while it stays in use.

`Collection.repartition` builds the partitioned layout beside the old table
(`vecdb._collections.shadow`: the new table, its id registry, a log of the
ids written meanwhile, a state row), copies the rows into it in batches, and
swaps the two in one short transaction. Readers and writers keep using the
old table until the swap. One run at a time per collection (a session
advisory lock); a run that dies is resumed by the next call from its state.

The phases, each resumable:

1. start: the checks (nothing is made if one fails), a scan for the
   partition keys, then one transaction creates the new table with its
   partitions, the registry, the log and, last, the capture triggers;
2. ``copy``: batches in id order, each one transaction with its marker;
3. ``index``: ``VACUUM ANALYZE``, then a FullText field's GIN index and each
   partition's HNSW index are built (`create_index`'s partitioned build): a
   build is several times faster than inserting the rows into the graph one by
   one (pgvector #559);
4. ``catchup``: replay the log; compare the two tables in one snapshot (rows
   and a checksum of ids, vectors and fields, leaving out the ids still in the
   log), discarding the copy on a mismatch; then the swap: one transaction
   under a short ``lock_timeout``, tried again (after more replay) while long
   transactions hold the table. Under ACCESS EXCLUSIVE it replays the last
   entries, drops the triggers, renames the old table away and the new one
   (and its indexes) into place, and saves the definition in the catalog; the
   old table is dropped after the commit (unlinking its files at commit would
   hold the lock about a millisecond per megabyte).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from .._errors import (
    DRIVER_ERRORS,
    ArchiveChecksumError,
    CollectionNotFoundError,
    ConfigError,
    DatabaseError,
    LockTimeoutError,
    translating,
)
from .._schema import partitioning as _partitioning
from .._schema.partitioning import Partitioning, TimePartitions, ValuePartitions
from .._schema.spec import CollectionSpec
from .._typing import AnyConnection, Connections
from . import archive_records as _records
from . import catalog as _catalog
from . import fulltext as _fulltext
from . import indexing as _indexing
from . import shadow as _shadow
from .indexing import IndexProgress
from .shadow import Shadow, State

__all__ = ["RepartitionCallback", "RepartitionProgress", "repartition"]

logger = logging.getLogger("vecdb.partitions")

# The swap (and the trigger DDL before the copy) waits this long for its lock,
# then gives up and tries again: while it waits, every new reader queues behind it.
LOCK_TIMEOUT = 0.2
LOCK_ATTEMPTS = 8
RETRY_BACKOFF = 0.1  # seconds before the second attempt; doubles, with jitter
# Catching up goes on until a replay round takes less than this (or has tried
# SETTLE_ROUNDS times): the swap's own replay is about as quick.
SETTLED = 0.05
SETTLE_ROUNDS = 50
_RUN_LOCK_CLASS = 0x76657270  # "verp": the advisory lock class of repartition runs
# A foreign key's check under REPEATABLE READ (a referenced row deleted meanwhile)
# and deadlocks with cascading deletes: the batch is simply tried again.
_TRANSIENT = ("40001", "40P01")
_TRANSIENT_ATTEMPTS = 5

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class RepartitionProgress:
    """One report of `Collection.repartition`.

    Attributes:
        phase: ``"copying"``, ``"indexing"``, ``"catching up"`` (replaying the
            writes made meanwhile), ``"verifying"``, ``"swapping"`` or ``"done"``.
        rows_done: Rows copied; tuples indexed; changes replayed; at
            ``"done"``, the rows of the converted collection.
        rows_total: What ``rows_done`` counts towards, when known (else 0).
        detail: The index build's own phase, while indexing.
        lock_held: At ``"done"``: seconds the swap held its ACCESS EXCLUSIVE lock.
    """

    phase: str
    rows_done: int = 0
    rows_total: int = 0
    detail: str = ""
    lock_held: float | None = None

    @property
    def fraction(self) -> float | None:
        """Progress of the current phase from 0 to 1, when its total is known."""
        if self.phase == "done":
            return 1.0
        return min(1.0, self.rows_done / self.rows_total) if self.rows_total else None


RepartitionCallback = Callable[[RepartitionProgress], Awaitable[None] | None]


@dataclasses.dataclass(frozen=True, slots=True)
class _Run:
    shadow: Shadow
    definition: dict[str, Any]  # the catalog's JSON when the run began
    batch_size: int
    progress: RepartitionCallback | None
    timeout: float | None

    @property
    def name(self) -> str:
        return self.shadow.spec.name


async def repartition(
    pool: Connections,
    spec: CollectionSpec,
    partitioning: Partitioning,
    *,
    batch_size: int,
    progress: RepartitionCallback | None,
    timeout: float | None,
) -> int:
    """Convert ``spec``'s table to ``partitioning``; return the rows of the converted collection.

    See `Collection.repartition` for the contract.
    """
    if not isinstance(partitioning, TimePartitions | ValuePartitions):
        raise ConfigError(
            f"repartition() takes vecdb.TimePartitions(...) or vecdb.ValuePartitions(...), "
            f"got {partitioning!r}",
            setting="partition",
        )
    async with pool.acquire() as conn:
        with translating():
            # Session settings on this connection only: the pool's reset undoes them.
            await conn.execute(
                "SELECT set_config('statement_timeout', $1, false)", _server_limit(timeout)
            )
            key = f"{spec.schema}.{spec.table}"
            await _lock_run(conn, spec.name, key)
            try:
                run, state = await _prepare(
                    conn, spec, partitioning, batch_size=batch_size, progress=progress,
                    timeout=timeout,
                )  # fmt: skip
                return await _finish(pool, conn, run, state)
            finally:
                with contextlib.suppress(*DRIVER_ERRORS):
                    await conn.execute(
                        "SELECT pg_advisory_unlock($1, hashtext($2))", _RUN_LOCK_CLASS, key
                    )


async def _lock_run(conn: AnyConnection, name: str, key: str) -> None:
    """Take the run's session lock (held by this connection until the end), or say who has it."""
    if await conn.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2))", _RUN_LOCK_CLASS, key):
        return
    holder = await conn.fetchrow(
        "SELECT a.pid, a.application_name, a.backend_start FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
        "AND l.classid = $1::oid AND l.objid = hashtext($2)::oid AND l.objsubid = 2 AND l.granted",
        _RUN_LOCK_CLASS,
        key,
    )
    who = (
        f"server process {holder['pid']} ({holder['application_name']!r}, connected "
        f"since {holder['backend_start']:%Y-%m-%d %H:%M:%S})"
        if holder is not None
        else "another session"
    )
    raise ConfigError(
        f"collection {name!r} is being repartitioned by {who}; wait for it to finish (a "
        "killed run is resumed by the next call, once its session is gone)",
        setting="partition",
    )


# -- checks and the start ---------------------------------------------------------------------


async def _prepare(
    conn: AnyConnection,
    spec: CollectionSpec,
    partitioning: Partitioning,
    *,
    batch_size: int,
    progress: RepartitionCallback | None,
    timeout: float | None,
) -> tuple[_Run, State]:
    """Check the collection (as the catalog has it now), then resume the run or start one."""
    info = await _catalog.load(conn, spec.name)
    if info is None:
        raise CollectionNotFoundError(
            f"collection {spec.name!r} no longer exists (dropped by another process?)",
            name=spec.name,
        )
    stored = _catalog.stored_spec(info)
    if stored.partitioning is not None:
        raise ConfigError(
            f"collection {spec.name!r} is already partitioned ({stored.partitioning!r}); "
            "repartition() converts an unpartitioned collection. To partition it another "
            "way, create a new collection and copy the records",
            setting="partition",
        )
    shadow = Shadow(stored, partitioning, _indexing.statement_limit(timeout))
    run = _Run(shadow, info.spec, batch_size, progress, timeout)
    await _check_field(conn, shadow)
    await _check_references(conn, shadow)
    await _check_views(conn, shadow)
    await _check_archive(conn, shadow)
    state = await _shadow.read_state(conn, shadow)
    if state is not None and not _resumable(state, run):
        logger.warning(
            "discarding the half-done repartition of %s by %r (another declaration, or the "
            "collection changed since); starting again by %r",
            spec.name,
            state.partitioning,
            partitioning,
        )
        await _discard(conn, run)
        state = None
    if state is None:
        return run, await _start(conn, run)
    logger.info(
        "resuming the repartition of %s (%s; %d of %d rows copied)",
        spec.name,
        state.phase,
        state.copied,
        state.total,
    )
    return run, state


async def _check_field(conn: AnyConnection, shadow: Shadow) -> None:
    """The field must partition the model (`_partitioning.check`) and hold no NULL."""
    partitioning = shadow.final.partitioning
    assert partitioning is not None  # noqa: S101 - the final spec is partitioned
    name, layout = partitioning.field, shadow.spec.layout
    try:
        _partitioning.check(partitioning, layout)
    except ConfigError as exc:
        field = next((f for f in layout.fields if f.name == name), None)
        by_time = isinstance(partitioning, TimePartitions)
        types = _partitioning.TIME_TYPES if by_time else _partitioning.VALUE_TYPES
        if field is None or not field.nullable or field.type not in types:
            raise
        # Optional and of the right type: say how many rows hold no value.
        nulls = await conn.fetchval(f"SELECT count(*) FROM {shadow.old} WHERE {shadow.key} IS NULL")
        raise ConfigError(
            f"{exc}. {nulls} row(s) of {shadow.spec.name!r} have no {name}. Nothing was changed",
            setting=name,
        ) from None
    # Required in the model, hence NOT NULL in the table: unless altered by hand.
    not_null = await conn.fetchval(
        "SELECT attnotnull FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2",
        shadow.old,
        name,
    )
    if not not_null:
        nulls = await conn.fetchval(f"SELECT count(*) FROM {shadow.old} WHERE {shadow.key} IS NULL")
        if nulls:
            raise ConfigError(
                f"{nulls} row(s) of {shadow.spec.name!r} have no {name} (the column's NOT NULL "
                "constraint was dropped): no partition could hold them. Give them a value, or "
                "delete them, then call repartition() again. Nothing was changed",
                setting=name,
            )


async def _check_references(conn: AnyConnection, shadow: Shadow) -> None:
    """Refuse foreign keys to the table: the swap drops the table they reference."""
    rows = await conn.fetch(
        "SELECT n.nspname AS schema, c.relname AS name, c.oid = $1::regclass AS itself "
        "FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE k.contype = 'f' AND k.confrelid = $1::regclass ORDER BY 1, 2",
        shadow.old,
    )
    if not rows:
        return
    name = shadow.spec.name
    if any(row["itself"] for row in rows):
        raise ConfigError(
            f"collection {name!r} has a foreign key to itself, which repartition() cannot keep "
            "valid while it copies (a row may reference one not copied yet). Nothing was "
            "changed: create a partitioned collection and copy the records instead",
            setting="foreign_keys",
        )
    collections = {(i.schema, i.table): i.name for i in await _catalog.list_all(conn)}
    who = sorted(
        {
            f"collection {collections[(row['schema'], row['name'])]!r}"
            if (row["schema"], row["name"]) in collections
            else f"table {row['schema']}.{row['name']}"
            for row in rows
        }
    )
    raise ConfigError(
        f"cannot repartition {name!r}: {', '.join(who)} reference(s) it by foreign key, and "
        "the swap replaces the table it references. Nothing was changed: drop those foreign "
        "keys (or collections) first, or repartition before declaring them",
        setting="foreign_keys",
    )


async def _check_views(conn: AnyConnection, shadow: Shadow) -> None:
    """Refuse views on the table: they would keep reading the old one (they bind by oid)."""
    views = await conn.fetch(
        "SELECT DISTINCT v.oid::regclass::text AS name FROM pg_depend d "
        "JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class "
        "WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = $1::regclass "
        "AND v.oid <> $1::regclass ORDER BY 1",
        shadow.old,
    )
    if views:
        raise ConfigError(
            f"cannot repartition {shadow.spec.name!r}: views depend on its table "
            f"({', '.join(v['name'] for v in views)}) and would go on reading the old one. "
            "Nothing was changed: drop them, repartition, then create them again",
            setting="partition",
        )


async def _check_archive(conn: AnyConnection, shadow: Shadow) -> None:
    archived = await _records.archived_tables(conn, shadow.spec)
    if archived:
        raise ConfigError(
            f"collection {shadow.spec.name!r} has archived rows ({', '.join(archived)}): "
            "restore() them before repartition() (then archive by partition). Nothing was "
            "changed",
            setting="partition",
        )


def _layout(partitioning: Partitioning | None) -> tuple[str, str, str | None] | None:
    """What the table depends on: ``premake`` only says how far ahead partitions are made."""
    if partitioning is None:
        return None
    interval = partitioning.interval if isinstance(partitioning, TimePartitions) else None
    return type(partitioning).__name__, partitioning.field, interval


def _resumable(state: State, run: _Run) -> bool:
    return (
        _layout(state.partitioning) == _layout(run.shadow.final.partitioning)
        and state.definition == run.definition
    )


async def _start(conn: AnyConnection, run: _Run) -> State:
    """Make the new table, its partitions, the registry, the log and the triggers at once."""
    shadow = run.shadow
    in_the_way = [
        table
        for table in (shadow.new_table, shadow.registry, shadow.changes)
        if await conn.fetchval("SELECT to_regclass($1)", table) is not None
    ]
    if in_the_way:
        raise ConfigError(
            f"tables {in_the_way} exist, but no repartition of {run.name!r} is under way "
            "(made by hand?). Names starting with '_vecdb' are reserved for vecdb: drop or "
            "rename them, then call repartition() again. Nothing was changed",
            setting="partition",
        )
    # The keys (and the rows) before taking any lock: the longest read of the start.
    rows = await conn.fetch(
        f"SELECT {shadow.key_sql(1)} AS key, count(*) AS n FROM {shadow.old} GROUP BY 1",
        *shadow.key_args(),
        timeout=shadow.limit,
    )
    keys = [row["key"] for row in rows]
    total = sum(int(row["n"]) for row in rows)
    partitioning = shadow.final.partitioning
    if isinstance(partitioning, TimePartitions):
        ahead = _partitioning.ahead(
            dt.datetime.now(dt.UTC), partitioning.interval, partitioning.premake
        )
        keys += [lower for lower, _ in ahead]  # as db.collection() makes them
    references = await _catalog._references(conn, shadow.final)  # the targets, as at creation

    async def attempt() -> None:
        async with conn.transaction():
            await _set_lock_timeout(conn)
            await _shadow.create(conn, shadow, references, definition=run.definition, total=total)
            await _shadow.make_partitions(conn, shadow, keys)
            # Last: its lock on the old table (SHARE ROW EXCLUSIVE, which waits for
            # the writers in flight and holds new ones back) then lasts until commit only.
            await _shadow.create_triggers(conn, shadow)

    await _retrying(f"starting the repartition of {run.name!r}", attempt)
    logger.info(
        "repartitioning %s by %r: %d rows to copy into %d partition(s)",
        run.name,
        partitioning,
        total,
        len(set(keys)),
    )
    return State(partitioning, run.definition, "copy", None, 0, total)


# -- copy, index, catch up, verify, swap ------------------------------------------------------


async def _finish(pool: Connections, conn: AnyConnection, run: _Run, state: State) -> int:
    if state.phase == "copy":
        await _copy(conn, run, state)
    if state.phase in ("copy", "index"):
        await _index(pool, conn, run)
    await _catch_up(conn, run)
    await _verify(conn, run)
    rows, held = await _swap(conn, run)
    await _drop_retired(conn, run)
    logger.info(
        "repartitioned %s by %r: %d rows; the swap held its exclusive lock for %.1f ms",
        run.name,
        run.shadow.final.partitioning,
        rows,
        held * 1000,
    )
    await _emit(run, RepartitionProgress("done", rows, rows, lock_held=held))
    return rows


async def _copy(conn: AnyConnection, run: _Run, state: State) -> None:
    last, copied = state.last_id, state.copied
    while True:
        last, n = await _transient(_shadow.copy_batch, conn, run.shadow, last, run.batch_size)
        if not n:
            break
        copied += n
        await _emit(run, RepartitionProgress("copying", copied, max(state.total, copied)))
    await _shadow.set_phase(conn, run.shadow, "index")


async def _index(pool: Connections, conn: AnyConnection, run: _Run) -> None:
    """Statistics, visibility map and hint bits first, then the HNSW indexes."""
    shadow = run.shadow
    await _emit(run, RepartitionProgress("indexing"))
    for table in (shadow.new_table, shadow.registry):
        await conn.execute(f"VACUUM (ANALYZE) {table}", timeout=shadow.limit)
    # The GIN index of a FullText field, built once over the copied rows (on every
    # partition: nobody else uses the new table) rather than row by row.
    await _fulltext.make_indexes(conn, shadow.new, timeout=shadow.limit)
    if shadow.final.index is not None:

        async def report(p: IndexProgress) -> None:
            await _emit(
                run, RepartitionProgress("indexing", p.tuples_done, p.tuples_total, p.phase)
            )

        await _indexing.build_hnsw(
            pool,
            shadow.new,
            concurrently=False,  # nobody else uses the new table
            progress=report if run.progress is not None else None,
            maintenance_work_mem=None,
            parallel_workers=None,
            timeout=run.timeout,
        )
    await _shadow.set_phase(conn, shadow, "catchup")


async def _replay_batch(conn: AnyConnection, run: _Run) -> int:
    async with conn.transaction(isolation="repeatable_read"):
        return await _shadow.replay(conn, run.shadow, run.batch_size)


async def _catch_up(conn: AnyConnection, run: _Run) -> None:
    """Replay until a round is quick: the swap, under its lock, then has about as little to do.

    Full rounds always go on (a backlog). Under steady writes each round is
    shorter than the one before, as long as the replay outpaces the writers;
    if it does not settle within `SETTLE_ROUNDS` short rounds, go on anyway.
    """
    replayed = unsettled = 0
    while True:
        started = time.perf_counter()
        n = await _transient(_replay_batch, conn, run)
        replayed += n
        if n:
            await _emit(run, RepartitionProgress("catching up", replayed))
        if n < run.batch_size:
            if time.perf_counter() - started < SETTLED or unsettled >= SETTLE_ROUNDS:
                return
            unsettled += 1


async def _verify(conn: AnyConnection, run: _Run) -> None:
    """Compare both tables in one snapshot; on a mismatch, discard the copy and raise.

    Raises:
        ArchiveChecksumError: The copy differs (``before``: the collection's
            checksum, ``after``: the copy's); it was discarded.
    """
    shadow = run.shadow
    await _emit(run, RepartitionProgress("verifying"))
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        before = await _shadow.checksum(conn, shadow, shadow.old)
        after = await _shadow.checksum(conn, shadow, shadow.new_table)
        matched, entries = await _shadow.registered(conn, shadow)
    rows = int(before.split(":", 1)[0])
    if before == after and matched == entries == rows:
        logger.info("verified the copy of %s: checksum %s", run.name, before)
        return
    await _discard(conn, run)
    raise ArchiveChecksumError(
        f"the repartitioned copy of {run.name!r} differs from the collection (checksum "
        f"{before} in the collection, {after} in the copy; the registry names {matched} of "
        f"{rows} rows, and holds {entries}). The copy was discarded and the collection is as "
        "it was. Were vecdb's _vecdb_* tables written by hand? Call repartition() again to "
        "start over",
        table=f"{shadow.spec.schema}.{shadow.spec.table}",
        before=before,
        after=after,
    )


async def _swap(conn: AnyConnection, run: _Run) -> tuple[int, float]:
    """The swap, tried again after lock timeouts; return (rows, seconds the lock was held)."""
    shadow = run.shadow
    held: list[float] = []

    async def attempt() -> None:
        await _catch_up(conn, run)  # what was written during the verification, or the wait
        await _emit(run, RepartitionProgress("swapping"))
        async with conn.transaction():
            await _set_lock_timeout(conn)
            # Serialises with opening, evolving and dropping the collection.
            await _catalog._lock(conn, run.name)  # the catalog's own lock
            await conn.execute(f"LOCK TABLE {shadow.old} IN ACCESS EXCLUSIVE MODE")
            locked = time.perf_counter()
            await _swap_locked(conn, run)
        held.append(time.perf_counter() - locked)

    await _retrying(f"swapping in the repartitioned {run.name!r}", attempt)
    # Counted after the commit: a count of a million registry entries would hold
    # the lock for 150 ms.
    rows = await conn.fetchval(f"SELECT count(*) FROM {shadow.registry}", timeout=shadow.limit)
    return int(rows), held[-1]


async def _swap_locked(conn: AnyConnection, run: _Run) -> None:
    """Under ACCESS EXCLUSIVE: the last changes, the triggers off, the renames, the catalog."""
    shadow = run.shadow
    info = await _catalog.load(conn, run.name)
    if info is None or info.spec != run.definition:
        raise ConfigError(
            f"collection {run.name!r} was changed (or dropped) during its repartition; the "
            "copy was kept, and the next call starts over from the new definition",
            setting="partition",
        )
    await _check_references(conn, shadow)
    await _check_views(conn, shadow)
    await _check_archive(conn, shadow)
    while await _shadow.replay(conn, shadow, max(run.batch_size, 10_000)):
        pass
    await _shadow.drop(conn, shadow, new_too=False)
    # Renamed away, not dropped: unlinking its files at commit takes about a
    # millisecond per megabyte here, all of it under this lock.
    await _shadow.retire(conn, shadow)
    await _catalog.save_spec(conn, shadow.final)


async def _drop_retired(conn: AnyConnection, run: _Run) -> None:
    """Drop the old table, now unused; on failure say so (the conversion is done)."""
    retired = run.shadow.retired

    async def attempt() -> None:
        async with conn.transaction():
            await _set_lock_timeout(conn)
            await conn.execute(f"DROP TABLE IF EXISTS {retired}")

    try:
        await _retrying(f"dropping the old table of {run.name!r}", attempt)
    except DatabaseError as exc:
        logger.warning(
            "repartitioned %s, but its old table %s could not be dropped (%s): it is no "
            "longer used; drop it by hand",
            run.name,
            retired,
            exc,
        )


async def _discard(conn: AnyConnection, run: _Run) -> None:
    """Drop everything a run made: the collection's table is as before, less the triggers."""

    async def attempt() -> None:
        async with conn.transaction():
            await _set_lock_timeout(conn)
            await _shadow.drop(conn, run.shadow, new_too=True)

    await _retrying(f"discarding the repartition of {run.name!r}", attempt)
    logger.info("discarded the half-done repartition of %s", run.name)


# -- helpers ----------------------------------------------------------------------------------


async def _set_lock_timeout(conn: AnyConnection) -> None:
    await conn.execute(
        "SELECT set_config('lock_timeout', $1, true)", f"{int(LOCK_TIMEOUT * 1000)}ms"
    )


async def _retrying(what: str, attempt: Callable[[], Awaitable[None]]) -> None:
    """Run ``attempt`` (one transaction under `LOCK_TIMEOUT`), again after each lock timeout.

    Raises:
        LockTimeoutError: Still no lock after `LOCK_ATTEMPTS` attempts.
    """
    for number in range(1, LOCK_ATTEMPTS + 1):
        try:
            with translating():
                await attempt()
        except LockTimeoutError as exc:
            if number == LOCK_ATTEMPTS:
                raise LockTimeoutError(
                    f"{what}: no lock within {LOCK_TIMEOUT}s, {number} times: long "
                    "transactions hold the table (pg_stat_activity shows them). Nothing was "
                    "lost and the copy is kept: call repartition() again once they end",
                    sqlstate=exc.sqlstate,
                    detail=exc.detail,
                ) from exc
            delay = RETRY_BACKOFF * 2 ** (number - 1) * random.uniform(0.5, 1.5)  # noqa: S311 - jitter
            logger.warning(
                "%s: lock timeout (attempt %d of %d); again in %.2fs",
                what,
                number,
                LOCK_ATTEMPTS,
                delay,
            )
            await anyio.sleep(delay)
        else:
            return


async def _transient(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``fn(*args)``, tried again after a serialization failure or a deadlock."""
    for number in range(1, _TRANSIENT_ATTEMPTS):
        try:
            with translating():
                return await fn(*args)
        except DatabaseError as exc:
            if exc.sqlstate not in _TRANSIENT:
                raise
            logger.debug("repartition: %s (attempt %d); trying again", exc.sqlstate, number)
    with translating():
        return await fn(*args)


async def _emit(run: _Run, progress: RepartitionProgress) -> None:
    if run.progress is None:
        return
    result = run.progress(progress)
    if inspect.isawaitable(result):
        await result


def _server_limit(timeout: float | None) -> str:
    """``statement_timeout`` for the run's connection: the caller's timeout, else none."""
    return "0" if timeout is None else f"{max(1, int(timeout * 1000))}ms"
