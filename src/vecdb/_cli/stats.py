"""``vecdb stats``: the server, the pool, collections, replicas and the slowest statements.

As tables, or ``--json`` (``Stats.to_dict()``). The operations part of `Stats`
is this process's, and a command line has run none: the command shows the pool
and the server's own figures (``pg_stat_statements``) instead. Replicas are
those of ``$VECDB_REPLICA_DSNS``, as `vecdb.connect` reads it; without any, the
section is left out.
"""

from __future__ import annotations

import argparse

from .._monitor.stats import Stats
from .._server.database import Database
from .output import AddCommand, Outcome, short, table, when

__all__ = ["add_commands"]

_QUERY_WIDTH = 70


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def _uptime(seconds: float) -> str:
    minutes = int(seconds // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    return f"{days}d {hours}h {minutes}m" if days else f"{hours}h {minutes}m"


def _server(stats: Stats) -> str:
    s = stats.server
    hit = "-" if s.cache_hit_ratio is None else f"{s.cache_hit_ratio:.1%}"
    connections = ", ".join(f"{n} {state}" for state, n in s.connections.items()) or "-"
    p = stats.pool
    lines = [
        f"server      PostgreSQL {s.version}, pgvector {s.pgvector_version or 'not created'}, "
        f"up {_uptime(s.uptime_s)}",
        f"database    {_bytes(s.database_bytes)}, cache hit ratio {hit}, "
        f"{s.deadlocks} deadlocks, {_bytes(s.temp_bytes)} in {s.temp_files} temp files",
        f"connections {connections}",
        f"pool        {p.in_use} in use, {p.idle} idle of max {p.max_size}; acquire wait "
        f"p50 {p.wait_ms_p50:.2f} ms, p99 {p.wait_ms_p99:.2f} ms",
    ]
    return "\n".join(lines)


def _collections(stats: Stats) -> str:
    if not stats.collections:
        return "no collections"
    rows = [
        [
            c.name,
            str(c.rows),
            _bytes(c.table_bytes),
            _bytes(c.toast_bytes),
            _bytes(c.index_bytes),
            _bytes(c.hnsw_bytes),
            str(c.dead_rows),
            when(c.last_vacuum),
            when(c.last_analyze),
            f"{c.seq_scans}/{c.index_scans}",
            str(c.partitions) if c.partitions else "-",
        ]
        for c in stats.collections
    ]
    headers = ["collection", "rows", "table", "toast", "index", "hnsw", "dead",
               "last vacuum", "last analyze", "seq/idx scans", "partitions"]  # fmt: skip
    return table(headers, rows, right=(1, 2, 3, 4, 5, 6))


def _lag(seconds: float | None, size: int | None) -> tuple[str, str]:
    return ("-" if seconds is None else f"{seconds:.3f}", "-" if size is None else _bytes(size))


def _replicas(stats: Stats) -> str:
    rows = [
        [
            r.dsn,
            "yes" if r.healthy else "no",
            *_lag(r.lag_seconds, r.lag_bytes),
            str(r.reads),
            str(r.conflicts),
            r.reason or "-",
        ]
        for r in stats.replicas
    ]
    headers = ["replica", "in rotation", "lag s", "lag", "reads", "conflicts", "why out"]
    return table(headers, rows, right=(2, 3, 4, 5))


def _statements(stats: Stats) -> str:
    statements = stats.statements
    if not statements.available:
        return f"statements: none ({statements.reason})"
    if not statements.top:
        return "statements: none recorded yet"
    rows = [
        [str(s.calls), f"{s.total_ms:.1f}", f"{s.mean_ms:.2f}", str(s.rows),
         short(" ".join(s.query.split()), _QUERY_WIDTH)]
        for s in statements.top
    ]  # fmt: skip
    return table(["calls", "total ms", "mean ms", "rows", "statement"], rows, right=(0, 1, 2, 3))


def _text(stats: Stats) -> str:
    parts = [_server(stats), _collections(stats)]
    if stats.replicas:
        parts.append(_replicas(stats))
    return "\n\n".join([*parts, _statements(stats)])


async def _stats(db: Database, args: argparse.Namespace) -> Outcome:
    stats = await db.stats(top=args.top)
    return Outcome(stats.to_dict(), _text(stats))


def _top(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError(f"--top must be a whole number 0..1000, got {text!r}")
    return int(text)


def add_commands(command: AddCommand) -> None:
    """Register ``stats`` on the ``vecdb`` parser."""
    stats = command(
        "stats",
        _stats,
        "the server, the pool, every collection's size and upkeep, the replicas' lag "
        "($VECDB_REPLICA_DSNS) and the slowest statements (pg_stat_statements)",
    )
    stats.add_argument(
        "--top", type=_top, default=10, metavar="N", help="statements to show (default 10)"
    )
