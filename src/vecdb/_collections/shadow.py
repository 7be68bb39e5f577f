"""The partitioned table `repartition` fills beside a collection's, and the log keeping it current.

Everything lives in the collection's schema, under names the ``_vecdb``
prefix reserves:

- ``_vecdb_new_<name>``: the new parent, partitioned as asked, its partitions
  under their final names (``<name>_p20240101``, so that nothing needs
  renaming but the parent and its own indexes), its primary key, foreign
  keys (under their final names: constraint names need only be unique per
  table) and filter indexes, later its GIN (a FullText field's) and HNSW
  indexes;
- ``_vecdb_ids_<name>``: its id registry, under its final name already (an
  unpartitioned collection has none);
- ``_vecdb_changes_<name>``: the ids written in the old table since the run
  began, logged by statement triggers (``_vecdb_capture_<name>()``) in each
  writer's own transaction; a ``TRUNCATE``, which would bypass them, is refused;
- ``_vecdb_repart_<name>``: one row: the declaration, the catalog definition
  the run started from, the phase, and the last id copied (the keyset marker).

Why nothing is lost. A batch copies the next ids after the marker and moves
the marker in the same transaction, so a killed run neither skips nor
repeats a row. A replay takes log entries and copies those ids' rows as the
old table has them (or leaves them out, if deleted), in one REPEATABLE READ
transaction that also deletes the entries it took: entries and rows come from
one snapshot. A write committed after that snapshot logged an entry the
replay could not see, so a later replay copies its row again; copying twice
is harmless. Under the swap's ACCESS EXCLUSIVE lock no write can commit, so
the swap's own replay leaves the two tables equal.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from .._errors import ConfigError
from .._identifiers import qualified, quote_ident
from .._schema import ddl as _ddl
from .._schema import fulltext as _fulltext
from .._schema import partitioning as _partitioning
from .._schema.columns import ColumnType
from .._schema.partitioning import Partitioning, TimePartitions
from .._schema.spec import RESERVED_PREFIX, CollectionSpec
from .._typing import AnyConnection
from . import checksums as _checksums
from . import partitions as _partitions

__all__ = [
    "CHANGES_PREFIX",
    "NEW_PREFIX",
    "RETIRED_PREFIX",
    "STATE_PREFIX",
    "Shadow",
    "State",
    "checksum",
    "copy_batch",
    "create",
    "create_triggers",
    "drop",
    "make_partitions",
    "not_null_names",
    "read_state",
    "registered",
    "replay",
    "retire",
    "set_phase",
]

NEW_PREFIX = RESERVED_PREFIX + "_new_"
CHANGES_PREFIX = RESERVED_PREFIX + "_changes_"
STATE_PREFIX = RESERVED_PREFIX + "_repart_"
CAPTURE_PREFIX = RESERVED_PREFIX + "_capture_"
RETIRED_PREFIX = RESERVED_PREFIX + "_old_"
_TRIGGERS = {  # trigger name (unique per table) -> (event, transition tables)
    "_vecdb_capture_insert": ("AFTER INSERT", "REFERENCING NEW TABLE AS vecdb_new_rows"),
    "_vecdb_capture_update": (
        "AFTER UPDATE",
        "REFERENCING OLD TABLE AS vecdb_old_rows NEW TABLE AS vecdb_new_rows",
    ),
    "_vecdb_capture_delete": ("AFTER DELETE", "REFERENCING OLD TABLE AS vecdb_old_rows"),
    "_vecdb_capture_truncate": ("BEFORE TRUNCATE", ""),
}


class Shadow:
    """A collection's table, the partitioned table replacing it, and the SQL between them.

    Args:
        stored: The collection as the catalog has it (unpartitioned).
        partitioning: How the new table is partitioned.
        limit: The client-side timeout of each statement (see `statement_limit`).
    """

    def __init__(self, stored: CollectionSpec, partitioning: Partitioning, limit: float) -> None:
        self.spec = stored
        self.final = dataclasses.replace(stored, partitioning=partitioning)
        self.new = dataclasses.replace(self.final, table=NEW_PREFIX + stored.table)
        self.limit = limit
        schema, table = stored.schema, stored.table
        self.old = qualified(schema, table)
        self.new_table = qualified(schema, self.new.table)
        self.registry = qualified(schema, _ddl.registry_name(self.final))
        self.changes = qualified(schema, CHANGES_PREFIX + table)
        self.state = qualified(schema, STATE_PREFIX + table)
        self.capture = qualified(schema, CAPTURE_PREFIX + table)
        self.retired = qualified(schema, RETIRED_PREFIX + table)  # the old table, once swapped
        self.id = quote_ident(stored.layout.id.name)
        self.id_type = stored.layout.id.type.value
        self.key = quote_ident(partitioning.field)
        self.columns = ", ".join(quote_ident(c) for c in stored.layout.columns)

    def key_sql(self, n: int) -> str:
        """A row's partition key in SQL (a UTC lower bound, or the value); ``$n``: the interval."""
        partitioning = self.final.partitioning
        if not isinstance(partitioning, TimePartitions):
            return self.key
        if self.spec.layout.filterable[partitioning.field] is ColumnType.DATE:
            return f"(date_trunc(${n}, {self.key}::timestamp) AT TIME ZONE 'UTC')"
        return f"date_trunc(${n}, {self.key}, 'UTC')"

    def key_args(self) -> list[str]:
        """What `key_sql` binds: the interval (from a closed set, bound all the same)."""
        partitioning = self.final.partitioning
        return [partitioning.interval] if isinstance(partitioning, TimePartitions) else []

    def copy_sql(self, where: str) -> str:
        """Copy the old table's rows matching ``where`` into the new table and its registry."""
        return (
            f"WITH src AS MATERIALIZED (SELECT {self.columns} FROM {self.old} WHERE {where}), "
            f"registered AS (INSERT INTO {self.registry} ({self.id}, {self.key}) "
            f"SELECT {self.id}, {self.key} FROM src) "
            f"INSERT INTO {self.new_table} ({self.columns}) SELECT {self.columns} FROM src"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class State:
    """The state row of a run under way.

    Attributes:
        partitioning: The declaration it converts to.
        definition: The catalog's JSON definition of the collection when it began.
        phase: ``"copy"``, ``"index"`` or ``"catchup"``.
        last_id: The last id copied (``None``: none yet).
        copied: Rows copied so far.
        total: Rows in the collection when it began.
    """

    partitioning: Partitioning | None
    definition: dict[str, Any]
    phase: str
    last_id: Any
    copied: int
    total: int


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def read_state(conn: AnyConnection, shadow: Shadow) -> State | None:
    """The state of the run under way, or ``None``."""
    if await conn.fetchval("SELECT to_regclass($1)", shadow.state) is None:
        return None
    row = await conn.fetchrow(
        f"SELECT partitioning, definition, phase, last_id, copied, total FROM {shadow.state}"
    )
    if row is None:
        return None
    return State(
        partitioning=_partitioning.from_json(_json(row["partitioning"])),
        definition=_json(row["definition"]),
        phase=row["phase"],
        last_id=row["last_id"],
        copied=int(row["copied"]),
        total=int(row["total"]),
    )


async def set_phase(conn: AnyConnection, shadow: Shadow, phase: str) -> None:
    """Record that the run reached ``phase``."""
    await conn.execute(f"UPDATE {shadow.state} SET phase = $1", phase)


async def create(
    conn: AnyConnection,
    shadow: Shadow,
    references: dict[str, tuple[str, str]],
    *,
    definition: dict[str, Any],
    total: int,
) -> None:
    """Create the new table, its registry, the change log and the state row (no partition)."""
    new, final = shadow.new, shadow.final
    await conn.execute(_ddl.create_table(new, references))
    for field in sorted(new.foreign_keys):
        # Before any partition exists: each partition copies the parent's names.
        await conn.execute(
            f"ALTER TABLE {shadow.new_table} RENAME CONSTRAINT "
            f"{quote_ident(_ddl.index_name(new.table, field, 'fkey'))} "
            f"TO {quote_ident(_ddl.index_name(final.table, field, 'fkey'))}"
        )
    for statement in _ddl.filter_indexes(new).values():
        await conn.execute(statement)
    await conn.execute(_ddl.create_registry(final))
    await conn.execute(
        f"CREATE TABLE {shadow.changes} (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
        f"{shadow.id} {shadow.id_type} NOT NULL)"
    )
    await conn.execute(f"CREATE INDEX ON {shadow.changes} ({shadow.id})")  # the checksum's probe
    await conn.execute(
        f"CREATE TABLE {shadow.state} (one boolean PRIMARY KEY DEFAULT true CHECK (one), "
        "partitioning jsonb NOT NULL, definition jsonb NOT NULL, phase text NOT NULL, "
        f"last_id {shadow.id_type}, copied bigint NOT NULL DEFAULT 0, total bigint NOT NULL, "
        "started_at timestamptz NOT NULL DEFAULT now())"
    )
    await conn.execute(
        f"INSERT INTO {shadow.state} (partitioning, definition, phase, total) "
        "VALUES ($1::jsonb, $2::jsonb, 'copy', $3)",
        json.dumps(_partitioning.to_json(final.partitioning)),
        json.dumps(definition),
        total,
    )


async def create_triggers(conn: AnyConnection, shadow: Shadow) -> None:
    """Log every id written in the old table from now on (SHARE ROW EXCLUSIVE on it)."""
    log = f"INSERT INTO {shadow.changes} ({shadow.id}) SELECT {shadow.id} FROM"
    # Names are validated identifiers, quoted: none can contain the $body$ delimiter.
    await conn.execute(
        f"CREATE FUNCTION {shadow.capture}() RETURNS trigger LANGUAGE plpgsql AS $body$\n"
        "BEGIN\n"
        "  IF TG_OP = 'INSERT' THEN\n"
        f"    {log} vecdb_new_rows;\n"
        "  ELSIF TG_OP = 'UPDATE' THEN\n"
        f"    {log} vecdb_new_rows UNION ALL SELECT {shadow.id} FROM vecdb_old_rows;\n"
        "  ELSIF TG_OP = 'DELETE' THEN\n"
        f"    {log} vecdb_old_rows;\n"
        "  ELSE\n"
        "    RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state', MESSAGE = "
        "format('%s is being repartitioned: a TRUNCATE would not reach its new table', "
        "TG_TABLE_NAME), HINT = 'delete() the rows instead, or wait for repartition() to end';\n"
        "  END IF;\n"
        "  RETURN NULL;\n"
        "END\n$body$"
    )
    for name, (when, transition) in _TRIGGERS.items():
        await conn.execute(
            f"CREATE TRIGGER {quote_ident(name)} {when} ON {shadow.old} {transition} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {shadow.capture}()"
        )


async def _children(conn: AnyConnection, shadow: Shadow) -> set[str]:
    """The names of the new table's partitions."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = $1::regclass",
        shadow.new_table,
    )
    return {row[0] for row in rows}


async def make_partitions(conn: AnyConnection, shadow: Shadow, values: list[Any]) -> None:
    """Make the new table's partitions for these key values (one run alone makes them).

    Raises:
        ConfigError: A table of a needed partition's name exists already.
    """
    wanted = {}
    for value in values:
        key = _partitions.key_of(shadow.final, value)
        wanted[_partitions.partition_name(shadow.final, key)] = key
    for name in sorted(set(wanted) - await _children(conn, shadow)):
        child = qualified(shadow.spec.schema, name)
        if await conn.fetchval("SELECT to_regclass($1)", child) is not None:
            raise ConfigError(
                f"repartitioning {shadow.spec.name!r} needs the partition "
                f"{shadow.spec.schema}.{name} for {wanted[name]!r}, but a table of that name "
                "exists; rename or move that table, then call repartition() again",
                setting="partition",
            )
        # As partitions.make does: LIKE, then ATTACH builds the parent's indexes on it.
        await conn.execute(_partitions.create_like(shadow.new_table, child))
        await _partitions.attach(conn, shadow.new, wanted[name], child)


async def _partitions_for(conn: AnyConnection, shadow: Shadow, where: str, *args: Any) -> None:
    """Make the partitions the old table's rows matching ``where`` need."""
    rows = await conn.fetch(
        f"SELECT DISTINCT {shadow.key_sql(len(args) + 1)} FROM {shadow.old} WHERE {where}",
        *args,
        *shadow.key_args(),
        timeout=shadow.limit,
    )
    await make_partitions(conn, shadow, [row[0] for row in rows])


async def copy_batch(conn: AnyConnection, shadow: Shadow, last: Any, size: int) -> tuple[Any, int]:
    """Copy up to ``size`` rows after id ``last``, in one transaction with the marker.

    Returns:
        The new marker (the last id copied) and how many rows were copied.
    """
    after, args = ("", []) if last is None else (f"WHERE {shadow.id} > $1", [last])
    # One snapshot for the range, its partitions and its rows.
    async with conn.transaction(isolation="repeatable_read"):
        row = await conn.fetchrow(
            f"SELECT max({shadow.id}) AS hi, count(*) AS n FROM (SELECT {shadow.id} "
            f"FROM {shadow.old} {after} ORDER BY {shadow.id} LIMIT ${len(args) + 1}) s",
            *args,
            size,
            timeout=shadow.limit,
        )
        assert row is not None  # noqa: S101 - an aggregate returns one row
        if not row["n"]:
            return last, 0
        hi = row["hi"]
        where = f"{shadow.id} <= ${len(args) + 1}"
        if last is not None:
            where += f" AND {shadow.id} > $1"
        await _partitions_for(conn, shadow, where, *args, hi)
        await conn.execute(shadow.copy_sql(where), *args, hi, timeout=shadow.limit)
        await conn.execute(
            f"UPDATE {shadow.state} SET last_id = $1, copied = copied + $2", hi, row["n"]
        )
    return hi, int(row["n"])


async def replay(conn: AnyConnection, shadow: Shadow, limit: int) -> int:
    """Apply up to ``limit`` log entries; return how many (0: the log is empty).

    Runs in the caller's transaction: a REPEATABLE READ one (see the module's
    docstring), or the swap's, which no writer can race.
    """
    row = await conn.fetchrow(
        f"WITH taken AS (DELETE FROM {shadow.changes} WHERE seq IN (SELECT seq FROM "
        f"{shadow.changes} ORDER BY seq LIMIT $1) RETURNING {shadow.id}) "
        f"SELECT count(*) AS n, array_agg(DISTINCT {shadow.id}) AS ids FROM taken",
        limit,
        timeout=shadow.limit,
    )
    assert row is not None  # noqa: S101 - an aggregate returns one row
    if not row["n"]:
        return 0
    where = f"{shadow.id} = ANY($1)"
    await _partitions_for(conn, shadow, where, row["ids"])
    for table in (shadow.new_table, shadow.registry):
        await conn.execute(f"DELETE FROM {table} WHERE {where}", row["ids"], timeout=shadow.limit)
    await conn.execute(shadow.copy_sql(where), row["ids"], timeout=shadow.limit)
    return int(row["n"])


async def checksum(conn: AnyConnection, shadow: Shadow, table: str) -> str:
    """The checksum (`checksums`) of ``table``, less the ids the log holds.

    The same expression for both tables, so the old table and its copy agree
    when they hold the same rows.
    """
    pending = f"SELECT 1 FROM {shadow.changes} c WHERE c.{shadow.id} = t.{shadow.id}"
    return await _checksums.checksum(
        conn, shadow.spec, table, f"NOT EXISTS ({pending})", timeout=shadow.limit
    )


async def registered(conn: AnyConnection, shadow: Shadow) -> tuple[int, int]:
    """Rows of the new table its registry names right, and registry entries (less the log's)."""
    pending = f"NOT EXISTS (SELECT 1 FROM {shadow.changes} c WHERE c.{shadow.id} = x.{shadow.id})"
    matched = await conn.fetchval(
        f"SELECT count(*) FROM {shadow.new_table} x JOIN {shadow.registry} r "
        f"ON r.{shadow.id} = x.{shadow.id} AND r.{shadow.key} = x.{shadow.key} WHERE {pending}",
        timeout=shadow.limit,
    )
    entries = await conn.fetchval(
        f"SELECT count(*) FROM {shadow.registry} x WHERE {pending}", timeout=shadow.limit
    )
    return int(matched), int(entries)


_NOT_NULL = """
SELECT a.attname, k.conname FROM pg_constraint k
JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
WHERE k.conrelid = $1::regclass AND k.contype = 'n'
"""


async def not_null_names(conn: AnyConnection, table: str) -> dict[str, str]:
    """Column to NOT NULL constraint name (PostgreSQL 18 names them after the table)."""
    return {row[0]: row[1] for row in await conn.fetch(_NOT_NULL, table)}


async def _rename_table(
    conn: AnyConnection, schema: str, source: CollectionSpec, target: CollectionSpec
) -> None:
    """Rename ``source``'s table, primary key and indexes (filter, GIN, HNSW) to ``target``'s."""
    table = qualified(schema, target.table)
    await conn.execute(
        f"ALTER TABLE {qualified(schema, source.table)} RENAME TO {quote_ident(target.table)}"
    )
    await conn.execute(
        f"ALTER TABLE {table} RENAME CONSTRAINT "
        f"{quote_ident(_ddl.index_name(source.table, 'pkey'))} "
        f"TO {quote_ident(_ddl.index_name(target.table, 'pkey'))}"
    )
    renames = list(zip(_ddl.filter_indexes(source), _ddl.filter_indexes(target), strict=True))
    renames += [
        (_fulltext.gin_name(source, ft), _fulltext.gin_name(target, ft))
        for ft in source.layout.fulltext
    ]
    if source.index is not None:
        vectors = source.layout.vectors
        renames += [(_ddl.hnsw_name(source, v), _ddl.hnsw_name(target, v)) for v in vectors]
    for before, after in renames:
        await conn.execute(
            f"ALTER INDEX IF EXISTS {qualified(schema, before)} RENAME TO {quote_ident(after)}"
        )


async def retire(conn: AnyConnection, shadow: Shadow) -> None:
    """Rename the old table away (to ``shadow.retired``) and the new one into place.

    Index names are unique in the schema, so the old table's go first;
    constraint names are unique per table only (foreign keys keep theirs).
    """
    schema = shadow.spec.schema
    not_null = await not_null_names(conn, shadow.old)
    ours = await not_null_names(conn, shadow.new_table)
    retired = dataclasses.replace(shadow.spec, table=RETIRED_PREFIX + shadow.spec.table)
    await _rename_table(conn, schema, shadow.spec, retired)
    await _rename_table(conn, schema, shadow.new, shadow.final)
    table = qualified(schema, shadow.final.table)
    for column, name in ours.items():
        wanted = not_null.get(column)
        if wanted is not None and wanted != name:
            # PostgreSQL 18 names NOT NULL constraints after the table: keep the old
            # table's. Recurses to the partitions, which copied the parent's names.
            await conn.execute(
                f"ALTER TABLE {table} RENAME CONSTRAINT {quote_ident(name)} "
                f"TO {quote_ident(wanted)}"
            )


async def drop(conn: AnyConnection, shadow: Shadow, *, new_too: bool) -> None:
    """Drop the triggers, the log and the state; ``new_too``: the new table and registry too."""
    if await conn.fetchval("SELECT to_regclass($1)", shadow.old) is not None:
        for name in _TRIGGERS:
            await conn.execute(f"DROP TRIGGER IF EXISTS {quote_ident(name)} ON {shadow.old}")
    await conn.execute(f"DROP FUNCTION IF EXISTS {shadow.capture}()")
    tables = [shadow.changes, shadow.state]
    if new_too:
        tables += [shadow.new_table, shadow.registry]
    await conn.execute(f"DROP TABLE IF EXISTS {', '.join(tables)}")
