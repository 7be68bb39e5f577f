"""Partitioned collections, the pure part: declarations, checks, UTC bounds and names."""

from __future__ import annotations

import datetime as dt
import enum
import re
import uuid

import pytest

import vecdb
from vecdb._errors import ConfigError
from vecdb._identifiers import _IDENTIFIER, validate_identifier
from vecdb._schema import partitioning as p
from vecdb._schema.record import Layout, layout

UTC = dt.UTC
PLUS_2 = dt.timezone(dt.timedelta(hours=2))
MINUS_5 = dt.timezone(dt.timedelta(hours=-5))
TABLE_48 = "t" * 48


def assert_derived_identifier(name: str) -> None:
    """The identifier rule for names vecdb derives (like index names): at most 63 bytes.

    Names a user chooses are capped at 48 characters to leave room for the
    derived ones; apart from that limit, a derived name follows the same rule.
    """
    assert len(name.encode()) <= 63, name
    validate_identifier(name[:48])  # characters, first character, not a reserved word
    assert _IDENTIFIER.match(name), name


def utc(  # noqa: PLR0917 - the positional fields of a datetime, as in datetime()
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


class Event(vecdb.Record):
    id: int
    created_at: dt.datetime
    day: dt.date
    tenant: str
    shard: int
    owner: uuid.UUID
    public: bool
    score: float
    tags: list[str]
    deleted_at: dt.datetime | None
    region: str | None
    embedding: vecdb.Vector


class Plain(vecdb.Record):
    id: int
    score: float
    embedding: vecdb.Vector


@pytest.fixture(scope="module")
def events() -> Layout:
    return layout(Event, dim=3)


# -- declarations ---------------------------------------------------------------------------


def test_time_partitions_defaults_to_monthly_with_three_ahead() -> None:
    declared = p.TimePartitions("created_at")
    assert (declared.interval, declared.premake) == ("month", 3)


@pytest.mark.parametrize("interval", p.INTERVALS)
def test_every_interval_is_accepted(interval: p.Interval) -> None:
    assert p.TimePartitions("created_at", interval=interval).interval == interval


def test_an_unknown_interval_is_refused_listing_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        p.TimePartitions("created_at", interval="hour")  # type: ignore[arg-type]
    assert caught.value.setting == "interval"
    for interval in p.INTERVALS:
        assert repr(interval) in str(caught.value)


@pytest.mark.parametrize("premake", [0, 120], ids=["zero", "max"])
def test_premake_accepts_its_range(premake: int) -> None:
    assert p.TimePartitions("created_at", premake=premake).premake == premake


@pytest.mark.parametrize(
    "premake",
    [True, -1, 121, 3.0, "3", None],
    ids=["bool", "negative", "too-big", "float", "str", "none"],
)
def test_premake_must_be_an_int_from_0_to_120(premake: object) -> None:
    with pytest.raises(ConfigError, match="premake") as caught:
        p.TimePartitions("created_at", premake=premake)  # type: ignore[arg-type]
    assert caught.value.setting == "premake"
    assert "120" in str(caught.value)


@pytest.mark.parametrize("kind", [p.TimePartitions, p.ValuePartitions], ids=["time", "value"])
@pytest.mark.parametrize(
    "field",
    ["CreatedAt", "1st", "a-b", 'x"; drop table t; --', "", "select", "f" * 49, 3],
    ids=["upper", "digit-first", "dash", "injection", "empty", "reserved", "too-long", "int"],
)
def test_the_field_must_be_a_valid_identifier(kind: type[p.Partitioning], field: object) -> None:
    with pytest.raises(ConfigError, match="partition field"):
        kind(field)  # type: ignore[arg-type]


def test_declarations_are_frozen() -> None:
    declared = p.TimePartitions("created_at")
    with pytest.raises(AttributeError):
        declared.premake = 5  # type: ignore[misc]


# -- checks against the model ---------------------------------------------------------------


@pytest.mark.parametrize(
    "declared",
    [
        p.TimePartitions("created_at"),
        p.TimePartitions("day", interval="week"),
        p.ValuePartitions("tenant"),
        p.ValuePartitions("shard"),
        p.ValuePartitions("owner"),
        p.ValuePartitions("day"),
        p.ValuePartitions("public"),
    ],
    ids=[
        "time-datetime",
        "time-date",
        "value-str",
        "value-int",
        "value-uuid",
        "value-date",
        "value-bool",
    ],
)
def test_a_required_field_of_a_fitting_type_is_accepted(
    declared: p.Partitioning, events: Layout
) -> None:
    p.check(declared, events)


@pytest.mark.parametrize(
    ("declared", "says"),
    [
        (p.TimePartitions("nope"), "is not a field of the model"),
        (p.ValuePartitions("nope"), "is not a field of the model"),
        (p.TimePartitions("id"), "is the id"),
        (p.ValuePartitions("id"), "is the id"),
        (p.TimePartitions("embedding"), "is a vector field"),
        (p.ValuePartitions("embedding"), "is a vector field"),
        (p.TimePartitions("tenant"), "must be a required datetime or date field"),
        (p.TimePartitions("shard"), "must be a required datetime or date field"),
        (p.ValuePartitions("score"), "has type double precision"),
        (p.ValuePartitions("tags"), "has type text[]"),
        (p.TimePartitions("deleted_at"), "is optional"),
        (p.ValuePartitions("region"), "is optional"),
    ],
    ids=[
        "time-unknown",
        "value-unknown",
        "time-id",
        "value-id",
        "time-vector",
        "value-vector",
        "time-text",
        "time-bigint",
        "value-float",
        "value-array",
        "time-optional",
        "value-optional",
    ],
)
def test_an_unusable_field_is_refused_naming_it_and_the_fields_that_fit(
    declared: p.Partitioning, says: str, events: Layout
) -> None:
    with pytest.raises(ConfigError) as caught:
        p.check(declared, events)
    message = str(caught.value)
    assert caught.value.setting == declared.field
    assert repr(declared.field) in message
    assert says in message
    fits = (
        ["created_at", "day"]
        if isinstance(declared, p.TimePartitions)
        else ["day", "tenant", "shard", "owner", "public"]
    )
    for name in fits:
        assert repr(name) in message


def test_an_unknown_field_lists_the_models_fields(events: Layout) -> None:
    with pytest.raises(ConfigError) as caught:
        p.check(p.TimePartitions("created"), events)
    for name in events.columns:
        assert repr(name) in str(caught.value)


def test_a_model_without_a_fitting_field_says_to_add_one() -> None:
    with pytest.raises(ConfigError, match="no field that fits"):
        p.check(p.TimePartitions("score"), layout(Plain, dim=3))


def test_a_time_field_of_the_wrong_type_says_it_must_be_a_required_datetime_or_date() -> None:
    with pytest.raises(ConfigError, match="must be a required datetime or date field"):
        p.check(p.TimePartitions("score"), layout(Plain, dim=3))


# -- the spec's JSON ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "data"),
    [
        (
            p.TimePartitions("created_at", interval="week", premake=0),
            {"kind": "time", "field": "created_at", "interval": "week", "premake": 0},
        ),
        (p.ValuePartitions("tenant"), {"kind": "value", "field": "tenant"}),
        (None, None),
    ],
    ids=["time", "value", "none"],
)
def test_json_round_trips(declared: p.Partitioning | None, data: dict[str, object] | None) -> None:
    assert p.to_json(declared) == data
    assert p.from_json(data) == declared


