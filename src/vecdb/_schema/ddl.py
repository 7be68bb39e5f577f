"""DDL for a collection: its table, filter indexes, HNSW indexes and added columns.

Every name is checked by `validate_identifier` (when the spec is made) and
written with `quote_ident`; the only other things formatted into SQL are
values from closed sets (column types, operator classes, ON DELETE actions)
and ints (dimensions, HNSW parameters). No user string reaches these
statements unvalidated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from .._identifiers import qualified, quote_ident
from .columns import ColumnType
from .fulltext import column_definition
from .partitioning import TimePartitions
from .quantization import index_expression
from .record import FieldSpec, VectorSpec
from .spec import RESERVED_PREFIX, CollectionSpec

__all__ = [
    "OPERATORS",
    "REGISTRY_PREFIX",
    "add_column",
    "create_registry",
    "create_table",
    "drop_table",
    "filter_indexes",
    "hnsw_index",
    "hnsw_name",
    "index_name",
    "registry_name",
    "vector_column_type",
]

# pgvector's distance operators; `<#>` is the NEGATIVE inner product.
OPERATORS: dict[str, str] = {"cosine": "<=>", "l2": "<->", "inner_product": "<#>", "l1": "<+>"}
_OPCLASS_SUFFIX = {
    "cosine": "cosine_ops",
    "l2": "l2_ops",
    "inner_product": "ip_ops",
    "l1": "l1_ops",
}
_ON_DELETE = {
    "cascade": "CASCADE",
    "restrict": "RESTRICT",
    "set_null": "SET NULL",
    "no_action": "NO ACTION",
}
_PG_MAX_IDENTIFIER = 63
REGISTRY_PREFIX = RESERVED_PREFIX + "_ids_"


def index_name(table: str, *parts: str) -> str:
    """A deterministic name for an index or constraint on ``table``, <= 63 bytes.

    Names that would be too long are cut and given a short hash of the full
    name, so two long names never collide silently.
    """
    name = "_".join((table, *parts))
    if len(name) <= _PG_MAX_IDENTIFIER:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: _PG_MAX_IDENTIFIER - 9]}_{digest}"


def vector_column_type(spec: CollectionSpec, vector: VectorSpec) -> str:
    """``vector(384)`` or ``halfvec(384)``."""
    return f"{spec.vector_type.value}({int(vector.dim)})"


def _column(field: FieldSpec) -> str:
    null = "" if field.nullable else " NOT NULL"
    return f"{quote_ident(field.name)} {ColumnType(field.type).value}{null}"


def create_table(spec: CollectionSpec, references: Mapping[str, tuple[str, str]]) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for the collection.

    Args:
        spec: The collection.
        references: For each foreign-key field, the referenced ``(schema, table)``.
    """
    lay = spec.layout
    lines = [_column(lay.id)]
    lines += [_column(f) for f in lay.fields]
    lines += [f"{quote_ident(v.name)} {vector_column_type(spec, v)} NOT NULL" for v in lay.vectors]
    lines += [column_definition(ft) for ft in lay.fulltext]
    key = ", ".join(quote_ident(c) for c in spec.primary_key)
    lines.append(f"CONSTRAINT {quote_ident(index_name(spec.table, 'pkey'))} PRIMARY KEY ({key})")
    for field, fk in sorted(spec.foreign_keys.items()):
        schema, table = references[field]
        lines.append(
            f"CONSTRAINT {quote_ident(index_name(spec.table, field, 'fkey'))} "
            f"FOREIGN KEY ({quote_ident(field)}) REFERENCES {qualified(schema, table)} "
            f'("id") ON DELETE {_ON_DELETE[fk.on_delete]}'
        )
    body = ",\n    ".join(lines)
    partitioned = ""
    if spec.partitioning is not None:
        how = "RANGE" if isinstance(spec.partitioning, TimePartitions) else "LIST"
        partitioned = f" PARTITION BY {how} ({quote_ident(spec.partitioning.field)})"
    return (
        f"CREATE TABLE IF NOT EXISTS {qualified(spec.schema, spec.table)} (\n    {body}\n)"
        f"{partitioned}"
    )


