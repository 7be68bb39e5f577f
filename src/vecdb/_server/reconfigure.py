"""What a server should run with, against what it runs: a plan, then ``ALTER SYSTEM``.

`wanted` puts the user's overrides (``server_settings=``, ``VECDB_SERVER_*``)
over vecdb's recommendations: overrides win. `plan` checks every wanted value
against one snapshot of the server (`settings.read`) before anything is
written, and raises `ConfigError` naming the first bad one; each `Change` says
whether the server runs with another value (``differs``), whether
``postgresql.auto.conf`` must be written (``write``) and whether the value waits
for a restart (``restart``: ``pg_settings.context = 'postmaster'``). `apply`
writes them and reloads the configuration.

A library's settings (``pg_stat_statements.max``) exist only once the library
is loaded. Until the restart that loads it they cannot be checked
(``checked=False``); after it, `rejected` asks the server which it refused.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Collection, Mapping, Sequence

import asyncpg

from .._config import server_settings_from_env, tuning_from_env
from .._errors import ConfigError, translating
from .._typing import AnyConnection
from .settings import (
    ServerSetting,
    ServerState,
    canonical,
    list_items,
    read,
    reset_statement,
    running,
    same,
    set_statement,
    try_canonical,
    unknown_setting,
)
from .tuning import (
    PRELOAD_LIBRARIES,
    RESTART_SETTINGS,
    MachineFacts,
    Setting,
    budget_facts,
    recommend,
)

__all__ = [
    "MANAGED",
    "Change",
    "Wanted",
    "apply",
    "embedded_wanted",
    "managed",
    "overrides",
    "plan",
    "rejected",
    "resets",
    "wanted",
]

logger = logging.getLogger("vecdb.embedded")

MANAGED = "vecdb.managed_settings"
"""A placeholder setting in the embedded server's ``postgresql.auto.conf``: the names vecdb set.

