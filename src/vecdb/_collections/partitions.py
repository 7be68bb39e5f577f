"""A partitioned collection's partitions: made on demand, listed, and their keys.

Partitions are never made with ``CREATE TABLE … PARTITION OF``, which takes
an ACCESS EXCLUSIVE lock on the parent and would queue every reader of every
partition behind the longest running search. A new partition is created as
a table of its own (``LIKE`` the parent), then attached: ``ATTACH
PARTITION`` takes SHARE UPDATE EXCLUSIVE on the parent, which readers and
writers of the other partitions never wait for, and builds the parent's
indexes (its HNSW index among them) on the new, empty table at once.

That lock is also what serialises processes that need the same new
partition: each takes it (``LOCK TABLE ONLY parent``), then looks again for
the partition by its deterministic name, and creates only what is still
missing. Nobody fails, nothing is made twice, and since no partition is
a DEFAULT one, no row can land anywhere but in its own partition (see
`vecdb._schema.partitioning`).

A partition's bound is an SQL literal, which PostgreSQL cannot take as a
parameter: the server formats it (``format('%L', $n)``), from a value bound
as text.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from .._errors import ConfigError, RecordValidationError
from .._identifiers import qualified
from .._schema import partitioning as _partitioning
from .._schema.columns import ColumnType
from .._schema.partitioning import PartitionInfo, TimePartitions
from .._schema.spec import CollectionSpec
from .._typing import AnyConnection

__all__ = [
    "Partitions",
    "attach",
    "create_like",
    "key_of",
    "list_partitions",
    "literal",
    "make",
    "partition_name",
    "premake",
]

logger = logging.getLogger("vecdb.partitions")

_CHILDREN = """
SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = $1::regclass
"""
_IN_LIST = re.compile(r"^FOR VALUES IN \((.*)\)$", re.DOTALL)


def key_of(spec: CollectionSpec, value: Any) -> Any:
    """The partition a partition-key value belongs to: a lower bound, or the value itself.

    Raises:
        ValueError: A naive datetime (see `vecdb._schema.partitioning.floor`).
    """
    partitioning = spec.partitioning
    assert partitioning is not None  # noqa: S101 - only partitioned collections are asked
    if isinstance(partitioning, TimePartitions):
        return _partitioning.floor(value, partitioning.interval)
    return value.value if hasattr(value, "value") and not isinstance(value, bool) else value


def partition_name(spec: CollectionSpec, key: Any) -> str:
    """The partition's table name for a key (a lower bound, or a value)."""
    return _name(spec, key)


def _name(spec: CollectionSpec, key: Any) -> str:
    if isinstance(spec.partitioning, TimePartitions):
        return _partitioning.time_partition_name(spec.table, key)
    return _partitioning.value_partition_name(spec.table, key)


def _field_type(spec: CollectionSpec) -> ColumnType:
    assert spec.partitioning is not None  # noqa: S101 - only partitioned collections are asked
    return spec.layout.filterable[spec.partitioning.field]


def literal(spec: CollectionSpec, value: Any) -> str:
    """A bound value as the text the server turns into the bound's literal."""
    if isinstance(value, dt.datetime) and _field_type(spec) is ColumnType.DATE:
        return value.date().isoformat()
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def attach(conn: AnyConnection, spec: CollectionSpec, key: Any, child: str) -> None:
    """``ATTACH PARTITION`` the table ``child`` (qualified) for the partition of ``key``."""
    parent = qualified(spec.schema, spec.table)
    if isinstance(spec.partitioning, TimePartitions):
        upper = _partitioning.step(key, spec.partitioning.interval)
        statement = await conn.fetchval(
            "SELECT format('ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (%L) TO (%L)', "
            "$1::text, $2::text, $3::text, $4::text)",
            parent,
            child,
            literal(spec, key),
            literal(spec, upper),
        )
    else:
        statement = await conn.fetchval(
            "SELECT format('ALTER TABLE %s ATTACH PARTITION %s FOR VALUES IN (%L)', "
            "$1::text, $2::text, $3::text)",
            parent,
            child,
            literal(spec, key),
        )
    # Built by the server from our quoted names and its own quoting of the bound.
    await conn.execute(statement)


