"""``db.adopt()``: register a pgvector table that already exists as a collection, copying nothing.

The table is read from the system catalogs (columns, types, primary key, vector
indexes) and compared with the model; every difference is listed with how to
resolve it, and nothing is changed unless there is none. Then the only write is
the catalog row: no DDL, no index, not a row moved. Tables made by vecs,
langchain-postgres or by hand keep working for the code that made them.

Column types that read and write the same values through asyncpg are
accepted for a field: ``character varying`` for ``str``, ``integer`` and
``smallint`` for ``int``, ``real`` for ``float``, ``json`` for a dict or model.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._errors import ConfigError, SchemaMismatchError, translating
from .._identifiers import qualified, validate_identifier
from .._schema.columns import ColumnType
from .._schema.record import Record, layout
from .._schema.spec import HNSW, METRICS, RESERVED_PREFIX, CollectionSpec, Metric, Storage
from .._typing import AnyConnection, Connections, M
from . import catalog as _catalog
from .collection import Collection

__all__ = ["adopt"]

logger = logging.getLogger("vecdb.collections")

_ACCEPTS: dict[ColumnType, frozenset[str]] = {
    ColumnType.TEXT: frozenset({"text", "character varying"}),
    ColumnType.BIGINT: frozenset({"bigint", "integer", "smallint"}),
    ColumnType.DOUBLE: frozenset({"double precision", "real"}),
    ColumnType.BOOLEAN: frozenset({"boolean"}),
    ColumnType.TIMESTAMPTZ: frozenset({"timestamp with time zone"}),
    ColumnType.DATE: frozenset({"date"}),
    ColumnType.UUID: frozenset({"uuid"}),
    ColumnType.TEXT_ARRAY: frozenset({"text[]", "character varying[]"}),
    ColumnType.BIGINT_ARRAY: frozenset({"bigint[]"}),
    ColumnType.JSONB: frozenset({"jsonb", "json"}),
}
_LENGTH = re.compile(r"\(\d+(,\d+)?\)")  # varchar(255) reads and writes as varchar
_METRIC_OF_OPCLASS = {
    "cosine_ops": "cosine",
    "l2_ops": "l2",
    "ip_ops": "inner_product",
    "l1_ops": "l1",
}

_COLUMNS = """
SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, t.typname AS base,
       a.atttypmod AS typmod, a.attnotnull AS not_null,
       a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '' AS has_default
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""
_PRIMARY_KEY = """
SELECT coalesce(array_agg(a.attname::text), '{}') FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE i.indrelid = $1 AND i.indisprimary
"""
_VECTOR_INDEXES = """
SELECT ic.relname AS name, am.amname AS method, op.opcname AS opclass,
       coalesce(ic.reloptions, '{}') AS options, i.indisvalid AS valid, a.attname AS column
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_am am ON am.oid = ic.relam
JOIN pg_opclass op ON op.oid = i.indclass[0]
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
WHERE i.indrelid = $1 AND am.amname IN ('hnsw', 'ivfflat') ORDER BY ic.relname
"""


@dataclass(frozen=True, slots=True)
class _Column:
    name: str
    type: str
    base: str
    typmod: int
    not_null: bool
    has_default: bool

    @property
    def is_vector(self) -> bool:
        return self.base in ("vector", "halfvec")


def _found_index(
    indexes: Sequence[Mapping[str, Any]], column: str
) -> tuple[HNSW | None, str | None, list[str]]:
    """The valid HNSW index on ``column``: its parameters, its metric, and notes on the others."""
    notes: list[str] = []
    for index in indexes:
        if index["column"] != column:
            continue
        if index["method"] != "hnsw":
            notes.append(
                f"{index['method']} index {index['name']} is kept, but vecdb plans HNSW only"
            )
            continue
        if not index["valid"]:
            notes.append(f"HNSW index {index['name']} is INVALID (a failed concurrent build)")
            continue
        options = dict(str(o).split("=", 1) for o in index["options"])
        params = HNSW(
            m=int(options.get("m", 16)), ef_construction=int(options.get("ef_construction", 64))
        )
        suffix = str(index["opclass"]).split("_", 1)[-1]
        return params, _METRIC_OF_OPCLASS.get(suffix), notes
    return None, None, notes


