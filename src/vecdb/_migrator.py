"""The migration engine: status, plan, upgrade, rollback, repair, baseline, history.

Every operation works on a dedicated connection (never a pooled one, see
`_lock`). Changes run under the migration lock; the read-only fast path —
everything already at head — takes no lock at all, and after the lock is
taken the state is read again, since another process may have migrated while
we waited.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Literal

import anyio
import asyncpg

from . import _history, _lock
from ._config import MigrationConfig
from ._errors import (
    ConfigError,
    IrreversibleMigrationError,
    MigrationDriftError,
    MigrationError,
    PendingMigrationsError,
    SchemaTooNewError,
    translate,
)
from ._history import AppliedRow, HistoryEvent
from ._sources import BUNDLED_SOURCE, MigrationSpec, Source
from ._typing import Connection
from ._version import __version__

__all__ = ["MigrationStatus", "Migrator"]

logger = logging.getLogger("vecdb.migrations")

Direction = Literal["up", "down"]


@dataclasses.dataclass(frozen=True, slots=True)
class MigrationStatus:
    """One migration as ``db.migrations.status()`` reports it.

    Attributes:
        source: The source (``"vecdb"`` for the bundled migrations).
        version: The version within the source.
        description: The first line of the migration's docstring.
        state: ``applied``; ``pending``; ``incomplete`` (a non-transactional
            migration that started and did not finish; it runs again on upgrade);
            ``unknown`` (recorded in the database, absent from this code).
        applied_at: When it was applied.
        checksum: The checksum of the code now (``None`` for ``unknown``).
        recorded_checksum: The checksum recorded when it was applied.
        drift: Whether the code changed since it was applied.
        transactional: Whether it runs in a transaction.
        reversible: Whether it has a ``down()``.
    """

    source: str
    version: int
    description: str
    state: Literal["applied", "pending", "incomplete", "unknown"]
    applied_at: dt.datetime | None
    checksum: str | None
    recorded_checksum: str | None
    drift: bool
    transactional: bool
    reversible: bool


def _status(spec: MigrationSpec, row: AppliedRow | None) -> MigrationStatus:
    state: Literal["applied", "pending", "incomplete"] = "pending"
    if row is not None:
        state = "applied" if row.status == "applied" else "incomplete"
    return MigrationStatus(
        source=spec.source,
        version=spec.version,
        description=spec.description,
        state=state,
        applied_at=row.applied_at if row is not None else None,
        checksum=spec.checksum,
        recorded_checksum=row.checksum if row is not None else None,
        drift=row is not None and row.status == "applied" and row.checksum != spec.checksum,
        transactional=spec.transactional,
        reversible=spec.reversible,
    )


_UPSERT_STATE = """
    INSERT INTO vecdb.migration_state (source, version, description, checksum, status)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (source, version) DO UPDATE
    SET description = excluded.description, checksum = excluded.checksum,
        status = excluded.status, applied_at = clock_timestamp()
"""

_INVALID_INDEXES = """
    SELECT format('%I.%I', n.nspname, c.relname)
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE NOT i.indisvalid
    ORDER BY 1