def create_like(parent: str, child: str) -> str:
    """``CREATE TABLE child (LIKE parent …)``: a table ready to be attached as a partition.

    ``INCLUDING GENERATED``: a FullText field's tsvector column is generated
    on the parent, and ATTACH refuses a partition whose column is a plain one
    ("must be a generated column"). Indexes are not copied: ATTACH builds the
    parent's (the GIN and HNSW indexes among them) on the new table.
    """
    return f"CREATE TABLE {child} (LIKE {parent} INCLUDING DEFAULTS INCLUDING GENERATED)"


async def _attach(conn: AnyConnection, spec: CollectionSpec, key: Any, name: str) -> None:
    """Create partition ``name`` for ``key`` and attach it (caller holds the parent's lock)."""
    parent = qualified(spec.schema, spec.table)
    child = qualified(spec.schema, name)
    await conn.execute(create_like(parent, child))
    await attach(conn, spec, key, child)
    logger.info("created partition %s.%s of %s for %r", spec.schema, name, spec.name, key)


async def _children(conn: AnyConnection, spec: CollectionSpec) -> dict[str, str]:
    rows = await conn.fetch(_CHILDREN, qualified(spec.schema, spec.table))
    return {row["name"]: row["bound"] for row in rows}


async def make(conn: AnyConnection, spec: CollectionSpec, keys: Iterable[Any]) -> list[str]:
    """Make the partitions of ``keys`` that do not exist yet; return the ones it made.

    Runs in the caller's transaction, under ``LOCK TABLE ONLY parent IN SHARE
    UPDATE EXCLUSIVE MODE`` (the lock ATTACH takes anyway) until it commits.
    Call it before the transaction touches any row, so that a writer waiting
    here holds nothing another writer could wait for.

    Raises:
        ConfigError: A table of a partition's name exists and is not one of
            this collection's partitions.
    """
    wanted = {_name(spec, key): key for key in keys}
    if not wanted:
        return []
    await conn.execute(
        f"LOCK TABLE ONLY {qualified(spec.schema, spec.table)} IN SHARE UPDATE EXCLUSIVE MODE"
    )
    existing = await _children(conn, spec)
    made = []
    for name in sorted(set(wanted) - set(existing)):
        if await conn.fetchval("SELECT to_regclass($1)", qualified(spec.schema, name)):
            raise ConfigError(
                f"collection {spec.name!r} needs the partition {spec.schema}.{name} for "
                f"{wanted[name]!r}, but a table of that name exists and is not one of its "
                "partitions; rename or move that table",
                setting="partition",
            )
        await _attach(conn, spec, wanted[name], name)
        made.append(name)
    return made


class Partitions:
    """One collection's partition keys and their creation, for its writer.

    It keeps no list of the partitions that exist: other processes archive,
    restore and make partitions too, so each write asks the server (one
    catalog read per write transaction) and `make` creates what is missing.

    Args:
        spec: The collection (partitioned).
    """

    def __init__(self, spec: CollectionSpec) -> None:
        self._spec = spec
        self._column = spec.layout.columns.index(spec.partition_key or "")

    def keys(self, rows: Sequence[tuple[Any, ...]], ids: Sequence[Any], start: int) -> set[Any]:
        """The partition keys of validated COPY rows.

        Raises:
            RecordValidationError: A partition-key datetime without a time zone.
        """
        field = self._spec.partition_key
        keys: set[Any] = set()
        column = self._column
        for j, row in enumerate(rows):
            try:
                keys.add(key_of(self._spec, row[column]))
            except ValueError as exc:
                raise RecordValidationError(
                    f"record at position {start + j} (id={ids[j]!r}): {field} is a datetime "
                    f"without a time zone; the partition it belongs to would depend on the "
                    f"client's local time zone. Give it one (e.g. tzinfo=datetime.UTC). {exc}",
                    position=start + j,
                ) from None
        return keys

    async def make(self, conn: AnyConnection, keys: Iterable[Any]) -> None:
        """Make the partitions of ``keys`` that do not exist (no lock when none is missing)."""
        existing = await _children(conn, self._spec)
        todo = [key for key in keys if _name(self._spec, key) not in existing]
        if todo:
            await make(conn, self._spec, todo)