def test_json_of_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ConfigError, match="'hash'") as caught:
        p.from_json({"kind": "hash", "field": "id"})
    assert caught.value.setting == "partition"


def test_json_with_invalid_values_is_refused() -> None:
    with pytest.raises(ConfigError, match="interval"):
        p.from_json({"kind": "time", "field": "created_at", "interval": "hour", "premake": 3})


# -- floor, step, bounds --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "interval", "start"),
    [
        (utc(2024, 5, 17, 9, 30, 15, 123), "day", utc(2024, 5, 17)),
        (utc(2024, 5, 17, 9, 30), "week", utc(2024, 5, 13)),
        (utc(2024, 5, 13), "week", utc(2024, 5, 13)),
        (utc(2024, 5, 19, 23, 59, 59), "week", utc(2024, 5, 13)),
        (utc(2024, 5, 17, 9, 30), "month", utc(2024, 5, 1)),
        (utc(2024, 5, 17, 9, 30), "quarter", utc(2024, 4, 1)),
        (utc(2024, 3, 31, 23, 59), "quarter", utc(2024, 1, 1)),
        (utc(2024, 12, 31, 23, 59, 59, 999999), "quarter", utc(2024, 10, 1)),
        (utc(2024, 7, 1), "quarter", utc(2024, 7, 1)),
        (utc(2024, 12, 31, 23, 59, 59, 999999), "year", utc(2024, 1, 1)),
        (utc(2024, 12, 31, 23, 59, 59, 999999), "month", utc(2024, 12, 1)),
        (utc(2024, 2, 29, 12), "month", utc(2024, 2, 1)),
        (utc(2024, 2, 29, 12), "day", utc(2024, 2, 29)),
    ],
    ids=[
        "day",
        "week-midweek",
        "week-monday",
        "week-sunday-night",
        "month",
        "quarter-q2",
        "quarter-q1-end",
        "quarter-q4-end",
        "quarter-start",
        "year-end",
        "month-year-end",
        "month-leap-day",
        "day-leap-day",
    ],
)
def test_floor_is_the_start_of_the_interval(
    value: dt.datetime, interval: p.Interval, start: dt.datetime
) -> None:
    assert p.floor(value, interval) == start


