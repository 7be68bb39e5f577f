"""The catalog and statistics queries behind ``db.stats()``: server, collections, statements.

All read-only, on one pooled connection. Collection figures are summed over a
partitioned table's leaf partitions; rows are the statistics' live-row count
(``n_live_tup``), which needs no scan of the table.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from .._identifiers import quote_ident
from .._typing import AnyConnection
from .stats import CollectionStats, ServerStats, Statements, StatementStats

__all__ = ["collection_stats", "server_stats", "statements"]

_SERVER = """
SELECT current_setting('server_version') AS version,
       (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS pgvector,
       pg_postmaster_start_time() AS started_at,
       extract(epoch FROM now() - pg_postmaster_start_time())::float8 AS uptime,
       pg_database_size(current_database()) AS bytes,
       d.blks_hit, d.blks_read, d.deadlocks, d.temp_bytes, d.temp_files
FROM pg_stat_database d WHERE d.datname = current_database()
"""

_CONNECTIONS = """
SELECT coalesce(state, 'unknown') AS state, count(*)::int AS n FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend'
GROUP BY 1 ORDER BY 1
"""

# One row per collection; its leaves are the table itself or its leaf partitions.
_COLLECTIONS = """
WITH c AS (
    SELECT t.name, t.reg, to_regclass(t.reg)::oid AS root
    FROM unnest($1::text[], $2::text[]) AS t(name, reg)
), leaf AS (
    SELECT c.name, c.reg, c.root, r.oid, r.reltoastrelid
    FROM c JOIN pg_class r ON r.relkind = 'r'
     AND (r.oid = c.root OR r.oid IN (SELECT relid FROM pg_partition_tree(c.root) WHERE isleaf))
    WHERE c.root IS NOT NULL
), idx AS (
    SELECT l.oid, sum(pg_relation_size(i.indexrelid)) FILTER (WHERE am.amname = 'hnsw') AS hnsw,
           sum(pg_relation_size(i.indexrelid)) FILTER (WHERE am.amname <> 'hnsw') AS other
    FROM leaf l JOIN pg_index i ON i.indrelid = l.oid
    JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
    GROUP BY l.oid
)
SELECT l.name, min(l.reg) AS reg,
       count(*) FILTER (WHERE l.oid <> l.root)::int AS partitions,
       coalesce(sum(s.n_live_tup), 0)::int8 AS rows,
       sum(pg_relation_size(l.oid))::int8 AS table_bytes,
       sum(CASE WHEN l.reltoastrelid <> 0 THEN pg_total_relation_size(l.reltoastrelid) ELSE 0 END)
           ::int8 AS toast_bytes,
       coalesce(sum(x.other), 0)::int8 AS index_bytes,
       coalesce(sum(x.hnsw), 0)::int8 AS hnsw_bytes,
       coalesce(sum(s.n_dead_tup), 0)::int8 AS dead_rows,
       max(greatest(s.last_vacuum, s.last_autovacuum)) AS last_vacuum,
       max(greatest(s.last_analyze, s.last_autoanalyze)) AS last_analyze,
       coalesce(sum(s.seq_scan), 0)::int8 AS seq_scans,
       coalesce(sum(s.idx_scan), 0)::int8 AS index_scans
FROM leaf l
LEFT JOIN pg_stat_user_tables s ON s.relid = l.oid
LEFT JOIN idx x ON x.oid = l.oid
GROUP BY l.name ORDER BY l.name
"""

_PGSS_SCHEMA = """
SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'pg_stat_statements'
"""

_TOP = """
SELECT queryid, calls, total_exec_time, mean_exec_time, rows, query FROM {view}
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND queryid IS NOT NULL
ORDER BY total_exec_time DESC LIMIT $1
"""

_NOT_CREATED = (
    "the pg_stat_statements extension is not created in this database: run "
    "CREATE EXTENSION pg_stat_statements (as a superuser); the server must also load it "
    "(shared_preload_libraries, which vecdb sets on the embedded server)"
)


async def server_stats(conn: AnyConnection) -> ServerStats:
    """Versions, uptime, connections by state, cache hit ratio, size, deadlocks, temp files."""
    row = await conn.fetchrow(_SERVER)
    assert row is not None  # noqa: S101 - this database has a pg_stat_database row
    connections = {r["state"]: r["n"] for r in await conn.fetch(_CONNECTIONS)}
    blocks = row["blks_hit"] + row["blks_read"]
    return ServerStats(
        version=row["version"],
        pgvector_version=row["pgvector"],
        started_at=row["started_at"],
        uptime_s=row["uptime"],
        connections=connections,
        cache_hit_ratio=row["blks_hit"] / blocks if blocks else None,
        database_bytes=row["bytes"],
        deadlocks=row["deadlocks"],
        temp_bytes=row["temp_bytes"],
        temp_files=row["temp_files"],
    )


async def collection_stats(
    conn: AnyConnection, tables: Sequence[tuple[str, str, str]]
) -> tuple[CollectionStats, ...]:
    """Each of ``(name, schema, table)`` that exists, by name."""
    names = [name for name, _, _ in tables]
    regs = [f"{quote_ident(schema)}.{quote_ident(table)}" for _, schema, table in tables]
    shown = {f"{quote_ident(s)}.{quote_ident(t)}": f"{s}.{t}" for _, s, t in tables}
    rows = await conn.fetch(_COLLECTIONS, names, regs)
    return tuple(
        CollectionStats(
            name=row["name"],
            table=shown[row["reg"]],
            rows=row["rows"],
            table_bytes=row["table_bytes"],
            toast_bytes=row["toast_bytes"],
            index_bytes=row["index_bytes"],
            hnsw_bytes=row["hnsw_bytes"],
            dead_rows=row["dead_rows"],
            last_vacuum=row["last_vacuum"],
            last_analyze=row["last_analyze"],
            seq_scans=row["seq_scans"],
            index_scans=row["index_scans"],
            partitions=row["partitions"],
        )
        for row in rows
    )


async def statements(conn: AnyConnection, top: int) -> Statements:
    """The ``top`` statements of this database by total time, or why they cannot be read."""
    schema = await conn.fetchval(_PGSS_SCHEMA)
    if schema is None:
        return Statements(available=False, reason=_NOT_CREATED, top=())
    view = f"{quote_ident(schema)}.pg_stat_statements"
    try:
        rows = await conn.fetch(_TOP.format(view=view), top)
    except asyncpg.PostgresError as exc:
        # Created but not loaded (55000), or not readable by this role.
        reason = str(exc).splitlines()[0]
        hint = getattr(exc, "hint", None)
        return Statements(available=False, reason=f"{reason}{f' ({hint})' if hint else ''}", top=())
    return Statements(
        available=True,
        reason=None,
        top=tuple(
            StatementStats(
                queryid=row["queryid"],
                calls=row["calls"],
                total_ms=row["total_exec_time"],
                mean_ms=row["mean_exec_time"],
                rows=row["rows"],
                query=row["query"] or "",
            )
            for row in rows
        ),
    )