async def premake(conn: AnyConnection, spec: CollectionSpec, now: dt.datetime) -> list[str]:
    """Make the current time partition and ``premake`` ahead of it (time partitions only)."""
    partitioning = spec.partitioning
    if not isinstance(partitioning, TimePartitions):
        return []
    ahead = _partitioning.ahead(now, partitioning.interval, partitioning.premake)
    existing = await _children(conn, spec)
    lowers = [lower for lower, _ in ahead]
    if all(_name(spec, lower) in existing for lower in lowers):
        return []  # the common case at open: no lock
    return await make(conn, spec, lowers)


def _value(spec: CollectionSpec, bound: str) -> object:
    """The value of a LIST partition from its bound expression (``FOR VALUES IN ('a')``)."""
    match = _IN_LIST.match(bound)
    if match is None:
        return bound
    text = match.group(1)
    if text.startswith("'") and text.endswith("'"):
        text = text[1:-1].replace("''", "'")
    ctype = _field_type(spec)
    if ctype is ColumnType.BIGINT:
        return int(text)
    if ctype is ColumnType.BOOLEAN:
        return text == "true"
    if ctype is ColumnType.UUID:
        return uuid.UUID(text)
    if ctype is ColumnType.DATE:
        return dt.date.fromisoformat(text)
    return text


_TIME_NAME = re.compile(r"_p(\d{4})(\d{2})(\d{2})$")


EXACT_ROWS_BELOW = 100_000
"""`list_partitions` counts a partition's rows when its statistics say fewer than this."""


async def list_partitions(
    conn: AnyConnection, spec: CollectionSpec, *, exact: bool = True
) -> list[PartitionInfo]:
    """Every partition, oldest (or by name) first, with its rows and bytes.

    ``exact=False``: a partition whose statistics (``reltuples``, kept by
    ANALYZE and autovacuum) say it holds ``EXACT_ROWS_BELOW`` rows or more
    reports that estimate instead of being counted; a count reads every row.
    """
    rows = await conn.fetch(
        "SELECT c.oid, c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound, "
        "pg_total_relation_size(c.oid) AS bytes, c.reltuples "
        "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = $1::regclass ORDER BY c.relname",
        qualified(spec.schema, spec.table),
    )
    estimated = {
        row["oid"]: round(row["reltuples"])
        for row in rows
        if not exact and row["reltuples"] >= EXACT_ROWS_BELOW  # -1: never analyzed
    }
    counted = [row for row in rows if row["oid"] not in estimated]
    counts = dict(estimated)
    if counted:
        # One statement for every partition counted, each scanned alone (a count
        # over the parent grouped by tableoid would read the estimated ones too).
        # The names come from the catalog, quoted.
        union = " UNION ALL ".join(
            f"SELECT {int(row['oid'])}::oid, count(*) FROM {qualified(spec.schema, row['name'])}"
            for row in counted
        )
        counts.update({row[0]: row[1] for row in await conn.fetch(union)})
    infos = []
    for row in rows:
        name = row["name"]
        rows_in = counts.get(row["oid"], 0)
        lower = upper = value = None
        if isinstance(spec.partitioning, TimePartitions):
            match = _TIME_NAME.search(name)
            if match is not None:
                year, month, day = (int(g) for g in match.groups())
                lower = dt.datetime(year, month, day, tzinfo=dt.UTC)
                upper = _partitioning.step(lower, spec.partitioning.interval)
        else:
            value = _value(spec, row["bound"])
        infos.append(
            PartitionInfo(
                name=name,
                lower=lower,
                upper=upper,
                value=value,
                rows=int(rows_in),
                total_bytes=int(row["bytes"]),
                archived=False,
            )
        )
    return infos
