"""Search QPS with 16 clients on the primary alone, then with 1 and 2 streaming replicas.

Run from the repository root:

    .venv/bin/python benchmarks/bench_replicas.py                                # ~1 minute
    .venv/bin/python benchmarks/bench_replicas.py --rows 100000 --queries 20000 --rounds 3

A primary and two standbys made as in tests/replicas (the embedded server's
binaries, ``pg_basebackup -R``, Unix sockets only; fsync off), one collection
of ``--rows`` random unit vectors (``--dim`` dimensions, cosine, HNSW m=16
ef_construction=64). Then, for 0, 1 and 2 replicas in turn (``--rounds``
times), 16 asyncio clients share ``--queries`` searches (k=10, ef_search 40)
over pools of 16 connections per server.

Reported per setup: QPS, p50 and p95 latency, and CPU time per query, of the
client (this process) and of the servers (every backend of the three
postmasters, from /proc through psutil). On a machine with few cores the QPS
says more about the cores than about replicas; the CPU time per query says
what a replica adds: a server that has the cores gets QPS of about
cores / server CPU per query.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import machine, ms, summary, table
from tests.replicas._topology import Server, Topology, topology

CLIENTS = 16


def _server_cpu(servers: list[Server]) -> float:
    """CPU seconds used so far by the postmasters' children (backends, walsenders, ...)."""
    total = 0.0
    for server in servers:
        pid = int((server.data / "postmaster.pid").read_text().split()[0])
        for child in psutil.Process(pid).children():
            try:
                times = child.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
    return total


async def _load(top: Topology, rows: int, dim: int) -> None:
    import asyncpg  # noqa: PLC0415

    import vecdb  # noqa: PLC0415 - after sys.path is set

    admin = await asyncpg.connect(top.primary.dsn())
    await admin.execute("CREATE DATABASE bench TEMPLATE template0")
    await admin.close()

    class Item(vecdb.Record):
        id: int
        embedding: vecdb.Vector

    rng = np.random.default_rng(7)
    data = rng.standard_normal((rows, dim)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    async with vecdb.connect(top.primary.dsn("bench")) as db:
        items = await db.collection("items", Item, dim=dim, index=None)
        await items.upsert(Item(id=i, embedding=v) for i, v in enumerate(data))
        await items.create_index()
        await items.analyze()
    # Every standby has replayed the load before the first measurement.
    conn = await asyncpg.connect(top.primary.dsn("bench"))
    target = await conn.fetchval("SELECT pg_current_wal_insert_lsn()::text")
    await conn.close()
    for standby in top.standbys:
        conn = await asyncpg.connect(standby.dsn("bench"))
        replayed = "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn"
        while not await conn.fetchval(replayed, target):  # noqa: ASYNC110 - polls the server
            await asyncio.sleep(0.05)
        await conn.close()


async def _run(top: Topology, replicas: int, queries: int, dim: int) -> dict[str, float]:
    import vecdb  # noqa: PLC0415

    class Item(vecdb.Record):
        id: int
        embedding: vecdb.Vector

    pool = vecdb.PoolConfig(min_size=CLIENTS, max_size=CLIENTS)
    standbys = [s.dsn("bench") for s in top.standbys[:replicas]]
    rng = np.random.default_rng(replicas)
    vectors = rng.standard_normal((queries, dim)).astype(np.float32)
    latencies: list[float] = []
    async with vecdb.connect(
        top.primary.dsn("bench"), pool=pool, replicas=standbys or None, migrate="check"
    ) as db:
        items = await db.collection("items", Item, dim=dim)
        await items.search(vectors[0], k=10)  # warm: plans and codecs
        servers = [top.primary, *top.standbys]
        cpu_server, cpu_client = _server_cpu(servers), time.process_time()
        started = time.perf_counter()
        position = 0

        async def client() -> None:
            nonlocal position
            while position < queries:
                vector = vectors[position]
                position += 1
                t0 = time.perf_counter()
                await items.search(vector, k=10)
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(client() for _ in range(CLIENTS)))
        elapsed = time.perf_counter() - started
        cpu_client = time.process_time() - cpu_client
        cpu_server = _server_cpu(servers) - cpu_server
    p50, p95, _, _ = summary(latencies)
    return {
        "qps": queries / elapsed,
        "p50": p50,
        "p95": p95,
        "client": cpu_client / queries,
        "server": cpu_server / queries,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    print(machine())
    with topology(2, log_statements=False) as top:
        await _load(top, args.rows, args.dim)
        results: dict[int, list[dict[str, float]]] = {0: [], 1: [], 2: []}
        for _ in range(args.rounds):
            for replicas in (0, 1, 2):
                results[replicas].append(await _run(top, replicas, args.queries, args.dim))
    rows = []
    for replicas, runs in results.items():
        best = max(runs, key=lambda r: r["qps"])
        rows.append(
            [
                "primary alone" if not replicas else f"{replicas} replica(s)",
                f"{best['qps']:.0f}",
                ms(best["p50"]),
                ms(best["p95"]),
                f"{best['client'] * 1000:.2f}",
                f"{best['server'] * 1000:.2f}",
            ]
        )
    table(
        f"search k=10, {CLIENTS} clients, {args.rows} rows x {args.dim} dims, "
        f"{args.queries} queries (best of {args.rounds})",
        ["reads on", "QPS", "p50 ms", "p95 ms", "client CPU ms/query", "server CPU ms/query"],
        rows,
    )


if __name__ == "__main__":
    asyncio.run(main())
