"""The tuned embedded server (what ``vecdb.connect()`` starts) against stock settings.

Run from the repository root:

    .venv/bin/python benchmarks/bench_tuning.py --data /work/shared/data/stdlib-minilm-50k
    .venv/bin/python benchmarks/bench_tuning.py --synthetic 20000 --queries 300
    .venv/bin/python benchmarks/bench_tuning.py --synthetic 1000000 --queries 1000 \\
        --parts build,latency,pool,memory              # the 1M run (43 minutes here)
    .venv/bin/python benchmarks/bench_tuning.py --synthetic 1000000 --queries 200 \\
        --servers tuned --parts halfvec                # halfvec's bytes at 1M (16 minutes)
    .venv/bin/python benchmarks/bench_tuning.py --synthetic 1000 --parts upsert \\
        --upsert-rows 1000000                                   # client memory only, 1M

Two embedded servers run side by side, each in its own temporary data
directory, both started by ``vecdb.connect(data_dir=...)``: one as a user gets
it (tuned from the machine, see ``vecdb tune``), one with ``VECDB_TUNE=off``
(PostgreSQL's stock settings). The same client code runs against both; only
the server's settings differ. Timed parts take turns between the two, so the
machine's background load weighs on both alike; the load average is printed.

``--servers tuned`` (or ``stock``) starts one server alone: for figures the
settings do not change, such as halfvec's index bytes at 1M rows, without
the stock server's hours of building.

``--tuned-setting NAME=VALUE`` (repeatable) overrides one of the tuned server's
settings, as ``connect(server_settings=...)`` does: to find which setting makes
a difference.

Parts (``--parts``, default all; each prints a Markdown table):

- ``build``: upsert the rows (vector storage), then ``create_index(HNSW)``; the
  server log is searched for pgvector's "graph no longer fits" notice.
- ``latency``: unfiltered search, k=10, at 1 and 16 clients (pool of 16):
  p50, p99, p99.9, max and QPS, the servers alternating every block of queries.
- ``pool``: 32 clients on ``PoolConfig(max_size=8)``: each acquire's wait
  (timed inside the pool, the same counters as ``db.pool_stats()``), p50 and
  p99, and connections made (``pg_stat_database.sessions``) against queries.
- ``memory``: ``shared_buffers``, the server processes' RSS and PSS (psutil),
  and this process's peak RSS.
- ``halfvec``: table and HNSW index bytes, vector against halfvec storage.
- ``upsert``: an upsert of ``--upsert-rows`` records from a generator into the
  tuned server, this process's RSS sampled every 50 ms: the peak above the
  baseline must stay under 200 MB.

Every search latency measured (parts latency and pool) goes into the p99.9
check: each query under 2 s, and the slowest is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import resource
import threading
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from _common import machine, stop_embedded, table, temp_dir
from bench_search import (
    EF_CONSTRUCTION,
    Dataset,
    Floats,
    Item,
    K,
    M,
    load_shared,
    make_synthetic,
    open_items,
    recall,
)

import vecdb

SETTINGS_SHOWN = (
    "shared_buffers",
    "effective_cache_size",
    "work_mem",
    "maintenance_work_mem",
    "max_parallel_maintenance_workers",
    "max_parallel_workers_per_gather",
    "max_wal_size",
    "random_page_cost",
    "effective_io_concurrency",
    "jit",
    "shared_preload_libraries",
)
P999_LIMIT_S = 2.0
UPSERT_LIMIT_MB = 200.0
MB = 2**20


def fmt(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}f}"


def pct(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples, dtype=float), q)) if samples else float("nan")


@contextlib.contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """``os.environ`` with ``values`` set (``None``: unset), restored afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class RssSampler:
    """This process's RSS every ``interval`` seconds, in a thread (the event loop may block)."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._me = psutil.Process()

    def _run(self) -> None:
        started = time.perf_counter()
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - started, self._me.memory_info().rss))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> int:
        return max(rss for _, rss in self.samples)


@dataclasses.dataclass
class Side:
    """One embedded server and what was measured on it."""

    name: str
    data_dir: Path
    db: vecdb.Database
    settings: dict[str, str] = dataclasses.field(default_factory=dict)
    items: Any = None
    latencies: list[float] = dataclasses.field(default_factory=list)  # every search, s
    slowest: tuple[float, str] = (0.0, "")

    @property
    def env(self) -> dict[str, str | None]:
        return {"VECDB_TUNE": None if self.name == "tuned" else "off"}

    def record(self, latencies: list[float], part: str) -> None:
        self.latencies += latencies
        worst = max(latencies, default=0.0)
        if worst > self.slowest[0]:
            self.slowest = (worst, part)

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        async with self.db.acquire() as conn:
            return list(await conn.fetch(sql, *args))

    def postmaster_pid(self) -> int:
        return int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def server_log(self) -> str:
        try:
            return (self.data_dir / "log").read_text(errors="replace")
        except OSError:
            return ""


@contextlib.asynccontextmanager
async def sides(
    parent: Path, tuned_settings: dict[str, str], names: tuple[str, ...] = ("stock", "tuned")
) -> AsyncIterator[list[Side]]:
    """Both servers, started as ``vecdb.connect()`` starts them; stopped and deleted after."""
    started: list[Side] = []
    try:
        for name in names:
            data_dir = parent / name
            side = Side(name, data_dir, db=None)  # type: ignore[arg-type]
            with environment(**side.env):
                side.db = await vecdb.connect(
                    data_dir=data_dir,
                    pool=vecdb.PoolConfig(min_size=16, max_size=16),
                    server_settings=tuned_settings if name == "tuned" else None,
                )
            started.append(side)
            async with side.db.acquire() as conn:
                # pgvector's "graph no longer fits" is a NOTICE, which the server's log
                # leaves out by default; a logging setting, the same on both servers.
                await conn.execute("ALTER SYSTEM SET log_min_messages = 'notice'")
                await conn.execute("SELECT pg_reload_conf()")
            rows = await side.fetch(
                "SELECT name, current_setting(name) AS value FROM unnest($1::text[]) AS name",
                list(SETTINGS_SHOWN),
            )
            side.settings = {r["name"]: r["value"] for r in rows}
        yield started
    finally:
        for side in started:
            await side.db.close()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                stop_embedded(side.data_dir)


# --------------------------------------------------------------------------------------
# parts
# --------------------------------------------------------------------------------------


def part_settings(both: list[Side]) -> None:
    table(
        "Settings each server runs with (current_setting)",
        ["setting", *(s.name for s in both)],
        [[name, *(s.settings[name] for s in both)] for name in SETTINGS_SHOWN],
    )


async def part_build(both: list[Side], data: Dataset, storage: str) -> dict[str, float]:
    """Load the rows, then build the HNSW index, on each server in turn; build seconds."""
    n = len(data.vectors)

    def records() -> Iterator[Item]:
        # A generator, not a list: at 1M rows a list of models would be gigabytes.
        for i in range(n):
            yield Item(
                id=i, bucket=data.bucket[i], category=data.category[i], embedding=data.vectors[i]
            )

    rows, builds = [], {}
    for side in both:
        name = "items" if storage == "vector" else f"items_{storage}"
        items = await open_items(side.db, name, storage, data.dim)
        started = time.perf_counter()
        written = await items.upsert(records())
        load_s = time.perf_counter() - started
        if written != n:
            raise RuntimeError(f"upsert wrote {written} rows, expected {n}")
        async with side.db.acquire() as conn:
            await conn.execute("CHECKPOINT")
        notices_before = side.server_log().count("no longer fits")
        started = time.perf_counter()
        await items.create_index(vecdb.HNSW(m=M, ef_construction=EF_CONSTRUCTION))
        builds[side.name] = time.perf_counter() - started
        spilled = side.server_log().count("no longer fits") > notices_before
        if storage == "vector":
            side.items = items
        rows.append(
            [
                side.name,
                fmt(load_s, 2),
                f"{n / load_s:,.0f}",
                fmt(builds[side.name], 2),
                "yes" if spilled else "no",
            ]
        )
    if len(builds) == 2:
        rows.append(["tuned / stock", "", "", fmt(builds["tuned"] / builds["stock"], 2), ""])
    table(
        f"Build - {n} rows ({storage}): upsert, then create_index(HNSW m={M}, "
        f"ef_construction={EF_CONSTRUCTION}) (s)",
        ["server", "upsert s", "rows/s", "HNSW build s", "'graph no longer fits' notice"],
        rows,
    )
    return builds


async def run_clients(
    side: Side, queries: Floats, clients: int, items: Any = None
) -> tuple[list[list[int]], list[float], float]:
    """Every query once over ``clients`` tasks: (ids per query, latencies, wall seconds)."""
    items = items or side.items
    found: list[list[int]] = [[] for _ in range(len(queries))]
    latencies: list[float] = []
    todo = iter(range(len(queries)))

    async def client() -> None:
        for i in todo:
            started = time.perf_counter()
            hits = await items.search(queries[i], k=K)
            latencies.append(time.perf_counter() - started)
            found[i] = [h.record.id for h in hits]

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return found, latencies, time.perf_counter() - started


async def part_latency(both: list[Side], data: Dataset, rounds: int) -> None:
    block = max(20, len(data.queries) // 5)
    blocks = [data.queries[i : i + block] for i in range(0, len(data.queries), block)]
    rows = []
    for clients in (1, 16):
        lat: dict[str, list[float]] = {s.name: [] for s in both}
        wall = dict.fromkeys(lat, 0.0)
        recalls = {}
        for side in both:  # warm-up: caches, prepared statements
            found, _, _ = await run_clients(side, data.queries, clients)
            recalls[side.name] = recall(found, data.gt)
        turn = 0
        for _ in range(rounds):
            for _ in blocks:
                for step in range(len(both)):
                    j = (turn + step) % len(both)
                    side = both[j]
                    _, latencies, seconds = await run_clients(
                        side, blocks[(turn + j) % len(blocks)], clients
                    )
                    lat[side.name] += latencies
                    wall[side.name] += seconds
                    side.record(latencies, f"latency, {clients} clients")
                turn += 1
        for side in both:
            samples = lat[side.name]
            rows.append(
                [
                    clients,
                    side.name,
                    fmt(pct(samples, 50) * 1000, 2),
                    fmt(pct(samples, 99) * 1000, 2),
                    fmt(pct(samples, 99.9) * 1000, 2),
                    fmt(max(samples) * 1000, 2),
                    f"{len(samples) / wall[side.name]:,.0f}",
                    fmt(recalls[side.name], 3),
                ]
            )
        if len(lat) < 2:
            continue
        stock, tuned = lat["stock"], lat["tuned"]
        rows.append(
            [
                clients,
                "tuned / stock",
                fmt(pct(tuned, 50) / pct(stock, 50), 2),
                fmt(pct(tuned, 99) / pct(stock, 99), 2),
                fmt(pct(tuned, 99.9) / pct(stock, 99.9), 2),
                "",
                fmt((len(tuned) / wall["tuned"]) / (len(stock) / wall["stock"]), 2),
                "",
            ]
        )
    table(
        f"Search - unfiltered, k={K}, {len(data.queries)} queries x {rounds} rounds per server "
        f"and client count, alternating every {block} queries (ms)",
        ["clients", "server", "p50", "p99", "p99.9", "max", "QPS", "recall@10"],
        rows,
    )


async def sessions(side: Side) -> int:
    rows = await side.fetch(
        "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
    )
    return int(rows[0]["sessions"])


def time_acquires(db: vecdb.Database) -> list[float]:
    """Each acquire's wait in ``db``'s pool, in seconds (``pool_stats()`` keeps only sum and max).

    A benchmark's probe: it wraps the pool's own acquire, so the wait is the one
    the pool counts, not a client's view of a whole search.
    """
    waits: list[float] = []
    pool = db._pool
    timed = pool._acquire

    async def acquire(timeout: float | None) -> Any:
        started = time.perf_counter()
        conn = await timed(timeout)
        waits.append(time.perf_counter() - started)
        return conn

    pool._acquire = acquire  # type: ignore[method-assign]
    return waits


async def part_pool(both: list[Side], data: Dataset, clients: int = 32, size: int = 8) -> None:
    rows = []
    for side in both:
        before = await sessions(side)
        with environment(**side.env):  # the server is running: reused, not restarted
            db = await vecdb.connect(
                data_dir=side.data_dir,
                pool=vecdb.PoolConfig(max_size=size, application_name="bench-pool"),
            )
        waits = time_acquires(db)
        try:
            items = await db.collection(
                "items",
                Item,
                dim=data.dim,
                metric="cosine",
                index=vecdb.HNSW(m=M, ef_construction=EF_CONSTRUCTION),
                filterable=("bucket",),
            )
            waits.clear()
            queries = np.concatenate([data.queries] * max(1, 2000 // len(data.queries)))
            _, latencies, seconds = await run_clients(side, queries, clients, items)
            stats = db.pool_stats()
        finally:
            await db.close()
        side.record(latencies, f"pool, {clients} clients on max_size={size}")
        # Read through the main pool (no new session). The pool's statistics may
        # reach pg_stat_database only when its backends end: wait for them briefly.
        deadline = time.monotonic() + 5
        made = await sessions(side) - before
        while made < stats.size and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            made = await sessions(side) - before
        rows.append(
            [
                side.name,
                len(latencies),
                f"{len(latencies) / seconds:,.0f}",
                fmt(pct(latencies, 50) * 1000, 2),
                fmt(pct(latencies, 99) * 1000, 2),
                fmt(pct(waits, 50) * 1000, 2),
                fmt(pct(waits, 99) * 1000, 2),
                fmt(stats.wait_ms_max, 2),
                stats.acquisitions,
                stats.size + stats.retired,
                made,
                f"{len(latencies) / max(stats.size + stats.retired, 1):,.0f}",
            ]
        )
    table(
        f"Pool - {clients} clients on PoolConfig(max_size={size}); acquire wait timed in the "
        "pool (ms); server sessions = pg_stat_database.sessions during connect() and the run",
        [
            "server",
            "queries",
            "QPS",
            "search p50",
            "search p99",
            "wait p50",
            "wait p99",
            "wait max (pool_stats)",
            "acquisitions",
            "pool connections made",
            "server sessions",
            "queries per connection",
        ],
        rows,
    )


def server_memory(side: Side) -> tuple[int, int, int]:
    """(processes, RSS sum, PSS sum) of the postmaster and its children, bytes."""
    postmaster = psutil.Process(side.postmaster_pid())
    rss = pss = count = 0
    for proc in [postmaster, *postmaster.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            info = proc.memory_full_info()
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
            count += 1
    return count, rss, pss


def part_memory(both: list[Side], app_peak: int, app_baseline: int) -> None:
    rows = []
    for side in both:
        count, rss, pss = server_memory(side)
        rows.append(
            [
                side.name,
                side.settings["shared_buffers"],
                count,
                fmt(rss / MB, 0),
                fmt(pss / MB, 0),
            ]
        )
    table(
        "Server memory after the searches (MB; RSS counts shared_buffers pages once per "
        "process that touched them, PSS shares them out)",
        ["server", "shared_buffers", "processes", "RSS sum", "PSS sum"],
        rows,
    )
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        f"app (this process, both clients): RSS at start {app_baseline / MB:.0f} MB, "
        f"peak sampled {app_peak / MB:.0f} MB, ru_maxrss {maxrss / MB:.0f} MB "
        "(the dataset's arrays included)"
    )


async def part_halfvec(both: list[Side], data: Dataset, vector_builds: dict[str, float]) -> None:
    half_builds = await part_build(both, data, "halfvec")
    rows = []
    for side in both:
        for storage, builds in (("vector", vector_builds), ("halfvec", half_builds)):
            name = "items" if storage == "vector" else "items_halfvec"
            got = await side.fetch(
                """
                SELECT pg_total_relation_size(c.oid) AS total, pg_relation_size(c.oid) AS heap,
                       coalesce(sum(pg_relation_size(i.indexrelid))
                                FILTER (WHERE a.amname = 'hnsw'), 0) AS hnsw
                FROM pg_class c
                LEFT JOIN pg_index i ON i.indrelid = c.oid
                LEFT JOIN pg_class ic ON ic.oid = i.indexrelid
                LEFT JOIN pg_am a ON a.oid = ic.relam
                WHERE c.oid = $1::regclass
                GROUP BY c.oid
                """,
                name,
            )
            total, heap, hnsw = (int(got[0][k]) for k in ("total", "heap", "hnsw"))
            rows.append(
                [
                    side.name,
                    storage,
                    fmt(total / MB),
                    fmt(heap / MB),
                    fmt(hnsw / MB),
                    fmt(builds[side.name], 2),
                ]
            )
    table(
        f"Index bytes - vector against halfvec, {len(data.vectors)} rows (MB; build s)",
        ["server", "storage", "total", "heap", "HNSW index", "HNSW build s"],
        rows,
    )


async def part_upsert(side: Side, rows: int, dim: int) -> None:
    """An upsert from a generator: the app's RSS over the run, against its baseline."""
    items = await side.db.collection(f"stream_{rows}", Item, dim=dim, index=None)
    rng = np.random.default_rng(11)

    def records() -> Iterator[Item]:
        for start in range(0, rows, 1000):
            block = rng.standard_normal((min(1000, rows - start), dim), dtype=np.float32)
            for j, vector in enumerate(block):
                yield Item(id=start + j, bucket="rest", category="mod00", embedding=vector)

    baseline = psutil.Process().memory_info().rss
    started = time.perf_counter()
    with RssSampler() as sampler:
        written = await items.upsert(records())
    seconds = time.perf_counter() - started
    if written != rows:
        raise RuntimeError(f"upsert wrote {written} rows, expected {rows}")
    samples = sampler.samples
    trace = []
    for tenth in range(1, 11):
        t_end = samples[-1][0] * tenth / 10
        trace.append(max(rss for t, rss in samples if t <= t_end) - baseline)
    above = sampler.peak - baseline
    table(
        f"Client memory - upsert of {rows:,} records from a generator (one call, "
        f"{seconds:.1f}s, {rows / seconds:,.0f} rows/s; RSS sampled every 50 ms)",
        ["baseline RSS MB", "peak RSS MB", "peak above baseline MB", "limit MB", "verdict"],
        [
            [
                fmt(baseline / MB, 0),
                fmt(sampler.peak / MB, 0),
                fmt(above / MB, 1),
                fmt(UPSERT_LIMIT_MB, 0),
                "meets" if above / MB < UPSERT_LIMIT_MB else "MISSES",
            ]
        ],
    )
    print(
        "peak RSS above baseline by tenth of the run (MB): "
        + ", ".join(fmt(x / MB, 0) for x in trace)
    )


