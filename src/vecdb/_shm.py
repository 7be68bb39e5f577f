"""``/dev/shm``: where a parallel HNSW build keeps its graph, and how large it is.

A parallel build puts its whole graph (``maintenance_work_mem`` of it) in one
dynamic shared memory segment, a file in ``/dev/shm`` on Linux. When that is
smaller the build fails with "could not resize shared memory segment"
(pgvector #453, #714); Docker's default is 64 MB. The tuner sizes the
parallel workers to it, `vecdb doctor` checks it, and ``create_index()``
builds in one process when a build would not fit.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SHM_HEADROOM", "shm_bytes"]

SHM_HEADROOM = 1.25  # /dev/shm also holds parallel queries' segments during a build


def shm_bytes(root: Path = Path("/")) -> int | None:
    """The size of ``<root>/dev/shm``, or ``None`` where there is none (macOS, Windows)."""
    try:
        found = os.statvfs(root / "dev/shm")
    except (OSError, AttributeError):  # no /dev/shm (macOS), or no statvfs (Windows)
        return None
    return found.f_frsize * found.f_blocks
