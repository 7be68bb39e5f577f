"""Partitioned collections: the declarations, their checks, bounds and names (no I/O).

A partitioned collection is one parent table, partitioned by one required
field of its model, and a set of child tables that hold the rows:

- `TimePartitions` makes RANGE partitions by a ``datetime`` or ``date`` field,
  one per day, week, month, quarter or year. Every bound is a midnight in
  UTC, computed here by :func:`floor` and :func:`step`, so the partition a
  row lands in never depends on the server's or the client's time zone.
- `ValuePartitions` makes LIST partitions, one per distinct value of a field
  (a tenant, say).

Partition names are derived from the table and the bound (or value) alone,
so every process computes the same name for the same range without asking
the database: ``{table}_p{YYYYMMDD}`` for time partitions (sortable) and
``{table}_v_{slug}_{hash8}`` for value partitions. Both are valid
identifiers of at most 63 bytes for any table name the identifier rule allows.

There is no DEFAULT partition, by design: rows already in a default
partition block creating the partition that should hold them (pg_partman
#707, #247), and a default partition also forbids ``DETACH PARTITION …
CONCURRENTLY``, which archiving relies on. Instead, rows for a range or
value without a partition get it created on demand before they are written.

Naive datetimes are refused (:func:`floor` raises `ValueError`, which
callers report as `RecordValidationError`): asyncpg converts a naive
datetime with the client machine's local time zone, so the row's partition
would depend on where the code runs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import itertools
import re
import uuid
from collections.abc import Mapping
from typing import Any, Literal, get_args

from .._errors import ConfigError
from .._identifiers import validate_identifier
from .columns import ColumnType
from .record import Layout

__all__ = [
    "INTERVALS",
    "MAX_PREMAKE",
    "TIME_TYPES",
    "VALUE_TYPES",
    "ArchiveReport",
    "Interval",
    "PartitionInfo",
    "Partitioning",
    "TimePartitions",
    "ValuePartitions",
    "ahead",
    "bounds",
    "check",
    "covering",
    "floor",
    "from_json",
    "step",
    "time_partition_name",
    "to_json",
    "value_partition_name",
]

Interval = Literal["day", "week", "month", "quarter", "year"]
INTERVALS: tuple[str, ...] = get_args(Interval)
MAX_PREMAKE = 120  # ten years of months ahead; more is a typo, not a plan

TIME_TYPES = (ColumnType.TIMESTAMPTZ, ColumnType.DATE)
VALUE_TYPES = (
    ColumnType.TEXT,
    ColumnType.BIGINT,
    ColumnType.UUID,
    ColumnType.DATE,
    ColumnType.BOOLEAN,
)

_PG_MAX_IDENTIFIER = 63
_HASH_LENGTH = 8
_MONTHS = {"month": 1, "quarter": 3, "year": 12}
_DAYS = {"day": 1, "week": 7}
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


@dataclasses.dataclass(frozen=True, slots=True)
class TimePartitions:
    """Partition a collection by time: one RANGE partition per interval of a field.

    The field must be a required ``datetime`` (timestamptz) or ``date`` field.
    Every bound is a midnight in UTC (weeks start on Monday, quarters in
    January, April, July and October), whatever the server's time zone.
    ``premake`` partitions beyond the current one are made ahead of now, so
    that writes at an interval's turn do not wait for DDL; rows outside
    those get their partition created when they are first written.

    Example:
        >>> vecdb.TimePartitions("created_at", interval="month", premake=3)
        >>> vecdb.TimePartitions("day", interval="week", premake=0)  # a date field

    Attributes:
        field: The partition key: a required datetime or date field of the model.
        interval: One of ``"day"``, ``"week"``, ``"month"``, ``"quarter"``, ``"year"``.
        premake: How many partitions after the one holding now to create ahead
            (0 to 120).
    """

    field: str
    interval: Interval = "month"
    premake: int = 3

    def __post_init__(self) -> None:
        validate_identifier(self.field, what="partition field")
        if self.interval not in INTERVALS:
            raise ConfigError(
                f"TimePartitions interval={self.interval!r} is not one of {list(INTERVALS)}",
                setting="interval",
            )
        premake = self.premake
        if isinstance(premake, bool) or not isinstance(premake, int):
            raise ConfigError(
                f"TimePartitions premake must be an int from 0 to {MAX_PREMAKE}, got {premake!r}",
                setting="premake",
            )
        if not 0 <= premake <= MAX_PREMAKE:
            raise ConfigError(
                f"TimePartitions premake must be from 0 to {MAX_PREMAKE} (partitions made "
                f"ahead of now), got {premake}",
                setting="premake",
            )


@dataclasses.dataclass(frozen=True, slots=True)
class ValuePartitions:
    """Partition a collection by value: one LIST partition per distinct value of a field.

    Prefer it when most searches filter on a field with few values, each
    holding many rows, such as a tenant: a search for one tenant then reads
    only that tenant's partition and its HNSW index. A partition is created
    the first time a value is written.

    A field with very many distinct values (say over ~1,000) is a bad fit:
    every partition carries its own HNSW index and its own tables, and a
    search without that filter scans every one of them.

    The field must be a required ``str``, ``int``, ``UUID``, ``date`` or ``bool``
    field.

    Example:
        >>> vecdb.ValuePartitions("tenant")

    Attributes:
        field: The partition key: a required field of the model.
    """

    field: str

    def __post_init__(self) -> None:
        validate_identifier(self.field, what="partition field")


Partitioning = TimePartitions | ValuePartitions


@dataclasses.dataclass(frozen=True, slots=True)
class PartitionInfo:
    """One partition of a collection, as `Collection.partitions()` reports it.

    Attributes:
        name: The partition's table name.
        lower: A time partition's inclusive lower bound (a UTC datetime), else ``None``.
        upper: A time partition's exclusive upper bound (a UTC datetime), else ``None``.
        value: A value partition's value, else ``None``.
        rows: The number of rows (an estimate from the statistics for large tables).
        total_bytes: The size on disk, indexes and TOAST included.
        archived: Whether the partition was moved to the archive schema.
    """

    name: str
    lower: object | None
    upper: object | None
    value: object | None
    rows: int
    total_bytes: int
    archived: bool


@dataclasses.dataclass(frozen=True, slots=True)
class ArchiveReport:
    """What `Collection.archive()` or `Collection.restore()` moved.

    Attributes:
        rows: The number of rows moved.
        partitions: The names of the partitions moved, oldest first.
        checksum_before: A checksum of the moved rows before the move.
        checksum_after: The same checksum computed where the rows are now.
    """

    rows: int
    partitions: tuple[str, ...]
    checksum_before: str
    checksum_after: str

    @property
    def ok(self) -> bool:
        """Whether the rows arrived intact (both checksums agree)."""
        return self.checksum_before == self.checksum_after


# -- checks against the model -------------------------------------------------------------


def check(partitioning: Partitioning, layout: Layout) -> None:
    """Check that the model can be partitioned by ``partitioning``'s field.

    Args:
        partitioning: The collection's `TimePartitions` or `ValuePartitions`.
        layout: The model's layout.

    Raises:
        ConfigError: The field is not a scalar field of the model (unknown, the
            id or a vector field), is optional, or has a type the kind of
            partitioning cannot use. ``setting`` is the field name.
    """
    name = partitioning.field
    time = isinstance(partitioning, TimePartitions)
    allowed = TIME_TYPES if time else VALUE_TYPES
    kind = type(partitioning).__name__
    candidates = [f.name for f in layout.fields if f.type in allowed and not f.nullable]
    fits = (
        f"fields that fit: {candidates}"
        if candidates
        else "the model has no field that fits; add one"
    )
    wanted = (
        "must be a required datetime or date field"
        if time
        else "must be a required str, int, UUID, date or bool field"
    )
    if name == layout.id.name:
        raise ConfigError(
            f"{kind} field {name!r} is the id: a collection cannot be partitioned by its "
            f"primary key; the partition field {wanted} ({fits})",
            setting=name,
        )
    if name in {v.name for v in layout.vectors}:
        raise ConfigError(
            f"{kind} field {name!r} is a vector field; the partition field {wanted} ({fits})",
            setting=name,
        )
    fields = {f.name: f for f in layout.fields}
    spec = fields.get(name)
    if spec is None:
        raise ConfigError(
            f"{kind} field {name!r} is not a field of the model (its fields: "
            f"{list(layout.columns)}); the partition field {wanted} ({fits})",
            setting=name,
        )
    if spec.type not in allowed:
        raise ConfigError(
            f"{kind} field {name!r} has type {spec.type.value}; the partition field "
            f"{wanted} ({fits})",
            setting=name,
        )
    if spec.nullable:
        raise ConfigError(
            f"{kind} field {name!r} is optional, but every row needs a partition: the "
            f"partition field {wanted}; declare it without `| None` ({fits})",
            setting=name,
        )


# -- the spec's JSON ----------------------------------------------------------------------


def to_json(partitioning: Partitioning | None) -> dict[str, Any] | None:
    """The ``"partitioning"`` entry of the collection spec's JSON (``None`` if unpartitioned)."""
    if partitioning is None:
        return None
    if isinstance(partitioning, TimePartitions):
        return {
            "kind": "time",
            "field": partitioning.field,
            "interval": partitioning.interval,
            "premake": partitioning.premake,
        }
    return {"kind": "value", "field": partitioning.field}