def part_p999(both: list[Side]) -> None:
    rows = []
    for side in both:
        p999 = pct(side.latencies, 99.9)
        rows.append(
            [
                side.name,
                len(side.latencies),
                fmt(p999 * 1000, 2),
                f"{side.slowest[0] * 1000:.2f} ({side.slowest[1]})",
                "meets" if p999 < P999_LIMIT_S else "MISSES",
            ]
        )
    table(
        f"Every search measured above: p99.9 under {P999_LIMIT_S:g} s (ms)",
        ["server", "queries", "p99.9", "slowest (part)", "verdict"],
        rows,
    )


# --------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, data: Dataset, parent: Path) -> None:
    app_baseline = psutil.Process().memory_info().rss
    with RssSampler(interval=0.2) as app:
        async with sides(parent, args.tuned_setting, args.servers) as both:
            part_settings(both)
            builds: dict[str, float] = {}
            if args.parts & {"build", "latency", "pool", "memory", "halfvec"}:
                builds = await part_build(both, data, "vector")
            if "latency" in args.parts:
                await part_latency(both, data, args.rounds)
            if "pool" in args.parts:
                await part_pool(both, data)
            if "memory" in args.parts:
                part_memory(both, app.peak, app_baseline)
            if "halfvec" in args.parts:
                await part_halfvec(both, data, builds)
            if both[0].latencies:
                part_p999(both)
            if "upsert" in args.parts:
                await part_upsert(both[-1], args.upsert_rows, data.dim)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="a dataset in the shared format")
    source.add_argument("--synthetic", type=int, metavar="N", help="generate N clustered vectors")
    parser.add_argument("--rows", type=int, help="use the first N rows of --data")
    parser.add_argument("--queries", type=int, default=500, help="number of queries")
    parser.add_argument("--dim", type=int, default=384, help="--synthetic dimension")
    parser.add_argument("--rounds", type=int, default=2, help="latency rounds per server")
    parser.add_argument("--upsert-rows", type=int, default=100_000, help="part upsert's rows")
    parser.add_argument(
        "--parts",
        default="build,latency,pool,memory,halfvec,upsert",
        help="which of build,latency,pool,memory,halfvec,upsert to run (default all)",
    )
    parser.add_argument(
        "--servers",
        default="stock,tuned",
        help="which of stock,tuned to start (default both; one alone, e.g. for halfvec's "
        "index bytes at 1M, which the settings do not change)",
    )
    parser.add_argument(
        "--tuned-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one of the tuned server's settings (connect(server_settings=...)); "
        "repeatable, e.g. max_parallel_maintenance_workers=2",
    )
    args = parser.parse_args()
    args.tuned_setting = dict(item.split("=", 1) for item in args.tuned_setting)
    args.parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    args.servers = tuple(n for n in ("stock", "tuned") if n in args.servers.split(","))
    if not args.servers:
        parser.error("--servers: stock, tuned or both")
    started = time.perf_counter()
    if args.data is not None:
        data = load_shared(args.data, args.rows, args.queries)
    else:
        data = make_synthetic(args.synthetic, args.queries, args.dim)
    print(f"bench_tuning: {machine()}")
    if args.tuned_setting:
        print(f"tuned server's overrides: {args.tuned_setting}")
    print(
        f"data: {data.name}: {len(data.vectors)} rows, {len(data.queries)} queries, "
        f"dim {data.dim} (prepared in {time.perf_counter() - started:.1f}s)",
        flush=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' XDG_RUNTIME_DIR warning
        with temp_dir("vb-tune-") as parent:
            asyncio.run(run(args, data, parent))
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    print(f"total time: {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
