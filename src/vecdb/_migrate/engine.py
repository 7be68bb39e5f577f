"""The migration engine: status, plan, upgrade, rollback, repair, baseline, history.

Every operation works on a dedicated connection (never a pooled one, see
`lock`). Changes run under the migration lock; the read-only fast path —
everything already at head — takes no lock at all, and after the lock is
taken the state is read again, since another process may have migrated while
we waited.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Literal

import anyio

from .._config import MigrationConfig
from .._errors import (
    DRIVER_ERRORS,
    ConfigError,
    IrreversibleMigrationError,
    MigrationDriftError,
    MigrationError,
    PendingMigrationsError,
    SchemaTooNewError,
)
from .._typing import Connection
from . import lock as _lock
from . import state as _history
from . import steps as _steps
from .sources import BUNDLED_SOURCE, MigrationSpec, Source
from .state import AppliedRow, HistoryEvent

__all__ = ["MigrationStatus", "Migrator"]

logger = logging.getLogger("vecdb.migrations")


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


def _check_to(source: Source, to: int, *, lowest: int) -> None:
    if not lowest <= to <= source.head:
        raise ConfigError(
            f"to={to} is outside source {source.name!r}'s versions {lowest}..{source.head}",
            setting="to",
        )


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
        *,
        lock_refused: str | None = None,
    ) -> None:
        # Set when the connector goes through a pooler that cannot hold a session lock
        # (PgBouncer in transaction mode): every locked operation is refused with it.
        self._lock_refused = lock_refused
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
                    except DRIVER_ERRORS:  # OSError covers TimeoutError
                        conn.terminate()
                else:
                    conn.terminate()

    @contextlib.asynccontextmanager
    async def _locked(self, conn: Connection) -> AsyncIterator[dict[tuple[str, int], AppliedRow]]:
        if self._lock_refused is not None:
            raise ConfigError(self._lock_refused, setting="migration_dsn")
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
            if to is not None:
                _check_to(target, to, lowest=0)
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
            return [row[0] for row in await conn.fetch(_steps.INVALID_INDEXES)]

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
                    await _steps.run(
                        conn, spec, "up", self._config, state.get((spec.source, spec.version))
                    )
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
        _check_to(target, to, lowest=0)
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
                await _steps.run(
                    conn, spec, "down", self._config, state.get((spec.source, spec.version))
                )
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
                        await _steps.mark_applied(
                            conn,
                            spec,
                            "repaired",
                            started,
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
        _check_to(target, to, lowest=1)
        marked: list[MigrationSpec] = []
        async with self._session() as conn, self._locked(conn) as state:
            for spec in target.migrations[:to]:
                if (spec.source, spec.version) in state:
                    continue
                started = dt.datetime.now(dt.UTC)
                async with conn.transaction():
                    await _steps.mark_applied(conn, spec, "baselined", started)
                logger.info("Baselined %s %d (%s)", spec.source, spec.version, spec.description)
                marked.append(spec)
            after = await _history.read_state(conn)
        return [_status(s, after.get((s.source, s.version))) for s in marked]
