"""User-style code for connecting and migrating: must pass ``mypy --strict`` (never run)."""

from __future__ import annotations

import vecdb


class AddLang(vecdb.Migration):
    """Add a language column."""

    version = 1
    source = "myapp"

    async def up(self, conn: vecdb.Connection) -> None:
        await conn.execute("ALTER TABLE chunks ADD COLUMN lang text")

    async def down(self, conn: vecdb.Connection) -> None:
        await conn.execute("ALTER TABLE chunks DROP COLUMN lang")


async def connect_and_inspect() -> list[vecdb.MigrationStatus]:
    pool = vecdb.PoolConfig(max_size=20, statement_timeout=5.0)
    async with vecdb.connect(
        "postgresql://app@db/app", pool=pool, migrations=[AddLang, "myapp.migrations"]
    ) as db:
        status: list[vecdb.MigrationStatus] = await db.migrations.status()
        history: list[vecdb.HistoryEvent] = await db.migrations.history()
        assert all(event.duration_ms >= 0 for event in history)
        stats: vecdb.PoolStats = db.pool_stats()
        health: vecdb.Health = await db.health()
        assert stats.max_size == 20
        assert health.ok
        async with db.acquire() as conn:
            value: int = await conn.fetchval("SELECT 1")
            assert value == 1
        async with db.transaction() as conn:
            await conn.execute("SELECT 1")
        return status


async def await_form() -> None:
    db: vecdb.Database = await vecdb.connect(migrate="check")
    try:
        applied = await db.migrations.upgrade(to=1, source="myapp")
        reverted = await db.migrations.rollback(to=0, source="myapp")
        assert [m.version for m in applied] == [m.version for m in reverted]
    except vecdb.MigrationLockTimeout as exc:
        holder: dict[str, object] | None = exc.holder
        assert holder is None or "pid" in holder
    except vecdb.MigrationError as exc:
        failed: tuple[str | None, int | None, str | None] = (
            exc.source,
            exc.version,
            exc.server_message,
        )
        assert failed
    finally:
        await db.close()
