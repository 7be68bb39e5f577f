"""The archive off the database: Parquet files with a manifest, and reading them back.

`export_archive` writes every archived row of a collection to one Parquet file
(vectors as fixed-size lists of float32, one column per field) and, beside it,
``<file>.manifest.json``: the collection, its definition, the row count and
the archive's checksum (`checksums.checksum`, summed over the archived tables).
Reading it back (``restore(from_file=...)``) goes through the collection's
normal write path (validation, partitions made on demand, the id registry),
then checks that the rows now in the collection carry the checksum of the
manifest.

pyarrow is an optional dependency: ``pip install 'vecdb[parquet]'``.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import anyio

from .._errors import ArchiveChecksumError, ConfigError, translating
from .._identifiers import qualified, quote_ident
from .._schema.columns import ColumnType
from .._schema.partitioning import ArchiveReport
from .._schema.rows import RecordCodec
from .._schema.spec import CollectionSpec
from .._typing import Connections
from .._version import __version__
from . import archive_records as _records
from . import checksums as _checksums
from . import conform as _conform
from .writer import Writer

__all__ = ["MANIFEST_SUFFIX", "export", "manifest_path", "read", "restore"]

MANIFEST_SUFFIX = ".manifest.json"
_BATCH = 5_000  # rows fetched and written at a time: bounds client memory


def _pyarrow() -> Any:
    try:
        import pyarrow  # noqa: PLC0415 - optional: imported when used
        import pyarrow.parquet  # noqa: PLC0415
    except ImportError as exc:
        raise ImportError(
            "export_archive() and restore(from_file=) need pyarrow: pip install 'vecdb[parquet]'"
        ) from exc
    return pyarrow


def manifest_path(path: Path) -> Path:
    """Where the manifest of a Parquet file goes."""
    return path.with_name(path.name + MANIFEST_SUFFIX)


def _schema(pa: Any, spec: CollectionSpec) -> Any:
    types = {
        ColumnType.TEXT: pa.string(),
        ColumnType.BIGINT: pa.int64(),
        ColumnType.DOUBLE: pa.float64(),
        ColumnType.BOOLEAN: pa.bool_(),
        ColumnType.TIMESTAMPTZ: pa.timestamp("us", tz="UTC"),
        ColumnType.DATE: pa.date32(),
        ColumnType.UUID: pa.string(),
        ColumnType.TEXT_ARRAY: pa.list_(pa.string()),
        ColumnType.BIGINT_ARRAY: pa.list_(pa.int64()),
        ColumnType.JSONB: pa.string(),
    }
    lay = spec.layout
    fields = [pa.field(lay.id.name, types[lay.id.type], nullable=False)]
    fields += [pa.field(f.name, types[f.type], nullable=f.nullable) for f in lay.fields]
    fields += [pa.field(v.name, pa.list_(pa.float32(), v.dim), nullable=False) for v in lay.vectors]
    return pa.schema(fields)


def _value(ctype: ColumnType, value: Any) -> Any:
    if value is None:
        return None
    if ctype is ColumnType.UUID:
        return str(value)
    return value


async def export(pool: Connections, spec: CollectionSpec, path: Path) -> dict[str, Any]:
    """Write the archived rows to ``path`` and the manifest beside it; return the manifest.

    Raises:
        ConfigError: Nothing is archived, or ``path`` exists.
        ImportError: pyarrow is not installed.
    """
    pa = _pyarrow()
    if await anyio.Path(path).exists():
        raise ConfigError(
            f"{path} exists; export_archive() never overwrites a file", setting="path"
        )
    schema = _schema(pa, spec)
    lay = spec.layout
    kinds = {lay.id.name: lay.id.type, **{f.name: f.type for f in lay.fields}}
    rows = 0
    async with pool.acquire() as conn:
        with translating():
            tables = await _records.archived_tables(conn, spec)
            if not tables:
                raise ConfigError(
                    f"collection {spec.name!r} has no archived data to export; archive() first",
                    setting="path",
                )
            # Each archived table in the collection's columns of today: one an evolve
            # added since reads as NULL (`conform.projection`). The checksum is of
            # those rows, as restore(from_file=) will load them.
            live = qualified(spec.schema, spec.table)
            found = await _conform.columns(conn, [live, *tables])
            for table in tables:
                # A field the collection dropped since: the file has no column for it.
                dropped = [c for c in found[table] if c not in found[live]]
                left_out = await _conform.held(conn, table, dropped)
                if left_out:
                    raise ConfigError(
                        f"cannot export the archive of {spec.name!r}: {table} holds values "
                        f"of fields the collection no longer has ({left_out}: field -> "
                        "rows), which the file would leave out. Nothing was written. Add "
                        "the fields back (optional) with evolve=True, then export.",
                        setting="path",
                    )
            selects = {
                table: f"SELECT {_conform.projection(lay.columns, found[live], found[table])} "
                f"FROM {table}"
                for table in tables
            }
            sums = [
                await _checksums.checksum(conn, spec, f"({selects[table]})") for table in tables
            ]
            partial = path.with_name(path.name + ".partial")
            writer = pa.parquet.ParquetWriter(str(partial), schema)
            try:
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    for table in tables:
                        cursor = conn.cursor(f"{selects[table]} ORDER BY 1")
                        batch: list[Any] = []
                        async for record in cursor:
                            batch.append(record)
                            if len(batch) >= _BATCH:
                                chunk = _table(pa, schema, spec, kinds, batch)
                                await anyio.to_thread.run_sync(writer.write_table, chunk)
                                rows += len(batch)
                                batch = []
                        if batch:
                            chunk = _table(pa, schema, spec, kinds, batch)
                            await anyio.to_thread.run_sync(writer.write_table, chunk)
                            rows += len(batch)
            finally:
                await anyio.to_thread.run_sync(writer.close)
    await anyio.Path(partial).replace(path)
    manifest = {
        "collection": spec.name,
        "spec": spec.to_json(),
        "rows": rows,
        "checksum": _checksums.combine(sums),
        "tables": tables,
        "exported_at": dt.datetime.now(dt.UTC).isoformat(),
        "library_version": __version__,
    }
    await anyio.Path(manifest_path(path)).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _table(
    pa: Any, schema: Any, spec: CollectionSpec, kinds: dict[str, ColumnType], batch: list[Any]
) -> Any:
    data: dict[str, list[Any]] = {}
    for name in spec.layout.columns:
        ctype = kinds.get(name)
        if ctype is None:  # a vector: float32 arrays from the codec
            data[name] = [record[name].tolist() for record in batch]
        else:
            data[name] = [_value(ctype, record[name]) for record in batch]
    return pa.table(data, schema=schema)


def read(path: Path, spec: CollectionSpec) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The manifest and the rows of an exported file (rows as dicts for the model).

    Raises:
        ConfigError: The manifest is missing, is for another collection, or
            its row count differs from the file's.
        ImportError: pyarrow is not installed.
    """
    pa = _pyarrow()
    where = manifest_path(path)
    try:
        manifest = json.loads(where.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read the manifest {where} of {path}: {exc}; export_archive() writes "
            "it beside the Parquet file",
            setting="from_file",
        ) from exc
    if manifest.get("collection") != spec.name:
        raise ConfigError(
            f"{path} holds an export of collection {manifest.get('collection')!r}, not "
            f"{spec.name!r}; nothing was restored",
            setting="from_file",
        )
    table = pa.parquet.read_table(str(path))
    if table.num_rows != manifest["rows"]:
        raise ArchiveChecksumError(
            f"{path} holds {table.num_rows} rows, its manifest says {manifest['rows']}; the "
            "file is incomplete or was changed. Nothing was restored.",
            table=str(path),
            before=str(manifest["rows"]),
            after=str(table.num_rows),
        )
    jsonb = set(spec.layout.jsonb_fields)
    rows = table.to_pylist()
    for row in rows:
        for name in jsonb:
            if row[name] is not None:
                row[name] = json.loads(row[name])
    return manifest, rows


