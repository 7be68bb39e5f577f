"""Read your writes: a task's search right after its write, on a standby, finds the write."""

from __future__ import annotations

import vecdb

from .conftest import Replicated

DIM = 8


class Note(vecdb.Record):
    id: int
    embedding: vecdb.Vector


def _vector(i: int) -> list[float]:
    return [float(i + 1), *([1.0] * (DIM - 1))]


async def test_a_write_is_found_by_the_next_search_on_a_replica_100_times_in_a_row(
    replicated_db: Replicated,
) -> None:
    # A generous bound: reads wait for replay up to it, and the test then checks
    # that no read needed the primary.
    config = vecdb.ReplicaConfig(consistency_wait=30.0, check_interval=3600)
    async with vecdb.connect(
        replicated_db.primary,
        replicas=replicated_db.standbys,
        read_your_writes=True,
        replica_config=config,
    ) as db:
        notes = await db.collection("notes", Note, dim=DIM, metric="l2", index=None)
        before = sum(s.reads for s in await db.replicas())
        for i in range(100):
            await notes.upsert([Note(id=i, embedding=_vector(i))])
            (hit,) = await notes.search(_vector(i), k=1)
            assert hit.record.id == i
            assert hit.distance == 0
        after = sum(s.reads for s in await db.replicas())
    assert after - before == 100  # every search ran on a standby
    name = replicated_db.database
    assert sum(s.statements(name, "<->") for s in replicated_db.topology.standbys) == 100
