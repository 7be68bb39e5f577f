"""The collection catalog (``vecdb.collections``): create, open, evolve, list and drop.

Creating or opening runs in one transaction under a transaction-scoped
advisory lock keyed on the collection name, so that tasks or processes that
create the same collection at once are serialised: the first creates the
table, its indexes and the catalog row; the others then find the row and
compare definitions. Nothing is left half-made if any statement fails.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Mapping
from typing import Any

import asyncpg

from .._errors import (
    UNDEFINED_TABLE,
    CollectionNotFoundError,
    ConfigError,
    DatabaseError,
    MigrationError,
    SchemaMismatchError,
    translating,
)
from .._identifiers import qualified, quote_ident
from .._schema import ddl as _ddl
from .._schema.record import FieldSpec
from .._schema.spec import CollectionSpec, diff
from .._typing import AnyConnection
from .._version import __version__
from . import partitions

__all__ = [
    "CollectionInfo",
    "drop",
    "list_all",
    "load",
    "open_or_create",
    "register",
    "save_spec",
]

logger = logging.getLogger("vecdb.collections")

_LOCK_CLASS = 0x76656364  # "vecd", shared with the migration lock; the name's hash is the key
_SELECT = (
    "SELECT name, schema_name, table_name, model, spec, spec_version, created_at, "
    "updated_at, library_version FROM vecdb.collections"
)


@dataclasses.dataclass(frozen=True, slots=True)
class CollectionInfo:
    """One row of ``db.collections()``.

    Attributes:
        name: The collection's name.
        schema: The schema of its table.
        table: Its table's name.
        model: The model class it was created with (``module.QualName``).
        spec: The stored definition: fields, vectors, metric, storage, index,
            filterable fields, foreign keys.
        created_at: When it was created.
        updated_at: When its definition last changed.
        library_version: The vecdb version that last wrote the definition.
    """

    name: str
    schema: str
    table: str
    model: str
    spec: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime
    library_version: str


def _info(row: Mapping[str, Any] | asyncpg.Record) -> CollectionInfo:
    spec = row["spec"]
    return CollectionInfo(
        name=row["name"],
        schema=row["schema_name"],
        table=row["table_name"],
        model=row["model"],
        spec=json.loads(spec) if isinstance(spec, str) else dict(spec),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        library_version=row["library_version"],
    )


async def _lock(conn: AnyConnection, name: str) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _LOCK_CLASS, name)


_NOT_MIGRATED = (
    "this database has no vecdb catalog (vecdb.collections): its migrations were never "
    "applied. Connect with migrate='apply' (the default) or run `vecdb migrate`."
)


async def _fetch(conn: AnyConnection, query: str, *args: Any) -> list[asyncpg.Record]:
    try:
        with translating():
            return await conn.fetch(query, *args)
    except DatabaseError as exc:
        if exc.sqlstate != UNDEFINED_TABLE:
            raise
        raise MigrationError(_NOT_MIGRATED, source="vecdb", version=1) from exc


async def load(conn: AnyConnection, name: str) -> CollectionInfo | None:
    """The catalog row of ``name``, or ``None``.

    Raises:
        MigrationError: The database was never migrated (no catalog).
    """
    rows = await _fetch(conn, _SELECT + " WHERE name = $1", name)
    return _info(rows[0]) if rows else None


async def list_all(conn: AnyConnection) -> list[CollectionInfo]:
    """Every catalog row, by name.

    Raises:
        MigrationError: The database was never migrated (no catalog).
    """
    return [_info(row) for row in await _fetch(conn, _SELECT + " ORDER BY name")]


def stored_spec(info: CollectionInfo) -> CollectionSpec:
    """The `CollectionSpec` a catalog row describes."""
    return CollectionSpec.from_json(info.name, info.schema, info.table, info.spec)


def _referenced_table(target: CollectionSpec) -> tuple[str, str]:
    """The table a foreign key to ``target``'s ids references.

    A partitioned table's ids are unique only with the partition key, so a
    foreign key to a partitioned collection references its id registry, which
    holds every id once, in whichever partition (or archive) the row lives.
    """
    if target.partitioning is not None:
        return target.schema, _ddl.registry_name(target)
    return target.schema, target.table


async def _references(conn: AnyConnection, spec: CollectionSpec) -> dict[str, tuple[str, str]]:
    """Check each foreign key's target and return its ``(schema, table)``."""
    found: dict[str, tuple[str, str]] = {}
    types = spec.layout.filterable
    for field, fk in sorted(spec.foreign_keys.items()):
        if field not in types or field == spec.layout.id.name:
            raise ConfigError(
                f"foreign_keys names {field!r}, which is not a field of the model; "
                f"valid fields are {sorted(f.name for f in spec.layout.fields)}",
                setting="foreign_keys",
            )
        nullable = next(f.nullable for f in spec.layout.fields if f.name == field)
        if fk.on_delete == "set_null" and not nullable:
            raise ConfigError(
                f"foreign key {field!r} uses on_delete='set_null' but the field is required; "
                "make it optional (`| None = None`) or choose another on_delete",
                setting="foreign_keys",
            )
        if fk.collection == spec.name:
            target_id, where = spec.layout.id.type, _referenced_table(spec)
        else:
            info = await load(conn, fk.collection)
            if info is None:
                raise CollectionNotFoundError(
                    f"foreign key {field!r} references collection {fk.collection!r}, which "
                    "does not exist; create it first with db.collection(...)",
                    name=fk.collection,
                )
            target = stored_spec(info)
            target_id, where = target.layout.id.type, _referenced_table(target)
        if types[field] != target_id:
            raise ConfigError(
                f"foreign key {field!r} is {types[field].value} but {fk.collection}.id is "
                f"{target_id.value}; declare the field with the same type as the id",
                setting="foreign_keys",
            )
        found[field] = where
    return found