async def restore(
    pool: Connections,
    spec: CollectionSpec,
    path: Path,
    *,
    codec: RecordCodec[Any],
    writer: Writer,
    progress: _records.ArchiveProgress | None,
) -> ArchiveReport:
    """Write the rows of an `export` file back through the collection's write path.

    Raises:
        ConfigError: The manifest is missing or for another collection (`read`).
        ArchiveChecksumError: The file's rows differ from what was exported;
            nothing was written.
    """
    manifest, rows = await anyio.to_thread.run_sync(read, path, spec)
    models = [codec.validate(row, j) for j, row in enumerate(rows)]
    copy_rows, ids = codec.rows(models, 0)
    table = qualified(spec.schema, spec.table)
    async with pool.transaction() as conn:
        # The file's rows in the table's own types: their checksum must be the
        # one taken of the archive when it was exported.
        stage = "_vecdb_restore_" + spec.name
        # INCLUDING GENERATED: a FullText column is part of the archive's checksum.
        await conn.execute(
            f"CREATE TEMP TABLE {quote_ident(stage)} (LIKE {table} INCLUDING GENERATED) "
            "ON COMMIT DROP"
        )
        await conn.copy_records_to_table(
            stage, records=copy_rows, columns=list(spec.layout.columns)
        )
        found = await _checksums.checksum(conn, spec, quote_ident(stage))
    if found != manifest["checksum"]:
        raise ArchiveChecksumError(
            f"the rows of {path} have checksum {found}, the archive had "
            f"{manifest['checksum']} when exported; nothing was restored.",
            table=str(path),
            before=manifest["checksum"],
            after=found,
        )
    written = await writer.write(models, "upsert", None, None)
    async with pool.acquire() as conn:
        with translating():
            id_col = quote_ident(spec.layout.id.name)
            after = await _checksums.checksum(conn, spec, table, f"{id_col} = ANY($1)", ids)
    if progress is not None:
        await _records.report_progress(progress, str(path), written)
    return ArchiveReport(rows=written, partitions=(), checksum_before=found, checksum_after=after)
