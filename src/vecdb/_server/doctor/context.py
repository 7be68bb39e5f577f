"""What every doctor check reads: its result type, the server's settings and indexes, helpers."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import asyncpg

from ..._collections import catalog as _catalog
from ..._errors import DatabaseError, MigrationError, VecdbError
from ..._identifiers import qualified
from ..._schema.spec import CollectionSpec
from ..._typing import PoolConnection
from ..database import Database
from ..tuning import MachineFacts

Status = Literal["ok", "warn", "fail", "skip"]


LARGE_TABLE = 10_000
"""Rows above which exact search is slow and an index pays: below it, the planner
scans the table anyway, so a missing, unused or bypassed index is not reported."""


_MIN_ITERATIVE = (0, 8)  # hnsw.iterative_scan: filtered searches return k rows


_MIN_PGVECTOR = (0, 7)  # what vecdb needs at all


_CACHE_MIN_READS = 1_000  # block requests before a hit ratio means anything


_HNSW_HIT_RATIO = 0.95


_DATABASE_HIT_RATIO = 0.90


_DATABASE_MIN_READS = 100_000


_DEAD_RATIO = 0.2  # autovacuum's own default scale factor


_MIN_ROWS = 1_000  # dead or changed rows below this are noise on any table


_LAG_SECONDS = 30.0


_LAG_BYTES = 64 << 20


_LISTED = 3  # objects named in one evidence line before "and N more"


_MACHINE_FREE = ("jit", "random_page_cost", "shared_preload_libraries")
"""Recommendations that hold whatever the server's machine (see `_settings`)."""


_UNIT_BYTES = {"B": 1, "kB": 1024, "8kB": 8192, "MB": 1 << 20, "16MB": 16 << 20}


_TRUE = frozenset({"on", "true", "yes", "1"})


_GRANT_MONITOR = "GRANT pg_monitor TO the doctor's role (or run it as the database owner)"


_GRANT_READ = "GRANT USAGE ON SCHEMA vecdb and SELECT ON ALL TABLES IN SCHEMA vecdb to the role"


@dataclasses.dataclass(frozen=True, slots=True)
class Check:
    """The result of one check.

    Attributes:
        name: The check, one of `CHECKS`.
        status: ``"ok"``, ``"warn"``, ``"fail"`` or ``"skip"`` (see the module docstring).
        evidence: What the doctor found, with the numbers it judged by.
        fix: What to do, in one line; empty when there is nothing to do.
    """

    name: str
    status: Status
    evidence: str
    fix: str = ""


_Result = tuple[Status, str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class _Setting:
    setting: str
    unit: str | None
    source: str
    vartype: str

    @property
    def bytes(self) -> int | None:
        """A memory setting in bytes; ``None`` for others (and -1, "use another setting")."""
        factor = _UNIT_BYTES.get(self.unit or "")
        if factor is None or int(self.setting) < 0:
            return None
        return int(self.setting) * factor


@dataclasses.dataclass(frozen=True, slots=True)
class _Index:
    """An HNSW index, with the collection table it serves (the root of a partition tree)."""

    schema: str
    name: str
    table_schema: str
    table: str
    columns: tuple[str, ...]
    bytes: int
    valid: bool
    oid: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Context:
    """What several checks need, read once before they run."""

    db: Database
    facts: MachineFacts | None
    settings: Mapping[str, _Setting]
    in_recovery: bool
    database: str
    collections: tuple[CollectionSpec, ...]
    catalog_problem: tuple[str, str] | None  # (evidence, fix) when it cannot be read
    hnsw: tuple[_Index, ...]

    def bytes(self, name: str) -> int | None:
        found = self.settings.get(name)
        return None if found is None else found.bytes

    def indexes_of(self, spec: CollectionSpec) -> list[_Index]:
        return [i for i in self.hnsw if (i.table_schema, i.table) == (spec.schema, spec.table)]


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _setting_size(n: float) -> str:
    """A value for a memory setting: the next power of two in MB at or above ``n`` bytes."""
    mb = 1
    while mb * (1 << 20) < n:
        mb *= 2
    return f"{mb // 1024}GB" if mb >= 1024 else f"{mb}MB"


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_LISTED])
    more = len(items) - _LISTED
    return f"{shown} and {more} more" if more > 0 else shown


def _when(value: Any) -> str:
    return "never" if value is None else value.strftime("%Y-%m-%d %H:%M")


async def _readable(conn: PoolConnection, query: str, *args: Any) -> str | None:
    """``None`` if ``query`` runs, else the server's reason; a savepoint keeps the transaction."""
    try:
        async with conn.transaction():
            await conn.execute(query, *args)
    except asyncpg.PostgresError as exc:
        return str(exc).splitlines()[0]
    return None


