"""Running one migration step: in or outside a transaction, with lock-timeout retries.

A step is one migration's ``up()`` or ``down()`` plus its bookkeeping: the
state row and the history event commit with a transactional migration's
changes, or not at all. A failure is recorded in its own transaction and
re-raised as `MigrationError`.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from typing import Any, Literal

import anyio

from .._config import MigrationConfig
from .._errors import DRIVER_ERRORS, LockTimeoutError, MigrationError, translate
from .._typing import Connection
from .._version import __version__
from . import state as _history
from .sources import MigrationSpec
from .state import AppliedRow, EventKind

__all__ = ["INVALID_INDEXES", "Direction", "mark_applied", "record", "run", "set_state"]

logger = logging.getLogger("vecdb.migrations")

Direction = Literal["up", "down"]

_UPSERT_STATE = """
    INSERT INTO vecdb.migration_state (source, version, description, checksum, status)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (source, version) DO UPDATE
    SET description = excluded.description, checksum = excluded.checksum,
        status = excluded.status, applied_at = clock_timestamp()
"""

INVALID_INDEXES = """
    SELECT format('%I.%I', n.nspname, c.relname)
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE NOT i.indisvalid
    ORDER BY 1
"""


async def run(
    conn: Connection,
    spec: MigrationSpec,
    direction: Direction,
    config: MigrationConfig,
    row: AppliedRow | None,
) -> None:
    """Run ``spec``'s ``up()`` or ``down()`` with its bookkeeping, retrying lock timeouts.

    Raises:
        MigrationError: The step failed (after its retries, for lock timeouts).
    """
    verb = "Running" if direction == "up" else "Rolling back"
    if direction == "up" and row is not None and row.status == "running":
        logger.warning(
            "%s %d (%s) did not finish last time; running it again (it must be idempotent)",
            spec.source,
            spec.version,
            spec.description,
        )
    attempt = 0
    while True:
        started = dt.datetime.now(dt.UTC)
        logger.info("%s %s %d (%s)", verb, spec.source, spec.version, spec.description)
        try:
            if spec.transactional:
                await _in_transaction(conn, spec, direction, started, config)
            else:
                await _outside_transaction(conn, spec, direction, started, config)
        except Exception as exc:  # noqa: BLE001 - any failure of user code is recorded, then re-raised typed
            if isinstance(translate(exc), LockTimeoutError) and attempt < config.ddl_retries:
                attempt += 1
                delay = config.retry_backoff * 2 ** (attempt - 1)
                delay *= random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not security
                logger.warning(
                    "%s %d hit lock_timeout (%s); retry %d/%d in %.2fs",
                    spec.source,
                    spec.version,
                    exc,
                    attempt,
                    config.ddl_retries,
                    delay,
                )
                await anyio.sleep(delay)
                continue
            await _fail(conn, spec, direction, started, exc)
        else:
            elapsed = (dt.datetime.now(dt.UTC) - started).total_seconds() * 1000
            logger.info("Done %s %d in %.1f ms", spec.source, spec.version, elapsed)
            return


async def set_state(conn: Connection, spec: MigrationSpec, status: str) -> None:
    """Write ``spec``'s row of the state table (``applied`` or ``running``)."""
    await conn.execute(
        _UPSERT_STATE, spec.source, spec.version, spec.description, spec.checksum, status
    )


