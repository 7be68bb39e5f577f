"""The migration state table and the append-only event log.

``vecdb.migration_state`` holds one row per applied (or half-applied,
non-transactional) migration: what is true now. ``vecdb.migration_events``
holds every event that ever happened — applied, rolled back, failed,
baselined, repaired — and a trigger refuses UPDATE, DELETE and TRUNCATE on it,
so the history is never rewritten, not even by vecdb.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from dataclasses import dataclass
from typing import Any, Literal

from .._errors import INVALID_SCHEMA_NAME, UNDEFINED_TABLE, DatabaseError, translating
from .._typing import Connection

__all__ = [
    "AppliedRow",
    "EventKind",
    "HistoryEvent",
    "bootstrap",
    "read_events",
    "read_state",
    "record_event",
    "tables_exist",
]

EventKind = Literal["applied", "rolled_back", "failed", "baselined", "repaired"]

_BOOTSTRAP = (
    "CREATE SCHEMA IF NOT EXISTS vecdb",
    """
    CREATE TABLE IF NOT EXISTS vecdb.migration_state (
        source      text NOT NULL,
        version     integer NOT NULL CHECK (version >= 1),
        description text NOT NULL,
        checksum    text NOT NULL,
        status      text NOT NULL CHECK (status IN ('applied', 'running')),
        applied_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (source, version)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS vecdb.migration_events (
        id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        source          text NOT NULL,
        version         integer NOT NULL,
        description     text NOT NULL,
        checksum        text NOT NULL,
        event           text NOT NULL
                        CHECK (event IN ('applied', 'rolled_back', 'failed',
                                         'baselined', 'repaired')),
        started_at      timestamptz NOT NULL,
        finished_at     timestamptz NOT NULL,
        duration_ms     double precision NOT NULL,
        backend_pid     integer NOT NULL DEFAULT pg_backend_pid(),
        client_pid      integer,
        host            text,
        library_version text,
        error           text,
        detail          jsonb
    )
    """,
    """
    CREATE OR REPLACE FUNCTION vecdb.refuse_history_rewrite() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'vecdb.migration_events is append-only: the history is never rewritten';
    END
    $$
    """,
    """
    CREATE OR REPLACE TRIGGER migration_events_append_only
    BEFORE UPDATE OR DELETE ON vecdb.migration_events
    FOR EACH STATEMENT EXECUTE FUNCTION vecdb.refuse_history_rewrite()
    """,
    """
    CREATE OR REPLACE TRIGGER migration_events_no_truncate
    BEFORE TRUNCATE ON vecdb.migration_events
    FOR EACH STATEMENT EXECUTE FUNCTION vecdb.refuse_history_rewrite()
    """,
)


@dataclass(frozen=True, slots=True)
class AppliedRow:
    """A row of ``vecdb.migration_state``."""

    source: str
    version: int
    description: str
    checksum: str
    status: Literal["applied", "running"]
    applied_at: dt.datetime


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One event of the migration history, as returned by ``db.migrations.history()``.

    Attributes:
        id: Position in the log (increasing).
        source: The migration source.
        version: The migration version.
        description: The migration's description at the time.
        checksum: The code's checksum at the time.
        event: ``applied``, ``rolled_back``, ``failed``, ``baselined`` or ``repaired``.
        started_at: When the step started.
        finished_at: When it ended.
        duration_ms: How long it took.
        backend_pid: The server process that ran it.
        client_pid: The client process that ran it.
        host: The client's host name.
        library_version: The vecdb version that ran it.
        error: The error, for ``failed`` events.
        detail: Extra data (e.g. old and new checksum for ``repaired``).
    """

    id: int
    source: str
    version: int
    description: str
    checksum: str
    event: EventKind
    started_at: dt.datetime
    finished_at: dt.datetime
    duration_ms: float
    backend_pid: int
    client_pid: int | None
    host: str | None
    library_version: str | None
    error: str | None
    detail: dict[str, Any] | None


async def tables_exist(conn: Connection) -> bool:
    """Whether the history tables have been created in this database."""
    found = await conn.fetchval(
        "SELECT to_regclass('vecdb.migration_state') IS NOT NULL "
        "AND to_regclass('vecdb.migration_events') IS NOT NULL"
    )
    return bool(found)


async def bootstrap(conn: Connection) -> None:
    """Create the history tables if missing (called under the migration lock)."""
    async with conn.transaction():
        for statement in _BOOTSTRAP:
            await conn.execute(statement)


async def read_state(conn: Connection) -> dict[tuple[str, int], AppliedRow]:
    """Every row of the state table, keyed by ``(source, version)``."""
    try:
        with translating():
            rows = await conn.fetch(
                "SELECT source, version, description, checksum, status, applied_at "
                "FROM vecdb.migration_state ORDER BY source, version"
            )
    except DatabaseError as exc:
        if exc.sqlstate not in (UNDEFINED_TABLE, INVALID_SCHEMA_NAME):
            raise
        # A new database: asking first would cost every connect() a round trip.
        return {}
    return {(r["source"], r["version"]): AppliedRow(**dict(r)) for r in rows}


async def read_events(conn: Connection) -> list[HistoryEvent]:
    """The whole event log, oldest first."""
    if not await tables_exist(conn):
        return []
    rows = await conn.fetch("SELECT * FROM vecdb.migration_events ORDER BY id")
    events = []
    for row in rows:
        values = dict(row)
        if values["detail"] is not None:
            values["detail"] = json.loads(values["detail"])
        events.append(HistoryEvent(**values))
    return events


async def record_event(
    conn: Connection,
    *,
    source: str,
    version: int,
    description: str,
    checksum: str,
    event: EventKind,
    started_at: dt.datetime,
    library_version: str,
    error: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one event; ``finished_at`` and the duration are taken now."""
    finished_at = dt.datetime.now(dt.UTC)
    await conn.execute(
        """
        INSERT INTO vecdb.migration_events (
            source, version, description, checksum, event, started_at, finished_at,
            duration_ms, client_pid, host, library_version, error, detail
        ) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb)
        """,
        source,
        version,
        description,
        checksum,
        event,
        started_at,
        finished_at,
        (finished_at - started_at).total_seconds() * 1000.0,
        os.getpid(),
        socket.gethostname(),
        library_version,
        error,
        None if detail is None else json.dumps(detail),
    )