async def _rows(conn: PoolConnection, spec: CollectionSpec) -> int:
    """The collection's rows: the planner's estimate, or a bounded count if there is none."""
    table = qualified(spec.schema, spec.table)
    row = await conn.fetchrow(
        # pg_partition_tree() has no rows for a table that is not partitioned.
        "SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::float8 AS rows, "
        "coalesce(bool_or(c.reltuples < 0), false) AS unknown FROM pg_class c "
        "WHERE c.relkind <> 'p' AND (c.oid = $1::regclass OR c.oid IN "
        "(SELECT relid FROM pg_partition_tree($1::regclass) WHERE isleaf))",
        table,
    )
    assert row is not None  # noqa: S101 - an aggregate returns one row
    rows = int(row["rows"])
    if row["unknown"]:
        # Never vacuumed or analyzed: counting up to the threshold is enough to judge.
        counted = await conn.fetchval(
            f"SELECT count(*) FROM (SELECT FROM {table} LIMIT $1) s",
            LARGE_TABLE + 1,
        )
        rows = max(rows, int(counted))
    return rows


def _no_collections(ctx: _Context) -> _Result | None:
    if ctx.catalog_problem is not None:
        return ("warn", *ctx.catalog_problem)
    if not ctx.collections:
        return ("skip", "no collections", "")
    return None


def _standby(ctx: _Context) -> _Result | None:
    if ctx.in_recovery:
        return (
            "skip",
            "a standby keeps no statistics of writes: run the doctor on the primary",
            "",
        )
    return None


_HNSW = """
SELECT c.oid, n.nspname AS schema, c.relname AS name, rn.nspname AS table_schema,
       r.relname AS table_name, pg_relation_size(c.oid) AS bytes, i.indisvalid AS valid,
       array(SELECT a.attname::text FROM pg_depend d
             JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
             WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
               AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0
             ORDER BY a.attnum) AS columns
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_am am ON am.oid = c.relam
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class r ON r.oid = coalesce(pg_partition_root(i.indrelid), i.indrelid)
JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE am.amname = 'hnsw' AND c.relkind = 'i'
ORDER BY bytes DESC, 2, 3
"""


async def _context(db: Database, facts: MachineFacts | None, timeout: float) -> _Context:
    async with db.transaction(readonly=True, timeout=timeout) as conn:
        await _limits(conn, timeout)
        settings = {
            r["name"]: _Setting(r["setting"], r["unit"], r["source"], r["vartype"])
            for r in await conn.fetch(
                "SELECT name, setting, unit, source, vartype FROM pg_settings"
            )
        }
        in_recovery = bool(await conn.fetchval("SELECT pg_is_in_recovery()"))
        database = str(await conn.fetchval("SELECT current_database()"))
        hnsw = tuple(
            _Index(
                schema=r["schema"],
                name=r["name"],
                table_schema=r["table_schema"],
                table=r["table_name"],
                columns=tuple(r["columns"]),
                bytes=int(r["bytes"]),
                valid=bool(r["valid"]),
                oid=int(r["oid"]),
            )
            for r in await conn.fetch(_HNSW)
        )
        problem: tuple[str, str] | None = None
        specs: list[CollectionSpec] = []
        try:
            async with conn.transaction():
                infos = await _catalog.list_all(conn)
        except MigrationError:
            problem = (
                "no vecdb catalog in this database: its migrations were never applied",
                "`vecdb migrate`, then run the doctor again",
            )
            infos = []
        except DatabaseError as exc:
            problem = (f"cannot read the vecdb catalog: {str(exc).splitlines()[0]}", _GRANT_READ)
            infos = []
        unreadable: list[str] = []
        for info in infos:
            try:
                specs.append(_catalog.stored_spec(info))
            except (VecdbError, KeyError, ValueError, TypeError):
                unreadable.append(info.name)
        if unreadable:
            problem = (
                f"collection definitions this vecdb cannot read: {_listed(unreadable)}",
                "run the doctor of the vecdb version that wrote them",
            )
    return _Context(
        db=db,
        facts=facts,
        settings=settings,
        in_recovery=in_recovery,
        database=database,
        collections=tuple(specs),
        catalog_problem=problem,
        hnsw=hnsw,
    )


async def _limits(conn: PoolConnection, timeout: float) -> None:
    # Bounded, so that the doctor never hangs on a busy server or queues behind
    # a DDL lock (which would block every reader queued behind it).
    await conn.execute(
        "SELECT set_config('statement_timeout', $1, true), set_config('lock_timeout', $2, true)",
        f"{int(timeout * 1000)}ms",
        f"{int(min(timeout, 2.0) * 1000)}ms",
    )
