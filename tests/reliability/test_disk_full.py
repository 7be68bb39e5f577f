"""Disk full, for real: the collection lives in a tablespace on a 8 MB tmpfs.

A bulk upsert that does not fit fails with a clear error (SQLSTATE 53100, the
driver's ``DiskFullError`` as its cause) and the collection is unchanged.
Mounting a tmpfs needs root and a local server (the embedded test server):
without them the test skips, except under CI (which runs as root), where it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

import vecdb

from ._load import Doc, check_rows, doc
from .conftest import ci

SIZE = "8m"


def _unavailable(data_dir: Path | None) -> str | None:
    if data_dir is None:
        return "needs the embedded test server (a local data directory), not $VECDB_TEST_DSN"
    if os.geteuid() != 0:
        return "needs root, to mount a small tmpfs for a tablespace"
    if shutil.which("mount") is None:
        return "needs mount(8)"
    return None


@pytest.fixture
def small_disk(embedded_data_dir: Path | None) -> Iterator[Path]:
    """An 8 MB tmpfs that the server's OS user owns."""
    problem = _unavailable(embedded_data_dir)
    if problem:
        if ci():
            pytest.fail(problem)
        pytest.skip(problem)
    assert embedded_data_dir is not None
    owner = embedded_data_dir.stat()
    root = Path(tempfile.mkdtemp(prefix="vecdb-full-"))
    root.chmod(0o755)  # the server's OS user must reach the mount point
    mount = root / "mnt"
    mount.mkdir()
    options = f"size={SIZE},mode=0700,uid={owner.st_uid},gid={owner.st_gid}"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def small_tablespace(admin_dsn: str, dsn: str, small_disk: Path) -> AsyncIterator[str]:
    """A tablespace on the small disk; dropped with this test's database."""
    name = f"small_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f"CREATE TABLESPACE {name} LOCATION '{small_disk}'")
        yield name
    finally:
        try:
            # Whatever the test left in the tablespace goes with its database.
            database = urlsplit(dsn).path.lstrip("/")
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            await admin.execute(f"DROP TABLESPACE IF EXISTS {name}")
        finally:
            await admin.close()


async def test_a_bulk_upsert_onto_a_full_disk_fails_clearly_and_changes_nothing(
    dsn: str, small_tablespace: str
) -> None:
    settings = {"default_tablespace": small_tablespace, "temp_tablespaces": small_tablespace}
    pool = vecdb.PoolConfig(min_size=1, max_size=2, server_settings=settings)
    async with vecdb.connect(dsn, pool=pool) as db:
        docs = await db.collection("docs", Doc, dim=8)
        async with db.acquire() as conn:
            where = await conn.fetchval("SELECT tablespace FROM pg_tables WHERE tablename = 'docs'")
        assert where == small_tablespace
        await docs.upsert([doc(i) for i in range(100)])

        # About 20 MB of rows for an 8 MB disk.
        with pytest.raises(vecdb.DatabaseError) as caught:
            await docs.upsert(doc(i) for i in range(100, 200_100))
        error = caught.value
        assert error.sqlstate == "53100", error
        assert isinstance(error.__cause__, asyncpg.DiskFullError)
        assert "No space left on device" in str(error)
        assert "disk" in str(error)
        assert "Free space" in str(error)
        # Unchanged, row for row; and the collection still takes what fits.
        assert await docs.count() == 100
        assert await check_rows(db, "docs", range(200_100)) == list(range(100))
        assert await docs.upsert([doc(100)]) == 1