def _check_filterable(spec: CollectionSpec) -> None:
    types = spec.layout.filterable
    for name in spec.filterable:
        if name not in types:
            vectors = [v.name for v in spec.layout.vectors]
            why = "a vector field (searched by distance)" if name in vectors else "not a field"
            raise ConfigError(
                f"filterable names {name!r}, which is {why}; valid fields are {sorted(types)}",
                setting="filterable",
            )


async def _create(conn: AnyConnection, spec: CollectionSpec, model: str) -> None:
    exists = await conn.fetchval("SELECT to_regclass($1)", qualified(spec.schema, spec.table))
    if exists is not None:
        raise ConfigError(
            f"a table {spec.schema}.{spec.table} already exists and is not a vecdb collection; "
            "choose another collection name (or schema=), or move that table away",
            setting="name",
        )
    references = await _references(conn, spec)
    if spec.schema != "public":
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(spec.schema)}")
    if spec.partitioning is not None:
        # Before the table: a foreign key of the collection to itself references it.
        await conn.execute(_ddl.create_registry(spec))
    await conn.execute(_ddl.create_table(spec, references))
    for statement in _ddl.filter_indexes(spec).values():
        await conn.execute(statement)
    if spec.index is not None:
        for vector in spec.layout.vectors:
            await conn.execute(_ddl.hnsw_index(spec, vector))
    if spec.partitioning is not None:
        await partitions.premake(conn, spec, dt.datetime.now(dt.UTC))
    await register(conn, spec, model)
    logger.info("created collection %s (%s.%s)", spec.name, spec.schema, spec.table)


async def register(conn: AnyConnection, spec: CollectionSpec, model: str) -> None:
    """Write the catalog row of a collection whose table exists (made, or adopted)."""
    await conn.execute(
        "INSERT INTO vecdb.collections (name, schema_name, table_name, model, spec, "
        "library_version) VALUES ($1, $2, $3, $4, $5::jsonb, $6)",
        spec.name,
        spec.schema,
        spec.table,
        model,
        json.dumps(spec.to_json()),
        __version__,
    )


