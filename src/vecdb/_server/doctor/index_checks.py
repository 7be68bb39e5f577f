"""The doctor's index checks: INVALID or missing HNSW, cache, memory, filters, unused, probes."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..._identifiers import qualified, quote_ident
from ..._schema import ddl as _ddl
from ..._search.filters import compile_filter
from ..._search.statements import search_sql
from ..._typing import PoolConnection
from .context import (
    _CACHE_MIN_READS,
    _DATABASE_HIT_RATIO,
    _DATABASE_MIN_READS,
    _HNSW_HIT_RATIO,
    LARGE_TABLE,
    _Context,
    _listed,
    _no_collections,
    _readable,
    _Result,
    _rows,
    _setting_size,
    _size,
    _standby,
    _when,
)

_INVALID = """
SELECT n.nspname AS schema, c.relname AS name, am.amname AS method, c.relkind::text AS kind,
       EXISTS (SELECT FROM pg_stat_progress_create_index p
               WHERE p.index_relid = i.indexrelid) AS building
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_am am ON am.oid = c.relam
WHERE NOT i.indisvalid
ORDER BY 1, 2
"""


async def _invalid_indexes(ctx: _Context, conn: PoolConnection) -> _Result:
    rows = await conn.fetch(_INVALID)
    building = [r for r in rows if r["building"]]
    invalid = [r for r in rows if not r["building"]]
    now = f"; {len(building)} being built now (not counted)" if building else ""
    if not invalid:
        return ("ok", f"no INVALID index{now}", "")
    names = [f"{r['schema']}.{r['name']} ({r['method']})" for r in invalid]
    first = invalid[0]
    collection = next(
        (s.name for s in ctx.collections for i in ctx.indexes_of(s) if i.name == first["name"]),
        None,
    )
    if collection is not None:
        fix = f"`vecdb create-index {collection}` drops and rebuilds it"
    elif first["kind"] == "I":
        fix = "create each partition's index and ALTER INDEX ... ATTACH PARTITION it"
    else:
        fix = (
            f"REINDEX INDEX CONCURRENTLY {qualified(first['schema'], first['name'])} once its "
            "cause is fixed (duplicates under a unique index?), or drop it"
        )
    return (
        "fail",
        f"{len(invalid)} INVALID index(es), kept up to date on every write but never used: "
        f"{_listed(names)}{now}",
        fix,
    )


async def _hnsw_index(ctx: _Context, conn: PoolConnection) -> _Result:
    if (empty := _no_collections(ctx)) is not None:
        return empty
    missing: list[tuple[str, int]] = []
    for spec in ctx.collections:
        covered = {c for i in ctx.indexes_of(spec) if i.valid for c in i.columns}
        if all(v.name in covered for v in spec.layout.vectors):
            continue
        rows = await _rows(conn, spec)
        if rows > LARGE_TABLE:
            missing.append((spec.name, rows))
    if not missing:
        return (
            "ok",
            f"every collection above {LARGE_TABLE:,} rows has an HNSW index on each vector field",
            "",
        )
    names = [f"{name} ({rows:,} rows)" for name, rows in missing]
    return (
        "warn",
        f"searched by exact scan, without an HNSW index: {_listed(names)}",
        f"`vecdb create-index {missing[0][0]}` (builds it concurrently, with progress)",
    )


async def _hnsw_cache(ctx: _Context, conn: PoolConnection) -> _Result:
    buffers = ctx.bytes("shared_buffers") or 0
    indexes = [i for i in ctx.hnsw if i.valid]
    row = await conn.fetchrow(
        "SELECT (SELECT coalesce(sum(idx_blks_hit), 0) FROM pg_statio_all_indexes "
        "        WHERE indexrelid = ANY($1::oid[]))::float8 AS hnsw_hit, "
        "       (SELECT coalesce(sum(idx_blks_read), 0) FROM pg_statio_all_indexes "
        "        WHERE indexrelid = ANY($1::oid[]))::float8 AS hnsw_read, "
        "       blks_hit::float8 AS db_hit, blks_read::float8 AS db_read "
        "FROM pg_stat_database WHERE datname = current_database()",
        [i.oid for i in indexes],
    )
    assert row is not None  # noqa: S101 - the current database has a row
    total_bytes = sum(i.bytes for i in indexes)
    found = [
        f"{len(indexes)} HNSW index(es), {_size(total_bytes)} in all; shared_buffers "
        f"{_size(buffers)}"
    ]
    warned = False
    big = [f"{i.schema}.{i.name} ({_size(i.bytes)})" for i in indexes if i.bytes > buffers]
    if big:
        warned = True
        found.append(f"larger than shared_buffers, so never all cached: {_listed(big)}")
    for what, hit, read, floor, least in (
        ("HNSW", row["hnsw_hit"], row["hnsw_read"], _HNSW_HIT_RATIO, _CACHE_MIN_READS),
        ("database", row["db_hit"], row["db_read"], _DATABASE_HIT_RATIO, _DATABASE_MIN_READS),
    ):
        if hit + read:
            ratio = hit / (hit + read)
            low = hit + read >= least and ratio < floor
            warned = warned or low
            found.append(
                f"{what} cache hit ratio {ratio:.1%} of {hit + read:,.0f} block requests"
                + (f" (below {floor:.0%})" if low else "")
            )
    if warned:
        return (
            "warn",
            "; ".join(found),
            f"raise shared_buffers to at least {_setting_size(total_bytes * 1.25)} "
            "(`vecdb tune`), or store halfvec to halve the indexes",
        )
    return ("ok", "; ".join(found), "")


async def _maintenance_work_mem(ctx: _Context, conn: PoolConnection) -> _Result:
    setting = ctx.settings["maintenance_work_mem"]
    current = setting.bytes or 0
    indexes = [i for i in ctx.hnsw if i.valid]
    if not indexes:
        return ("ok", f"maintenance_work_mem {_size(current)}; no HNSW index yet", "")
    largest = max(indexes, key=lambda i: i.bytes)
    evidence = (
        f"maintenance_work_mem {_size(current)} (from {setting.source}), largest HNSW index "
        f"{largest.schema}.{largest.name} {_size(largest.bytes)}"
    )
    if current >= largest.bytes:
        return ("ok", evidence, "")
    value = _setting_size(largest.bytes * 1.3)  # the graph in memory outgrows its pages
    if setting.source == "database":
        where = f"ALTER DATABASE {quote_ident(ctx.database)} SET"
    elif setting.source == "user":
        where = "ALTER ROLE CURRENT_USER SET"
    else:
        where = "ALTER SYSTEM SET"
    return (
        "warn",
        f"{evidence}: a rebuild (REINDEX) does not fit in memory and runs many times slower "
        "(pgvector: 'hnsw graph no longer fits into maintenance_work_mem')",
        f"{where} maintenance_work_mem = '{value}' (vecdb create-index sizes its own builds, "
        "up to the larger of 1 GB and a third of effective_cache_size)",
    )


_TABLE_INDEXES = """
SELECT a.attname::text AS field, i.indisvalid AS valid
FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
WHERE i.indrelid = $1::regclass
"""


_STATEMENTS = """
SELECT query, calls FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND query LIKE $1
"""


_QUOTED = re.compile(r'"((?:[^"]|"")+)"')


_WHERE_END = re.compile(r" (?:ORDER BY|GROUP BY|LIMIT|RETURNING|UNION) ")


def _filtered_fields(query: str, table: str) -> set[str]:
    """The quoted names in the ``WHERE`` clause of ``query`` on ``table`` (``"s"."t"``).

    vecdb writes every statement with quoted identifiers, so the fields a search
    filters on are the quoted names between ``FROM <table> WHERE`` and what ends
    the clause.
    """
    names: set[str] = set()
    marker = f"FROM {table} WHERE "
    start = query.find(marker)
    while start >= 0:
        clause = query[start + len(marker) :]
        end = _WHERE_END.search(clause)
        names.update(
            m.group(1).replace('""', '"')
            for m in _QUOTED.finditer(clause[: end.start() if end else None])
        )
        start = query.find(marker, start + len(marker))
    return names


async def _filter_indexes(ctx: _Context, conn: PoolConnection) -> _Result:
    if (empty := _no_collections(ctx)) is not None:
        return empty
    why_not = await _readable(conn, "SELECT FROM pg_stat_statements LIMIT 1")
    unindexed: list[str] = []
    fixes: list[str] = []
    for spec in ctx.collections:
        table = qualified(spec.schema, spec.table)
        indexed = {r["field"] for r in await conn.fetch(_TABLE_INDEXES, table) if r["valid"]}
        declared = [
            *spec.filterable,
            *(f for f in sorted(spec.foreign_keys) if f not in spec.filterable),
        ]
        statements = _ddl.filter_indexes(spec)
        for field in declared:
            if field not in indexed:
                unindexed.append(f"{spec.name}.{field} (declared filterable, index missing)")
                name = _ddl.index_name(spec.table, field, "idx")
                fixes.append(
                    statements[name].replace("CREATE INDEX IF", "CREATE INDEX CONCURRENTLY IF")
                )
        if why_not is not None:
            continue
        used: dict[str, int] = {}
        fields = {f.name for f in spec.layout.fields}
        for row in await conn.fetch(_STATEMENTS, f"%FROM {table} WHERE %"):
            for field in _filtered_fields(row["query"], table) & fields:
                used[field] = used.get(field, 0) + int(row["calls"])
        for field, calls in sorted(used.items()):
            if field not in indexed and field not in declared:
                unindexed.append(f"{spec.name}.{field} (filtered on in {calls:,} call(s))")
                fixes.append(
                    f"add {field!r} to filterable= of {spec.name!r} and open it with evolve=True"
                )
    source = (
        "the filters in pg_stat_statements and the declared filterable fields"
        if why_not is None
        else f"the declared filterable fields only (pg_stat_statements: {why_not})"
    )
    if unindexed:
        return ("warn", f"filter fields without an index: {_listed(unindexed)}", fixes[0])
    return ("ok", f"every filter field has an index, judged from {source}", "")


_UNUSED = """
SELECT s.schemaname AS schema, s.indexrelname AS name, s.relname AS table_name,
       pg_relation_size(s.indexrelid) AS bytes
