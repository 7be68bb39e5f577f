"""The doctor's checks of the server: pgvector, statements, settings, migrations, shm, replicas."""

from __future__ import annotations

import re

from ..._shm import SHM_HEADROOM
from ..._typing import PoolConnection
from ..capabilities import parse_version
from ..tuning import Setting, machine_facts, parse_size, recommend
from .context import (
    _GRANT_MONITOR,
    _LAG_BYTES,
    _LAG_SECONDS,
    _MACHINE_FREE,
    _MIN_ITERATIVE,
    _MIN_PGVECTOR,
    _TRUE,
    _Context,
    _listed,
    _readable,
    _Result,
    _Setting,
    _setting_size,
    _size,
)


async def _pgvector(ctx: _Context, conn: PoolConnection) -> _Result:
    row = await conn.fetchrow(
        "SELECT (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS installed, "
        "(SELECT default_version FROM pg_available_extensions WHERE name = 'vector') AS available"
    )
    assert row is not None  # noqa: S101 - a SELECT without FROM returns one row
    installed, available = row["installed"], row["available"]
    if installed is None:
        if available is None:
            return (
                "fail",
                "pgvector is not installed on this server",
                "install pgvector (https://github.com/pgvector/pgvector#installation), then "
                "`vecdb migrate`",
            )
        return (
            "fail",
            f"pgvector {available} is available but not created in database {ctx.database!r}",
            "`vecdb migrate` (or CREATE EXTENSION vector as a superuser)",
        )
    version = parse_version(installed)
    newer = available is not None and parse_version(available) > version
    update = f"ALTER EXTENSION vector UPDATE (to {available})" if newer else ""
    if version < _MIN_PGVECTOR:
        return ("fail", f"pgvector {installed}: vecdb needs 0.7 or newer", update or _UPGRADE)
    if version < _MIN_ITERATIVE:
        return (
            "warn",
            f"pgvector {installed}: no iterative index scans (0.8+), so a filtered search "
            "can return fewer than k rows",
            update or _UPGRADE,
        )
    if newer:
        return ("warn", f"pgvector {installed}, {available} is installed on the server", update)
    return ("ok", f"pgvector {installed} (iterative index scans)", "")


_UPGRADE = "upgrade the pgvector package on the server to 0.8+, then ALTER EXTENSION vector UPDATE"


def _libraries(text: str) -> list[str]:
    return [part.strip().strip('"') for part in text.split(",") if part.strip()]


async def _pg_stat_statements(ctx: _Context, conn: PoolConnection) -> _Result:
    created = await conn.fetchval(
        "SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements'"
    )
    preload = ctx.settings.get("shared_preload_libraries")
    loaded: bool | None = None
    if preload is not None:
        loaded = "pg_stat_statements" in _libraries(preload.setting)
    elif created is not None:
        # The setting is hidden from this role; reading the view says whether it is loaded.
        loaded = await _readable(conn, "SELECT FROM pg_stat_statements LIMIT 1") is None
    if loaded is False:
        libraries = _libraries(preload.setting) if preload is not None else []
        value = ",".join([*libraries, "pg_stat_statements"])
        return (
            "warn",
            "pg_stat_statements is not in shared_preload_libraries: no statistics per "
            "statement (vecdb stats, and this doctor's filter check, go without)",
            f"ALTER SYSTEM SET shared_preload_libraries = '{value}', restart the server, then "
            "CREATE EXTENSION pg_stat_statements",
        )
    if created is None:
        return (
            "warn",
            f"pg_stat_statements is {'loaded' if loaded else 'perhaps loaded'} but not created "
            f"in database {ctx.database!r}",
            "CREATE EXTENSION pg_stat_statements (as a superuser)",
        )
    if loaded is None:
        return ("warn", "shared_preload_libraries is not visible to this role", _GRANT_MONITOR)
    return ("ok", f"loaded, extension {created} created", "")


def _far(value: float, wanted: float) -> bool:
    # Within a factor of two of the recommendation is a choice, not a mistake.
    if value <= 0 or wanted <= 0:
        return value != wanted
    return not wanted / 2 <= value <= wanted * 2


_TIME_MS = {
    "us": 0.001,
    "ms": 1.0,
    "s": 1000.0,
    "min": 60_000.0,
    "h": 3_600_000.0,
    "d": 86_400_000.0,
}


