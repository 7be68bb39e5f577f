"""The cost of monitoring: search p50 with Prometheus and OpenTelemetry both on, against both off.

Run from the repository root:

    .venv/bin/python benchmarks/bench_monitoring.py --data /work/shared/data/stdlib-minilm-50k
    .venv/bin/python benchmarks/bench_monitoring.py --synthetic 20000 --queries 2000
    .venv/bin/python benchmarks/bench_monitoring.py --data PATH --rows 20000 --queries 2000

One collection and one `Database` on it, searching through one connection
(unfiltered, k=10, one client); its tracing is switched every ``--batch``
queries between three sides, in rotating order, ``--rounds`` times:

- ``off``: no tracing at all, as when ``opentelemetry`` is not installed (the
  in-process recorder behind ``db.stats()`` is always on), no scrapes;
- ``otel idle``: OpenTelemetry installed but not configured (the global no-op
  providers), no scrapes;
- ``on``: an SDK ``TracerProvider`` with a ``BatchSpanProcessor`` (spans
  exported to a sink that drops them), an SDK ``MeterProvider`` recording the
  duration histogram, and a `VecdbCollector` on a ``prometheus_client`` HTTP
  server scraped every second from a thread (only during ``on``'s turns).

One connection for every side: each `Database` has its own server backend,
and two backends on a 2-core machine land on the cores differently enough to
move a p50 by 5-10% (measured: an ``otel idle`` handle of its own ran 9.8%
above ``off`` with 4 µs of recording), which is more than the cost measured.

Prints p50 and p95 per side and the ratio of each p50 to ``off``'s. On a busy
machine that ratio moves by more than the cost itself, so the script also
times the recording alone in-process (an operation's ``with`` block, its span
and its histogram entries, no I/O), per call, against the search p50; and
``--aa`` runs the same with every side off, which shows how far apart three
identical sides land on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from _common import Server, machine, summary, table
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry, start_http_server

import vecdb
from vecdb._monitor.recorder import Monitor, note_search
from vecdb._monitor.tracing import Tracing, make
from vecdb._server.database import connections
from vecdb.prometheus import VecdbCollector

POOL = vecdb.PoolConfig(min_size=2, max_size=2)  # one client; the other for the metrics' reads


class Item(vecdb.Record):
    id: int
    embedding: vecdb.Vector


class Sink(SpanExporter):
    """Drops spans: the cost measured is vecdb's and the SDK's, not an exporter's network."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