So that a setting vecdb no longer wants (an override taken out, ``VECDB_TUNE=off``)
goes back to the server's default at the next start instead of staying forever.
"""

_SETTING_NAME = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")
# From PostgreSQL 17, ALTER SYSTEM also sets a setting the server does not know yet.
_PLACEHOLDERS_IN_ALTER_SYSTEM = 170000


# -- what to want --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Wanted:
    """The settings a server should run with, and which of them the user chose.

    Attributes:
        settings: One `Setting` per name: recommended, or overridden.
        overridden: The names the user gave (``server_settings=``, ``VECDB_SERVER_*``).
        facts: The machine the recommendations are for; ``None`` when tuning is off.
    """

    settings: tuple[Setting, ...]
    overridden: frozenset[str]
    facts: MachineFacts | None


def wanted(
    facts: MachineFacts | None,
    overrides: Mapping[str, tuple[str, str]],
    *,
    max_connections: int | None = None,
) -> Wanted:
    """The recommendations for ``facts`` (none when ``None``), with ``overrides`` winning.

    Args:
        facts: The machine to tune for; ``None`` when tuning is off.
        overrides: ``{setting: (value, origin)}``, the origin naming who asked
            (``"server_settings="``, ``"VECDB_SERVER_WORK_MEM"``).
        max_connections: The server's; default an override's, else 100.

    Raises:
        ConfigError: An override's name cannot be a setting's, or its value is not text.
    """
    given: dict[str, tuple[str, str]] = {}
    for name, (given_value, origin) in overrides.items():
        value: object = given_value  # from user code: not always the str its type says
        key = name.strip().lower() if isinstance(name, str) else name
        if not isinstance(key, str) or not _SETTING_NAME.match(key):
            raise ConfigError(
                f"{origin}: {name!r} is not a server setting's name (lower-case letters, "
                "digits and underscores, with one dot for an extension's, such as "
                "'work_mem' or 'auto_explain.log_min_duration')",
                setting=str(name),
            )
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(
                f"{origin}: the value of {key} must be text such as '64MB', got "
                f"{type(value).__name__}",
                setting=key,
            )
        given[key] = (str(value), origin)
    result: dict[str, Setting] = {}
    if facts is not None:
        connections = max_connections or _int_or(given.get("max_connections"), 100)
        result = {s.name: s for s in recommend(facts, max_connections=connections)}
    for name, (value, origin) in given.items():
        before = result.get(name)
        reason = f"given by {origin}" + (
            f" (instead of vecdb's {before.value}: {before.reason})" if before else ""
        )
        result[name] = Setting(name, value, reason, restart=name in RESTART_SETTINGS)
    preload = given.get("shared_preload_libraries")
    if preload is not None:
        # A library the user took out of the preload list defines no settings:
        # vecdb's recommendations for it would be refused as unknown.
        loaded = set(list_items(preload[0]))
        for name in [n for n in result if "." in n and n not in given]:
            if name.split(".", 1)[0] in PRELOAD_LIBRARIES and name.split(".", 1)[0] not in loaded:
                del result[name]
    return Wanted(tuple(result.values()), frozenset(given), facts)


def _int_or(item: tuple[str, str] | None, default: int) -> int:
    try:
        return int(item[0]) if item is not None else default
    except ValueError:
        return default  # the server's check names the bad value


def overrides(
    server_settings: Mapping[str, str] | None, environ: Mapping[str, str] | None = None
) -> dict[str, tuple[str, str]]:
    """``VECDB_SERVER_*`` variables, then ``server_settings=`` (which wins), with their origins."""
    found = dict(server_settings_from_env(environ))
    for name, value in (server_settings or {}).items():
        found[name.strip().lower() if isinstance(name, str) else name] = (value, "server_settings=")
    return found


def embedded_wanted(
    server_settings: Mapping[str, str] | None, environ: Mapping[str, str] | None = None
) -> Wanted:
    """What the embedded server should run with: tuned to its budget unless ``VECDB_TUNE=off``."""
    env = tuning_from_env(environ)
    facts = None
    if env.enabled:
        try:
            facts = budget_facts(environ=environ)
        except ConfigError as exc:
            if exc.setting != "memory":
                raise  # a bad VECDB_TUNE_* value
            # A platform where vecdb cannot read the memory: stock settings beat no server.
            logger.warning("%s; the embedded server runs on PostgreSQL's settings", exc)
    return wanted(facts, overrides(server_settings, environ))


# -- the plan ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """A wanted setting, set beside what the server has.

    Attributes:
        name: The setting.
        value: What vecdb sets.
        current: What the server runs with (as ``SHOW`` writes it); ``None`` when the
            server does not know the setting yet (its library is not loaded).
        reason: Why this value (`Setting.reason`).
        restart: It takes effect only when the server starts.
        differs: The running value is not ``value``.
        write: ``ALTER SYSTEM`` must write it (``postgresql.auto.conf`` does not hold it yet).
        checked: The value was checked against the server's ``pg_settings``; ``False``
            for a library's setting until the library is loaded.
        statement: The ``ALTER SYSTEM`` statement.
        reset: It is a ``RESET``: ``value`` is what the server falls back to.
    """

    name: str
    value: str
    current: str | None
    reason: str
    restart: bool
    differs: bool
    write: bool
    checked: bool
    statement: str
    reset: bool = False


def plan(
    wanted: Wanted,
    state: ServerState,
    *,
    fixed: Mapping[str, str] | None = None,
    merge_libraries: bool = False,
) -> list[Change]:
    """Check every wanted value against the server, and say how each differs from what it runs.

    Args:
        wanted: The settings to have (`wanted`).
        state: The server (`read`).
        fixed: Settings that must not be set, with the reason (`EMBEDDED_FIXED`).
        merge_libraries: Keep the libraries the server already preloads beside
            vecdb's (a server given by DSN may need its own, such as timescaledb),
            unless the user set ``shared_preload_libraries`` themselves.

    Raises:
        ConfigError: A setting is unknown or fixed, or a value would be refused; the
            message names the setting and says what it accepts. Nothing is changed.
    """
    settings = list(wanted.settings)
    preload = next((s for s in settings if s.name == "shared_preload_libraries"), None)
    libraries = state.loaded
    if preload is not None:
        libraries = list_items(preload.value)
        if merge_libraries and preload.name not in wanted.overridden:
            libraries = (*state.loaded, *(lib for lib in libraries if lib not in state.loaded))
            merged = dataclasses.replace(preload, value=",".join(libraries))
            settings = [merged if s is preload else s for s in settings]
    return [_change(s, state, fixed or {}, libraries) for s in settings]


def _change(
    setting: Setting, state: ServerState, fixed: Mapping[str, str], libraries: Sequence[str]
) -> Change:
    name, value = setting.name, str(setting.value)
    if name in fixed:
        raise ConfigError(
            f"server setting {name} cannot be overridden: {fixed[name]}", setting=name
        )
    row = state.settings.get(name)
    configured = (state.configured or {}).get(name)
    if row is None:
        library = name.partition(".")[0] if "." in name else None
        waits = library is not None and library in libraries and library not in state.loaded
        if not waits and state.privileged:
            raise unknown_setting(name, state)
        # Not checkable yet: a library's setting before the restart that loads it, or a
        # setting this role cannot see. A server before 17 refuses ALTER SYSTEM for a
        # setting it does not know yet: it is written once the library is loaded.
        write = configured != value and (
            not waits or state.version >= _PLACEHOLDERS_IN_ALTER_SYSTEM
        )
        reason = setting.reason
        if waits and not write and configured != value:
            reason += f"; set it once {library} is loaded (after the restart)"
        if name == "shared_preload_libraries":
            # Written blind, it would drop the libraries the server loads now.
            write = False
            reason += (
                "; this role cannot see the libraries the server loads: add these to them "
                "(pg_read_all_settings shows them)"
            )
        return Change(
            name=name,
            value=value,
            current=None,
            reason=reason,
            restart=waits or setting.restart,
            differs=True,
            write=write,
            checked=False,
            statement=set_statement(name, value),
        )
    if row.context == "internal":
        raise ConfigError(
            f"server setting {name} cannot be set: it is fixed when PostgreSQL is built or "
            "the cluster is created (pg_settings.context = 'internal')",
            setting=name,
        )
    wanted_value = canonical(row, value)
    differs = not same(wanted_value, running(row))
    if state.configured is None:
        write = differs
    elif configured is not None:
        write = not _configured_same(row, configured, wanted_value)
    else:
        base = state.base.get(name)
        in_effect = running(row) if base is None else try_canonical(row, base)
        write = not same(wanted_value, in_effect)
    return Change(
        name=name,
        value=value,
        current=row.shown,
        reason=setting.reason,
        restart=row.context == "postmaster",
        differs=differs,
        write=write,
        checked=True,
        statement=set_statement(name, value, strip=row.vartype != "string"),
    )


def _configured_same(row: ServerSetting, configured: str, wanted: object) -> bool:
    return same(try_canonical(row, configured), wanted)


def resets(state: ServerState, keep: Collection[str]) -> list[Change]:
    """``ALTER SYSTEM RESET`` for the names vecdb set before (`MANAGED`) and no longer wants."""
    previous = list_items((state.configured or {}).get(MANAGED, ""))
    found = []
    for name in previous:
        if name in keep or name not in (state.configured or {}):
            continue
        row = state.settings.get(name)
        fallback = state.base.get(name) or (row.boot_val if row else None) or ""
        differs = True
        if row is not None:
            differs = not same(try_canonical(row, fallback), running(row))
        found.append(
            Change(
                name=name,
                value=fallback,
                current=row.shown if row else None,
                reason="set by vecdb before and no longer wanted: back to the server's default",
                restart=row is None or row.context == "postmaster",
                differs=differs,
                write=True,
                checked=row is not None,
                statement=reset_statement(name),
                reset=True,
            )
        )
    return found


# -- changing ---------------------------------------------------------------------------


async def apply(
    conn: AnyConnection, changes: Sequence[Change], *, timeout: float | None = None
) -> list[Change]:
    """Write each change that needs it with ``ALTER SYSTEM``, then reload the configuration.

    Args:
        conn: A connection outside any transaction (``ALTER SYSTEM`` refuses one).
        changes: From `plan` (and `resets`); those with ``write`` are written.
        timeout: Per statement.

    Returns:
        The changes written.

    Raises:
        ConfigError: The server refused one (each was checked, so rarely): the message
            names it, and the ones written before it.
    """
    written: list[Change] = []
    for change in changes:
        if not change.write:
            continue
        try:
            await conn.execute(change.statement, timeout=timeout)
        except asyncpg.InsufficientPrivilegeError as exc:
            raise ConfigError(
                f"this role may not change server settings ({exc}): ALTER SYSTEM needs a "
                "superuser, or GRANT ALTER SYSTEM ON PARAMETER ... (PostgreSQL 15+)",
                setting=change.name,
            ) from None
        except asyncpg.PostgresError as exc:
            done = ", ".join(c.name for c in written) or "none"
            raise ConfigError(
                f"the server refused server setting {change.name}: {exc}. Written before "
                f"it: {done}",
                setting=change.name,
            ) from None
        written.append(change)
    if written:
        with translating():
            await conn.execute("SELECT pg_reload_conf()", timeout=timeout)
    return written


def managed(state: ServerState, names: Collection[str]) -> Change | None:
    """The change that records ``names`` as vecdb's (`MANAGED`), unless they already are."""
    value = ",".join(sorted(names))
    if state.configured is not None and state.configured.get(MANAGED, "") == value:
        return None
    return Change(
        name=MANAGED,
        value=value,
        current=None,
        reason="the settings vecdb manages on this server",
        restart=False,
        differs=False,
        write=True,
        checked=True,
        statement=set_statement(MANAGED, value, strip=False),
    )


async def rejected(conn: AnyConnection, names: Collection[str]) -> dict[str, str]:
    """Which of ``names`` the server could not apply from ``postgresql.auto.conf``, and why.

    Used after the restart that loaded a library whose settings could not be checked before.
    """
    state = await read(conn)
    found = {}
    for name in names:
        if name in state.errors:
            row = state.settings.get(name)
            value = (state.configured or {}).get(name, "")
            problem = state.errors[name]
            if row is not None:
                try:
                    canonical(row, value)
                except ConfigError as exc:
                    problem = str(exc)
            found[name] = problem
    return found
