"""A collection's definition: `HNSW`, `ForeignKey`, and the spec stored in the catalog.

The spec is the single source every statement is built from (table, columns,
indexes, foreign keys, metric), so that nothing assumes one physical table
forever: it is stored as JSON in ``vecdb.collections.spec`` and compared with
the caller's definition whenever a collection is opened.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Self, get_args

from .._config import check_int
from .._errors import ConfigError
from .._identifiers import validate_identifier
from . import partitioning as _partitioning
from . import quantization as _quantization
from .columns import ColumnType
from .fulltext import FullTextSpec
from .partitioning import Partitioning, TimePartitions, ValuePartitions
from .quantization import QUANTIZATIONS, Quantization
from .record import FieldSpec, Layout, Record, VectorSpec, layout

__all__ = [
    "HNSW",
    "METRICS",
    "RESERVED_PREFIX",
    "STORAGES",
    "CollectionSpec",
    "ForeignKey",
    "Metric",
    "OnDelete",
    "Storage",
    "check_index",
    "diff",
    "make_spec",
]

Metric = Literal["cosine", "l2", "inner_product", "l1"]
Storage = Literal["vector", "halfvec"]
OnDelete = Literal["cascade", "restrict", "set_null", "no_action"]
METRICS: tuple[str, ...] = get_args(Metric)
STORAGES: tuple[str, ...] = get_args(Storage)
ON_DELETE: tuple[str, ...] = get_args(OnDelete)

# Tables vecdb makes beside a collection's (id registries, staging) start with
# this: collection names may not.
RESERVED_PREFIX = "_vecdb"
SPEC_FORMAT = 1  # the layout of the spec JSON; a bundled migration upgrades old rows


@dataclasses.dataclass(frozen=True, slots=True)
class HNSW:
    """An HNSW index on the vector field(s): pgvector's ``m`` and ``ef_construction``.

    The table always keeps full-precision vectors. ``quantization`` makes only
    the index compact; its candidates are re-ranked by the exact distance.

    Example:
        >>> vecdb.HNSW(m=16, ef_construction=64)   # pgvector's defaults
        >>> vecdb.HNSW(m=32, ef_construction=200)  # better recall, slower build
        >>> vecdb.HNSW(quantization="halfvec")     # half the index, re-ranked exactly
        >>> vecdb.HNSW(quantization="binary", rerank=4)  # 1 bit/dim, 4*k candidates

    Attributes:
        m: Links per node (2..100). More: better recall, bigger index.
        ef_construction: Candidate list size while building (>= 2*m, up to 1000).
        quantization: ``None`` (index the vectors as stored), ``"halfvec"`` (an
            index over ``vector::halfvec(d)``) or ``"binary"`` (over
            ``binary_quantize(vector)::bit(d)``, Hamming distance; cosine and
            inner_product only). See `docs/search.md` for when each pays.
        rerank: With quantization: the index returns ``k * rerank`` candidates,
            re-ranked by the real metric on the full vectors (1..100; default 1
            for halfvec, 4 for binary). ``hnsw.ef_search`` is raised to cover them.
    """

    m: int = 16
    ef_construction: int = 64
    quantization: Quantization | None = None
    rerank: int | None = None

    def __post_init__(self) -> None:
        check_int(self.m, 2, 100, name="HNSW.m")
        check_int(self.ef_construction, 4, 1000, name="HNSW.ef_construction")
        if self.ef_construction < 2 * self.m:
            raise ConfigError(
                f"HNSW.ef_construction ({self.ef_construction}) must be at least 2 * m "
                f"({2 * self.m}); raise ef_construction or lower m",
                setting="index",
            )
        if self.quantization is not None and self.quantization not in QUANTIZATIONS:
            raise ConfigError(
                f"HNSW.quantization={self.quantization!r} is not one of {[None, *QUANTIZATIONS]}",
                setting="quantization",
            )
        if self.rerank is not None:
            if self.quantization is None:
                raise ConfigError(
                    f"HNSW.rerank={self.rerank!r} needs quantization='halfvec' or 'binary': "
                    "an unquantized index ranks by the exact distance already",
                    setting="rerank",
                )
            check_int(
                self.rerank,
                1,
                _quantization.MAX_RERANK,
                name="HNSW.rerank",
                why=" (candidates per result: k * rerank are re-ranked)",
                setting="rerank",
            )

    def to_json(self) -> dict[str, Any]:
        """The catalog's form; quantization keys only when set (older specs stay as they were)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass(frozen=True, slots=True)