def from_json(data: Mapping[str, Any] | None) -> Partitioning | None:
    """Rebuild the partitioning from the spec's JSON (the inverse of :func:`to_json`).

    Raises:
        ConfigError: The entry has an unknown ``kind`` or invalid values.
    """
    if data is None:
        return None
    kind = data.get("kind")
    if kind == "time":
        return TimePartitions(data["field"], interval=data["interval"], premake=data["premake"])
    if kind == "value":
        return ValuePartitions(data["field"])
    raise ConfigError(
        f"the stored partitioning has kind {kind!r}, expected 'time' or 'value'; "
        "the collection was written by another version of vecdb",
        setting="partition",
    )


# -- time arithmetic (UTC) ----------------------------------------------------------------


def _utc(value: dt.datetime | dt.date) -> dt.datetime:
    """``value`` as an aware UTC datetime; a date is midnight UTC of that day."""
    if not isinstance(value, dt.datetime):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"naive datetime {value!r} (no time zone) cannot be placed in a partition: "
            "give it one, e.g. value.replace(tzinfo=datetime.UTC) or value.astimezone()"
        )
    return value.astimezone(dt.UTC)


def floor(value: dt.datetime | dt.date, interval: Interval) -> dt.datetime:
    """The start of the interval that holds ``value``: an aware datetime in UTC.

    Weeks start on Monday (ISO 8601); quarters in January, April, July and
    October. A ``date`` is taken as midnight UTC of that day; an aware
    datetime is converted to UTC first, so 00:30 at +02:00 on 1 March falls
    in February.

    Example:
        >>> floor(datetime(2024, 5, 17, 9, 30, tzinfo=UTC), "quarter")
        datetime.datetime(2024, 4, 1, 0, 0, tzinfo=datetime.timezone.utc)

    Raises:
        ValueError: ``value`` is a naive datetime. asyncpg converts a naive
            datetime using the client's local time zone, so its partition would
            depend on the machine the code runs on; callers report this as
            `RecordValidationError`.
    """
    utc = _utc(value)
    start = dt.datetime(utc.year, utc.month, utc.day, tzinfo=dt.UTC)
    if interval == "day":
        return start
    if interval == "week":
        return start - dt.timedelta(days=start.weekday())
    if interval == "month":
        return start.replace(day=1)
    if interval == "quarter":
        return start.replace(month=(start.month - 1) // 3 * 3 + 1, day=1)
    if interval == "year":
        return start.replace(month=1, day=1)
    raise ValueError(f"interval {interval!r} is not one of {list(INTERVALS)}")


def step(lower: dt.datetime, interval: Interval, n: int = 1) -> dt.datetime:
    """The bound ``n`` intervals after ``lower`` (before it when ``n`` is negative).

    Args:
        lower: A bound, as returned by :func:`floor`.
        interval: The partition interval.
        n: How many intervals to move.

    Raises:
        ValueError: ``lower`` is naive or not the start of an interval.
    """
    start = floor(lower, interval)
    if start != lower:
        raise ValueError(
            f"{lower!r} is not the start of a {interval}; pass floor(value, {interval!r})"
        )
    if interval in _DAYS:
        return start + dt.timedelta(days=_DAYS[interval] * n)
    months = start.year * 12 + start.month - 1 + _MONTHS[interval] * n
    year, month = divmod(months, 12)
    return start.replace(year=year, month=month + 1)


def bounds(value: dt.datetime | dt.date, interval: Interval) -> tuple[dt.datetime, dt.datetime]:
    """The ``(lower, upper)`` bounds of the partition that holds ``value`` (upper excluded).

    Raises:
        ValueError: ``value`` is a naive datetime (see :func:`floor`).
    """
    lower = floor(value, interval)
    return lower, step(lower, interval)


def ahead(
    now: dt.datetime, interval: Interval, premake: int
) -> list[tuple[dt.datetime, dt.datetime]]:
    """The bounds of the partition holding ``now`` and of the ``premake`` ones after it.

    Returns:
        ``premake + 1`` ranges, ascending.

    Raises:
        ValueError: ``now`` is naive, or ``premake`` is negative.
    """
    if premake < 0:
        raise ValueError(f"premake must be >= 0, got {premake}")
    lower = floor(now, interval)
    edges = [step(lower, interval, i) for i in range(premake + 2)]
    return list(itertools.pairwise(edges))


def covering(
    lower: dt.datetime | dt.date, upper: dt.datetime | dt.date, interval: Interval
) -> list[tuple[dt.datetime, dt.datetime]]:
    """The bounds of every partition that overlaps ``[lower, upper)``, ascending.

    An empty range (``upper <= lower``) is covered by no partition.

    Raises:
        ValueError: ``lower`` or ``upper`` is a naive datetime.
    """
    end = _utc(upper)
    start = floor(lower, interval)
    ranges: list[tuple[dt.datetime, dt.datetime]] = []
    if end <= _utc(lower):
        return ranges
    while start < end:
        following = step(start, interval)
        ranges.append((start, following))
        start = following
    return ranges


# -- names ---------------------------------------------------------------------------------


def time_partition_name(table: str, lower: dt.datetime) -> str:
    """The name of the time partition of ``table`` that starts at ``lower``.

    ``{table}_p{YYYYMMDD}`` of the UTC lower bound: names sort like their
    ranges, and the name does not depend on the interval since a collection
    has one partition per lower bound.

    Example:
        >>> time_partition_name("events", datetime(2024, 5, 1, tzinfo=UTC))
        'events_p20240501'

    Raises:
        ValueError: ``lower`` is naive.
    """
    utc = _utc(lower)
    # Formatted by hand: strftime's %Y does not pad years before 1000 on every platform.
    return f"{table}_p{utc.year:04d}{utc.month:02d}{utc.day:02d}"


def _canonical(value: object) -> tuple[str, str]:
    """``(type tag, text)`` of a partition value, the same for the value written and read."""
    if isinstance(value, enum.Enum):  # stored as its value (a StrEnum as text, ...)
        value = value.value
    if isinstance(value, bool):  # before int: bool is an int
        return "bool", "true" if value else "false"
    if isinstance(value, int):
        return "int", str(int(value))
    if isinstance(value, str):
        return "str", str.__str__(value)
    if isinstance(value, uuid.UUID):
        return "uuid", str(value)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return "date", value.isoformat()
    raise TypeError(
        f"a partition value must be a str, int, UUID, date or bool, got "
        f"{type(value).__name__}: {value!r}"
    )


def value_partition_name(table: str, value: object) -> str:
    """The name of the value partition of ``table`` that holds ``value``.

    ``{table}_v_{slug}_{hash8}``: the slug is the value's text in lower case
    with every run of characters outside ``[a-z0-9]`` turned into ``_``, cut
    so that the name fits 63 bytes (it may be empty: ``{table}_v_{hash8}``);
    ``hash8`` is the start of a SHA-256 of the value tagged with its type,
    so the string ``"1"`` and the int ``1`` get different partitions.

    Example:
        >>> value_partition_name("docs", "Acme Corp.")
        'docs_v_acme_corp_da695f95'

    Raises:
        TypeError: ``value`` is not a str, int, UUID, date or bool.
    """
    tag, text = _canonical(value)
    encoded = f"{tag}:{text}".encode(errors="surrogatepass")
    digest = hashlib.sha256(encoded).hexdigest()[:_HASH_LENGTH]
    room = _PG_MAX_IDENTIFIER - len(f"{table}_v__{digest}".encode())
    slug = _NOT_SLUG.sub("_", text.lower())[: max(room, 0)].strip("_")
    return f"{table}_v_{slug}_{digest}" if slug else f"{table}_v_{digest}"
