"""``vecdb doctor``: read-only checks that a server and its collections suit vector search.

`diagnose` runs every check in `CHECKS` against a connected `Database` and
returns one `Check` per name, always in that order, so that a script can rely
on ``checks[i].name``. Each check is one small function that reads catalogs
and statistics views with bound values; identifiers only reach SQL quoted.

Nothing here changes anything: each check runs in its own read-only
transaction with short ``statement_timeout`` and ``lock_timeout`` (so a doctor
never queues behind a long DDL and blocks readers), the probe search is only
``EXPLAIN``-ed, never executed, and migrations are only read. A check that
cannot run — a missing privilege or extension, no catalog — reports ``warn``
with the reason instead of raising: one gap never hides the other checks.

Statuses:

- ``ok``: nothing to do.
- ``warn``: worth fixing (slower searches, stale statistics), or something the
  doctor could not check; ``vecdb doctor --strict`` exits 3 on it.
- ``fail``: broken, or bound to break (an INVALID index, drifted migrations,
  a collection whose declared index no search can use); exit 1.
- ``skip``: does not apply here, and the evidence says why (the standby's lag on
  a primary, the ``/dev/shm`` of a server on another machine).

Where the machine matters (``shared_buffers`` against memory, ``/dev/shm``), the
machine is the server's only for the embedded server, or when the caller says
what it is (`MachineFacts`, ``vecdb doctor --memory 16GB --cores 8``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..._errors import DatabaseError, VecdbError
from ..._typing import PoolConnection
from ..database import Database
from ..tuning import MachineFacts, budget_facts
from .context import (
    _GRANT_MONITOR,
    LARGE_TABLE,
    Check,
    Status,
    _Context,
    _context,
    _limits,
    _Result,
)
from .index_checks import (
    _filter_indexes,
    _hnsw_cache,
    _hnsw_index,
    _invalid_indexes,
    _maintenance_work_mem,
    _probe_search,
    _unused_indexes,
)
from .server_checks import (
    _dev_shm,
    _migrations,
    _pg_stat_statements,
    _pgvector,
    _replication,
    _settings,
    replication_lag,
)
from .table_checks import _statistics, _vacuum

__all__ = ["CHECKS", "LARGE_TABLE", "Check", "Status", "diagnose", "replication_lag"]


_CheckFunction = Callable[[_Context, PoolConnection], Awaitable[_Result]]


_FUNCTIONS: tuple[tuple[str, _CheckFunction], ...] = (
    ("pgvector", _pgvector),
    ("pg_stat_statements", _pg_stat_statements),
    ("settings", _settings),
    ("invalid_indexes", _invalid_indexes),
    ("hnsw_index", _hnsw_index),
    ("hnsw_cache", _hnsw_cache),
    ("maintenance_work_mem", _maintenance_work_mem),
    ("filter_indexes", _filter_indexes),
    ("unused_indexes", _unused_indexes),
    ("vacuum", _vacuum),
    ("statistics", _statistics),
    ("probe_search", _probe_search),
    ("migrations", _migrations),
    ("dev_shm", _dev_shm),
    ("replication", _replication),
)


CHECKS: tuple[str, ...] = tuple(name for name, _ in _FUNCTIONS)
"""Every check's name, in the order `diagnose` returns them."""


async def _run(ctx: _Context, name: str, func: _CheckFunction, timeout: float) -> Check:
    try:
        async with ctx.db.transaction(readonly=True, timeout=timeout) as conn:
            await _limits(conn, timeout)
            status, evidence, fix = await func(ctx, conn)
    except VecdbError as exc:
        reason = str(exc).splitlines()[0]
        privilege = isinstance(exc, DatabaseError) and exc.sqlstate == "42501"
        return Check(
            name,
            "warn",
            f"could not check: {reason}",
            _GRANT_MONITOR if privilege else "fix the cause above, then run the doctor again",
        )
    return Check(name, status, evidence, fix)


async def diagnose(
    db: Database, *, facts: MachineFacts | None = None, timeout: float = 10.0
) -> list[Check]:
    """Run every check (`CHECKS`) on ``db``'s server and database, changing nothing.

    Example:
        >>> async with vecdb.connect(dsn, migrate="off") as db:  # doctest: +SKIP
        ...     for check in await diagnose(db):
        ...         print(check.name, check.status, check.evidence, check.fix)

    Args:
        db: A connected database; ``migrate="off"`` keeps connecting read-only too.
        facts: The server's machine, when known (`tuning.machine_facts`): it
            judges the memory-sized settings and ``/dev/shm``. Default: this
            machine's for the embedded server; for a DSN, only the settings
            that do not depend on the machine are judged.
        timeout: Seconds each check's statements may take (and at most 2 s of
            it to wait for a lock).

    Returns:
        One `Check` per name in `CHECKS`, in that order.

    Raises:
        ConnectError: The server cannot be reached.
        DatabaseClosedError: ``db`` is closed.
    """
    if facts is None and db.embedded is not None:
        # The budget vecdb tuned the embedded server for (VECDB_TUNE_MEMORY, ...).
        facts = budget_facts()
    ctx = await _context(db, facts, timeout)
    return [await _run(ctx, name, func, timeout) for name, func in _FUNCTIONS]
