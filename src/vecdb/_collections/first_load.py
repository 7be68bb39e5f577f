"""A first load into an empty partitioned collection: COPY straight into its partitions.

A write into a partitioned collection normally stages its rows, claims their
ids in the registry and merges (`Writer._partitioned`): 2.5-3.2x raw COPY on
a first load, measured in docs/performance.md. When the collection holds no
row and no archived id (its registry is empty), none of that can find
anything: the rows go straight into the parent by COPY (PostgreSQL routes them
to their partitions) and their ids into the registry by a second COPY, the
last record of an id winning as in the unpartitioned first load.

The emptiness must hold until commit. The transaction's first statements
lock the parent (``ONLY``, SHARE UPDATE EXCLUSIVE: what making a partition
takes anyway; other writers' row changes do not conflict with it) and then
the registry (SHARE ROW EXCLUSIVE: every writer inserts or locks registry
rows, so new ones wait for the commit; readers never do). Writers take the
parent's lock before the registry's too, so the two orders cannot deadlock.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from .._identifiers import qualified, quote_ident
from .._schema.ddl import registry_name
from .._schema.spec import CollectionSpec
from .._typing import AnyConnection
from . import partitions as _partitions

if TYPE_CHECKING:
    from .writer import _Chunk

__all__ = ["load", "lock_if_empty", "looks_empty"]

logger = logging.getLogger("vecdb.collections")


def _registry(spec: CollectionSpec) -> str:
    return qualified(spec.schema, registry_name(spec))


async def looks_empty(conn: AnyConnection, spec: CollectionSpec, *, timeout: float) -> bool:
    """A first look, outside the transaction: it holds no lock afterwards."""
    return bool(
        await conn.fetchval(f"SELECT NOT EXISTS (SELECT 1 FROM {_registry(spec)})", timeout=timeout)
    )


async def lock_if_empty(conn: AnyConnection, spec: CollectionSpec, *, timeout: float) -> bool:
    """Lock for a first load, in the caller's new transaction; whether it is still empty.

    When it is not (another writer committed first), the locks stay until the
    caller's commit and its ordinary write runs under them.
    """
    await conn.execute(
        f"LOCK TABLE ONLY {qualified(spec.schema, spec.table)} IN SHARE UPDATE EXCLUSIVE MODE",
        timeout=timeout,
    )
    await conn.execute(f"LOCK TABLE {_registry(spec)} IN SHARE ROW EXCLUSIVE MODE", timeout=timeout)
    return await looks_empty(conn, spec, timeout=timeout)


async def load(
    conn: AnyConnection,
    spec: CollectionSpec,
    partitions: _partitions.Partitions,
    chunks: AsyncIterator[_Chunk],
    *,
    rows: str,
    timeout: float,
) -> int:
    """COPY every chunk into the locked, empty collection; return the rows written."""
    logger.debug("first load of %s rows straight into the partitions of %s", rows, spec.name)
    columns = list(spec.layout.columns)
    id_name = spec.layout.id.name
    key_name = spec.partition_key or ""
    id_at, key_at = columns.index(id_name), columns.index(key_name)
    parent = qualified(spec.schema, spec.table)
    registry = registry_name(spec)
    written = 0
    id_col = quote_ident(id_name)
    async for chunk in chunks:
        await partitions.make(conn, chunk.keys)
        if chunk.earlier:
            # Ids an earlier chunk of this load gave: this transaction's own rows.
            removed = await conn.fetchval(
                f"WITH rows AS (DELETE FROM {parent} WHERE {id_col} = ANY($1)), "
                f"ids AS (DELETE FROM {qualified(spec.schema, registry)} "
                f"WHERE {id_col} = ANY($1) RETURNING 1) SELECT count(*) FROM ids",
                chunk.earlier,
                timeout=timeout,
            )
            written -= int(removed)
        records = chunk.last_wins()
        await conn.copy_records_to_table(
            spec.table, schema_name=spec.schema, records=records, columns=columns, timeout=timeout
        )
        await conn.copy_records_to_table(
            registry,
            schema_name=spec.schema,
            records=[(r[id_at], r[key_at]) for r in records],
            columns=[id_name, key_name],
            timeout=timeout,
        )
        written += len(records)
    return written
