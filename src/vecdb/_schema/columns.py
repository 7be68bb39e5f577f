"""The column types a record field can map to, and what each one accepts in a filter.

One table, shared by the DDL builder, the filter compiler and the schema
comparison, so that "which Python type becomes which PostgreSQL type" is
answered in exactly one place.
"""

from __future__ import annotations

import enum

__all__ = ["ColumnType"]


class ColumnType(enum.StrEnum):
    """A PostgreSQL column type vecdb creates for a declared field.

    The value is the SQL type name as written in DDL (and as stored in the
    catalog's ``spec``); vector types carry their dimension separately.
    """

    TEXT = "text"
    BIGINT = "bigint"
    DOUBLE = "double precision"
    BOOLEAN = "boolean"
    TIMESTAMPTZ = "timestamptz"
    DATE = "date"
    UUID = "uuid"
    TEXT_ARRAY = "text[]"
    BIGINT_ARRAY = "bigint[]"
    JSONB = "jsonb"
    VECTOR = "vector"
    HALFVEC = "halfvec"

    @property
    def is_vector(self) -> bool:
        """Whether this is a pgvector type (not filterable, searched by distance)."""
        return self in (ColumnType.VECTOR, ColumnType.HALFVEC)

    @property
    def is_array(self) -> bool:
        """Whether ``$contains`` applies (array containment)."""
        return self in (ColumnType.TEXT_ARRAY, ColumnType.BIGINT_ARRAY)

    @property
    def is_ordered(self) -> bool:
        """Whether ``$lt``/``$lte``/``$gt``/``$gte`` apply."""
        return self in (
            ColumnType.TEXT,
            ColumnType.BIGINT,
            ColumnType.DOUBLE,
            ColumnType.TIMESTAMPTZ,
            ColumnType.DATE,
            ColumnType.UUID,
        )