@pytest.mark.parametrize(
    ("value", "start"),
    [
        (utc(2021, 1, 3), utc(2020, 12, 28)),  # Sunday of ISO week 53 of 2020
        (utc(2021, 1, 4), utc(2021, 1, 4)),  # Monday of ISO week 1 of 2021
        (utc(2025, 1, 1), utc(2024, 12, 30)),  # Wednesday; its week began in 2024
    ],
    ids=["sunday-2021-01-03", "monday-2021-01-04", "wednesday-2025-01-01"],
)
def test_iso_weeks_cross_the_year_boundary(value: dt.datetime, start: dt.datetime) -> None:
    assert p.floor(value, "week") == start
    assert p.floor(value, "week").weekday() == 0


@pytest.mark.parametrize("interval", p.INTERVALS)
def test_floor_returns_an_aware_utc_datetime(interval: p.Interval) -> None:
    start = p.floor(dt.datetime(2024, 5, 17, 9, tzinfo=MINUS_5), interval)
    assert start.tzinfo is UTC
    assert (start.hour, start.minute, start.second, start.microsecond) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("interval", "start"),
    [("day", utc(2024, 3, 5)), ("month", utc(2024, 3, 1)), ("year", utc(2024, 1, 1))],
    ids=["day", "month", "year"],
)
def test_a_date_is_midnight_utc_of_that_day(interval: p.Interval, start: dt.datetime) -> None:
    assert p.floor(dt.date(2024, 3, 5), interval) == start


@pytest.mark.parametrize(
    ("interval", "start"),
    [
        ("day", utc(2024, 2, 29)),
        ("month", utc(2024, 2, 1)),
        ("quarter", utc(2024, 1, 1)),
        ("year", utc(2024, 1, 1)),
    ],
    ids=["day", "month", "quarter", "year"],
)
def test_an_aware_datetime_is_placed_by_its_utc_time(
    interval: p.Interval, start: dt.datetime
) -> None:
    # 00:30 on 1 March at +02:00 is 22:30 on 29 February in UTC.
    assert p.floor(dt.datetime(2024, 3, 1, 0, 30, tzinfo=PLUS_2), interval) == start


def test_an_aware_datetime_west_of_utc_can_fall_in_the_next_year() -> None:
    assert p.floor(dt.datetime(2024, 12, 31, 20, tzinfo=MINUS_5), "year") == utc(2025, 1, 1)


@pytest.mark.parametrize("interval", p.INTERVALS)
def test_a_naive_datetime_is_refused(interval: p.Interval) -> None:
    naive = dt.datetime(2024, 5, 17, 9)  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="naive"):
        p.floor(naive, interval)