class ForeignKey:
    """A field that references another collection's ``id``, enforced by PostgreSQL.

    Example:
        >>> foreign_keys={"doc_id": vecdb.ForeignKey("documents", on_delete="cascade")}

    Attributes:
        collection: The referenced collection's name (it must exist).
        on_delete: What deleting the referenced record does: ``"cascade"`` (delete
            these rows too), ``"restrict"`` (refuse), ``"set_null"`` (the field
            must be optional) or ``"no_action"`` (refuse, checked at commit).
    """

    collection: str
    on_delete: OnDelete = "restrict"

    def __post_init__(self) -> None:
        validate_identifier(self.collection, what="ForeignKey collection name")
        if self.on_delete not in ON_DELETE:
            raise ConfigError(
                f"ForeignKey on_delete={self.on_delete!r} is not one of {list(ON_DELETE)}",
                setting="on_delete",
            )


@dataclasses.dataclass(frozen=True, slots=True)
class CollectionSpec:
    """Everything the table, its indexes and every query are built from."""

    name: str
    schema: str
    table: str
    layout: Layout
    metric: Metric
    storage: Storage
    index: HNSW | None
    filterable: tuple[str, ...]
    foreign_keys: Mapping[str, ForeignKey]
    partitioning: Partitioning | None = None

    @property
    def partition_key(self) -> str | None:
        """The field the table is partitioned by, or ``None``."""
        return self.partitioning.field if self.partitioning is not None else None

    @property
    def primary_key(self) -> tuple[str, ...]:
        """The primary key's columns: PostgreSQL makes it include the partition key."""
        key = self.partition_key
        return (self.layout.id.name,) if key is None else (self.layout.id.name, key)

    @property
    def vector_type(self) -> ColumnType:
        """``vector`` or ``halfvec``."""
        return ColumnType(self.storage)

    def to_json(self) -> dict[str, Any]:
        """The JSON stored in the catalog."""
        lay = self.layout
        return {
            "format": SPEC_FORMAT,
            "id": {"name": lay.id.name, "type": lay.id.type.value},
            "fields": [
                {"name": f.name, "type": f.type.value, "nullable": f.nullable} for f in lay.fields
            ],
            "vectors": [{"name": v.name, "dim": v.dim} for v in lay.vectors],
            "metric": self.metric,
            "storage": self.storage,
            "index": self.index.to_json() if self.index else None,
            "filterable": list(self.filterable),
            "foreign_keys": {
                name: {"collection": fk.collection, "on_delete": fk.on_delete}
                for name, fk in sorted(self.foreign_keys.items())
            },
            "primary_key": list(self.primary_key),
            "partitioning": _partitioning.to_json(self.partitioning),
        } | self._fulltext_json()

    def _fulltext_json(self) -> dict[str, Any]:
        # Only when declared: the specs of collections without one stay as they were.
        fulltext = [{"field": f.field, "language": f.language} for f in self.layout.fulltext]
        return {"fulltext": fulltext} if fulltext else {}

    @classmethod
    def from_json(cls, name: str, schema: str, table: str, data: Mapping[str, Any]) -> Self:
        """Rebuild a spec from the catalog's JSON."""
        lay = Layout(
            id=FieldSpec(data["id"]["name"], ColumnType(data["id"]["type"]), nullable=False),
            fields=tuple(
                FieldSpec(f["name"], ColumnType(f["type"]), bool(f["nullable"]))
                for f in data["fields"]
            ),
            vectors=tuple(VectorSpec(v["name"], int(v["dim"])) for v in data["vectors"]),
            fulltext=tuple(
                FullTextSpec(f["field"], f["language"]) for f in data.get("fulltext", ())
            ),
        )
        index = data.get("index")
        return cls(
            name=name,
            schema=schema,
            table=table,
            layout=lay,
            metric=data["metric"],
            storage=data["storage"],
            index=HNSW(**index) if index else None,
            filterable=tuple(data.get("filterable", ())),
            foreign_keys={
                field: ForeignKey(fk["collection"], fk["on_delete"])
                for field, fk in data.get("foreign_keys", {}).items()
            },
            partitioning=_partitioning.from_json(data.get("partitioning")),
        )


