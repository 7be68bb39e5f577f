"""A server's own settings: read from ``pg_settings``, and values checked as the server would.

`read` takes one snapshot of a server: ``pg_settings``, and the files behind
it (``pg_file_settings``) when the role may read them. `canonical` checks a
value against a setting's row (type, unit, range, enum values) the way the
server itself would, so that a bad value fails before anything is written,
with a `ConfigError` naming the setting and what it accepts; it also makes
every way of writing a value compare equal (``4GB`` is 524288 pages of 8kB).

``ALTER SYSTEM`` takes no bind parameters, so its statements (`set_statement`)
quote the name after it was checked against the server, and write the checked
value as a literal exactly as the server's own ``quote_literal()`` would.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Iterable, Mapping

import asyncpg

from .._errors import ConfigError, translating
from .._typing import AnyConnection

__all__ = [
    "ServerSetting",
    "ServerState",
    "canonical",
    "list_items",
    "quote_literal",
    "quote_name",
    "read",
    "reset_statement",
    "running",
    "same",
    "same_value",
    "set_statement",
    "try_canonical",
    "unknown_setting",
]

# Settings whose value is a list of names that ALTER SYSTEM quotes one by one
# (GUC_LIST_QUOTE): 'a,b' given as one literal would become the one name "a,b".
_LIST_SETTINGS = frozenset(
    {
        "shared_preload_libraries",
        "session_preload_libraries",
        "local_preload_libraries",
        "search_path",
        "temp_tablespaces",
    }
)
_MEMORY_UNITS = {"B": 1, "kB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_TIME_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "min": 60000.0, "h": 3600000.0, "d": 86400000.0}
_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z]*)\s*$")
_ROW_UNIT = re.compile(r"^(\d*)([A-Za-z]+)$")
_BOOL = {"on": "on", "true": "on", "yes": "on", "1": "on", "t": "on", "y": "on"} | {
    "off": "off", "false": "off", "no": "off", "0": "off", "f": "off", "n": "off",
}  # fmt: skip
_LIBRARY = re.compile(r"^[A-Za-z0-9_$./-]+$")
_NAME_PART = re.compile(r"^[a-z_][a-z0-9_]*$")

_READ_SETTINGS = """
SELECT name, setting, current_setting(name) AS shown, unit, vartype, context,
       min_val, max_val, enumvals, boot_val
FROM pg_settings
"""
_READ_STATE = """
SELECT current_setting('server_version_num')::int AS version,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
         OR pg_has_role('pg_read_all_settings', 'MEMBER') AS privileged
"""
_READ_FILES = """
SELECT name, setting, error, sourcefile LIKE '%/postgresql.auto.conf' AS auto
FROM pg_file_settings
ORDER BY seqno
"""


@dataclasses.dataclass(frozen=True, slots=True)
class ServerSetting:
    """A row of the server's ``pg_settings``.

    Attributes:
        name: The setting.
        setting: Its running value, counted in ``unit`` (``"16384"`` for 128MB in 8kB pages).
        shown: The running value as ``SHOW`` writes it (``"128MB"``).
        unit: ``"8kB"``, ``"ms"``... or ``None``.
        vartype: ``bool``, ``integer``, ``real``, ``string`` or ``enum``.
        context: When it can change (``postmaster``: only at start).
        min_val: The smallest value, for numbers.
        max_val: The largest value, for numbers.
        enumvals: The values an enum accepts.
        boot_val: The built-in default.
    """

    name: str
    setting: str
    shown: str
    unit: str | None
    vartype: str
    context: str
    min_val: str | None
    max_val: str | None
    enumvals: tuple[str, ...]
    boot_val: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class ServerState:
    """One snapshot of a server's settings.

    Attributes:
        settings: Every setting this role can see, by name.
        configured: ``postgresql.auto.conf`` (what ``ALTER SYSTEM`` wrote), when readable.
        base: The other configuration files' values (what a ``RESET`` falls back to).
        errors: Values in ``postgresql.auto.conf`` the server could not apply, and why.
        version: ``server_version_num``.
        privileged: The role sees every setting (superuser or ``pg_read_all_settings``).
        loaded: The libraries loaded at start (``shared_preload_libraries``).
    """

    settings: Mapping[str, ServerSetting]
    configured: Mapping[str, str] | None
    base: Mapping[str, str]
    errors: Mapping[str, str]
    version: int
    privileged: bool
    loaded: tuple[str, ...]


# -- reading ----------------------------------------------------------------------------


def list_items(text: str) -> tuple[str, ...]:
    """The names in a list setting's text: ``'a, "B"'`` -> ``("a", "B")``."""
    names = []
    for item in text.split(","):
        name = item.strip()
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = name[1:-1].replace('""', '"')
        if name:
            names.append(name)
    return tuple(names)