async def _evolve(conn: AnyConnection, stored: CollectionSpec, given: CollectionSpec) -> None:
    old_fields = {f.name for f in stored.layout.fields}
    new: list[FieldSpec] = [f for f in given.layout.fields if f.name not in old_fields]
    for field in new:
        await conn.execute(_ddl.add_column(given, field))
    wanted = _ddl.filter_indexes(given)
    for name in _ddl.filter_indexes(stored):
        if name not in wanted:
            await conn.execute(f"DROP INDEX IF EXISTS {qualified(given.schema, name)}")
    for statement in wanted.values():
        await conn.execute(statement)
    await save_spec(conn, given)
    logger.info(
        "evolved collection %s: added %s, filterable %s",
        given.name,
        [f.name for f in new] or "no fields",
        list(given.filterable),
    )


async def save_spec(conn: AnyConnection, spec: CollectionSpec) -> None:
    """Store a collection's changed definition (new fields, filter or index parameters)."""
    await conn.execute(
        "UPDATE vecdb.collections SET spec = $2::jsonb, updated_at = now(), "
        "library_version = $3 WHERE name = $1",
        spec.name,
        json.dumps(spec.to_json()),
        __version__,
    )


async def open_or_create(
    conn: AnyConnection, given: CollectionSpec, model: str, *, evolve: bool
) -> CollectionSpec:
    """Create the collection, or open it and check (or evolve) its definition.

    Must run inside a transaction: the advisory lock is held until it ends.

    Returns:
        The spec to use (the stored table and schema, the caller's fields).

    Raises:
        SchemaMismatchError: The stored definition differs in a way ``evolve``
            cannot (or was not asked to) resolve; lists every difference.
        ConfigError: A bad filterable field or foreign key, or a foreign table
            in the way.
        CollectionNotFoundError: A foreign key names a collection that does not exist.
    """
    _check_filterable(given)
    await _lock(conn, given.name)
    info = await load(conn, given.name)
    if info is None:
        await _create(conn, given, model)
        return given
    stored = stored_spec(info)
    given = dataclasses.replace(given, table=stored.table)
    evolvable, destructive = diff(stored, given)
    if stored.schema != given.schema:
        destructive.insert(
            0,
            f"schema: the collection lives in {stored.schema!r}, given {given.schema!r}; "
            f"pass schema={stored.schema!r} (collection names are unique across schemas)",
        )
    if destructive or (evolvable and not evolve):
        differences = destructive + evolvable
        lines = "\n".join(f"  - {line}" for line in differences)
        hint = (
            "Nothing was changed."
            if evolve
            else "Nothing was changed; evolve=True applies only the non-destructive ones."
        )
        raise SchemaMismatchError(
            f"collection {given.name!r} exists with a different definition "
            f"({len(differences)} difference(s)):\n{lines}\n{hint}",
            differences=differences,
        )
    if evolvable:
        _check_filterable(given)
        await _evolve(conn, stored, given)
    return given


async def drop(conn: AnyConnection, name: str) -> None:
    """Drop a collection's table and catalog row; run inside a transaction.

    Raises:
        CollectionNotFoundError: No such collection.
        ConfigError: Another collection has a foreign key to this one.
    """
    await _lock(conn, name)
    info = await load(conn, name)
    if info is None:
        names = [i.name for i in await list_all(conn)]
        raise CollectionNotFoundError(
            f"no collection named {name!r}; existing collections: {names}", name=name
        )
    dependents = [
        other.name
        for other in await list_all(conn)
        if other.name != name
        and any(fk.get("collection") == name for fk in other.spec.get("foreign_keys", {}).values())
    ]
    if dependents:
        raise ConfigError(
            f"cannot drop collection {name!r}: {dependents} reference it by foreign key; "
            "drop those first",
            setting="name",
        )
    for statement in _ddl.drop_table(stored_spec(info)):
        await conn.execute(statement)
    await conn.execute("DELETE FROM vecdb.collections WHERE name = $1", name)
    logger.info("dropped collection %s", name)
