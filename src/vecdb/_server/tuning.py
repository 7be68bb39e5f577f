"""Server settings derived from the machine: what it has, and pgtune's rules for vector search.

Two pure steps, no server involved:

- `machine_facts` finds the memory and cores the server may use. The cgroup's
  limits come first (``memory.max`` and ``cpu.max``, or cgroup v1's
  ``memory.limit_in_bytes`` and CFS quota), then the host: a tuner that reads
  only the host sizes a container by the whole machine
  (timescaledb-tune #58, #342). Every number says where it came from.
- `recommend` turns the facts into a `Setting` each, with pgtune's and
  timescaledb-tune's rules, adjusted for vector search (an HNSW build that fits
  ``maintenance_work_mem``, parallel builds that fit ``/dev/shm``). Every
  setting's reason names its rule and the facts it came from.

`reconfigure.wanted` adds the user's overrides (they win) to the
recommendations; `reconfigure.plan` checks the result against a server.

Example:
    >>> facts = MachineFacts(16 * 2**30, 8.0, "given --memory", "given --cores", None)
    >>> {s.name: s.value for s in recommend(facts)}["shared_buffers"]
    '4GB'
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

from .._config import TuningEnv, tuning_from_env
from .._errors import ConfigError
from .._shm import SHM_HEADROOM, shm_bytes

__all__ = [
    "PRELOAD_LIBRARIES",
    "RESTART_SETTINGS",
    "MachineFacts",
    "Setting",
    "budget_facts",
    "format_size",
    "machine_facts",
    "parse_size",
    "recommend",
    "server_facts",
]

KB, MB, GB, TB = 1024, 1024**2, 1024**3, 1024**4
PRELOAD_LIBRARIES = ("pg_stat_statements", "auto_explain")
"""The libraries vecdb has the server load at start (``shared_preload_libraries``)."""

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|kB|KB|K|KiB|MB|M|MiB|GB|G|GiB|TB|T|TiB)?\s*$", re.I)
_SIZE_UNITS = {"b": 1, "k": KB, "m": MB, "g": GB, "t": TB}

# pgtune's bounds, and ours (each is explained where `recommend` uses it).
_SHARED_BUFFERS_FLOOR = 32 * MB
_MAINTENANCE_FLOOR, _MAINTENANCE_CAP = 64 * MB, 8 * GB
_WORK_MEM_FLOOR = 4 * MB
_DEFAULT_WORKER_PROCESSES = 8
_MAX_PARALLEL_MAINTENANCE = 8
_MAX_PARALLEL_PER_GATHER = 4

# Settings PostgreSQL reads only at start (pg_settings.context = 'postmaster') among
# those vecdb recommends; the server's own pg_settings is the authority when applying.
RESTART_SETTINGS = frozenset(
    {
        "shared_buffers",
        "max_worker_processes",
        "shared_preload_libraries",
        "pg_stat_statements.max",
        "max_connections",
        "huge_pages",
        "wal_buffers",
    }
)

# A cgroup v1 "no limit" is PAGE_COUNTER_MAX pages, a number near 2**63 that depends
# on the page size: any limit above the host's memory means none.
_CGROUP_V2 = Path("sys/fs/cgroup")
_CGROUP_V1_MEMORY = Path("sys/fs/cgroup/memory")
_CGROUP_V1_CPU = (Path("sys/fs/cgroup/cpu"), Path("sys/fs/cgroup/cpu,cpuacct"))


@dataclasses.dataclass(frozen=True, slots=True)
class MachineFacts:
    """The memory and cores the server may use, and where each number came from.

    Attributes:
        memory_bytes: Memory in bytes.
        cores: CPU cores; a fraction under a cgroup CPU quota (``cpu.max`` 150000/100000: 1.5).
        memory_source: ``"cgroup v2 memory.max"``, ``"cgroup v1 memory.limit_in_bytes"``,
            ``"host /proc/meminfo"``, ``"given --memory"``, ...
        cores_source: ``"cgroup v2 cpu.max"``, ``"cgroup v1 cpu.cfs_quota_us"``,
            ``"os.sched_getaffinity"``, ``"given --cores"``, ...
        shm_bytes: The size of ``/dev/shm`` (where parallel workers share memory), or
            ``None`` when there is none to measure.
    """

    memory_bytes: int
    cores: float
    memory_source: str
    cores_source: str
    shm_bytes: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class Setting:
    """One server setting: its value, and why.

    Attributes:
        name: The setting, as in ``pg_settings.name``.
        value: Its value as PostgreSQL reads it (``"4GB"``, ``"1.1"``, ``"off"``).
        reason: The rule and the facts it came from, or who overrode it.
        restart: The server must restart for it (``pg_settings.context = 'postmaster'``).
    """

    name: str
    value: str
    reason: str
    restart: bool


# -- sizes ------------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """Bytes in a size such as ``"16GB"``, ``"512MB"``, ``"2048kB"`` or ``"1.5GB"``.

    Units are binary (1kB = 1024 bytes), as in PostgreSQL, and read without regard
    to case (``16gb``, ``16G``, ``16GiB``); a bare number is bytes.

    Raises:
        ConfigError: Not a positive size.
    """
    found = _SIZE.match(text) if isinstance(text, str) else None
    size = 0
    if found is not None:
        unit = (found.group(2) or "b")[0].lower()
        size = int(float(found.group(1)) * _SIZE_UNITS[unit])
    if size <= 0:
        raise ConfigError(
            f"invalid size {text!r}: expected a positive number with a unit B, kB, MB, GB "
            "or TB, such as 16GB or 512MB"
        )
    return size


def format_size(size: int) -> str:
    """A size as PostgreSQL writes it: ``"4GB"`` when whole, else MB (rounded down), else kB."""
    if size >= GB and size % GB == 0:
        return f"{size // GB}GB"
    if size >= MB:
        return f"{size // MB}MB"
    return f"{max(size // KB, 1)}kB"


def _shown(size: int) -> str:
    """A size for reading ("15.6 GB"), in reasons."""
    for unit, name in ((TB, "TB"), (GB, "GB"), (MB, "MB")):
        if size >= unit:
            return f"{size / unit:.3g} {name}"
    return f"{size // KB} kB"


# -- the machine ------------------------------------------------------------------------


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cgroup_paths(root: Path) -> dict[str, Path]:
    """This process's cgroup per hierarchy (``"2"`` for v2, else the v1 controller names)."""
    found: dict[str, Path] = {}
    for line in (_read(root / "proc/self/cgroup") or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for name in controllers.split(",") if controllers else ["2"]:
            found[name] = Path(path.lstrip("/"))
    return found


def _candidates(mount: Path, own: Path | None) -> list[Path]:
    """The cgroup directories whose limits apply: ours and each parent, up to the mount.

    Inside a container the mount *is* our cgroup (a cgroup namespace), and the
    path in ``/proc/self/cgroup`` may not exist below it: both are looked at.
    """
    folders = [mount]
    if own is not None:
        folders[:0] = [mount / own, *(mount / parent for parent in own.parents)]
    seen: list[Path] = []
    for folder in folders:
        if folder not in seen:
            seen.append(folder)
    return seen


def _host_memory(root: Path) -> tuple[int, str]:
    for line in (_read(root / "proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * KB, "host /proc/meminfo"
    if root == Path("/") and hasattr(os, "sysconf"):
        try:
            pages = os.sysconf("SC_PHYS_PAGES")
            page_size = os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            pages = page_size = -1
        if pages > 0 and page_size > 0:
            return pages * page_size, "host sysconf(SC_PHYS_PAGES)"
    raise ConfigError(
        "cannot tell how much memory this machine has (no /proc/meminfo): pass "
        "--memory (or set VECDB_TUNE_MEMORY), e.g. 16GB",
        setting="memory",
    )


def _memory(root: Path) -> tuple[int, str]:
    host, host_source = _host_memory(root)
    best, source = host, host_source
    own = _cgroup_paths(root)
    v2 = [
        (folder / "memory.max", "cgroup v2 memory.max")
        for folder in _candidates(root / _CGROUP_V2, own.get("2"))
    ]
    v1 = [
        (folder / "memory.limit_in_bytes", "cgroup v1 memory.limit_in_bytes")
        for folder in _candidates(root / _CGROUP_V1_MEMORY, own.get("memory"))
    ]
    for path, name in [*v2, *v1]:
        text = _read(path)
        if text is None or not text.isdigit():
            continue  # absent, or "max": no limit at this level
        limit = int(text)
        if 0 < limit < best:
            best, source = limit, name
    return best, source


def _host_cores() -> tuple[float, str]:
    if hasattr(os, "sched_getaffinity"):
        return float(len(os.sched_getaffinity(0))), "os.sched_getaffinity"
    return float(os.cpu_count() or 1), "os.cpu_count"


def _cores(root: Path) -> tuple[float, str]:
    best, source = _host_cores()
    own = _cgroup_paths(root)
    for folder in _candidates(root / _CGROUP_V2, own.get("2")):
        quota, _, period = (_read(folder / "cpu.max") or "").partition(" ")
        if quota.isdigit() and period.strip().isdigit() and int(period) > 0:
            cores = int(quota) / int(period)
            if 0 < cores < best:
                best, source = cores, "cgroup v2 cpu.max"
    for mount in _CGROUP_V1_CPU:
        for folder in _candidates(root / mount, own.get("cpu")):
            quota_text = _read(folder / "cpu.cfs_quota_us") or ""
            period_text = _read(folder / "cpu.cfs_period_us") or ""
            if quota_text.isdigit() and period_text.isdigit() and int(period_text) > 0:
                cores = int(quota_text) / int(period_text)  # -1 (no quota) is not isdigit()
                if 0 < cores < best:
                    best, source = cores, "cgroup v1 cpu.cfs_quota_us"
    return best, source


def machine_facts(
    *, memory: int | None = None, cores: float | None = None, root: Path = Path("/")
) -> MachineFacts:
    """The memory and cores the server may use here: the cgroup's limits, else the host's.

    Example:
        >>> machine_facts(memory=16 * 2**30, cores=8).memory_source
        'given --memory'

    Args:
        memory: Bytes, when the caller knows better (``--memory``); not read then.
        cores: Likewise for cores (``--cores``).
        root: Where the filesystem starts: tests point it at a fake tree holding
            ``proc/meminfo``, ``proc/self/cgroup`` and ``sys/fs/cgroup/...``.

    Raises:
        ConfigError: The memory cannot be found out (then pass ``memory``).
    """
    if memory is not None:
        memory_bytes, memory_source = int(memory), "given --memory"
    else:
        memory_bytes, memory_source = _memory(root)
    if cores is not None:
        found_cores, cores_source = float(cores), "given --cores"
    else:
        found_cores, cores_source = _cores(root)
    return MachineFacts(
        memory_bytes=memory_bytes,
        cores=found_cores,
        memory_source=memory_source,
        cores_source=cores_source,
        shm_bytes=shm_bytes(root),
    )


def budget_facts(
    *,
    memory: int | None = None,
    cores: float | None = None,
    environ: Mapping[str, str] | None = None,
    root: Path = Path("/"),
) -> MachineFacts:
    """`machine_facts`, with ``VECDB_TUNE_MEMORY`` / ``_CORES`` standing in for the machine.

    What is given here wins, then those variables (a budget for the embedded
    server on a machine it shares with the application), then the machine.

    Raises:
        ConfigError: A variable holds no size or no positive number.
    """
    env = tuning_from_env(environ)
    facts = machine_facts(
        memory=memory if memory is not None else _env_memory(env),
        cores=cores if cores is not None else _env_cores(env),
        root=root,
    )
    if memory is None and env.memory is not None:
        facts = dataclasses.replace(facts, memory_source="VECDB_TUNE_MEMORY")
    if cores is None and env.cores is not None:
        facts = dataclasses.replace(facts, cores_source="VECDB_TUNE_CORES")
    return facts


def server_facts(
    *,
    embedded: bool,
    memory: int | None = None,
    cores: float | None = None,
    environ: Mapping[str, str] | None = None,
) -> MachineFacts:
    """The machine to tune or judge a server for, with what the caller gives winning.

    The embedded server runs here, on the budget of ``VECDB_TUNE_MEMORY`` /
    ``_CORES`` when set (`budget_facts`); a DSN server's machine is not this
    one, so those variables, which budget the embedded server, do not apply
    to it, and what is not given is read from this machine.

    Raises:
        ConfigError: A budget variable holds no size or no positive number.
    """
    if embedded:
        return budget_facts(memory=memory, cores=cores, environ=environ)
    return machine_facts(memory=memory, cores=cores)


def _env_memory(env: TuningEnv) -> int | None:
    if env.memory is None:
        return None
    try:
        return parse_size(env.memory)
    except ConfigError as exc:
        raise ConfigError(f"VECDB_TUNE_MEMORY: {exc}", setting="VECDB_TUNE_MEMORY") from None


def _env_cores(env: TuningEnv) -> float | None:
    if env.cores is None:
        return None
    try:
        cores = float(env.cores)
    except ValueError:
        cores = 0.0
    if not cores > 0 or math.isinf(cores):
        raise ConfigError(
            f"invalid VECDB_TUNE_CORES={env.cores!r}: expected a positive number of cores, "
            "such as 8 or 1.5",
            setting="VECDB_TUNE_CORES",
        )
    return cores


# -- the rules --------------------------------------------------------------------------


def recommend(facts: MachineFacts, *, max_connections: int = 100) -> list[Setting]:
    """The settings pgtune's and timescaledb-tune's rules give for this machine, for vector search.

    Example:
        >>> facts = machine_facts(memory=16 * 2**30, cores=8)
        >>> [s.value for s in recommend(facts) if s.name == "effective_cache_size"]
        ['12GB']

    Args:
        facts: The memory and cores the server may use (`machine_facts`).
        max_connections: The server's ``max_connections``, which ``work_mem`` is shared by.
    """
    memory = facts.memory_bytes
    mem = f"{_shown(memory)} of memory ({facts.memory_source})"
    cpus = max(1, math.floor(facts.cores))
    cpu = f"{facts.cores:g} cores ({facts.cores_source})"

    def setting(name: str, value: str, reason: str) -> Setting:
        return Setting(name, value, reason, restart=name in RESTART_SETTINGS)

    shared_buffers = _mb(max(memory // 4, _SHARED_BUFFERS_FLOOR))
    maintenance = _mb(min(max(memory // 16, _MAINTENANCE_FLOOR), _MAINTENANCE_CAP))
    worker_processes = max(_DEFAULT_WORKER_PROCESSES, cpus)
    work_mem = _mb(
        max(
            (memory - shared_buffers) // ((max_connections + worker_processes) * 3), _WORK_MEM_FLOOR
        )
    )
    parallel_maintenance, maintenance_reason = _parallel_maintenance(facts, cpus, cpu, maintenance)
    return [
        setting(
            "shared_buffers",
            format_size(shared_buffers),
            f"pgtune: 1/4 of the {mem}; the OS page cache holds the rest",
        ),
        setting(
            "effective_cache_size",
            format_size(_mb(memory * 3 // 4)),
            f"pgtune: 3/4 of the {mem}: how much the planner may count on being cached "
            "(allocates nothing)",
        ),
        setting(
            "maintenance_work_mem",
            format_size(maintenance),
            f"pgtune: 1/16 of the {mem}, at least 64 MB and at most 8 GB: an HNSW build is "
            "many times faster while its graph fits (pgvector's NOTICE 'hnsw graph no longer "
            "fits into maintenance_work_mem' says when it stops fitting); each autovacuum "
            "worker may use as much, hence the cap. create_index() sizes each build for its "
            "graph, up to a third of effective_cache_size; more with --maintenance-work-mem",
        ),
        setting(
            "work_mem",
            format_size(work_mem),
            f"pgtune: ({_shown(memory)} ({facts.memory_source}) - shared_buffers "
            f"{_shown(shared_buffers)}) / ((max_connections {max_connections} + "
            f"max_worker_processes {worker_processes}) x 3), at least 4 MB: every sort or hash "
            "of every connection may use this much",
        ),
        setting(
            "max_worker_processes",
            str(worker_processes),
            f"pgtune: one per core, {cpu}, and at least PostgreSQL's 8: parallel queries, "
            "parallel index builds and extensions' workers all draw from it",
        ),
        setting(
            "max_parallel_workers",
            str(cpus),
            f"pgtune: one per core, {cpu}: the parallel workers of all queries and builds at once",
        ),
        setting(
            "max_parallel_workers_per_gather",
            str(min(_MAX_PARALLEL_PER_GATHER, cpus // 2)),
            f"pgtune: half the {cpu}, at most 4: an exact search of a large table scans in "
            "parallel, without one query taking every core from concurrent searches",
        ),
        setting("max_parallel_maintenance_workers", str(parallel_maintenance), maintenance_reason),
        setting(
            "random_page_cost",
            "1.1",
            "pgtune for SSD storage: a random read costs about as much as a sequential one "
            "(the default 4 is for spinning disks), so the planner prefers index scans",
        ),
        setting(
            "effective_io_concurrency",
            "200",
            "pgtune for SSD storage: reads issued ahead in bitmap heap scans",
        ),
        setting(
            "jit",
            "off",
            "pgtune and timescaledb-tune for short queries: compiling a query takes longer "
            "than a vector search runs; JIT pays off only on long analytical queries",
        ),
        setting(
            "max_wal_size",
            "4GB",
            "timescaledb-tune/pgtune for bulk loads: during a large upsert or index build, "
            "checkpoints come from checkpoint_timeout instead of every 1 GB of WAL (each one "
            "makes the next writes log whole pages again); up to this much disk goes to WAL",
        ),
        setting(
            "shared_preload_libraries",
            ",".join(PRELOAD_LIBRARIES),
            "vecdb stats and vecdb doctor read pg_stat_statements (time per statement); "
            "auto_explain logs the plans of slow statements; both load only at start",
        ),
        setting(
            "pg_stat_statements.max",
            "10000",
            "pg_stat_statements: keep 10000 statements (default 5000): vecdb prepares one per "
            "collection and filter shape, and an evicted statement loses its figures",
        ),
        setting(
            "track_io_timing",
            "on",
            "pg_stat_statements and EXPLAIN (BUFFERS) show the time spent reading blocks; the "
            "clock is cheap on current hardware (pg_test_timing)",
        ),
        setting(
            "auto_explain.log_min_duration",
            "1s",
            "auto_explain: log the plan of statements slower than 1 s, and only those (every "
            "plan would flood the log)",
        ),
    ]


def _mb(size: int) -> int:
    """Rounded down to whole megabytes, so values read well (``"1536MB"``)."""
    return max(size // MB, 1) * MB


def _parallel_maintenance(
    facts: MachineFacts, cpus: int, cpu: str, maintenance: int
) -> tuple[int, str]:
    workers = min(cpus - 1, _MAX_PARALLEL_MAINTENANCE)
    reason = (
        f"one per core but the leader's, {cpu}, at most 8: a parallel HNSW build "
        "runs this many workers beside the leader (pgvector)"
    )
    if workers > 0 and facts.shm_bytes is not None and facts.shm_bytes < maintenance * SHM_HEADROOM:
        return 0, (
            f"/dev/shm is {_shown(facts.shm_bytes)} (os.statvfs), smaller than the "  # noqa: S108 - a message
            f"maintenance_work_mem of {_shown(maintenance)} (+25%) that a parallel HNSW build "
            "keeps there: the build would fail with 'could not resize shared memory segment' "
            "(pgvector #453, #714). Builds run in one process; enlarge /dev/shm (docker run "
            "--shm-size) to build in parallel"
        )
    return workers, reason
