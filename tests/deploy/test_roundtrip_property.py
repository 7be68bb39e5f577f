"""Property: every supported field type is either read back equal, or refused with nothing written.

Hypothesis draws records over every column type vecdb makes (text, bigint,
double precision, boolean, timestamptz, date, uuid, text[], bigint[], jsonb),
with values from their whole Python range: strings with NUL and lone
surrogates, ints beyond bigint, NaN and infinity, naive and aware datetimes,
nested JSON. A reference (`refusal`) says, independently of vecdb's code, which
values PostgreSQL cannot store as given. The record is upserted; then either
it was refused with `RecordValidationError` naming that field and the table has
no such row, or it reads back equal (NaN compared as NaN).
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vecdb


class Every(vecdb.Record):
    id: int
    text: str | None = None
    number: int | None = None
    score: float | None = None
    flag: bool | None = None
    at: dt.datetime | None = None
    day: dt.date | None = None
    uid: uuid.UUID | None = None
    tags: list[str] | None = None
    nums: list[int] | None = None
    meta: dict[str, Any] | None = None
    embedding: vecdb.Vector


# Floats inside JSON stay within 1e15: PostgreSQL's numeric prints larger ones
# without an exponent (1e20 as 100000000000000000000), which JSON reads back as
# an int, equal to the float only while the float is exact (docs/reliability.md).
_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(min_value=-1e15, max_value=1e15)
    | st.floats(allow_nan=True, allow_infinity=True).filter(lambda f: not math.isfinite(f))
    | st.text(max_size=8)
)
_json = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)
_offsets = st.sampled_from(
    [dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)), dt.timezone(-dt.timedelta(hours=8))]
)
_aware = st.datetimes(
    min_value=dt.datetime(1, 1, 2),  # noqa: DTZ001 - bounds for aware values, one day in
    max_value=dt.datetime(9999, 12, 30),  # noqa: DTZ001 - from the ends, whatever the offset
    timezones=_offsets,
)

FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "text": st.text(),
    "number": st.integers(),
    "score": st.floats(),
    "flag": st.booleans(),
    "at": _aware | st.datetimes(),
    "day": st.dates(),
    "uid": st.uuids(),
    "tags": st.lists(st.text(max_size=6), max_size=4),
    "nums": st.lists(st.integers(), max_size=4),
    "meta": st.dictionaries(st.text(max_size=6), _json, max_size=4),
}
RECORDS = st.fixed_dictionaries({}, optional=FIELDS)


def _bad_text(value: str) -> bool:
    return "\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value)


def _bad_json(value: Any) -> bool:
    if isinstance(value, str):
        return _bad_text(value)
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(_bad_json(v) for v in value)
    if isinstance(value, dict):
        return any(_bad_text(k) or _bad_json(v) for k, v in value.items())
    return False


def _out_of_bigint(value: int) -> bool:
    return not -(2**63) <= value < 2**63


def refusal(fields: dict[str, Any]) -> set[str]:
    """The fields whose value PostgreSQL cannot store as given (or would change)."""
    checks = {
        "text": _bad_text,
        "number": _out_of_bigint,
        "at": lambda v: v.tzinfo is None,
        "tags": lambda v: any(map(_bad_text, v)),
        "nums": lambda v: any(map(_out_of_bigint, v)),
        "meta": _bad_json,
    }
    return {name for name, bad in checks.items() if name in fields and bad(fields[name])}


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


@pytest.fixture
async def every(db: vecdb.Database) -> vecdb.Collection[Every]:
    return await db.collection("every", Every, dim=2)


@settings(
    max_examples=300,
    deadline=None,
    # One collection for the test; each example writes its own id and checks it.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(fields=RECORDS, record_id=st.integers(0, 2**62))
async def test_record_reads_back_equal_or_is_refused(
    every: vecdb.Collection[Every], fields: dict[str, Any], record_id: int
) -> None:
    await every.delete([record_id])
    record = Every.model_validate({"id": record_id, "embedding": [1.0, 0.5], **fields})
    bad = refusal(fields)
    if bad:
        with pytest.raises(vecdb.RecordValidationError) as caught:
            await every.upsert([record])
        assert caught.value.field in bad
        assert caught.value.record_id == record_id
        assert await every.get(record_id) is None
        return
    assert await every.upsert([record]) == 1
    back = await every.get(record_id)
    assert back is not None
    for name in Every.model_fields:
        if name != "embedding":
            assert _equal(getattr(record, name), getattr(back, name)), name
