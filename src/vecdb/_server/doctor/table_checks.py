"""The doctor's checks of tables: dead rows and autovacuum, stale statistics."""

from __future__ import annotations

from ..._identifiers import qualified
from ..._typing import PoolConnection
from .context import (
    _DEAD_RATIO,
    _LISTED,
    _MIN_ROWS,
    _TRUE,
    _Context,
    _listed,
    _Result,
    _standby,
    _when,
)

_TABLES = """
SELECT s.schemaname AS schema, s.relname AS name, s.n_live_tup AS live, s.n_dead_tup AS dead,
       s.n_mod_since_analyze AS changed, greatest(s.last_autovacuum, s.last_vacuum) AS vacuumed,
       greatest(s.last_autoanalyze, s.last_analyze) AS analyzed,
       coalesce((SELECT option_value FROM pg_options_to_table(c.reloptions)
                 WHERE option_name = 'autovacuum_enabled'), 'on') AS autovacuum
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
ORDER BY s.n_dead_tup DESC, 1, 2
"""


async def _vacuum(ctx: _Context, conn: PoolConnection) -> _Result:
    if (standby := _standby(ctx)) is not None:
        return standby
    rows = await conn.fetch(_TABLES)
    problems: list[str] = []
    fix = ""
    server = ctx.settings.get("autovacuum")
    if server is not None and server.setting.lower() not in _TRUE:
        problems.append("autovacuum is off for the whole server")
        fix = "ALTER SYSTEM SET autovacuum = on; SELECT pg_reload_conf()"
    for r in rows:
        total = r["live"] + r["dead"]
        table = qualified(r["schema"], r["name"])
        disabled = r["autovacuum"].lower() not in _TRUE
        if r["dead"] >= _MIN_ROWS and r["dead"] > _DEAD_RATIO * total:
            problems.append(
                f"{r['schema']}.{r['name']}: {r['dead']:,} dead rows ({r['dead'] / total:.0%}), "
                f"last vacuum {_when(r['vacuumed'])}"
                + (", autovacuum disabled on it" if disabled else "")
            )
            fix = fix or (
                f"VACUUM (ANALYZE) {table}"
                + (f"; ALTER TABLE {table} RESET (autovacuum_enabled)" if disabled else "")
            )
        elif disabled:
            problems.append(f"{r['schema']}.{r['name']}: autovacuum disabled on it")
            fix = fix or f"ALTER TABLE {table} RESET (autovacuum_enabled)"
    if problems:
        return ("warn", "; ".join(problems[: _LISTED + 1]), fix)
    if not rows:
        return ("ok", "no tables", "")
    worst = rows[0]
    return (
        "ok",
        f"{len(rows)} table(s); most dead rows: {worst['schema']}.{worst['name']} "
        f"{worst['dead']:,}, last vacuum {_when(worst['vacuumed'])}, last analyze "
        f"{_when(worst['analyzed'])}",
        "",
    )


async def _statistics(ctx: _Context, conn: PoolConnection) -> _Result:
    if (standby := _standby(ctx)) is not None:
        return standby
    stale: list[tuple[str, str]] = []
    for r in await conn.fetch(_TABLES):
        rows, changed = max(r["live"], 0), r["changed"]
        name = f"{r['schema']}.{r['name']}"
        if r["analyzed"] is None and rows >= _MIN_ROWS:
            stale.append((name, f"{name} never analyzed ({rows:,} rows)"))
        elif changed >= _MIN_ROWS and changed > _DEAD_RATIO * rows:
            stale.append(
                (
                    name,
                    f"{name}: {changed:,} rows changed since its last analyze "
                    f"({_when(r['analyzed'])}), {rows:,} rows",
                )
            )
    if not stale:
        return ("ok", "the planner's statistics are fresh on every table", "")
    schema, _, table = stale[0][0].partition(".")
    collection = next(
        (s.name for s in ctx.collections if (s.schema, s.table) == (schema, table)), None
    )
    return (
        "warn",
        "stale statistics (the planner misjudges filters and may skip the index): "
        + _listed([text for _, text in stale]),
        f"ANALYZE {qualified(schema, table)}"
        + (f" (or analyze() on collection {collection!r})" if collection else ""),
    )
