"""The write path: validate chunk by chunk, binary COPY into a staging table, merge once.

``upsert`` merges with ``INSERT ... SELECT ... ON CONFLICT (id) DO UPDATE``;
``insert`` first looks for existing ids and names them. Without a batch size
the whole input is one transaction (all or nothing) while the client holds
only one chunk at a time; the staging table lives on the server.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

from ._errors import ConfigError, DatabaseError, DuplicateRecordError, LockTimeoutError, translating
from ._record import Record
from ._spec import CollectionSpec
from ._sql import qualified, quote_ident
from ._typing import AnyConnection
from ._validate import RecordCodec

if TYPE_CHECKING:
    from ._database import Database

__all__ = ["WRITE_CHUNK", "Writer", "affected"]

logger = logging.getLogger("vecdb.collections")

WRITE_CHUNK = 5_000  # records validated and COPYed at a time: bounds client memory
# One staging table name per collection: asyncpg caches copy_records_to_table's
# type introspection by statement text, so a name shared by collections with
# different vector types would encode one collection's rows with another's codec.
_STAGE_PREFIX = "_vecdb_stage_"
_ORD = "_vecdb_ord"
_ANALYZE_MIN_ROWS = 1_000


async def _chunks(records: Any, size: int) -> AsyncIterator[list[Any]]:
    """The input in lists of at most ``size``, from an iterable or an async iterable."""
    batch: list[Any] = []
    if isinstance(records, AsyncIterable):
        async for item in records:
            batch.append(item)
            if len(batch) >= size:
                yield batch
                batch = []
    else:
        if isinstance(records, Mapping | Record):
            records = [records]  # one record passed alone
        for item in records:
            batch.append(item)
            if len(batch) >= size:
                yield batch
                batch = []
    if batch:
        yield batch


def affected(status: str) -> int:
    """Rows affected, from a command tag such as ``INSERT 0 5`` or ``DELETE 3``."""
    return int(status.rsplit(maxsplit=1)[-1])


class Writer:
    """Writes one collection's records."""

    def __init__(self, db: Database, spec: CollectionSpec, codec: RecordCodec[Any]) -> None:
        self._db = db
        self._spec = spec
        self._codec = codec
        self._table = qualified(spec.schema, spec.table)
        self._select = ", ".join(quote_ident(c) for c in spec.layout.columns)
        self._stage_name = _STAGE_PREFIX + spec.name
        self._stage_table = quote_ident(self._stage_name)

    async def write(
        self,
        records: Any,
        mode: Literal["upsert", "insert"],
        batch_size: int | None,
        timeout: float | None,
    ) -> int:
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ConfigError(
                f"batch_size must be a positive int or None, got {batch_size!r}",
                setting="batch_size",
            )
        chunks = _chunks(records, batch_size or WRITE_CHUNK)
        prepared = self._prepare(chunks, mode, across=batch_size is None)
        written = 0
        first = await anext(prepared, None)  # validated before any connection is taken
        if first is None:
            return 0
        if batch_size is not None:
            batch: tuple[list[tuple[Any, ...]], list[Any], bool] | None = first
            while batch is not None:
                async with self._db.transaction() as conn:
                    await self._stage(conn, timeout)
                    await self._copy(conn, batch[0], timeout)
                    written += await self._merge(conn, mode, dedupe=False, timeout=timeout)
                batch = await anext(prepared, None)
        else:
            async with self._db.transaction() as conn:
                await self._stage(conn, timeout)
                await self._copy(conn, first[0], timeout)
                dedupe = first[2]
                async for rows, _ids, repeated in prepared:
                    await self._copy(conn, rows, timeout)
                    dedupe = dedupe or repeated
                written = await self._merge(conn, mode, dedupe=dedupe, timeout=timeout)
        await self._maybe_analyze(written)
        return written

    async def _prepare(
        self, chunks: AsyncIterator[list[Any]], mode: str, *, across: bool
    ) -> AsyncIterator[tuple[list[tuple[Any, ...]], list[Any], bool]]:
        """Validate chunk by chunk: ``(rows with ordinals, ids, repeats an earlier chunk)``."""
        seen: set[Any] = set()
        position = 0
        async for chunk in chunks:
            models = [self._codec.validate(item, position + j) for j, item in enumerate(chunk)]
            rows, ids = self._codec.rows(models, position)
            rows = [(*row, position + j) for j, row in enumerate(rows)]
            unique = set(ids)
            repeats: list[Any] = []
            if len(unique) < len(ids):
                counts: dict[Any, int] = {}
                for i in ids:
                    counts[i] = counts.get(i, 0) + 1
                repeats = [i for i, n in counts.items() if n > 1]
            if across:
                repeats += list(unique & seen)
                seen |= unique
            if repeats and mode == "insert":
                raise DuplicateRecordError(
                    f"insert() was given ids more than once: {repeats[:20]}; pass each record "
                    "once (or use upsert(), where the last one wins). Nothing was written.",
                    ids=repeats,
                )
            if repeats and not across:
                # Within one committed batch the last record of an id wins.
                last = {i: j for j, i in enumerate(ids)}
                keep = sorted(last.values())
                rows, ids = [rows[j] for j in keep], [ids[j] for j in keep]
                repeats = []
            yield rows, ids, bool(repeats)
            position += len(chunk)

    async def _stage(self, conn: AnyConnection, timeout: float | None) -> None:
        await conn.execute(
            f"CREATE TEMP TABLE {self._stage_table} (LIKE {self._table}, {_ORD} bigint) "
            "ON COMMIT DROP",
            timeout=timeout,
        )

    async def _copy(
        self, conn: AnyConnection, rows: list[tuple[Any, ...]], timeout: float | None
    ) -> None:
        await conn.copy_records_to_table(
            self._stage_name,
            records=rows,
            columns=[*self._spec.layout.columns, _ORD],
            timeout=timeout,
        )

    async def _merge(
        self, conn: AnyConnection, mode: str, *, dedupe: bool, timeout: float | None
    ) -> int:
        cols = self._select
        id_col = quote_ident(self._spec.layout.id.name)
        source = f"SELECT {cols} FROM {self._stage_table}"
        if dedupe:
            source = (
                f"SELECT DISTINCT ON ({id_col}) {cols} FROM {self._stage_table} "
                f"ORDER BY {id_col}, {_ORD} DESC"
            )
        if mode == "insert":
            existing = await conn.fetchval(
                f"SELECT array_agg(s.{id_col} ORDER BY s.{_ORD}) FROM {self._stage_table} s "
                f"JOIN {self._table} t ON t.{id_col} = s.{id_col}",
                timeout=timeout,
            )
            if existing:
                raise DuplicateRecordError(
                    f"{len(existing)} id(s) already exist in {self._spec.name!r}: {existing[:20]}; "
                    "use upsert() to replace them. Nothing was written.",
                    ids=existing,
                )
            try:
                with translating():
                    status = await conn.execute(
                        f"INSERT INTO {self._table} ({cols}) {source}", timeout=timeout
                    )
            except DatabaseError as exc:
                if exc.sqlstate == "23505":  # inserted by another session just now
                    raise DuplicateRecordError(
                        f"an id was inserted by another session meanwhile: {exc.detail}; "
                        "nothing was written",
                        ids=[],
                    ) from exc
                raise
            return affected(status)
        updates = ", ".join(
            f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}"
            for c in self._spec.layout.columns
            if c != self._spec.layout.id.name
        )
        status = await conn.execute(
            f"INSERT INTO {self._table} ({cols}) {source} "
            f"ON CONFLICT ({id_col}) DO UPDATE SET {updates}",
            timeout=timeout,
        )
        return affected(status)

    async def _maybe_analyze(self, written: int) -> None:
        """Refresh planner statistics after a large load, so filtered search estimates well.

        Autovacuum does this too, but later; a search right after a first bulk
        load would plan with no statistics. Skipped (not waited for) when
        another session holds the table, e.g. a concurrent index build.
        """
        if written < _ANALYZE_MIN_ROWS:
            return
        try:
            async with self._db.transaction() as conn:
                rows = await conn.fetchval(
                    "SELECT reltuples FROM pg_class WHERE oid = to_regclass($1)", self._table
                )
                if rows is not None and rows >= 0 and written < 0.2 * rows:
                    return
                await conn.execute("SELECT set_config('lock_timeout', '100ms', true)")
                await conn.execute(f"ANALYZE {self._table}")
        except LockTimeoutError:
            logger.debug("skipped ANALYZE of %s: the table is busy", self._table)
