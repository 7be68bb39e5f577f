"""User-style code with read replicas; it must type-check under mypy --strict."""

from __future__ import annotations

import vecdb


class Note(vecdb.Record):
    id: int
    embedding: vecdb.Vector


async def main() -> None:
    config = vecdb.ReplicaConfig(max_lag_bytes=1 << 20, max_lag_seconds=5.0, fallback="raise")
    async with vecdb.connect(
        "postgresql://app@primary/app",
        replicas=["postgresql://app@standby1/app"],
        read_your_writes=True,
        replica_config=config,
    ) as db:
        async with db.acquire(readonly=True) as conn:
            value: int = await conn.fetchval("SELECT 1")
            assert value == 1
        statuses: list[vecdb.ReplicaStatus] = await db.replicas()
        for status in statuses:
            lag: int | None = status.lag_bytes
            seconds: float | None = status.lag_seconds
            assert status.healthy or status.reason, (lag, seconds)
            conflicts: int = status.conflicts
            assert conflicts >= 0
        notes = await db.collection("notes", Note, dim=3)
        hits: list[vecdb.Hit[Note]] = await notes.search([1.0, 0.0, 0.0], consistent=True)
        stale_ok = await notes.search_many([[1.0, 0.0, 0.0]], consistent=False)
        found: Note | None = await notes.get(1, consistent=True)
        some: list[Note] = await notes.get_many([1, 2], consistent=True)
        n: int = await notes.count(consistent=True)
        plan: vecdb.Explain = await notes.explain([1.0, 0.0, 0.0], consistent=True)
        assert hits or stale_ok or found or some or n or plan
        stats = await db.stats()
        replicas: tuple[vecdb.ReplicaStatus, ...] = stats.replicas
        assert all(r.lag_seconds is None or r.lag_seconds >= 0 for r in replicas)
    try:
        await vecdb.connect("postgresql://app@standby1/app")
    except (vecdb.ReplicaUnavailableError, vecdb.ReplicaConflictError) as exc:
        message: str = str(exc)
        assert message
