"""Records: the Vector type, and how model fields map to columns (no database needed)."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Annotated, Any, Literal

import numpy as np
import pydantic
import pytest

import vecdb
from vecdb._schema.columns import ColumnType
from vecdb._schema.record import layout


class Nested(pydantic.BaseModel):
    a: int


class Colour(enum.StrEnum):
    RED = "red"


class Everything(vecdb.Record):
    id: int
    s: str
    i: int
    f: float
    b: bool
    ts: dt.datetime
    d: dt.date
    u: uuid.UUID
    tags: list[str]
    nums: list[int]
    nested: Nested
    data: dict[str, Any]
    colour: Colour
    kind: Literal["a", "b"]
    maybe: int | None = None
    embedding: vecdb.Vector


def test_every_supported_type_maps_to_its_column() -> None:
    lay = layout(Everything, dim=4)
    assert {f.name: f.type for f in lay.fields} == {
        "s": ColumnType.TEXT,
        "i": ColumnType.BIGINT,
        "f": ColumnType.DOUBLE,
        "b": ColumnType.BOOLEAN,
        "ts": ColumnType.TIMESTAMPTZ,
        "d": ColumnType.DATE,
        "u": ColumnType.UUID,
        "tags": ColumnType.TEXT_ARRAY,
        "nums": ColumnType.BIGINT_ARRAY,
        "nested": ColumnType.JSONB,
        "data": ColumnType.JSONB,
        "colour": ColumnType.TEXT,
        "kind": ColumnType.TEXT,
        "maybe": ColumnType.BIGINT,
    }
    assert lay.id.type is ColumnType.BIGINT
    assert [(v.name, v.dim) for v in lay.vectors] == [("embedding", 4)]


def test_optional_fields_are_nullable_and_others_not() -> None:
    nullable = {f.name: f.nullable for f in layout(Everything, dim=4).fields}
    assert nullable["maybe"] is True
    assert nullable["s"] is False


@pytest.mark.parametrize(
    ("id_type", "column"),
    [(int, ColumnType.BIGINT), (str, ColumnType.TEXT), (uuid.UUID, ColumnType.UUID)],
    ids=["int", "str", "uuid"],
)
def test_id_types(id_type: type, column: ColumnType) -> None:
    model = pydantic.create_model(
        "M", __base__=vecdb.Record, id=(id_type, ...), embedding=(vecdb.Vector, ...)
    )
    assert layout(model, dim=3).id.type is column


def test_dim_per_field_wins_over_the_default() -> None:
    class Two(vecdb.Record):
        id: int
        small: Annotated[vecdb.Vector, vecdb.Dim(8)]
        big: vecdb.Vector

    assert [(v.name, v.dim) for v in layout(Two, dim=32).vectors] == [("small", 8), ("big", 32)]


def test_missing_dimension_is_a_config_error() -> None:
    class NoDim(vecdb.Record):
        id: int
        embedding: vecdb.Vector

    with pytest.raises(vecdb.ConfigError, match="no dimension"):
        layout(NoDim, dim=None)


@pytest.mark.parametrize(
    "bad", [0, -1, 16_001, 2.5, True], ids=["zero", "neg", "huge", "float", "bool"]
)
def test_bad_dim_is_refused(bad: Any) -> None:
    with pytest.raises(vecdb.ConfigError, match=r"[Dd]im"):
        vecdb.Dim(bad)


@pytest.mark.parametrize(
    ("annotation", "name"),
    [(set[str], "set"), (bytes, "bytes"), (list[float], "list_float"), (complex, "complex")],
    ids=["set", "bytes", "list-float", "complex"],
)
def test_unsupported_types_name_the_field_and_the_supported_types(
    annotation: Any, name: str
) -> None:
    model = pydantic.create_model(
        "Bad", __base__=vecdb.Record, id=(int, ...), odd=(annotation, ...), e=(vecdb.Vector, ...)
    )
    with pytest.raises(vecdb.ConfigError, match=r"Bad\.odd.*supported types are str, int") as info:
        layout(model, dim=3)
    assert info.value.setting == "odd"


def test_model_without_id_is_refused() -> None:
    class NoId(vecdb.Record):
        key: int
        embedding: vecdb.Vector

    with pytest.raises(vecdb.ConfigError, match="no `id` field"):
        layout(NoId, dim=3)


def test_optional_id_is_refused() -> None:
    class OptId(vecdb.Record):
        id: int | None
        embedding: vecdb.Vector

    with pytest.raises(vecdb.ConfigError, match=r"id must be int, str or uuid\.UUID"):
        layout(OptId, dim=3)


def test_model_without_vector_is_refused() -> None:
    class Plain(vecdb.Record):
        id: int

    with pytest.raises(vecdb.ConfigError, match="no vector field"):
        layout(Plain, dim=3)


def test_optional_vector_is_refused() -> None:
    class OptVec(vecdb.Record):
        id: int
        embedding: vecdb.Vector | None = None

    with pytest.raises(vecdb.ConfigError, match="cannot be optional"):
        layout(OptVec, dim=3)


def test_non_record_model_is_refused() -> None:
    class NotRecord(pydantic.BaseModel):
        id: int

    with pytest.raises(vecdb.ConfigError, match=r"subclass of vecdb\.Record"):
        layout(NotRecord, dim=3)  # type: ignore[arg-type]


class V(vecdb.Record):
    id: int
    embedding: vecdb.Vector


@pytest.mark.parametrize(
    "value",
    [[1, 2, 3], (1.0, 2.0, 3.0), np.array([1, 2, 3], dtype=np.float64), np.arange(1, 4)],
    ids=["list", "tuple", "float64-array", "int-array"],
)
def test_vector_accepts_lists_and_arrays_and_holds_float32(value: Any) -> None:
    record = V(id=1, embedding=value)
    assert isinstance(record.embedding, np.ndarray)
    assert record.embedding.dtype == np.float32
    assert record.embedding.tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    "value",
    ["abc", [[1, 2], [3, 4]], ["a", "b"], np.array(["x"])],
    ids=["string", "2d", "strings", "str-array"],
)
def test_vector_refuses_what_is_not_a_1d_list_of_numbers(value: Any) -> None:
    with pytest.raises(pydantic.ValidationError):
        V(id=1, embedding=value)


def test_vector_serialises_to_a_list() -> None:
    record = V(id=1, embedding=np.array([0.5, 1.5], dtype=np.float32))
    assert record.model_dump() == {"id": 1, "embedding": [0.5, 1.5]}
    assert record.model_dump_json() == '{"id":1,"embedding":[0.5,1.5]}'
    assert V.model_validate_json(record.model_dump_json()) == record


def test_records_compare_vectors_element_by_element() -> None:
    assert V(id=1, embedding=[1, 2]) == V(id=1, embedding=np.array([1, 2]))
    assert V(id=1, embedding=[1, 2]) != V(id=1, embedding=[1, 3])
    assert V(id=1, embedding=[1, 2]) != V(id=2, embedding=[1, 2])


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="extra"):
        V.model_validate({"id": 1, "embedding": [1.0], "embeding": [2.0]})


def test_vector_json_schema_is_an_array_of_numbers() -> None:
    schema = V.model_json_schema()
    prop = schema["properties"]["embedding"]
    assert (prop["type"], prop["items"]) == ("array", {"type": "number"})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"m": 1}, "HNSW.m"),
        ({"m": 101}, "HNSW.m"),
        ({"ef_construction": 2000}, "ef_construction"),
        ({"m": 40, "ef_construction": 64}, "at least 2 \\* m"),
    ],
    ids=["m-low", "m-high", "ef-high", "ef-below-2m"],
)
def test_hnsw_parameters_are_validated(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(vecdb.ConfigError, match=match):
        vecdb.HNSW(**kwargs)


def test_foreign_key_on_delete_is_validated() -> None:
    with pytest.raises(vecdb.ConfigError, match="on_delete"):
        vecdb.ForeignKey("documents", on_delete="explode")  # type: ignore[arg-type]


def test_foreign_key_collection_name_is_validated() -> None:
    with pytest.raises(vecdb.ConfigError, match="invalid ForeignKey collection name"):
        vecdb.ForeignKey('docs"; DROP TABLE x; --')
