"""Values PostgreSQL refuses (or would change) are refused by vecdb, naming record and field.

Each bad value is sent in a batch after a good record: the error names the bad
one (its id, position and field), and the table is still empty afterwards.
Values PostgreSQL does store (10 MB strings, NaN in a float field, nesting
within the serialiser's limit, bigint's own bounds) are read back equal.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest

import vecdb

DIM = 2


class Doc(vecdb.Record):
    id: int
    text: str | None = None
    score: float | None = None
    year: int | None = None
    at: dt.datetime | None = None
    tags: list[str] | None = None
    nums: list[int] | None = None
    meta: dict[str, Any] | None = None
    embedding: vecdb.Vector


class Keyed(vecdb.Record):
    id: str
    embedding: vecdb.Vector


def _nested(depth: int) -> dict[str, Any]:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return dict(value)


@pytest.fixture
async def docs(db: vecdb.Database) -> vecdb.Collection[Doc]:
    return await db.collection("docs", Doc, dim=DIM)


REFUSED = [
    pytest.param("text", "a\x00b", "NUL character", id="nul-in-text"),
    pytest.param("tags", ["ok", "a\x00"], "NUL character", id="nul-in-text-array"),
    pytest.param("meta", {"k": "a\x00"}, "NUL character", id="nul-in-jsonb-value"),
    pytest.param("meta", {"k\x00": 1}, "NUL character", id="nul-in-jsonb-key"),
    pytest.param("meta", {"k": ["x", {"y": "\x00"}]}, "NUL character", id="nul-deep-in-jsonb"),
    pytest.param("text", "caf\udce9", "lone surrogate", id="surrogate-in-text"),
    pytest.param("tags", ["\ud800"], "lone surrogate", id="surrogate-in-text-array"),
    pytest.param("meta", {"k": "\udc80"}, "lone surrogate", id="surrogate-in-jsonb"),
    pytest.param("meta", _nested(1000), "nested too deeply", id="jsonb-1000-deep"),
    pytest.param("meta", {"x": math.nan}, "NaN or infinity", id="nan-in-jsonb"),
    pytest.param("meta", {"x": [math.inf]}, "NaN or infinity", id="infinity-in-jsonb"),
    pytest.param("at", dt.datetime(2024, 5, 1), "without a time zone", id="naive-datetime"),  # noqa: DTZ001
    pytest.param("year", 2**63, "beyond bigint", id="int-above-bigint"),
    pytest.param("year", -(2**63) - 1, "beyond bigint", id="int-below-bigint"),
    pytest.param("nums", [1, 2**64], "beyond bigint", id="int-array-above-bigint"),
]


@pytest.mark.parametrize(("field", "value", "reason"), REFUSED)
async def test_refused_value_names_record_and_field_and_writes_nothing(
    docs: vecdb.Collection[Doc], field: str, value: Any, reason: str
) -> None:
    good = {"id": 1, "embedding": [1.0, 0.0]}
    bad = {"id": 2, "embedding": [0.0, 1.0], field: value}
    with pytest.raises(vecdb.RecordValidationError, match=reason) as caught:
        await docs.upsert([good, bad])
    error = caught.value
    assert (error.record_id, error.position, error.field) == (2, 1, field)
    assert "id=2" in str(error)
    assert repr(field) in str(error)
    assert await docs.count() == 0


async def test_refused_value_in_a_later_chunk_writes_nothing(docs: vecdb.Collection[Doc]) -> None:
    """A bad record deep in a large call (validated while the transaction runs) rolls it back."""
    records = [{"id": i, "embedding": [1.0, float(i)]} for i in range(12_000)]
    records[11_500]["text"] = "\x00"
    with pytest.raises(vecdb.RecordValidationError, match="NUL") as caught:
        await docs.upsert(records)
    assert caught.value.position == 11_500
    assert await docs.count() == 0


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("a\x00", "NUL character", id="nul"),
        pytest.param("\ud83d", "lone surrogate", id="surrogate"),
    ],
)
async def test_refused_text_id_is_named_by_position(
    db: vecdb.Database, value: str, reason: str
) -> None:
    keyed = await db.collection("keyed", Keyed, dim=DIM)
    with pytest.raises(vecdb.RecordValidationError, match=reason) as caught:
        await keyed.upsert(
            [Keyed(id="fine", embedding=[1.0, 0.0]), {"id": value, "embedding": [0.0, 1.0]}]
        )
    assert (caught.value.position, caught.value.field) == (1, "id")
    assert await keyed.count() == 0


STORED = [
    pytest.param({"text": "x" * 10_000_000}, id="10MB-text"),
    pytest.param({"text": "emoji \U0001f600 and \u00e9"}, id="non-ascii-text"),
    pytest.param({"meta": {"k": "\\u0000"}}, id="jsonb-literal-backslash-u0000"),
    pytest.param({"meta": _nested(100)}, id="jsonb-100-deep"),
    pytest.param({"meta": {"big": 2**70, "neg": -(2**80)}}, id="jsonb-int-beyond-bigint"),
    pytest.param({"year": 2**63 - 1, "nums": [-(2**63), 2**63 - 1]}, id="bigint-bounds"),
    pytest.param({"score": math.inf}, id="float-infinity"),
    pytest.param({"score": -math.inf}, id="float-negative-infinity"),
    pytest.param(
        {"at": dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=5)))},
        id="aware-datetime-offset",
    ),
]


@pytest.mark.parametrize("fields", STORED)
async def test_stored_value_reads_back_equal(
    docs: vecdb.Collection[Doc], fields: dict[str, Any]
) -> None:
    record = Doc.model_validate({"id": 7, "embedding": [1.0, 0.5], **fields})
    assert await docs.upsert([record]) == 1
    assert await docs.get(7) == record


async def test_nan_in_a_float_field_is_stored_and_read_back_as_nan(
    docs: vecdb.Collection[Doc],
) -> None:
    """NaN is not equal to itself, so the record is compared field by field."""
    await docs.upsert([{"id": 3, "embedding": [1.0, 0.0], "score": math.nan}])
    back = await docs.get(3)
    assert back is not None
    assert back.score is not None
    assert math.isnan(back.score)
