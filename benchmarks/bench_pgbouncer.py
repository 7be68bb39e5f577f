"""Search through PgBouncer (transaction pooling) against a direct connection.

Run from the repository root:

    .venv/bin/python benchmarks/bench_pgbouncer.py                      # 10k rows, ~2 minutes
    .venv/bin/python benchmarks/bench_pgbouncer.py --rows 100000 --queries 2000 --rounds 3

One embedded server in a temporary directory, one collection of ``--rows``
random unit vectors (384 dimensions, cosine, HNSW m=16 ef_construction=64),
and Debian's PgBouncer 1.18 on 127.0.0.1 in transaction mode in front of it
(started as in tests/deploy: its own config in a temporary directory). Three
ways to search the same collection, k=10 at ef_search 40, with 1 and with 8
concurrent clients (asyncio tasks over one pool of 8 connections each):

- direct: the default pool (asyncpg's statement cache on);
- direct, statement_cache_size=0: what PgBouncer mode costs without PgBouncer;
- PgBouncer: ``PoolConfig(pgbouncer=True)`` through PgBouncer (its pool of 20
  server connections).

The three take turns every fifth of the queries, ``--rounds`` times, so that
background load weighs on each alike. Prints a Markdown table: p50, p95, QPS.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import Server, machine, ms, summary, table
from tests.deploy import _parts  # the PgBouncer the tests start

DIM = 384


def _vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


async def _load(dsn: str, rows: int) -> None:
    import vecdb  # noqa: PLC0415 - after sys.path is set

    class Item(vecdb.Record):
        id: int
        embedding: vecdb.Vector

    async with vecdb.connect(dsn) as db:
        items = await db.collection("items", Item, dim=DIM, metric="cosine")
        vectors = _vectors(rows, 1)
        await items.upsert(Item(id=i, embedding=v) for i, v in enumerate(vectors))
        await items.create_index(vecdb.HNSW(m=16, ef_construction=64))


async def _run(args: argparse.Namespace, server: Server) -> None:
    import vecdb  # noqa: PLC0415

    class Item(vecdb.Record):
        id: int
        embedding: vecdb.Vector

    dsn = await server.create_database()
    started = time.perf_counter()
    await _load(dsn, args.rows)
    print(f"loaded and indexed {args.rows} rows in {time.perf_counter() - started:.1f} s")
    with _parts.pgbouncer(server.dsn) as bouncer:
        pooled = bouncer.dsn(urlsplit(dsn).path.lstrip("/"))
        systems = {
            "direct": (dsn, vecdb.PoolConfig(min_size=8, max_size=8)),
            "direct, statement_cache_size=0": (
                dsn,
                vecdb.PoolConfig(min_size=8, max_size=8, statement_cache_size=0),
            ),
            "PgBouncer (pgbouncer=True)": (
                pooled,
                vecdb.PoolConfig(min_size=8, max_size=8, pgbouncer=True),
            ),
        }
        dbs = {
            name: await vecdb.connect(target, pool=pool, migrate="check")
            for name, (target, pool) in systems.items()
        }
        try:
            cols = {
                name: await db.collection("items", Item, dim=DIM, metric="cosine")
                for name, db in dbs.items()
            }
            queries = _vectors(args.queries, 2)
            rows = []
            for clients in (1, 8):
                samples: dict[str, list[float]] = {name: [] for name in cols}
                elapsed = dict.fromkeys(cols, 0.0)
                for _ in range(args.rounds):
                    for part in np.array_split(queries, 5):
                        for name, col in cols.items():
                            took = await _search(col, part, clients, samples[name])
                            elapsed[name] += took
                base = None
                for name in cols:
                    p50, p95, _, _ = summary(samples[name])
                    qps = len(samples[name]) / elapsed[name]
                    base = base or (p50, qps)
                    rows.append(
                        [clients, name, ms(p50), ms(p95), f"{qps:,.0f}",
                         f"{p50 / base[0]:.2f}", f"{qps / base[1]:.2f}"]
                    )  # fmt: skip
            table(
                f"search k=10, {args.rows} rows x {DIM}d, {args.queries} queries x "
                f"{args.rounds} rounds",
                ["clients", "system", "p50 ms", "p95 ms", "QPS", "p50 ratio", "QPS ratio"],
                rows,
            )
        finally:
            for db in dbs.values():
                await db.close()


async def _search(col: object, queries: np.ndarray, clients: int, out: list[float]) -> float:
    """Run ``queries`` over ``clients`` tasks; record each latency; return the wall time."""
    queue = list(queries)

    async def client() -> None:
        while queue:
            q = queue.pop()
            t = time.perf_counter()
            await col.search(q, k=10)  # type: ignore[attr-defined]
            out.append(time.perf_counter() - t)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dsn", help="a server to use (a role that may CREATE DATABASE)")
    args = parser.parse_args()
    print(machine())
    with Server(args.dsn) as server:
        asyncio.run(_run(args, server))
    print(machine())


if __name__ == "__main__":
    main()
