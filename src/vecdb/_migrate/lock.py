"""The migration lock: a session advisory lock on a dedicated connection.

It must not live on a pooled connection: asyncpg's pool runs
``pg_advisory_unlock_all()`` when a connection is released, which would drop
the lock silently. It is taken by polling ``pg_try_advisory_lock`` with jitter
rather than by a blocking ``pg_advisory_lock``, so that waiting has a deadline,
is cancellable, and can name the holder when it gives up.

A session lock is released by the server when the session ends, so a process
killed while migrating never leaves the lock behind.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import anyio

from .._errors import MigrationLockTimeout
from .._typing import Connection

__all__ = ["LOCK_KEY", "acquire", "holder", "release"]

logger = logging.getLogger("vecdb.migrations")

# Two int4 keys: ("vecd" as an int, 1). Advisory locks are per database, so
# databases on one server never contend.
LOCK_KEY = (0x76656364, 1)


async def holder(conn: Connection) -> dict[str, Any] | None:
    """Who holds the migration lock in this database, from ``pg_locks`` and ``pg_stat_activity``."""
    row = await conn.fetchrow(
        """
        SELECT a.pid, a.application_name, a.client_addr::text AS client_addr,
               a.backend_start, a.xact_start, a.state, a.state_change, a.query
        FROM pg_locks l
        JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted
          AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 2
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        """,
        LOCK_KEY[0],
        LOCK_KEY[1],
    )
    return None if row is None else dict(row)


async def acquire(conn: Connection, *, wait: float) -> None:
    """Take the lock, polling with jitter for at most ``wait`` seconds.

    Raises:
        MigrationLockTimeout: Still held by another session after ``wait``
            seconds; the error names the holder.
    """
    deadline = time.monotonic() + wait
    delay = 0.02
    waited = False
    while True:
        if await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", *LOCK_KEY):
            if waited:
                logger.info("migration lock acquired after waiting")
            return
        if not waited:
            logger.info("waiting for the migration lock held by another session")
            waited = True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        # Jitter keeps many processes starting together from polling in lock-step.
        await anyio.sleep(min(remaining, delay * random.uniform(0.5, 1.5)))  # noqa: S311
        delay = min(delay * 1.5, 0.5)
    info = await holder(conn)
    if info is None:
        who = "a session that has just released it"
    else:
        who = (
            f"pid {info['pid']} (application {info['application_name']!r}, "
            f"client {info['client_addr'] or 'local socket'}, connected since "
            f"{info['backend_start']:%Y-%m-%d %H:%M:%S%z}, state {info['state']})"
        )
    raise MigrationLockTimeout(
        f"could not take the migration lock within {wait:g}s: it is held by {who}. "
        "Wait for that migration to finish, or end that session "
        "(SELECT pg_terminate_backend(pid)) if it is stuck; raise "
        "MigrationConfig.lock_wait (VECDB_MIGRATION_LOCK_WAIT) to wait longer.",
        holder=info,
    )


async def release(conn: Connection) -> None:
    """Release the lock (closing the connection would release it too)."""
    await conn.fetchval("SELECT pg_advisory_unlock($1, $2)", *LOCK_KEY)