def _compare(
    model: type[Record],
    columns: Mapping[str, _Column],
    primary_key: Sequence[str],
    spec: CollectionSpec,
) -> list[str]:
    """Every difference between the table and the model, each with how to resolve it."""
    table = qualified(spec.schema, spec.table)
    found: list[str] = []
    lay = spec.layout
    id_column = columns.get(lay.id.name)
    if list(primary_key) != [lay.id.name]:
        found.append(
            f"id: the table's primary key is {list(primary_key) or 'missing'}, the model's id "
            f"field is {lay.id.name!r}; pass id_field= naming the primary key column (and "
            "name the model's field the same)"
        )
    fields = [lay.id, *lay.fields]
    for field in fields:
        column = columns.get(field.name)
        if column is None:
            if field is not lay.id or id_column is None:
                found.append(
                    f"field {field.name!r} ({field.type.value}) has no column in {table}; add "
                    "it in a migration (ALTER TABLE ... ADD COLUMN) or remove it from the model"
                )
            continue
        kind = _LENGTH.sub("", column.type)
        if kind not in _ACCEPTS[field.type]:
            found.append(
                f"field {field.name!r}: the column is {column.type}, the model's type needs "
                f"{field.type.value}; change the field's type, or the column's in a "
                f"migration (ALTER TABLE {table} ALTER COLUMN ... TYPE {field.type.value})"
            )
        elif not column.not_null and not field.nullable:
            found.append(
                f"field {field.name!r} is required but the column allows NULL; declare it "
                f"`| None = None`, or SET NOT NULL on the column in a migration"
            )
    for vector in lay.vectors:
        column = columns.get(vector.name)
        if column is None or not column.is_vector:
            others = [c.name for c in columns.values() if c.is_vector]
            found.append(
                f"vector field {vector.name!r} has no vector column in {table} (vector "
                f"columns there: {others}); pass vector_field= naming one, and name the "
                "model's field the same"
            )
            continue
        if column.typmod < 1:
            found.append(
                f"vector {vector.name!r}: the column is {column.type} without a dimension, "
                f"which HNSW cannot index; set one in a migration (ALTER TABLE {table} ALTER "
                f"COLUMN {vector.name} TYPE {column.base}(<the embeddings' dimension>))"
            )
        elif column.typmod != vector.dim:
            found.append(
                f"vector {vector.name!r}: the column is {column.type}, the model declares "
                f"{vector.dim} dimensions; other dimensions need other embeddings: use the "
                "table's dimension (or re-embed into a new collection)"
            )
        if not column.not_null:
            found.append(
                f"vector {vector.name!r}: the column allows NULL and every record needs its "
                f"vector; SET NOT NULL on it in a migration (after removing rows without one)"
            )
    known = {f.name for f in fields} | {v.name for v in lay.vectors}
    found.extend(
        f"column {c.name!r} ({c.type}) is NOT NULL without a default and not in the model, "
        "so no record could be written; add the field to the model"
        for c in columns.values()
        if c.name not in known and c.not_null and not c.has_default
    )
    return found


async def _read_table(
    conn: AnyConnection, schema: str, table: str
) -> tuple[dict[str, _Column], list[str], list[Mapping[str, Any]]]:
    where = qualified(schema, table)
    row = await conn.fetchrow(
        "SELECT c.oid, c.relkind::text AS relkind FROM pg_class c WHERE c.oid = to_regclass($1)",
        where,
    )
    if row is None:
        raise ConfigError(
            f"there is no table {schema}.{table}; pass the name of an existing table (and "
            "schema= when it is not in public)",
            setting="table",
        )
    if row["relkind"] != "r":
        what = "a partitioned table" if row["relkind"] == "p" else "not a plain table"
        raise ConfigError(
            f"{schema}.{table} is {what}; adopt() takes plain tables", setting="table"
        )
    oid = row["oid"]
    columns = {r["name"]: _Column(**dict(r)) for r in await conn.fetch(_COLUMNS, oid)}
    primary_key = list(await conn.fetchval(_PRIMARY_KEY, oid))
    indexes: list[Mapping[str, Any]] = [dict(r) for r in await conn.fetch(_VECTOR_INDEXES, oid)]
    return columns, primary_key, indexes