def _describe(field: FieldSpec) -> str:
    return f"{field.type.value}{'' if field.nullable else ' NOT NULL'}"


_MIGRATE = "write a migration (vecdb.Migration) that changes the table, or create a new collection"


def _layout_of(partitioning: Partitioning | None) -> tuple[str, str, str | None] | None:
    """What the table's layout depends on: ``premake`` only says how far ahead to make them."""
    if partitioning is None:
        return None
    interval = partitioning.interval if isinstance(partitioning, TimePartitions) else None
    return type(partitioning).__name__, partitioning.field, interval


def _definition_differences(stored: CollectionSpec, given: CollectionSpec) -> list[str]:
    """Differences of index, partitioning and foreign keys: none is applied by evolve."""
    found: list[str] = []
    if stored.index != given.index:
        found.append(
            f"index: stored {stored.index!r}, given {given.index!r}; pass index="
            f"{stored.index!r}, or call create_index({given.index!r}) on the opened "
            "collection to rebuild it (index=None cannot remove one: drop it in a migration)"
        )
    if _layout_of(stored.partitioning) != _layout_of(given.partitioning):
        found.append(
            f"partition: stored {stored.partitioning!r}, given {given.partitioning!r}; a "
            f"table cannot change how it is partitioned in place: pass partition="
            f"{stored.partitioning!r}, or create a new collection and copy the records"
        )
    if dict(stored.foreign_keys) != dict(given.foreign_keys):
        found.append(
            f"foreign_keys: stored {dict(stored.foreign_keys)}, given "
            f"{dict(given.foreign_keys)}; changing constraints is not automatic: {_MIGRATE}"
        )
    return found


def diff(stored: CollectionSpec, given: CollectionSpec) -> tuple[list[str], list[str]]:
    """Compare the stored spec with the caller's.

    Returns:
        ``(evolvable, destructive)``: one line per difference with how to resolve
        it. ``evolvable`` ones are applied by ``evolve=True`` (new optional
        fields, changed filterable indexes); ``destructive`` ones never are.
    """
    evolvable: list[str] = []
    destructive: list[str] = []
    old_lay, new_lay = stored.layout, given.layout
    if old_lay.id != new_lay.id:
        destructive.append(
            f"id: stored {old_lay.id.type.value}, model has {new_lay.id.type.value}; "
            f"the primary key type cannot change: {_MIGRATE}"
        )
    old_fields = {f.name: f for f in old_lay.fields}
    new_fields = {f.name: f for f in new_lay.fields}
    for name, field in new_fields.items():
        old = old_fields.get(name)
        if old is None:
            if field.nullable:
                evolvable.append(
                    f"field {name!r} ({_describe(field)}) is new: pass evolve=True to add "
                    "the column (existing rows get NULL)"
                )
            else:
                destructive.append(
                    f"field {name!r} ({_describe(field)}) is new and required: existing rows "
                    f"have no value for it. Make it optional (`| None = None`) and pass "
                    f"evolve=True, or {_MIGRATE}"
                )
        elif old != field:
            destructive.append(
                f"field {name!r}: stored {_describe(old)}, model has {_describe(field)}; "
                f"changing a column's type or nullability is not automatic: {_MIGRATE}"
            )
    destructive.extend(
        f"field {name!r} ({_describe(old_fields[name])}) is stored but not in the model; "
        f"dropping a column loses data: add the field back, or {_MIGRATE}"
        for name in old_fields
        if name not in new_fields
    )
    if old_lay.vectors != new_lay.vectors:
        old_v = ", ".join(f"{v.name}({v.dim})" for v in old_lay.vectors)
        new_v = ", ".join(f"{v.name}({v.dim})" for v in new_lay.vectors)
        destructive.append(
            f"vector fields: stored {old_v}, given {new_v}; other dimensions need other "
            "embeddings: create a new collection (or drop_collection() and re-embed)"
        )
    for what in ("metric", "storage"):
        old_v, new_v = getattr(stored, what), getattr(given, what)
        if old_v != new_v:
            destructive.append(
                f"{what}: stored {old_v!r}, given {new_v!r}; pass {what}={old_v!r}, or "
                "create a new collection and re-load it"
            )
    if old_lay.fulltext != new_lay.fulltext:
        old_ft = [f"{f.field}({f.language})" for f in old_lay.fulltext]
        new_ft = [f"{f.field}({f.language})" for f in new_lay.fulltext]
        evolvable.append(
            f"FullText fields: stored {old_ft}, model has {new_ft}; pass evolve=True to "
            "(re)make the generated tsvector column and its GIN index (this rewrites the "
            "table under an exclusive lock: writes and reads wait for it)"
        )
    if set(stored.filterable) != set(given.filterable):
        evolvable.append(
            f"filterable: stored {sorted(stored.filterable)}, given "
            f"{sorted(given.filterable)}; pass evolve=True to create/drop the indexes"
        )
    destructive.extend(_definition_differences(stored, given))
    return evolvable, destructive