FROM pg_stat_user_indexes s
JOIN pg_index i ON i.indexrelid = s.indexrelid
JOIN pg_class t ON t.oid = s.relid
WHERE s.idx_scan = 0 AND i.indisvalid AND NOT i.indisprimary AND NOT i.indisunique
  AND s.schemaname <> 'vecdb'
  AND greatest(t.reltuples, (SELECT u.n_live_tup FROM pg_stat_user_tables u
                              WHERE u.relid = s.relid)) > $1
  -- constraints (exclusion) and foreign keys (deletes on the referenced table) need theirs
  AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid)
  AND NOT EXISTS (SELECT FROM pg_constraint c
                  WHERE c.contype = 'f' AND c.conrelid = i.indrelid AND c.conkey[1] = i.indkey[0])
ORDER BY bytes DESC, 1, 2
"""


async def _unused_indexes(ctx: _Context, conn: PoolConnection) -> _Result:
    if (standby := _standby(ctx)) is not None:
        return standby
    reset = await conn.fetchval(
        "SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()"
    )
    since = "statistics began" if reset is None else f"statistics were reset {_when(reset)}"
    rows = await conn.fetch(_UNUSED, LARGE_TABLE)
    if not rows:
        return (
            "ok",
            f"no index on a table above {LARGE_TABLE:,} rows went unscanned since {since}",
            "",
        )
    names = [f"{r['schema']}.{r['name']} on {r['table_name']} ({_size(r['bytes'])})" for r in rows]
    first = rows[0]
    return (
        "warn",
        f"never scanned since {since}, but updated on every write: {_listed(names)} "
        "(scans on standbys are not counted here)",
        f"DROP INDEX CONCURRENTLY {qualified(first['schema'], first['name'])} if no query "
        "(on the primary or a standby) needs it",
    )


def _plan_indexes(plan: Mapping[str, Any]) -> set[str]:
    found = {plan["Index Name"]} if "Index Name" in plan else set()
    for child in plan.get("Plans", ()):
        found |= _plan_indexes(child)
    return found


async def _explain(conn: PoolConnection, sql: str, vector: Any) -> set[str]:
    raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", vector, 10)
    document = json.loads(raw) if isinstance(raw, str) else raw
    return _plan_indexes(document[0]["Plan"])


async def _probe_search(ctx: _Context, conn: PoolConnection) -> _Result:
    if (empty := _no_collections(ctx)) is not None:
        return empty
    rng = np.random.default_rng()
    failed: list[str] = []
    bypassed: list[str] = []
    notes: list[str] = []
    first_fail = ""
    for spec in ctx.collections:
        if spec.index is None:
            notes.append(f"{spec.name}: no index declared (exact search)")
            continue
        indexes = ctx.indexes_of(spec)
        names = {i.name for i in indexes if i.valid}
        rows: int | None = None
        for vector in spec.layout.vectors:
            probe = rng.standard_normal(vector.dim).astype(np.float32)
            probe /= np.linalg.norm(probe)
            # The very statement vecdb's search runs (no filter, k bound as $2 = 10).
            sql = search_sql(spec, vector, (spec.layout.id.name,), compile_filter(None, {}), "hnsw")
            label = f"{spec.name}.{vector.name}"
            used = (await _explain(conn, sql, probe)) & names
            if used:
                notes.append(f"{label}: {_listed(sorted(used))}")
                continue
            # Would it use the index if the planner had to? Only the rest of this
            # read-only transaction sees the setting.
            await conn.execute("SELECT set_config('enable_seqscan', 'off', true)")
            forced = (await _explain(conn, sql, probe)) & names
            await conn.execute("SELECT set_config('enable_seqscan', 'on', true)")
            if not forced:
                on_field = [i for i in indexes if vector.name in i.columns]
                state = (
                    "no HNSW index exists (dropped?)"
                    if not on_field
                    else "its HNSW index is INVALID"
                    if not any(i.valid for i in on_field)
                    else f"no plan can use {_listed([i.name for i in on_field])} "
                    f"(built for another metric than {spec.metric}?)"
                )
                failed.append(f"{label}: {state}")
                first_fail = first_fail or spec.name
                continue
            rows = await _rows(conn, spec) if rows is None else rows
            if rows > LARGE_TABLE:
                bypassed.append(f"{label}: exact scan of {rows:,} rows chosen over the index")
            else:
                notes.append(f"{label}: exact scan of {rows:,} rows, cheaper than the index")
    if failed:
        return (
            "fail",
            "searches cannot use the declared index: " + _listed(failed),
            f"`vecdb create-index {first_fail}` (builds the index the collection declares)",
        )
    if bypassed:
        return (
            "warn",
            "the planner bypasses a usable index: " + _listed(bypassed),
            "ANALYZE the table; check random_page_cost (1.1 on SSD) with `vecdb doctor`",
        )
    return ("ok", "probe plans: " + _listed(notes), "")