async def _register_or_open(
    conn: AnyConnection, spec: CollectionSpec, model: type[Record]
) -> tuple[CollectionSpec, bool]:
    """Write the catalog row, or open the collection adopted before; ``(spec, adopted now)``."""
    collection, schema, table = spec.name, spec.schema, spec.table
    await _catalog._lock(conn, collection)  # the catalog's own lock: one writer per name
    owner = await conn.fetchval(
        "SELECT name FROM vecdb.collections WHERE schema_name = $1 AND table_name = $2",
        schema,
        table,
    )
    model_name = f"{model.__module__}.{model.__qualname__}"
    if owner is not None and owner != collection:
        raise ConfigError(
            f"{schema}.{table} is already the collection {owner!r}; open it with "
            f"adopt(..., name={owner!r})",
            setting="name",
        )
    if owner is None:
        if await _catalog.load(conn, collection) is not None:
            raise ConfigError(
                f"a collection named {collection!r} exists with another table; pass "
                "name= to give this one another name",
                setting="name",
            )
        await _catalog.register(conn, spec, model_name)
        return spec, True
    # Adopted before: the same call opens it, checking the definition again.
    return await _catalog.open_or_create(conn, spec, model_name, evolve=False), False


async def adopt(
    pool: Connections,
    table: str,
    model: type[M],
    *,
    vector_field: str,
    id_field: str,
    schema: str,
    name: str | None,
    metric: Metric | None,
    timeout: float | None,
    iterative: bool,
) -> Collection[M]:
    """The body of ``db.adopt()``: see `Database.adopt`."""
    pool.check_open()
    validate_identifier(table, what="table name")
    validate_identifier(schema, what="schema name")
    collection = validate_identifier(name or table, what="collection name")
    if collection.startswith(RESERVED_PREFIX):
        raise ConfigError(f"collection names starting with {RESERVED_PREFIX!r} are reserved")
    if metric is not None and metric not in METRICS:
        raise ConfigError(f"metric={metric!r} is not one of {list(METRICS)}", setting="metric")
    async with pool.transaction(timeout=timeout) as conn:
        with translating():
            columns, primary_key, indexes = await _read_table(conn, schema, table)
            vector_column = columns.get(vector_field)
            if not any(c.is_vector for c in columns.values()):
                missing = (
                    f"table {schema}.{table} has no vector column (its columns: "
                    f"{list(columns)}), so it cannot be a collection"
                )
                raise SchemaMismatchError(
                    f"{missing}; nothing was changed. Add one in a migration (ALTER TABLE ... "
                    "ADD COLUMN embedding vector(<dimension>)) and fill it first.",
                    differences=[missing],
                )
            dim = vector_column.typmod if vector_column and vector_column.typmod > 0 else None
            lay = layout(model, dim=dim or 1, id_field=id_field)
            if vector_field not in {v.name for v in lay.vectors}:
                raise ConfigError(
                    f"vector_field={vector_field!r} is not a vector field of "
                    f"{model.__name__}; its vector fields are {[v.name for v in lay.vectors]}",
                    setting="vector_field",
                )
            index, index_metric, notes = _found_index(indexes, vector_field)
            differences: list[str] = []
            if metric is not None and index_metric is not None and metric != index_metric:
                differences.append(
                    f"metric: the HNSW index on {vector_field!r} serves {index_metric!r}, "
                    f"given {metric!r}; pass metric={index_metric!r} (a search by another "
                    "metric would not use the index)"
                )
            storage: Storage = (
                "halfvec" if vector_column and vector_column.base == "halfvec" else "vector"
            )
            spec = CollectionSpec(
                name=collection,
                schema=schema,
                table=table,
                layout=lay,
                metric=metric or index_metric or "cosine",  # type: ignore[arg-type]
                storage=storage,
                index=index,
                filterable=(),
                foreign_keys={},
            )
            differences += _compare(model, columns, primary_key, spec)
            if differences:
                lines = "\n".join(f"  - {line}" for line in differences)
                raise SchemaMismatchError(
                    f"table {schema}.{table} does not match {model.__module__}."
                    f"{model.__qualname__} ({len(differences)} difference(s)):\n{lines}\n"
                    "Nothing was changed.",
                    differences=differences,
                )
            spec, adopted = await _register_or_open(conn, spec, model)
    for note in notes:
        logger.warning("adopting %s.%s: %s", schema, table, note)
    if index is None:
        logger.warning(
            "adopted %s.%s has no HNSW index on %s: searches are exact (a scan of every row) "
            "until collection.create_index(vecdb.HNSW())",
            schema,
            table,
            vector_field,
        )
    elif adopted:
        logger.info("adopted %s.%s as collection %s (%r)", schema, table, collection, index)
    return Collection(pool, model, spec, iterative=iterative)
