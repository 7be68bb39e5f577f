"""The ``vecdb`` commands for collections: list them, (re)build an index with a progress bar.

They work from the catalog alone, so they need no application code: the
stored definition says which columns, metric and index a collection has.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any, TextIO

from .._collections import catalog as _catalog
from .._collections import indexing as _indexing
from .._collections.indexing import IndexProgress
from .._errors import CollectionNotFoundError
from .._schema.spec import HNSW
from .._server.database import Database, connections
from .output import AddCommand, Outcome, bar, table

__all__ = ["ProgressBar", "add_commands"]


class ProgressBar:
    """Draws index-build progress on a terminal: one line redrawn in place.

    On anything but a terminal (a log file, a CI job) it prints one line per
    phase instead, so the output stays readable.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._phase: str | None = None

    def __call__(self, progress: IndexProgress) -> None:
        fraction = progress.fraction
        if self._tty:
            self._stream.write("\r" + bar(fraction, f"{progress.index}: {progress.phase:<40}"))
            if progress.phase == "done":
                self._stream.write("\n")
        elif progress.phase != self._phase:
            self._stream.write(f"{progress.index}: {progress.phase}\n")
        self._phase = progress.phase
        self._stream.flush()


async def _collections(db: Database, args: argparse.Namespace) -> Outcome:
    infos = await db.collections()
    rows = []
    for info in infos:
        spec = _catalog.stored_spec(info)
        vectors = ", ".join(f"{v.name}({v.dim})" for v in spec.layout.vectors)
        index = (
            "-" if spec.index is None else f"hnsw m={spec.index.m} ef={spec.index.ef_construction}"
        )
        rows.append(
            [info.name, f"{info.schema}.{info.table}", vectors, spec.metric, spec.storage, index]
        )
    text = (
        table(["name", "table", "vectors", "metric", "storage", "index"], rows)
        if rows
        else "No collections."
    )
    return Outcome([_summary(info) for info in infos], text)


def _summary(info: _catalog.CollectionInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "schema": info.schema,
        "table": info.table,
        "model": info.model,
        "spec": info.spec,
        "created_at": info.created_at,
        "updated_at": info.updated_at,
        "library_version": info.library_version,
    }


async def _create_index(db: Database, args: argparse.Namespace) -> Outcome:
    async with db.acquire() as conn:
        info = await _catalog.load(conn, args.name)
    if info is None:
        known = ", ".join(i.name for i in await db.collections()) or "none"
        raise CollectionNotFoundError(
            f"no collection named {args.name!r}; collections: {known}", name=args.name
        )
    spec = _catalog.stored_spec(info)
    current = spec.index or HNSW()
    index = HNSW(
        m=args.m if args.m is not None else current.m,
        ef_construction=(
            args.ef_construction if args.ef_construction is not None else current.ef_construction
        ),
    )
    spec = dataclasses.replace(spec, index=index)
    pool = connections(db)
    await _indexing.build_hnsw(
        pool,
        spec,
        concurrently=not args.blocking,
        progress=None if args.json else ProgressBar(sys.stderr),
        maintenance_work_mem=args.maintenance_work_mem,
        parallel_workers=args.parallel_workers,
        timeout=None,
    )
    async with pool.transaction() as conn:
        await _catalog.save_spec(conn, spec)
    data = {"collection": info.name, "m": index.m, "ef_construction": index.ef_construction}
    return Outcome(
        data,
        f"Built the HNSW index of {info.name} "
        f"(m={index.m}, ef_construction={index.ef_construction}).",
    )


def add_commands(command: AddCommand) -> None:
    """Register ``collections`` and ``create-index`` on the ``vecdb`` parser."""
    command("collections", _collections, "every collection: table, vectors, metric, index")
    build = command(
        "create-index",
        _create_index,
        "(re)build a collection's HNSW index, showing its progress",
    )
    build.add_argument("name", help="the collection")
    build.add_argument("--m", type=int, help="HNSW m (default: the collection's)")
    build.add_argument(
        "--ef-construction", type=int, help="HNSW ef_construction (default: the collection's)"
    )
    build.add_argument(
        "--blocking",
        action="store_true",
        help="build without CONCURRENTLY: faster, but blocks writes to the collection",
    )
    build.add_argument("--maintenance-work-mem", metavar="SIZE", help="e.g. 2GB")
    build.add_argument("--parallel-workers", type=int, metavar="N")