_NUMBER = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def _numbers(current: _Setting, recommended: str) -> tuple[float, float] | None:
    """``(current, recommended)`` in one unit (bytes, ms or none), if both are numbers."""
    if current.bytes is not None:
        return float(current.bytes), float(parse_size(recommended))
    found = _NUMBER.match(recommended)
    if found is None or current.vartype not in ("integer", "real"):
        return None
    number, unit = float(found.group(1)), found.group(2) or current.unit or ""
    if current.unit in _TIME_MS and unit in _TIME_MS:
        return float(current.setting) * _TIME_MS[current.unit], number * _TIME_MS[unit]
    if not current.unit and not found.group(2):
        return float(current.setting), number
    return None


def _differs(current: _Setting, recommended: str, name: str) -> bool:
    """Whether a setting is far enough from the recommendation to be worth a change."""
    if name == "shared_preload_libraries":
        return not set(_libraries(recommended)) <= set(_libraries(current.setting))
    numbers = _numbers(current, recommended)
    if numbers is not None:
        return _far(*numbers)
    if current.vartype == "bool":
        return (current.setting.lower() in _TRUE) != (recommended.lower() in _TRUE)
    return current.setting.strip().lower() != recommended.strip().strip("'").lower()


def _recommended(ctx: _Context) -> list[Setting]:
    max_connections = int(ctx.settings["max_connections"].setting)
    # Without the server's machine, only rules that do not depend on it can be judged:
    # this machine's facts stand in, and every machine-sized rule is left out.
    found = recommend(ctx.facts or machine_facts(), max_connections=max_connections)
    if ctx.facts is None:
        found = [s for s in found if s.name in _MACHINE_FREE]
    return found


async def _settings(ctx: _Context, conn: PoolConnection) -> _Result:
    facts = ctx.facts
    judged = _recommended(ctx)
    off: list[str] = []
    hidden: list[str] = []
    for setting in judged:
        current = ctx.settings.get(setting.name)
        if current is None:
            # A library's own setting (auto_explain.*) exists once the library is loaded:
            # shared_preload_libraries covers it.
            if "." not in setting.name:
                hidden.append(setting.name)
            continue
        if _differs(current, setting.value, setting.name):
            shown = (
                _size(current.bytes)
                if current.bytes is not None
                else current.setting + (current.unit or "") or "''"
            )
            off.append(f"{setting.name}={shown} (recommended {setting.value})")
    scope = (
        f"judged for {_size(facts.memory_bytes)} ({facts.memory_source}) and "
        f"{facts.cores:g} cores ({facts.cores_source})"
        if facts is not None
        else "judged by the rules that do not depend on the server's machine ("
        + ", ".join(_MACHINE_FREE)
        + "): pass --memory and --cores for the rest"
    )
    if hidden:
        scope += f"; not visible to this role: {_listed(hidden)}"
    if off:
        return (
            "warn",
            f"{len(off)} setting(s) off the recommendations: {'; '.join(off)}; {scope}",
            "`vecdb tune` gives each value's reason and its ALTER SYSTEM statement "
            "(`vecdb tune --apply` on the embedded server)",
        )
    if hidden:
        return ("warn", f"the others as recommended; {scope}", _GRANT_MONITOR)
    return ("ok", f"{len(judged)} setting(s) as recommended; {scope}", "")


async def _migrations(ctx: _Context, conn: PoolConnection) -> _Result:
    rows = await ctx.db.migrations.status()
    sources = sorted({r.source for r in rows})
    where = " on the primary" if ctx.in_recovery else ""
    broken = [r for r in rows if r.drift or r.state in ("incomplete", "unknown")]
    pending = [r for r in rows if r.state == "pending"]
    if broken:
        listed = [f"{r.source} {r.version} ({'drifted' if r.drift else r.state})" for r in broken]
        drifted = any(r.drift for r in broken)
        return (
            "fail",
            f"{len(broken)} migration(s) need attention: {_listed(listed)}",
            "restore the applied code, or accept it with `vecdb repair`"
            if drifted
            else f"`vecdb migrate`{where} (an unknown version: deploy the newer code)",
        )
    if pending:
        listed = [f"{r.source} {r.version}" for r in pending]
        return (
            "warn",
            f"{len(pending)} pending: {_listed(listed)} (sources known: {', '.join(sources)})",
            f"`vecdb migrate`{where} (with --migrations for the application's)",
        )
    return ("ok", f"all applied, no drift (sources known: {', '.join(sources)})", "")


