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

An archived partition records the columns it was checksummed over
(``columns=``), so that the checksum still compares after an evolve or a
migration changed the collection's columns: a column added since is not
hashed, and one that restoring drops or converts (`conform`) is hashed in
its archived type (``as_type=``: NULL of that type, or the value cast back).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._identifiers import quote_ident
from .._schema.spec import CollectionSpec
from .._typing import AnyConnection

__all__ = ["checksum", "combine", "row_hash", "subtract", "sum_sql"]

EMPTY = "0:0"


def row_hash(
    spec: CollectionSpec,
    alias: str = "t",
    *,
    columns: Sequence[str] | None = None,
    as_type: Mapping[str, str] | None = None,
    absent: Sequence[str] = (),
) -> str:
    """The hash of row ``alias`` of one of ``spec``'s tables, as 64 hex bits.

    ``columns``: the columns hashed, in order (default: the collection's).
    ``as_type``: column to the type it is hashed as (cast to it); a column in
    ``absent`` is not in the table any more and is hashed as a NULL of its
    type. The types are the server's own ``format_type`` text (see `conform`).
    """
    types = as_type or {}
    items = []
    for name in spec.layout.columns if columns is None else columns:
        if name in absent:
            items.append(f"NULL::{types[name]}")
        elif name in types:
            items.append(f"{alias}.{quote_ident(name)}::{types[name]}")
        else:
            items.append(f"{alias}.{quote_ident(name)}")
    return f"substr(md5(record_send(ROW({', '.join(items)}))), 1, 16)"


def sum_sql(
    spec: CollectionSpec,
    table: str,
    where: str = "TRUE",
    *,
    columns: Sequence[str] | None = None,
    as_type: Mapping[str, str] | None = None,
    absent: Sequence[str] = (),
) -> str:
    """``SELECT n, h``: the rows of ``table`` (qualified) matching ``where``, and their hash sum.

    ``where`` is vecdb's own SQL over alias ``t``; its values are bound by the
    caller. ``columns``, ``as_type``, ``absent``: as for `row_hash`.
    """
    hashed = row_hash(spec, columns=columns, as_type=as_type, absent=absent)
    return (
        f"SELECT count(*) AS n, coalesce(sum(('x' || {hashed})::bit(64)::bigint"
        f"::numeric), 0)::text AS h FROM {table} t WHERE {where}"
    )


async def checksum(
    conn: AnyConnection,
    spec: CollectionSpec,
    table: str,
    where: str = "TRUE",
    *args: Any,
    timeout: float | None = None,
    columns: Sequence[str] | None = None,
    as_type: Mapping[str, str] | None = None,
    absent: Sequence[str] = (),
) -> str:
    """The checksum of ``table``'s rows matching ``where`` (see `sum_sql`)."""
    sql = sum_sql(spec, table, where, columns=columns, as_type=as_type, absent=absent)
    row = await conn.fetchrow(sql, *args, timeout=timeout)
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