async def read(
    conn: AnyConnection, *, load: Iterable[str] = (), timeout: float | None = None
) -> ServerState:
    """Read the server's settings, after loading ``load`` into this session.

    Loading a library (``LOAD 'auto_explain'``, superusers only) makes its
    settings known, so that they can be checked before the restart that
    preloads it; a library that does not exist fails here, before anything is
    changed. (pg_stat_statements defines its settings only when preloaded.)

    Raises:
        ConfigError: A library in ``load`` does not exist on the server.
    """
    with translating():
        state = await conn.fetchrow(_READ_STATE, timeout=timeout)
        assert state is not None  # noqa: S101 - a SELECT without FROM returns one row
        for library in load:
            await _load(conn, library, timeout=timeout)
        rows = await conn.fetch(_READ_SETTINGS, timeout=timeout)
        try:
            async with conn.transaction():
                files = await conn.fetch(_READ_FILES, timeout=timeout)
        except asyncpg.InsufficientPrivilegeError:
            files = None
    settings = {
        row["name"]: ServerSetting(
            name=row["name"],
            setting=row["setting"] or "",
            shown=row["shown"] or "",
            unit=row["unit"],
            vartype=row["vartype"],
            context=row["context"],
            min_val=row["min_val"],
            max_val=row["max_val"],
            enumvals=tuple(row["enumvals"] or ()),
            boot_val=row["boot_val"],
        )
        for row in rows
    }
    configured: dict[str, str] | None = None
    base: dict[str, str] = {}
    errors: dict[str, str] = {}
    if files is not None:
        configured = {}
        for row in files:
            (configured if row["auto"] else base)[row["name"]] = row["setting"]
            if row["error"] and row["auto"]:
                errors[row["name"]] = row["error"]
    preload = settings.get("shared_preload_libraries")
    return ServerState(
        settings=settings,
        configured=configured,
        base=base,
        errors=errors,
        version=state["version"],
        privileged=bool(state["privileged"]),
        loaded=list_items(preload.setting) if preload else (),
    )


async def _load(conn: AnyConnection, library: str, *, timeout: float | None) -> None:
    if not _LIBRARY.match(library):
        raise ConfigError(
            f"shared_preload_libraries: {library!r} is not a library name (letters, digits, "
            "_ $ . / -)",
            setting="shared_preload_libraries",
        )
    try:
        await conn.execute(f"LOAD {quote_literal(library)}", timeout=timeout)
    except asyncpg.UndefinedFileError as exc:
        raise ConfigError(
            f"shared_preload_libraries: the server has no library {library!r} ({exc}); "
            "install it on the server, or leave it out",
            setting="shared_preload_libraries",
        ) from None
    except asyncpg.InsufficientPrivilegeError:
        pass  # only superusers may LOAD; its settings are then checked after the restart


# -- checking ---------------------------------------------------------------------------


def quote_literal(value: str) -> str:
    """``value`` as an SQL string literal, as PostgreSQL's ``quote_literal()`` writes it.

    With a backslash, the ``E''`` form, which reads the same whatever the
    server's ``standard_conforming_strings``.
    """
    if "\x00" in value:
        raise ConfigError("a setting's value cannot hold a NUL character")
    quoted = value.replace("'", "''")
    if "\\" in value:
        return "E'" + quoted.replace("\\", "\\\\") + "'"
    return "'" + quoted + "'"


def quote_name(name: str) -> str:
    """A setting's name quoted for SQL: ``"work_mem"``, ``"auto_explain"."log_min_duration"``."""
    parts = name.split(".")
    if len(parts) > 2 or not all(_NAME_PART.match(part) for part in parts):
        raise ConfigError(f"{name!r} is not a setting's name", setting=name)
    return ".".join(f'"{part}"' for part in parts)


def _unit_factor(unit: str) -> tuple[dict[str, float], float] | None:
    """The unit family of a ``pg_settings.unit`` (``"8kB"``) and its size in the family's base."""
    found = _ROW_UNIT.match(unit)
    if found is None:
        return None
    count = int(found.group(1) or 1)
    for family in (_MEMORY_UNITS, _TIME_UNITS):
        if found.group(2) in family:
            return {k: float(v) for k, v in family.items()}, count * family[found.group(2)]
    return None


def _fail(row: ServerSetting, value: str, problem: str) -> ConfigError:
    return ConfigError(
        f"invalid value for server setting {row.name}: {value!r} {problem}", setting=row.name
    )