async def _dev_shm(ctx: _Context, conn: PoolConnection) -> _Result:
    if ctx.db.embedded is None or ctx.facts is None:
        return (
            "skip",
            "not the embedded server: this machine's /dev/shm is not the server's (on its "
            "host, /dev/shm must exceed maintenance_work_mem for parallel index builds)",
            "",
        )
    shm = ctx.facts.shm_bytes
    if ctx.settings["dynamic_shared_memory_type"].setting != "posix" or shm is None:
        return ("skip", "parallel workers do not share memory through /dev/shm here", "")
    # Index builds (vecdb's included) use max_parallel_maintenance_workers.
    workers = int(ctx.settings["max_parallel_maintenance_workers"].setting)
    if workers == 0:
        return ("ok", "parallel index builds are off", "")
    # A parallel HNSW build keeps its graph in one shared segment of maintenance_work_mem,
    # which vecdb raises per build toward the index's size; parallel queries' segments
    # need room beside it (the tuner's headroom too).
    largest = max((i.bytes for i in ctx.hnsw), default=0)
    need = int(max(ctx.bytes("maintenance_work_mem") or 0, largest) * SHM_HEADROOM)
    shown = _size(shm)
    evidence = f"/dev/shm {shown}; a parallel HNSW build needs about {_size(need)}"  # noqa: S108 - text
    if shm < need:
        return (
            "fail",
            f"{evidence}: it fails with 'could not resize shared memory segment' (pgvector "
            "#453, #714)",
            f"enlarge /dev/shm (docker run --shm-size={_setting_size(need)}), or ALTER SYSTEM "
            "SET max_parallel_maintenance_workers = 0 and build with --parallel-workers 0",
        )
    return ("ok", evidence, "")


def replication_lag(
    *, receive_lsn: int | None, replay_lsn: int | None, replay_age: float | None
) -> tuple[float, int]:
    """How far a standby's replay is behind the WAL it has received: ``(seconds, bytes)``.

    Zero when everything received is replayed, whatever the age of the last
    replayed transaction: on an idle primary no transaction comes, so
    ``now() - pg_last_xact_replay_timestamp()`` grows forever while nothing is
    behind (postgres_exporter #385).

    Args:
        receive_lsn: ``pg_last_wal_receive_lsn()`` as a number (``None``: not streaming).
        replay_lsn: ``pg_last_wal_replay_lsn()`` as a number.
        replay_age: Seconds since the last replayed transaction committed on the primary.
    """
    if receive_lsn is None or replay_lsn is None or receive_lsn <= replay_lsn:
        return 0.0, 0
    return max(replay_age or 0.0, 0.0), receive_lsn - replay_lsn


async def _replication(ctx: _Context, conn: PoolConnection) -> _Result:
    if not ctx.in_recovery:
        count = await conn.fetchval("SELECT count(*) FROM pg_stat_replication")
        return ("skip", f"not a standby ({count} standby(s) streaming from it)", "")
    row = await conn.fetchrow(
        "SELECT pg_last_wal_receive_lsn() AS received, pg_last_wal_replay_lsn() AS replayed, "
        "extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS age, "
        "pg_is_wal_replay_paused() AS paused, "
        "(SELECT status FROM pg_stat_wal_receiver) AS receiver"
    )
    assert row is not None  # noqa: S101 - a SELECT without FROM returns one row
    seconds, behind = replication_lag(
        receive_lsn=row["received"], replay_lsn=row["replayed"], replay_age=row["age"]
    )
    evidence = f"replay {seconds:.1f} s and {_size(behind)} behind the WAL received"
    if row["paused"]:
        return ("warn", f"WAL replay is paused; {evidence}", "SELECT pg_wal_replay_resume()")
    if row["receiver"] != "streaming":
        return (
            "warn",
            f"not streaming from the primary (WAL receiver: {row['receiver'] or 'none'}); "
            f"{evidence}",
            "check primary_conninfo and the primary's pg_hba.conf; see the standby's log",
        )
    if seconds > _LAG_SECONDS or behind > _LAG_BYTES:
        return (
            "warn",
            evidence,
            "look for long queries on the standby and for I/O saturation; see its log",
        )
    return ("ok", f"streaming; {evidence}", "")