def load_vectors(
    args: argparse.Namespace,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    if args.data is not None:
        vectors = np.load(args.data / "vectors_f16.npy")[: args.rows].astype(np.float32)
        queries = np.load(args.data / "queries.npy").astype(np.float32)
    else:
        rng = np.random.default_rng(7)
        vectors = rng.standard_normal((args.synthetic, args.dim)).astype(np.float32)
        queries = rng.standard_normal((1000, args.dim)).astype(np.float32)
    return vectors, queries


def scraper(url: str, stop: threading.Event, on: threading.Event, counts: list[int]) -> None:
    while not stop.wait(1.0):
        if not on.is_set():
            continue
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - 127.0.0.1
            response.read()
        counts[0] += 1


async def load(dsn: str, vectors: npt.NDArray[np.float32]) -> None:
    async with vecdb.connect(dsn) as loader:
        items = await loader.collection("items", Item, dim=vectors.shape[1])
        started = time.perf_counter()
        await items.upsert(Item(id=i, embedding=v) for i, v in enumerate(vectors))
        await items.analyze()
        print(
            f"loaded {len(vectors)} x {vectors.shape[1]} in {time.perf_counter() - started:.1f} s"
        )


async def take_turns(
    items: vecdb.Collection[Item],
    switch: Callable[[str], None],
    names: list[str],
    queries: npt.NDArray[np.float32],
    args: argparse.Namespace,
) -> dict[str, list[float]]:
    """Each side searches ``--batch`` queries in turn; the order rotates every batch."""
    times: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm: plans, caches, the first spans
        switch(name)
        for q in queries[:50]:
            await items.search(q, k=10)
    order = list(names)
    n = 0
    for _ in range(args.rounds * max(1, args.queries // args.batch)):
        batch = queries[[(n + j) % len(queries) for j in range(args.batch)]]
        n += args.batch
        for name in order:
            switch(name)
            for q in batch:
                t = time.perf_counter()
                await items.search(q, k=10)
                times[name].append(time.perf_counter() - t)
        order = order[1:] + order[:1]
    return times


def per_call(tracing: Tracing | None, calls: int = 20_000) -> float:
    """CPU seconds one operation's recording costs this thread (a search's, with its notes).

    CPU time of this thread, not wall time: on a loaded machine the wall clock
    also counts the time the thread waited for a core. It includes the span and
    the histogram entry, which a search records at the loop's next turn and
    which, with no loop running here, are recorded at once.
    """
    monitor = Monitor(tracing)
    started = time.thread_time()
    for _ in range(calls):
        with monitor.operation("search", "items") as op:
            note_search("hnsw", 10, {}, "SELECT ...")
            op.returned([])
        if tracing is not None:
            tracing.flush()  # what the loop's next turn does after a real search
    return (time.thread_time() - started) / calls


async def run(args: argparse.Namespace, dsn: str) -> None:
    vectors, queries = load_vectors(args)
    await load(dsn, vectors)
    sink = Sink()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(sink))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    db = await vecdb.connect(
        dsn,
        pool=POOL,
        migrate="off",
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
    )
    monitor = connections(db).monitor
    traced = monitor.tracing
    idle = make(None, None, dsn=dsn)  # the global providers, left unconfigured
    sides: dict[str, Tracing | None] = {"off": None, "otel idle": idle, "on": traced}
    if args.aa:
        # The noise floor: three sides alike (all off), everything else the same.
        sides = {"off": None, "otel idle": None, "on": None}
    registry = CollectorRegistry()
    if not args.aa:
        registry.register(VecdbCollector(db))
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    stop, scrapes, scraping_on = threading.Event(), [0], threading.Event()
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    scraping = threading.Thread(target=scraper, args=(url, stop, scraping_on, scrapes), daemon=True)
    scraping.start()
    try:
        items = await db.collection("items", Item, dim=vectors.shape[1])

        def switch(name: str) -> None:
            monitor.tracing = sides[name]
            if name == "on" and not args.aa:
                scraping_on.set()
            else:
                scraping_on.clear()

        times = await take_turns(items, switch, list(sides), queries, args)
        costs = {
            "off": per_call(None),
            "otel idle": per_call(sides["otel idle"]),
            "on": per_call(sides["on"]),
        }
    finally:
        stop.set()
        scraping.join()
        server.shutdown()
        server.server_close()
        thread.join()
        monitor.tracing = traced
        await db.close()
        tracer_provider.shutdown()
        meter_provider.shutdown()
    report(times, costs)
    print(f"spans exported: {sink.spans}; scrapes: {scrapes[0]}; {machine()}")


def report(times: dict[str, list[float]], costs: dict[str, float]) -> None:
    rows = []
    p50_off = summary(times["off"])[0]
    for name, samples in times.items():
        p50, p95, _, _ = summary(samples)
        rows.append([name, len(samples), f"{p50 * 1000:.3f}", f"{p95 * 1000:.3f}",
                     f"{p50 / p50_off:.3f}", f"{costs[name] * 1e6:.1f}",
                     f"{costs[name] / p50_off:.2%}"])  # fmt: skip
    table("Search with monitoring on and off (k=10, one client)",
          ["side", "queries", "p50 ms", "p95 ms", "p50 / off", "recording CPU µs/call",
           "recording / p50 off"], rows)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="a dataset in the shared format")
    source.add_argument("--synthetic", type=int, metavar="N", help="generate N random vectors")
    parser.add_argument("--rows", type=int, help="use the first N rows of --data")
    parser.add_argument("--dim", type=int, default=384, help="--synthetic dimension")
    parser.add_argument("--queries", type=int, default=3000, help="queries per side per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--batch", type=int, default=100, help="queries per turn (default 100)")
    parser.add_argument(
        "--aa", action="store_true", help="an A/A run: every side off, to read the noise floor"
    )
    parser.add_argument("--dsn", help="a server (role that may CREATE DATABASE); default embedded")
    args = parser.parse_args()
    print(machine())
    with Server(args.dsn) as server:
        dsn = asyncio.run(server.create_database())
        asyncio.run(run(args, dsn))


if __name__ == "__main__":
    main()
