"""What the server can do, read once at connect: versions, pgvector, privileges.

One query answers everything vecdb needs to know about a server before it
migrates (is it new enough, is pgvector there or installable, may this role
create it) and after (which pgvector features the collections may use).
`check` turns the answers into clear `ConfigError`s, so no migration fails
obscurely on a server that lacks something.
"""

from __future__ import annotations

import dataclasses

from .._errors import ConfigError
from .._typing import AnyConnection

__all__ = ["MIN_PGVECTOR", "MIN_SERVER", "Capabilities", "check", "parse_version", "read"]

MIN_SERVER = 140000  # PostgreSQL 14, as server_version_num
MIN_PGVECTOR = (0, 7)
_ITERATIVE_SCAN = (0, 8)  # hnsw.iterative_scan and max_scan_tuples

_QUERY = """
SELECT current_setting('server_version_num')::int AS server_version_num,
       current_setting('server_version') AS server_version,
       current_database() AS database,
       (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS installed,
       -- pg_available_extensions reads every control file on disk: only when needed
       CASE WHEN NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'vector')
            THEN (SELECT default_version FROM pg_available_extensions WHERE name = 'vector')
       END AS available,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
       pg_is_in_recovery() AS in_recovery
"""


def parse_version(text: str) -> tuple[int, ...]:
    """``"0.8.1"`` as ``(0, 8, 1)``; parts that are not numbers are left out."""
    return tuple(int(part) for part in text.split(".") if part.isdigit())


@dataclasses.dataclass(frozen=True, slots=True)
class Capabilities:
    """The server as vecdb found it.

    Attributes:
        server_version_num: PostgreSQL's version as a number (``180006``).
        server_version: PostgreSQL's version string (``"18.6"``).
        database: The database connected to.
        pgvector_version: The ``vector`` extension created in this database, if any.
        pgvector_available: The version that ``CREATE EXTENSION vector`` would
            install, when it is not created yet.
        superuser: Whether the role is a superuser.
        in_recovery: Whether the server is a standby.
    """

    server_version_num: int
    server_version: str
    database: str
    pgvector_version: str | None
    pgvector_available: str | None
    superuser: bool
    in_recovery: bool

    @property
    def pgvector(self) -> tuple[int, ...]:
        """The created (else available) pgvector version as numbers; ``()`` if neither."""
        return parse_version(self.pgvector_version or self.pgvector_available or "")

    @property
    def iterative_scan(self) -> bool:
        """Whether pgvector has iterative index scans (0.8+)."""
        return self.pgvector >= _ITERATIVE_SCAN


async def read(conn: AnyConnection, *, timeout: float | None = None) -> Capabilities:
    """Ask the server (one round trip)."""
    row = await conn.fetchrow(_QUERY, timeout=timeout)
    assert row is not None  # noqa: S101 - a SELECT without FROM returns one row
    return Capabilities(
        server_version_num=row["server_version_num"],
        server_version=row["server_version"],
        database=row["database"],
        pgvector_version=row["installed"],
        pgvector_available=row["available"],
        superuser=bool(row["superuser"]),
        in_recovery=row["in_recovery"],
    )


def check(caps: Capabilities, *, need_create: bool) -> None:
    """Say clearly what the server lacks, before any migration tries and fails obscurely.

    Args:
        caps: What `read` found.
        need_create: Migrations will run, so the extension may have to be created.

    Raises:
        ConfigError: The server is too old, pgvector is missing or too old, or
            it is not created and this role may not create it.
    """
    if caps.server_version_num < MIN_SERVER:
        raise ConfigError(
            f"PostgreSQL {caps.server_version} is too old: vecdb needs PostgreSQL 14 or "
            "newer. Upgrade the server, or use the embedded one (connect() without a DSN)."
        )
    installed, available = caps.pgvector_version, caps.pgvector_available
    if installed is None and available is None:
        raise ConfigError(
            f"the pgvector extension is not installed on this server (PostgreSQL "
            f"{caps.server_version}): install it (e.g. `apt install "
            f"postgresql-{caps.server_version_num // 10000}-pgvector`, or see "
            "https://github.com/pgvector/pgvector#installation), or use the embedded "
            "server by calling connect() without a DSN."
        )
    if installed is None and need_create and not caps.superuser:
        raise ConfigError(
            f"the pgvector extension is available but not created in database "
            f"{caps.database!r}, and this role may not create it (CREATE EXTENSION vector "
            f"needs a superuser). Ask an administrator to run `CREATE EXTENSION vector;` in "
            f"{caps.database!r}, then connect again."
        )
    if caps.pgvector < MIN_PGVECTOR:
        package = f"postgresql-{caps.server_version_num // 10000}-pgvector"
        where = (
            f"created in database {caps.database!r}"
            if installed
            else "the version this server would install"
        )
        then = (
            f"then run `ALTER EXTENSION vector UPDATE;` in {caps.database!r} (it updates to "
            "the newest version installed)"
            if installed
            else "then connect again"
        )
        raise ConfigError(
            f"pgvector {installed or available} ({where}) is too old: vecdb needs 0.7 or "
            f"newer (0.8 for iterative index scans). Install a newer pgvector on the server "
            f"(e.g. `apt install {package}`, or build it from source), {then}. Nothing was "
            "changed."
        )