def check_index(index: HNSW, lay: Layout, *, metric: str, storage: str) -> None:
    """Refuse an index this metric, storage or dimension cannot have (no I/O).

    Raises:
        ConfigError: A quantization the metric or storage cannot use, or more
            dimensions than the indexed type takes.
    """
    _quantization.check_index(index, metric=metric, storage=storage)
    limit = _quantization.max_dim(index, storage)
    too_big = [v.name for v in lay.vectors if v.dim > limit]
    if too_big:
        what = f"quantization={index.quantization!r}" if index.quantization else storage
        raise ConfigError(
            f"vector field(s) {too_big} have more than {limit} dimensions, the most an "
            f"HNSW index on {what} supports; use HNSW(quantization='halfvec') (up to 4000), "
            "'binary' (up to 64000, cosine/inner_product) or index=None (exact search only)",
            setting="dim",
        )


def make_spec(
    name: str,
    model: type[Record],
    *,
    dim: int | None,
    metric: Metric,
    storage: Storage,
    index: HNSW | None,
    filterable: Iterable[str],
    foreign_keys: Mapping[str, ForeignKey] | None,
    schema: str,
    partition: Partitioning | None = None,
) -> CollectionSpec:
    """Check the arguments of ``db.collection()`` and make the spec (no I/O)."""
    validate_identifier(name, what="collection name")
    if name.startswith(RESERVED_PREFIX):
        raise ConfigError(
            f"invalid collection name {name!r}: names starting with {RESERVED_PREFIX!r} are "
            "reserved for the tables vecdb keeps beside collections; choose another name",
            setting="name",
        )
    validate_identifier(schema, what="schema name")
    if metric not in METRICS:
        raise ConfigError(f"metric={metric!r} is not one of {list(METRICS)}", setting="metric")
    if storage not in STORAGES:
        raise ConfigError(f"storage={storage!r} is not one of {list(STORAGES)}", setting="storage")
    if index is not None and not isinstance(index, HNSW):
        raise ConfigError(f"index must be vecdb.HNSW(...) or None, got {index!r}", setting="index")
    if isinstance(filterable, str):
        raise ConfigError(
            f"filterable must be a tuple of field names, got the string {filterable!r}; "
            f"write filterable=({filterable!r},)",
            setting="filterable",
        )
    fks = dict(foreign_keys or {})
    for key, fk in fks.items():
        if not isinstance(fk, ForeignKey):
            raise ConfigError(
                f"foreign_keys[{key!r}] must be vecdb.ForeignKey(...), got {fk!r}",
                setting="foreign_keys",
            )
    lay = layout(model, dim=dim)
    if partition is not None:
        if not isinstance(partition, TimePartitions | ValuePartitions):
            raise ConfigError(
                f"partition must be vecdb.TimePartitions(...), vecdb.ValuePartitions(...) or "
                f"None, got {partition!r}",
                setting="partition",
            )
        _partitioning.check(partition, lay)
    if index is not None:
        check_index(index, lay, metric=metric, storage=storage)
    return CollectionSpec(
        name=name,
        schema=schema,
        table=name,
        layout=lay,
        metric=metric,
        storage=storage,
        index=index,
        filterable=tuple(
            dict.fromkeys(validate_identifier(f, what="filterable field") for f in filterable)
        ),
        foreign_keys=fks,
        partitioning=partition,
    )