def registry_name(spec: CollectionSpec) -> str:
    """The id registry of a partitioned collection (beside its table).

    PostgreSQL makes every unique index of a partitioned table include the
    partition key, so ``id`` alone is kept unique here: one row per record,
    its id and the partition key it lives under.
    """
    return REGISTRY_PREFIX + spec.table


def create_registry(spec: CollectionSpec) -> str:
    """``CREATE TABLE`` for the id registry (``id`` primary key, the partition key)."""
    assert spec.partitioning is not None  # noqa: S101 - only partitioned collections have one
    field = next(f for f in spec.layout.fields if f.name == spec.partitioning.field)
    name = registry_name(spec)
    return (
        f"CREATE TABLE IF NOT EXISTS {qualified(spec.schema, name)} (\n"
        f"    {_column(spec.layout.id)},\n"
        f"    {_column(field)},\n"
        f"    CONSTRAINT {quote_ident(index_name(name, 'pkey'))} "
        f"PRIMARY KEY ({quote_ident(spec.layout.id.name)})\n)"
    )


def drop_table(spec: CollectionSpec) -> list[str]:
    """``DROP TABLE`` for the collection and its id registry (foreign keys to it block it)."""
    statements = [f"DROP TABLE IF EXISTS {qualified(spec.schema, spec.table)}"]
    if spec.partitioning is not None:
        statements.append(f"DROP TABLE IF EXISTS {qualified(spec.schema, registry_name(spec))}")
    return statements


def _indexed_fields(spec: CollectionSpec) -> list[str]:
    # Foreign-key columns are indexed too: a cascading delete and joins need it.
    names = list(spec.filterable)
    names += [name for name in sorted(spec.foreign_keys) if name not in names]
    return names


def filter_indexes(spec: CollectionSpec) -> dict[str, str]:
    """Index name to ``CREATE INDEX IF NOT EXISTS`` for filterable and foreign-key fields.

    B-tree for scalars; GIN for arrays and jsonb (``@>`` containment).
    """
    types = spec.layout.filterable
    statements: dict[str, str] = {}
    for field in _indexed_fields(spec):
        ctype = types[field]
        method = "gin" if ctype.is_array or ctype is ColumnType.JSONB else "btree"
        name = index_name(spec.table, field, "idx")
        statements[name] = (
            f"CREATE INDEX IF NOT EXISTS {quote_ident(name)} ON "
            f"{qualified(spec.schema, spec.table)} USING {method} ({quote_ident(field)})"
        )
    return statements


def hnsw_name(spec: CollectionSpec, vector: VectorSpec) -> str:
    """The HNSW index's name for a vector field."""
    return index_name(spec.table, vector.name, "hnsw")


def hnsw_index(
    spec: CollectionSpec, vector: VectorSpec, *, name: str | None = None, concurrently: bool = False
) -> str:
    """``CREATE INDEX [CONCURRENTLY] IF NOT EXISTS … USING hnsw`` for one vector field."""
    assert spec.index is not None  # noqa: S101 - callers check that the spec has an index
    indexed = index_expression(
        spec.index, vector, spec.vector_type.value, _OPCLASS_SUFFIX[spec.metric]
    )
    return (
        f"CREATE INDEX {'CONCURRENTLY ' if concurrently else ''}IF NOT EXISTS "
        f"{quote_ident(name or hnsw_name(spec, vector))} ON "
        f"{qualified(spec.schema, spec.table)} USING hnsw {indexed} "
        f"WITH (m = {int(spec.index.m)}, ef_construction = {int(spec.index.ef_construction)})"
    )


def add_column(spec: CollectionSpec, field: FieldSpec) -> str:
    """``ALTER TABLE … ADD COLUMN IF NOT EXISTS`` for a new optional field."""
    return (
        f"ALTER TABLE {qualified(spec.schema, spec.table)} "
        f"ADD COLUMN IF NOT EXISTS {_column(field)}"
    )