@pytest.mark.parametrize(
    "call",
    [
        lambda naive: p.bounds(naive, "month"),
        lambda naive: p.ahead(naive, "month", 3),
        lambda naive: p.covering(naive, utc(2025, 1, 1), "month"),
        lambda naive: p.covering(utc(2023, 1, 1), naive, "month"),
        lambda naive: p.step(naive, "month"),
        lambda naive: p.time_partition_name("events", naive),
    ],
    ids=["bounds", "ahead", "covering-lower", "covering-upper", "step", "name"],
)
def test_every_function_refuses_a_naive_datetime(call: object) -> None:
    naive = dt.datetime(2024, 5, 1)  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="naive"):
        call(naive)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("lower", "interval", "n", "bound"),
    [
        (utc(2024, 2, 28), "day", 1, utc(2024, 2, 29)),
        (utc(2023, 2, 28), "day", 1, utc(2023, 3, 1)),
        (utc(2024, 12, 31), "day", 1, utc(2025, 1, 1)),
        (utc(2024, 12, 30), "week", 1, utc(2025, 1, 6)),
        (utc(2024, 1, 1), "week", -1, utc(2023, 12, 25)),
        (utc(2024, 1, 1), "month", 1, utc(2024, 2, 1)),
        (utc(2024, 12, 1), "month", 1, utc(2025, 1, 1)),
        (utc(2024, 1, 1), "month", -1, utc(2023, 12, 1)),
        (utc(2024, 1, 1), "month", 25, utc(2026, 2, 1)),
        (utc(2024, 10, 1), "quarter", 1, utc(2025, 1, 1)),
        (utc(2024, 1, 1), "quarter", -1, utc(2023, 10, 1)),
        (utc(2024, 4, 1), "quarter", 3, utc(2025, 1, 1)),
        (utc(2024, 1, 1), "year", 1, utc(2025, 1, 1)),
        (utc(2024, 1, 1), "year", -4, utc(2020, 1, 1)),
        (utc(2024, 5, 1), "month", 0, utc(2024, 5, 1)),
    ],
    ids=[
        "day-into-leap-day",
        "day-over-feb-28",
        "day-year-end",
        "week-year-end",
        "week-back-over-year",
        "month",
        "month-year-end",
        "month-back-over-year",
        "month-25",
        "quarter-year-end",
        "quarter-back",
        "quarter-3",
        "year",
        "year-back-4",
        "zero",
    ],
)
def test_step_moves_n_intervals(
    lower: dt.datetime, interval: p.Interval, n: int, bound: dt.datetime
) -> None:
    assert p.step(lower, interval, n) == bound


def test_step_refuses_a_lower_bound_that_is_not_an_interval_start() -> None:
    with pytest.raises(ValueError, match="not the start of a month"):
        p.step(utc(2024, 1, 31), "month")


def test_step_accepts_a_bound_written_in_another_time_zone() -> None:
    assert p.step(dt.datetime(2024, 5, 1, 2, tzinfo=PLUS_2), "month") == utc(2024, 6, 1)


@pytest.mark.parametrize(
    ("value", "interval", "lower", "upper"),
    [
        (utc(2024, 2, 29, 23), "day", utc(2024, 2, 29), utc(2024, 3, 1)),
        (utc(2024, 12, 31, 12), "week", utc(2024, 12, 30), utc(2025, 1, 6)),
        (utc(2024, 2, 10), "month", utc(2024, 2, 1), utc(2024, 3, 1)),
        (utc(2024, 12, 31), "month", utc(2024, 12, 1), utc(2025, 1, 1)),
        (utc(2024, 11, 5), "quarter", utc(2024, 10, 1), utc(2025, 1, 1)),
        (utc(2024, 6, 30), "quarter", utc(2024, 4, 1), utc(2024, 7, 1)),
        (utc(2024, 6, 30), "year", utc(2024, 1, 1), utc(2025, 1, 1)),
        (dt.date(2023, 2, 28), "day", utc(2023, 2, 28), utc(2023, 3, 1)),
    ],
    ids=[
        "day-leap",
        "week-year-end",
        "month-february",
        "month-december",
        "quarter-q4",
        "quarter-q2-end",
        "year",
        "date",
    ],
)
def test_bounds_are_the_floor_and_the_next_bound(
    value: dt.datetime | dt.date, interval: p.Interval, lower: dt.datetime, upper: dt.datetime
) -> None:
    assert p.bounds(value, interval) == (lower, upper)


@pytest.mark.parametrize("interval", p.INTERVALS)
def test_the_upper_bound_belongs_to_the_next_partition(interval: p.Interval) -> None:
    lower, upper = p.bounds(utc(2024, 2, 29, 12), interval)
    assert lower <= utc(2024, 2, 29, 12) < upper
    assert p.floor(upper, interval) == upper
    assert p.floor(upper - dt.timedelta(microseconds=1), interval) == lower


# -- ahead, covering ------------------------------------------------------------------------


def test_ahead_with_premake_0_is_the_current_partition_only() -> None:
    assert p.ahead(utc(2024, 5, 17, 9), "month", 0) == [(utc(2024, 5, 1), utc(2024, 6, 1))]


def test_ahead_with_premake_3_is_the_current_and_three_following_ascending() -> None:
    assert p.ahead(utc(2024, 11, 17, 9), "month", 3) == [
        (utc(2024, 11, 1), utc(2024, 12, 1)),
        (utc(2024, 12, 1), utc(2025, 1, 1)),
        (utc(2025, 1, 1), utc(2025, 2, 1)),
        (utc(2025, 2, 1), utc(2025, 3, 1)),
    ]


