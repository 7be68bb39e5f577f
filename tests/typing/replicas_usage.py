"""User-style code with read replicas; it must type-check under mypy --strict."""

from __future__ import annotations

import vecdb


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
    try:
        await vecdb.connect("postgresql://app@standby1/app")
    except (vecdb.ReplicaUnavailableError, vecdb.ReplicaConflictError) as exc:
        message: str = str(exc)
        assert message