"""


class Migrator:
    """Runs migrations for a set of sources against one database.

    Args:
        connector: Opens a new, dedicated connection (not from a pool).
        sources: Validated sources, bundled first.
        config: Lock wait, DDL lock timeout and retries.
    """

    def __init__(
        self,
        connector: Callable[[], Any],
        sources: Sequence[Source],
        config: MigrationConfig,
    ) -> None:
        self._connector = connector
        self._sources = {source.name: source for source in sources}
        self._config = config

    @property
    def sources(self) -> list[Source]:
        """The sources, in the order they are applied."""
        return list(self._sources.values())

    # -- sessions -----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[Connection]:
        conn: Connection = await self._connector()
        clean = False
        try:
            yield conn
            clean = True
        except MigrationError:
            clean = not conn.is_in_transaction()
            raise
        finally:
            # Shielded: a cancelled connect() must still hand back the lock. A
            # connection in an unknown state (cancelled mid-statement) is
            # terminated: the server then rolls back and drops the lock itself.
            with anyio.CancelScope(shield=True):
                if clean:
                    try:
                        await conn.close(timeout=5)
                    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                        conn.terminate()
                else:
                    conn.terminate()

    @contextlib.asynccontextmanager
    async def _locked(self, conn: Connection) -> AsyncIterator[dict[tuple[str, int], AppliedRow]]:
        await _lock.acquire(conn, wait=self._config.lock_wait)
        try:
            await _history.bootstrap(conn)
            yield await _history.read_state(conn)
        finally:
            if not conn.is_closed() and not conn.is_in_transaction():
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await _lock.release(conn)

    # -- guards -------------------------------------------------------------------

    def _guard(self, state: dict[tuple[str, int], AppliedRow], *, drift: bool = True) -> None:
        for source in self._sources.values():
            recorded = [v for (s, v) in state if s == source.name]
            if recorded and max(recorded) > source.head:
                raise SchemaTooNewError(
                    f"the database has {source.name!r} migrations up to version "
                    f"{max(recorded)}, but this code knows only up to {source.head}: it was "
                    "migrated by a newer version. Upgrade this application (or vecdb) "
                    "instead of running older code against a newer schema.",
                    source=source.name,
                    known=source.head,
                    found=max(recorded),
                )
            if not drift:
                continue
            for spec in source.migrations:
                row = state.get((source.name, spec.version))
                if row is not None and row.status == "applied" and row.checksum != spec.checksum:
                    raise MigrationDriftError(
                        f"migration {source.name} {spec.version} ({spec.description}) was "
                        f"changed after it was applied: recorded checksum {row.checksum}, "
                        f"code now {spec.checksum}. Restore the code as applied and write a "
                        "new migration for the change; if the edit is harmless, accept it "
                        "with db.migrations.repair() (or `vecdb repair`).",
                        source=source.name,
                        version=spec.version,
                        recorded=row.checksum,
                        current=spec.checksum,
                    )

    def _resolve_source(self, source: str | None, *, for_rollback: bool = False) -> Source:
        if source is None:
            apps = [name for name in self._sources if name != BUNDLED_SOURCE]
            if len(apps) > 1:
                raise ConfigError(
                    f"several migration sources exist ({', '.join(self._sources)}); "
                    "pass source= to say which one",
                    setting="source",
                )
            if not apps and for_rollback:
                # Most likely the application's migrations were forgotten; rolling
                # back vecdb's own catalog must be asked for by name.
                raise ConfigError(
                    "no application migration source is loaded (pass migrations=[...] or "
                    "--migrations); to roll back vecdb's own migrations, pass source='vecdb'",
                    setting="source",
                )
            source = apps[0] if apps else BUNDLED_SOURCE
        if source not in self._sources:
            raise ConfigError(
                f"unknown migration source {source!r}; known sources: {', '.join(self._sources)}",
                setting="source",
            )
        return self._sources[source]

    def _pending(
        self,
        state: dict[tuple[str, int], AppliedRow],
        to: int | None,
        source: str | None,
    ) -> list[MigrationSpec]:
        """Pending migrations in order; with ``source``, earlier sources go to head first.

        Sources are applied in order (vecdb's own first), so an application's
        migration never runs before the library schema it builds on.
        """
        names = list(self._sources)
        limits: dict[str, int] = {name: self._sources[name].head for name in names}
        if source is not None or to is not None:
            target = self._resolve_source(source)
            if to is not None and not 0 <= to <= target.head:
                raise ConfigError(
                    f"to={to} is outside source {target.name!r}'s versions 0..{target.head}",
                    setting="to",
                )
            names = names[: names.index(target.name) + 1]
            limits[target.name] = target.head if to is None else to
        pending = []
        for name in names:
            for spec in self._sources[name].migrations[: limits[name]]:
                row = state.get((name, spec.version))
                if row is None or row.status != "applied":
                    pending.append(spec)
        return pending

    # -- read-only operations -----------------------------------------------------

    async def status(self) -> list[MigrationStatus]:
        """Every known migration, per source, and any the database has that this code lacks."""
        async with self._session() as conn:
            state = await _history.read_state(conn)
        result: list[MigrationStatus] = []
        for source in self._sources.values():
            result.extend(
                _status(s, state.get((source.name, s.version))) for s in source.migrations
            )
            unknown = sorted(v for (s, v) in state if s == source.name and v > source.head)
            result.extend(
                MigrationStatus(
                    source=source.name,
                    version=v,
                    description=state[(source.name, v)].description,
                    state="unknown",
                    applied_at=state[(source.name, v)].applied_at,
                    checksum=None,
                    recorded_checksum=state[(source.name, v)].checksum,
                    drift=False,
                    transactional=True,
                    reversible=False,
                )
                for v in unknown
            )
        return result

    async def plan(self, to: int | None = None, source: str | None = None) -> list[MigrationStatus]:
        """What ``upgrade(to, source)`` would run, in order; changes nothing."""
        async with self._session() as conn:
            state = await _history.read_state(conn)
        self._guard(state)
        return [
            _status(s, state.get((s.source, s.version))) for s in self._pending(state, to, source)
        ]

    async def history(self) -> list[HistoryEvent]:
        """Every recorded event, oldest first."""
        async with self._session() as conn:
            return await _history.read_events(conn)

    async def check(self) -> None:
        """Raise if anything is pending, drifted, or too new (``migrate="check"``).

        Raises:
            PendingMigrationsError: Migrations are pending; lists them.
            MigrationDriftError: An applied migration's code changed.
            SchemaTooNewError: The database is ahead of this code.
        """
        async with self._session() as conn:
            state = await _history.read_state(conn)
        self._guard(state)
        pending = self._pending(state, None, None)
        if pending:
            listed = ", ".join(f"{s.source} {s.version} ({s.description})" for s in pending)
            raise PendingMigrationsError(
                f"{len(pending)} migration(s) pending: {listed}. Apply them with "
                "`vecdb migrate` or connect(migrate='apply').",
                pending=[(s.source, s.version, s.description) for s in pending],
            )

    async def invalid_indexes(self) -> list[str]:
        """INVALID indexes in the database (left by a failed concurrent build)."""
        async with self._session() as conn:
            return [row[0] for row in await conn.fetch(_INVALID_INDEXES)]

    # -- changes --------------------------------------------------------------------

    async def upgrade(
        self, to: int | None = None, source: str | None = None
    ) -> list[MigrationStatus]:
        """Apply pending migrations (all sources to head by default), in order.

        Returns:
            The migrations applied by this call (empty when already at head).
        """
        async with self._session() as conn:
            state = await _history.read_state(conn)
            self._guard(state)
            if not self._pending(state, to, source):
                return []  # the fast path: no lock when everything is at head
            async with self._locked(conn) as state:
                self._guard(state)
                applied = []
                for spec in self._pending(state, to, source):
                    await self._run(conn, spec, "up", state.get((spec.source, spec.version)))
                    applied.append(spec)
                after = await _history.read_state(conn)
        return [_status(s, after.get((s.source, s.version))) for s in applied]

    async def rollback(self, to: int, source: str | None = None) -> list[MigrationStatus]:
        """Run ``down()`` of every applied migration above ``to`` in ``source``, newest first.

        Raises:
            IrreversibleMigrationError: A migration on the path has no ``down()``;
                raised before anything changes.
        """
        target = self._resolve_source(source, for_rollback=True)
        if not 0 <= to <= target.head:
            raise ConfigError(
                f"to={to} is outside source {target.name!r}'s versions 0..{target.head}",
                setting="to",
            )
        async with self._session() as conn, self._locked(conn) as state:
            self._guard(state)
            path = [target.get(v) for v in range(target.head, to, -1) if (target.name, v) in state]
            blocked = [s for s in path if not s.reversible]
            if blocked:
                names = ", ".join(f"{s.version} ({s.description})" for s in blocked)
                raise IrreversibleMigrationError(
                    f"cannot roll back {target.name!r} to {to}: migration(s) {names} have no "
                    "down(). Nothing was changed. Roll back to a version above them, or "
                    "write a new migration that undoes the change.",
                    source=target.name,
                    version=blocked[0].version,
                )
            for spec in path:
                await self._run(conn, spec, "down", state.get((spec.source, spec.version)))
        return [_status(s, None) for s in path]

    async def repair(self) -> list[MigrationStatus]:
        """Accept the current code of drifted migrations, logging a ``repaired`` event each."""
        repaired = []
        async with self._session() as conn, self._locked(conn) as state:
            self._guard(state, drift=False)
            for source in self._sources.values():
                for spec in source.migrations:
                    row = state.get((source.name, spec.version))
                    if row is None or row.status != "applied" or row.checksum == spec.checksum:
                        continue
                    started = dt.datetime.now(dt.UTC)
                    async with conn.transaction():
                        await conn.execute(
                            _UPSERT_STATE,
                            spec.source,
                            spec.version,
                            spec.description,
                            spec.checksum,
                            "applied",
                        )
                        await _history.record_event(
                            conn,
                            source=spec.source,
                            version=spec.version,
                            description=spec.description,
                            checksum=spec.checksum,
                            event="repaired",
                            started_at=started,
                            library_version=__version__,
                            detail={"recorded": row.checksum, "current": spec.checksum},
                        )
                    logger.info(
                        "Repaired %s %d: checksum %s -> %s",
                        spec.source,
                        spec.version,
                        row.checksum,
                        spec.checksum,
                    )
                    repaired.append(_status(spec, dataclasses.replace(row, checksum=spec.checksum)))
        return repaired

    async def baseline(self, to: int, source: str | None = None) -> list[MigrationStatus]:
        """Mark versions 1..``to`` of ``source`` applied without running them.

        For a database whose schema was created before it used vecdb migrations.
        """
        target = self._resolve_source(source)
        if not 1 <= to <= target.head:
            raise ConfigError(
                f"to={to} is outside source {target.name!r}'s versions 1..{target.head}",
                setting="to",
            )
        marked: list[MigrationSpec] = []
        async with self._session() as conn, self._locked(conn) as state:
            for spec in target.migrations[:to]:
                if (spec.source, spec.version) in state:
                    continue
                started = dt.datetime.now(dt.UTC)
                async with conn.transaction():
                    await conn.execute(
                        _UPSERT_STATE,
                        spec.source,
                        spec.version,
                        spec.description,
                        spec.checksum,
                        "applied",
                    )
                    await _history.record_event(
                        conn,
                        source=spec.source,
                        version=spec.version,
                        description=spec.description,
                        checksum=spec.checksum,
                        event="baselined",
                        started_at=started,
                        library_version=__version__,
                    )
                logger.info("Baselined %s %d (%s)", spec.source, spec.version, spec.description)
                marked.append(spec)
            after = await _history.read_state(conn)
        return [_status(s, after.get((s.source, s.version))) for s in marked]

    # -- one step -------------------------------------------------------------------

    async def _run(
        self, conn: Connection, spec: MigrationSpec, direction: Direction, row: AppliedRow | None
    ) -> None:
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
                    await self._step_in_transaction(conn, spec, direction, started)
                else:
                    await self._step_outside_transaction(conn, spec, direction, started)
            except asyncpg.LockNotAvailableError as exc:
                if attempt < self._config.ddl_retries:
                    attempt += 1
                    delay = self._config.retry_backoff * 2 ** (attempt - 1)
                    delay *= random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not security
                    logger.warning(
                        "%s %d hit lock_timeout (%s); retry %d/%d in %.2fs",
                        spec.source,
                        spec.version,
                        exc,
                        attempt,
                        self._config.ddl_retries,
                        delay,
                    )
                    await anyio.sleep(delay)
                    continue
                await self._fail(conn, spec, direction, started, exc)
            except Exception as exc:  # noqa: BLE001 - any failure of user code is recorded, then re-raised typed
                await self._fail(conn, spec, direction, started, exc)
            else:
                elapsed = (dt.datetime.now(dt.UTC) - started).total_seconds() * 1000
                logger.info("Done %s %d in %.1f ms", spec.source, spec.version, elapsed)
                return

    async def _finish(
        self, conn: Connection, spec: MigrationSpec, direction: Direction, started: dt.datetime
    ) -> None:
        if direction == "up":
            await conn.execute(
                _UPSERT_STATE, spec.source, spec.version, spec.description, spec.checksum, "applied"
            )
        else:
            await conn.execute(
                "DELETE FROM vecdb.migration_state WHERE source = $1 AND version = $2",
                spec.source,
                spec.version,
            )
        await _history.record_event(
            conn,
            source=spec.source,
            version=spec.version,
            description=spec.description,
            checksum=spec.checksum,
            event="applied" if direction == "up" else "rolled_back",
            started_at=started,
            library_version=__version__,
        )

    async def _step_in_transaction(
        self, conn: Connection, spec: MigrationSpec, direction: Direction, started: dt.datetime
    ) -> None:
        instance = spec.cls()
        async with conn.transaction():
            await conn.execute("SELECT set_config('lock_timeout', $1, true)", self._lock_timeout)
            await (instance.up(conn) if direction == "up" else instance.down(conn))
            await self._finish(conn, spec, direction, started)

    async def _step_outside_transaction(
        self, conn: Connection, spec: MigrationSpec, direction: Direction, started: dt.datetime
    ) -> None:
        instance = spec.cls()
        if direction == "up":
            # Recorded as running first: if we die half-way, the next start sees it
            # unfinished and runs it again (which is why it must be idempotent).
            await conn.execute(
                _UPSERT_STATE, spec.source, spec.version, spec.description, spec.checksum, "running"
            )
        await conn.execute("SELECT set_config('lock_timeout', $1, false)", self._lock_timeout)
        try:
            await (instance.up(conn) if direction == "up" else instance.down(conn))
        finally:
            if not conn.is_closed() and not conn.is_in_transaction():
                await conn.execute("RESET lock_timeout")
        async with conn.transaction():
            await self._finish(conn, spec, direction, started)

    @property
    def _lock_timeout(self) -> str:
        return f"{int(self._config.ddl_lock_timeout * 1000)}ms"

    async def _fail(
        self,
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
                invalid = [r[0] for r in await conn.fetch(_INVALID_INDEXES)]
            async with conn.transaction():
                await _history.record_event(
                    conn,
                    source=spec.source,
                    version=spec.version,
                    description=spec.description,
                    checksum=spec.checksum,
                    event="failed",
                    started_at=started,
                    library_version=__version__,
                    error=f"{type(exc).__name__}: {server_message}",
                    detail={"direction": direction, "invalid_indexes": invalid},
                )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
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