def test_ahead_refuses_a_negative_premake() -> None:
    with pytest.raises(ValueError, match="premake"):
        p.ahead(utc(2024, 5, 17), "month", -1)


def test_covering_lists_every_partition_overlapping_the_range() -> None:
    assert p.covering(utc(2024, 11, 15), utc(2025, 2, 1), "month") == [
        (utc(2024, 11, 1), utc(2024, 12, 1)),
        (utc(2024, 12, 1), utc(2025, 1, 1)),
        (utc(2025, 1, 1), utc(2025, 2, 1)),
    ]


def test_covering_includes_a_partially_overlapped_last_partition() -> None:
    assert p.covering(utc(2024, 1, 1), utc(2024, 7, 1, 0, 0, 1), "quarter") == [
        (utc(2024, 1, 1), utc(2024, 4, 1)),
        (utc(2024, 4, 1), utc(2024, 7, 1)),
        (utc(2024, 7, 1), utc(2024, 10, 1)),
    ]


def test_covering_a_range_inside_one_interval_is_that_interval() -> None:
    assert p.covering(utc(2024, 5, 2), utc(2024, 5, 3), "year") == [
        (utc(2024, 1, 1), utc(2025, 1, 1))
    ]


@pytest.mark.parametrize(
    ("lower", "upper"),
    [(utc(2024, 5, 1), utc(2024, 5, 1)), (utc(2024, 6, 1), utc(2024, 5, 1))],
    ids=["empty", "reversed"],
)
def test_covering_an_empty_range_is_no_partition(lower: dt.datetime, upper: dt.datetime) -> None:
    assert p.covering(lower, upper, "day") == []


def test_covering_dates_takes_them_as_midnight_utc() -> None:
    assert p.covering(dt.date(2024, 12, 30), dt.date(2025, 1, 1), "day") == [
        (utc(2024, 12, 30), utc(2024, 12, 31)),
        (utc(2024, 12, 31), utc(2025, 1, 1)),
    ]


# -- names ----------------------------------------------------------------------------------


def test_a_time_partition_is_named_by_its_utc_lower_bound() -> None:
    assert p.time_partition_name("events", utc(2024, 5, 1)) == "events_p20240501"


def test_a_time_partition_name_uses_the_utc_date_of_the_bound() -> None:
    bound = dt.datetime(2024, 5, 1, 2, tzinfo=PLUS_2)  # midnight UTC on 1 May
    assert p.time_partition_name("events", bound) == "events_p20240501"


def test_time_partition_names_sort_like_their_bounds() -> None:
    lowers = [lower for lower, _ in p.covering(utc(999, 11, 1), utc(1001, 3, 1), "month")]
    names = [p.time_partition_name("events", lower) for lower in lowers]
    assert names == sorted(names)
    assert names[0] == "events_p09991101"


@pytest.mark.parametrize("table", ["events", TABLE_48], ids=["short", "48-chars"])
def test_time_partition_names_fit_and_are_identifiers(table: str) -> None:
    assert_derived_identifier(p.time_partition_name(table, utc(9999, 12, 1)))


def test_a_time_partition_name_of_a_short_table_passes_the_identifier_rule() -> None:
    validate_identifier(p.time_partition_name("events", utc(2024, 5, 1)))