async def record(
    conn: Connection,
    spec: MigrationSpec,
    event: EventKind,
    started: dt.datetime,
    *,
    error: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append ``event`` for ``spec`` to the history."""
    await _history.record_event(
        conn,
        source=spec.source,
        version=spec.version,
        description=spec.description,
        checksum=spec.checksum,
        event=event,
        started_at=started,
        library_version=__version__,
        error=error,
        detail=detail,
    )


async def mark_applied(
    conn: Connection,
    spec: MigrationSpec,
    event: EventKind,
    started: dt.datetime,
    *,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record ``spec`` as applied, with ``event``, in the caller's transaction."""
    await set_state(conn, spec, "applied")
    await record(conn, spec, event, started, detail=detail)


async def _finish(
    conn: Connection, spec: MigrationSpec, direction: Direction, started: dt.datetime
) -> None:
    if direction == "up":
        await mark_applied(conn, spec, "applied", started)
        return
    await conn.execute(
        "DELETE FROM vecdb.migration_state WHERE source = $1 AND version = $2",
        spec.source,
        spec.version,
    )
    await record(conn, spec, "rolled_back", started)


async def _in_transaction(
    conn: Connection,
    spec: MigrationSpec,
    direction: Direction,
    started: dt.datetime,
    config: MigrationConfig,
) -> None:
    instance = spec.cls()
    async with conn.transaction():
        await conn.execute("SELECT set_config('lock_timeout', $1, true)", _lock_timeout(config))
        await (instance.up(conn) if direction == "up" else instance.down(conn))
        await _finish(conn, spec, direction, started)


async def _outside_transaction(
    conn: Connection,
    spec: MigrationSpec,
    direction: Direction,
    started: dt.datetime,
    config: MigrationConfig,
) -> None:
    instance = spec.cls()
    if direction == "up":
        # Recorded as running first: if we die half-way, the next start sees it
        # unfinished and runs it again (which is why it must be idempotent).
        await set_state(conn, spec, "running")
    await conn.execute("SELECT set_config('lock_timeout', $1, false)", _lock_timeout(config))
    try:
        await (instance.up(conn) if direction == "up" else instance.down(conn))
    finally:
        if not conn.is_closed() and not conn.is_in_transaction():
            await conn.execute("RESET lock_timeout")
    async with conn.transaction():
        await _finish(conn, spec, direction, started)


def _lock_timeout(config: MigrationConfig) -> str:
    """``lock_timeout`` as PostgreSQL reads it."""
    return f"{int(config.ddl_lock_timeout * 1000)}ms"


async def _fail(
    conn: Connection,
    spec: MigrationSpec,
    direction: Direction,
    started: dt.datetime,
    exc: Exception,
) -> None:
    translated = translate(exc)
    server_message = str(translated if translated is not None else exc)
    invalid: list[str] = []
    try:
        if conn.is_in_transaction():  # user code swallowed an error inside its own block
            await conn.execute("ROLLBACK")
        if not spec.transactional:
            invalid = [r[0] for r in await conn.fetch(INVALID_INDEXES)]
        async with conn.transaction():
            await record(
                conn,
                spec,
                "failed",
                started,
                error=f"{type(exc).__name__}: {server_message}",
                detail={"direction": direction, "invalid_indexes": invalid},
            )
    except DRIVER_ERRORS:
        logger.exception("could not record the failure of %s %d", spec.source, spec.version)
    action = "applied" if direction == "up" else "rolled back"
    if spec.transactional:
        consequence = "It was rolled back: the schema is exactly as it was before it."
    else:
        consequence = (
            "It ran outside a transaction, so statements before the failure stay in effect; "
            "it runs again on the next upgrade."
        )
        if invalid:
            consequence += (
                f" INVALID indexes left behind (a failed CREATE INDEX CONCURRENTLY): "
                f"{', '.join(invalid)}; drop them (DROP INDEX CONCURRENTLY) before retrying."
            )
    # INFO, not ERROR: the MigrationError raised below carries the same text, and
    # an application without logging set up would otherwise print it twice.
    logger.info("%s %d failed: %s", spec.source, spec.version, server_message)
    raise MigrationError(
        f"migration {spec.source} {spec.version} ({spec.description}) could not be {action}: "
        f"{server_message}\n{consequence} Later migrations were not run. Fix the migration "
        "and start again.",
        source=spec.source,
        version=spec.version,
        server_message=server_message,
    ) from exc
