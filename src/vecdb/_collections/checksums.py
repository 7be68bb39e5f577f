"""Content checksums of a collection's rows: what archive, restore and repartition verify.

A checksum is ``"<rows>:<sum of row hashes>"``. Each row's hash is the first
64 bits of the md5 of its whole content, and the sum does not depend on the
order rows are read in nor on which table holds them: the same rows give the
same checksum in a live partition, in the archive, in a Parquet file read
back, or in a repartitioned copy.

The content is the row's binary form (``record_send`` of its columns, in the
collection's column order): exact for vectors and floats, and independent of
the session's TimeZone, DateStyle and extra_float_digits, which the text
form is not (a ``timestamptz`` prints in the session's zone). It is also
about five times faster to hash than the text form (30,000 rows x 384
dimensions: 0.9 s against 4.6 s here).
"""

from __future__ import annotations

from typing import Any

from .._identifiers import quote_ident
from .._schema.spec import CollectionSpec
from .._typing import AnyConnection

__all__ = ["checksum", "combine", "row_hash", "subtract", "sum_sql"]

EMPTY = "0:0"


def row_hash(spec: CollectionSpec, alias: str = "t") -> str:
    """The hash of row ``alias`` of one of ``spec``'s tables, as 64 hex bits."""
    columns = ", ".join(f"{alias}.{quote_ident(c)}" for c in spec.layout.columns)
    return f"substr(md5(record_send(ROW({columns}))), 1, 16)"


def sum_sql(spec: CollectionSpec, table: str, where: str = "TRUE") -> str:
    """``SELECT n, h``: the rows of ``table`` (qualified) matching ``where``, and their hash sum.

    ``where`` is vecdb's own SQL over alias ``t``; its values are bound by the caller.
    """
    return (
        f"SELECT count(*) AS n, coalesce(sum(('x' || {row_hash(spec)})::bit(64)::bigint"
        f"::numeric), 0)::text AS h FROM {table} t WHERE {where}"
    )


async def checksum(
    conn: AnyConnection,
    spec: CollectionSpec,
    table: str,
    where: str = "TRUE",
    *args: Any,
    timeout: float | None = None,
) -> str:
    """The checksum of ``table``'s rows matching ``where`` (see `sum_sql`)."""
    row = await conn.fetchrow(sum_sql(spec, table, where), *args, timeout=timeout)
    assert row is not None  # noqa: S101 - an aggregate returns one row
    return f"{row['n']}:{row['h']}"


def combine(parts: list[str]) -> str:
    """Checksums of several tables as one: rows and hash sums add up."""
    rows = sum(int(p.split(":", 1)[0]) for p in parts)
    total = sum(int(p.split(":", 1)[1]) for p in parts)
    return f"{rows}:{total}"


def subtract(total: str, part: str) -> str:
    """The checksum of ``total``'s rows less ``part``'s (a subset of them)."""
    rows_t, sum_t = (int(x) for x in total.split(":", 1))
    rows_p, sum_p = (int(x) for x in part.split(":", 1))
    return f"{rows_t - rows_p}:{sum_t - sum_p}"