class Colour(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


ODD_VALUES = [
    "acme",
    "Acme Corp.",
    "1",
    1,
    -1,
    0,
    True,
    False,
    "true",
    "",
    "___",
    "Ünïcødé — テナント",
    "テナント",
    "💥" * 40,
    'x"; DROP TABLE events; --',
    "a" * 500,
    "\x00\n\t",
    "\ud800",
    2**63 - 1,
    -(2**63),
    uuid.UUID("1b4e28ba-2fa1-11d2-883f-0016d3cca427"),
    dt.date(2024, 2, 29),
    Colour.RED,
    Level.HIGH,
]
ODD_IDS = [
    "plain",
    "spaces-dot",
    "str-1",
    "int-1",
    "int-minus-1",
    "int-0",
    "true",
    "false",
    "str-true",
    "empty",
    "underscores",
    "unicode-latin",
    "unicode-only",
    "emoji",
    "injection",
    "long",
    "control-chars",
    "lone-surrogate",
    "int-max",
    "int-min",
    "uuid",
    "date",
    "str-enum",
    "int-enum",
]


@pytest.mark.parametrize("table", ["docs", TABLE_48], ids=["short", "48-chars"])
@pytest.mark.parametrize("value", ODD_VALUES, ids=ODD_IDS)
def test_value_partition_names_fit_and_are_identifiers(table: str, value: object) -> None:
    name = p.value_partition_name(table, value)
    assert_derived_identifier(name)
    assert name.startswith(f"{table}_v_")
    assert "__" not in name[len(table) :]


@pytest.mark.parametrize(
    "value",
    ["acme", "Acme Corp.", 1, True, "テナント"],
    ids=["plain", "spaces", "int", "bool", "unicode"],
)
def test_a_short_value_partition_name_passes_the_identifier_rule(value: object) -> None:
    validate_identifier(p.value_partition_name("docs", value))


def test_a_value_partition_name_is_the_slug_and_a_hash() -> None:
    assert re.fullmatch(
        r"docs_v_acme_corp_[0-9a-f]{8}", p.value_partition_name("docs", "Acme Corp.")
    )


@pytest.mark.parametrize("value", ["", "テナント", "---"], ids=["empty", "no-ascii", "dashes"])
def test_a_value_without_slug_characters_is_named_by_its_hash(value: str) -> None:
    assert re.fullmatch(r"docs_v_[0-9a-f]{8}", p.value_partition_name("docs", value))


def test_a_long_value_is_cut_to_fit() -> None:
    name = p.value_partition_name("docs", "a" * 500)
    assert len(name) == 63
    assert name.startswith("docs_v_aaaa")


@pytest.mark.parametrize("value", ODD_VALUES, ids=ODD_IDS)
def test_value_partition_names_are_deterministic(value: object) -> None:
    assert p.value_partition_name("docs", value) == p.value_partition_name("docs", value)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("1", 1),
        ("true", True),
        (1, True),
        (0, False),
        ("Acme", "acme"),
        ("a b", "a_b"),
        ("2024-02-29", dt.date(2024, 2, 29)),
        ("1b4e28ba-2fa1-11d2-883f-0016d3cca427", uuid.UUID("1b4e28ba-2fa1-11d2-883f-0016d3cca427")),
        ("a" * 500, "a" * 501),
    ],
    ids=[
        "str-vs-int",
        "str-vs-bool",
        "int-vs-bool",
        "zero-vs-false",
        "case",
        "space-vs-underscore",
        "str-vs-date",
        "str-vs-uuid",
        "same-cut-slug",
    ],
)
def test_distinct_values_get_distinct_names(one: object, other: object) -> None:
    assert p.value_partition_name("docs", one) != p.value_partition_name("docs", other)


@pytest.mark.parametrize(
    ("member", "plain"),
    [(Colour.RED, "red"), (Level.HIGH, 3)],
    ids=["str-enum", "int-enum"],
)
def test_an_enum_member_is_named_like_its_stored_value(member: enum.Enum, plain: object) -> None:
    # The writer sees the member, the database gives back the plain value.
    assert p.value_partition_name("docs", member) == p.value_partition_name("docs", plain)


@pytest.mark.parametrize(
    "value",
    [1.5, None, dt.datetime(2024, 1, 1, tzinfo=UTC), b"bytes", ["a"]],
    ids=["float", "none", "datetime", "bytes", "list"],
)
def test_a_value_of_an_unsupported_type_is_refused(value: object) -> None:
    with pytest.raises(TypeError, match="str, int, UUID, date or bool"):
        p.value_partition_name("docs", value)


def test_time_and_value_partition_names_never_meet() -> None:
    assert p.value_partition_name("docs", "p20240501") != p.time_partition_name(
        "docs", utc(2024, 5, 1)
    )


# -- results --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "ok"),
    [("abc", "abc", True), ("abc", "abd", False)],
    ids=["same", "different"],
)
def test_an_archive_report_is_ok_when_the_checksums_agree(
    before: str, after: str, ok: bool
) -> None:
    report = p.ArchiveReport(
        rows=10, partitions=("events_p20240101",), checksum_before=before, checksum_after=after
    )
    assert report.ok is ok


def test_partition_info_is_frozen() -> None:
    info = p.PartitionInfo(
        name="events_p20240501",
        lower=utc(2024, 5, 1),
        upper=utc(2024, 6, 1),
        value=None,
        rows=0,
        total_bytes=8192,
        archived=False,
    )
    with pytest.raises(AttributeError):
        info.rows = 1  # type: ignore[misc]
