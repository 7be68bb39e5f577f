"""Search settings kept on a pooled connection for the session, set only when they change.

A search with settings used to cost four round trips (BEGIN, ``set_config``,
SELECT, COMMIT) plus the pool's reset on release. Here each pooled connection
carries a `Session`: the settings vecdb's searches put on it at session level
(``set_config(name, value, false)``). A search sends one ``SELECT set_config``
only for the settings that differ from the last search's on that connection,
then its statement alone: one round trip in a steady workload.

Nothing leaks to anyone else, because the pool calls `setup` on every acquire
and `reset` on every release:

* `reset`: a connection whose last holder was a vecdb search that finished
  (its statement returned) is returned as it is, with no round trip: such a
  search only reads, and its settings are tracked. Any other holder (a user's
  ``db.acquire()``, vecdb's writes, a search that failed or was cancelled
  between its ``set_config`` and its end) gets asyncpg's full reset
  (``RESET ALL`` among others), and the tracked settings are forgotten.
* `setup`: an acquire that is not a search's (see `acquire`) on a connection
  that still holds search settings runs ``RESET ALL`` first (one round trip,
  only then), so a user never sees them.

Behind PgBouncer in transaction mode a session outlives no transaction: the
searcher keeps ``SET LOCAL`` there (see `Searcher`).
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from .._typing import AnyConnection, Connection, Connections, PoolConnection

__all__ = ["Acquire", "Session", "acquire", "apply", "reset", "session_of", "setup"]

# True only while a searcher is inside pool.acquire(): tells `setup` to leave the
# connection's search settings alone (the search sets what it needs).
_SEARCHING: contextvars.ContextVar[bool] = contextvars.ContextVar("vecdb_searching", default=False)

# pgvector's default hnsw.ef_search, used when the setting is not defined yet in
# the session (pgvector's library not loaded) and nothing was configured.
_EF_DEFAULT = "40"


class Session:
    """What vecdb's searches left on one connection.

    Attributes:
        settings: Settings set at session level, as the planner wrote them
            (``"max:k"`` included); absent names are at their reset value.
        known: ``settings`` is exact. False while a ``set_config`` is under
            way: a cancelled one may or may not have applied.
        clean_search: The current holder is a search whose statement
            returned; only then may `reset` skip asyncpg's reset.
    """

    __slots__ = ("clean_search", "known", "settings")

    def __init__(self) -> None:
        self.settings: dict[str, str] = {}
        self.known = True
        self.clean_search = False

    def forget(self) -> None:
        """The connection was reset: every setting is at its reset value."""
        self.settings = {}
        self.known = True
        self.clean_search = False


def session_of(conn: AnyConnection) -> Session | None:
    """The connection's `Session` (pooled connections have one), else ``None``."""
    session: Session | None = getattr(conn, "vecdb_session", None)
    return session


class Acquire:
    """``async with acquire(pool) as conn``: a pooled connection for a search."""

    __slots__ = ("_inner",)

    def __init__(self, pool: Connections, consistent: bool | None) -> None:
        # Searches may read from a replica.
        self._inner = pool.acquire(readonly=True, consistent=consistent)

    async def __aenter__(self) -> PoolConnection:
        token = _SEARCHING.set(True)
        try:
            conn: PoolConnection = await self._inner.__aenter__()
        finally:
            _SEARCHING.reset(token)
        return conn

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self._inner.__aexit__(kind, error, trace)


def acquire(pool: Connections, *, consistent: bool | None = None) -> Acquire:
    """A connection from ``pool`` whose search settings `setup` leaves in place.

    ``consistent``: as `Connections.acquire` (a replica that has replayed the writes).
    """
    return Acquire(pool, consistent)


async def apply(conn: AnyConnection, session: Session, wanted: Mapping[str, str]) -> None:
    """Bring the session's settings to ``wanted`` (others to their reset value).

    No round trip when nothing differs; otherwise one ``SELECT set_config(...)``
    with every name and value bound. Call before the search's statement, then
    set ``session.clean_search`` once the statement has returned.
    """
    session.clean_search = False
    current = session.settings
    if current == wanted:
        return
    calls: list[str] = []
    params: list[Any] = []
    for name in current.keys() - wanted.keys():
        # A NULL value is set_config's RESET.
        calls.append(f"set_config(${len(params) + 1}, ${len(params) + 2}::text, false)")
        params += [name, None]
    for name, value in wanted.items():
        if current.get(name) == value:
            continue
        n = len(params) + 1
        if value.startswith("max:"):
            # greatest(k, the value the session started with): the current value
            # may be another search's.
            calls.append(
                f"set_config(${n}, greatest((${n + 1}::text)::int, coalesce(nullif(("
                f"SELECT reset_val FROM pg_settings WHERE name = ${n}), ''), "
                f"current_setting(${n}, true), '{_EF_DEFAULT}')::int)::text, false)"
            )
            params += [name, value[4:]]
        else:
            calls.append(f"set_config(${n}, ${n + 1}, false)")
            params += [name, value]
    session.known = False
    await conn.execute("SELECT " + ", ".join(calls), *params)
    session.settings = dict(wanted)
    session.known = True


async def setup(conn: PoolConnection) -> None:
    """The pool's ``setup``: hide search settings from every acquire but a search's."""
    if _SEARCHING.get():
        return
    session = session_of(conn)
    if session is not None and (session.settings or not session.known):
        await conn.execute("RESET ALL")
        session.forget()


async def reset(conn: Connection) -> None:
    """The pool's ``reset``: none after a finished search, asyncpg's own otherwise.

    asyncpg has already rolled back any open transaction before calling this.
    """
    session = session_of(conn)
    if session is not None and session.clean_search and session.known:
        session.clean_search = False
        return
    query = conn.get_reset_query()
    if query:
        await conn.execute(query)
    if session is not None:
        session.forget()