def _number(row: ServerSetting, value: str) -> float:
    """``value`` in the setting's own unit, checked against its range like the server would."""
    found = _NUMBER.match(value)
    unit = row.unit or ""
    scale = _unit_factor(unit) if unit else None
    if found is None:
        raise _fail(row, value, f"is not a number{_units_hint(row, scale)}")
    number, given = float(found.group(1)), found.group(2)
    if given:
        if scale is None or given not in scale[0]:
            raise _fail(
                row, value, f"has a unit this setting does not take{_units_hint(row, scale)}"
            )
        number = number * scale[0][given] / scale[1]
    if row.vartype == "integer":
        number = float(round(number))
    low = float(row.min_val) if row.min_val is not None else -math.inf
    high = float(row.max_val) if row.max_val is not None else math.inf
    if not low <= number <= high:
        raise _fail(
            row,
            value,
            f"is outside its range, {_bound(row, row.min_val)} to {_bound(row, row.max_val)}",
        )
    return number


def _bound(row: ServerSetting, text: str | None) -> str:
    """A range's end with its unit: 16 pages of ``8kB`` is ``128kB``, as the server says it."""
    found = _ROW_UNIT.match(row.unit or "")
    if text is None or found is None:
        return text or "-"
    count, unit = int(found.group(1) or 1), found.group(2)
    try:
        return f"{int(text) * count}{unit}"
    except ValueError:
        return f"{text}{row.unit}"  # a real


def _units_hint(row: ServerSetting, scale: tuple[dict[str, float], float] | None) -> str:
    kind = "an integer" if row.vartype == "integer" else "a number"
    if scale is None:
        return f" ({kind}, without a unit)"
    return f" ({kind}, with one of the units {', '.join(scale[0])}; e.g. '64{row.unit}')"


def canonical(row: ServerSetting, value: str) -> float | str | tuple[str, ...]:
    """``value`` in a form that compares equal to every way of writing it; checks it on the way.

    Raises:
        ConfigError: The server would refuse ``value`` for this setting.
    """
    if any(char in value for char in "\x00\n\r"):
        raise _fail(row, value, "holds a line break or NUL, which a configuration file cannot")
    text = value.strip()  # PostgreSQL ignores the spaces around all but a string
    if row.vartype in ("integer", "real"):
        return _number(row, text)
    if row.vartype == "bool":
        if text.lower() not in _BOOL:
            raise _fail(
                row, value, "is not a boolean: use on or off (also true/false, yes/no, 1/0)"
            )
        return _BOOL[text.lower()]
    if row.vartype == "enum":
        for allowed in row.enumvals:
            if allowed.lower() == text.lower():
                return allowed
        raise _fail(row, value, f"is not one of {', '.join(row.enumvals)}")
    if row.name in _LIST_SETTINGS:
        return list_items(text)
    return value


def same_value(row: ServerSetting, value: str) -> bool:
    """Whether the server runs ``row`` with ``value``, however either is written (4GB = 524288).

    Raises:
        ConfigError: The server would refuse ``value`` for this setting.
    """
    return same(canonical(row, value), running(row))


def running(row: ServerSetting) -> float | str | tuple[str, ...] | None:
    """The running value of ``row`` in `canonical` form (``None`` if it cannot be read)."""
    try:
        if row.vartype in ("integer", "real"):
            return float(row.setting)
        return canonical(row, row.setting)
    except (ValueError, ConfigError):
        return None


def same(a: object, b: object) -> bool:
    """Whether two `canonical` values are equal (numbers to a relative 1e-9)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def reset_statement(name: str) -> str:
    """``ALTER SYSTEM RESET`` for a checked name."""
    return f"ALTER SYSTEM RESET {quote_name(name)}"


def set_statement(name: str, value: str, *, strip: bool = True) -> str:
    """``ALTER SYSTEM SET`` for a checked name and value (a string's spaces may matter)."""
    if name in _LIST_SETTINGS:
        items = list_items(value)
        literal = ", ".join(map(quote_literal, items)) if items else "''"
    else:
        literal = quote_literal(value.strip() if strip else value)
    return f"ALTER SYSTEM SET {quote_name(name)} = {literal}"


def unknown_setting(name: str, state: ServerState) -> ConfigError:
    """The error for a name the server does not know, with the closest names it does."""
    close = difflib.get_close_matches(name, state.settings, n=3, cutoff=0.75)
    hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
    return ConfigError(
        f"unknown server setting {name!r}: PostgreSQL {state.version // 10000} has no such "
        f"setting. {hint}The server's settings are listed by `SELECT name FROM pg_settings`; "
        "a library's own settings (auto_explain.*) exist once it is in shared_preload_libraries.",
        setting=name,
    )


def try_canonical(row: ServerSetting, text: str) -> float | str | tuple[str, ...] | None:
    """`canonical`, or ``None`` where the server would refuse ``text``."""
    try:
        return canonical(row, text)
    except ConfigError:
        return None
