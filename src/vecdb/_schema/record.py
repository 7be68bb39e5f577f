"""`Record`, the `Vector` type, and how a record's fields become columns.

A collection's table is derived from its model: every field is a real,
typed column (so filters use real indexes and the planner has statistics),
and every `Vector` field is a pgvector column. :func:`layout` reads a model
once and answers "which column, which type, nullable or not" for the DDL,
the filter compiler, the writer and the reader.

Example:
    >>> class Chunk(Record):
    ...     id: int
    ...     text: str
    ...     embedding: Vector                       # dimension from collection(dim=...)
    ...     title_vec: Annotated[Vector, Dim(64)]   # or per field
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import types
import typing
import uuid
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union

import numpy as np
import numpy.typing as npt
import pydantic
from pydantic_core import core_schema

from .._config import check_int
from .._errors import ConfigError
from .._identifiers import validate_identifier
from .columns import ColumnType

__all__ = [
    "MAX_DIM",
    "Dim",
    "FieldSpec",
    "Layout",
    "Record",
    "Vector",
    "VectorSpec",
    "layout",
]

MAX_DIM = 16_000  # pgvector's limit for vector and halfvec columns

_SUPPORTED = (
    "str, int, float, bool, datetime, date, UUID, list[str], list[int], "
    "a pydantic model or dict (stored as jsonb), each optionally `| None`, "
    "and vecdb.Vector for vector fields"
)


def _to_array(value: Any) -> npt.NDArray[np.float32]:
    if isinstance(value, str | bytes):
        # pydantic turns ValueError (not TypeError) into a ValidationError
        raise ValueError("a vector must be a list or array of numbers, not a string")  # noqa: TRY004
    if isinstance(value, np.ndarray) and value.dtype.kind not in "fiu":
        raise ValueError(f"a vector must hold numbers, got an array of dtype {value.dtype}")
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"a vector must be a list or array of numbers: {exc}") from None
    if array.ndim != 1:
        raise ValueError(f"a vector must be one-dimensional, got shape {array.shape}")
    return array


def _to_list(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value


class _VectorSchema:
    """Pydantic hooks of `Vector`: lists or arrays in, float32 arrays kept, lists out."""

    __slots__ = ()

    def __get_pydantic_core_schema__(
        self, source: Any, handler: pydantic.GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _to_array,
            serialization=core_schema.plain_serializer_function_ser_schema(
                _to_list, return_schema=core_schema.list_schema(core_schema.float_schema())
            ),
        )

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: pydantic.GetJsonSchemaHandler
    ) -> dict[str, Any]:
        return {"type": "array", "items": {"type": "number"}}

    def __repr__(self) -> str:
        return "Vector"


Vector = Annotated[npt.NDArray[np.float32], _VectorSchema()]
"""A vector field: accepts lists, tuples and numpy arrays; holds a 1-d float32 array.

Serialises to a list of floats (``model_dump()``, ``model_dump_json()``).
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Dim:
    """The dimension of one vector field: ``Annotated[vecdb.Vector, vecdb.Dim(768)]``.

    Fields without it take ``dim=`` from `Database.collection`.
    """

    n: int

    def __post_init__(self) -> None:
        check_int(self.n, 1, MAX_DIM, name="Dim(n)", why=" (pgvector's limit)", setting="dim")


class Record(pydantic.BaseModel):
    """Base class of a collection's records (a pydantic v2 model).

    Declare one primary key ``id`` (``int``, ``str`` or ``UUID``), any number
    of typed fields, and one or more `Vector` fields. Unknown keys are refused
    (``extra="forbid"``), so a misspelt field name is an error, not lost data.

    Records compare equal when their fields are equal, vectors element by element.

    Example:
        >>> class Chunk(vecdb.Record):
        ...     id: int
        ...     doc_id: str
        ...     text: str
        ...     embedding: vecdb.Vector
    """

    model_config = pydantic.ConfigDict(extra="forbid")

    def __eq__(self, other: object) -> bool:
        # BaseModel compares __dict__ with ==, which numpy arrays turn into an
        # ambiguous array; compare vectors with array_equal instead.
        if not isinstance(other, pydantic.BaseModel) or type(self) is not type(other):
            return NotImplemented
        mine, theirs = self.__dict__, other.__dict__
        if mine.keys() != theirs.keys():
            return False
        for key, value in mine.items():
            that = theirs[key]
            if isinstance(value, np.ndarray) or isinstance(that, np.ndarray):
                if not (
                    isinstance(value, np.ndarray)
                    and isinstance(that, np.ndarray)
                    and np.array_equal(value, that)
                ):
                    return False
            elif value != that:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]  # mutable models are unhashable, as in pydantic


@dataclasses.dataclass(frozen=True, slots=True)
class FieldSpec:
    """A scalar field and its column."""

    name: str
    type: ColumnType
    nullable: bool


@dataclasses.dataclass(frozen=True, slots=True)
class VectorSpec:
    """A vector field and its dimension."""

    name: str
    dim: int


@dataclasses.dataclass(frozen=True, slots=True)
class Layout:
    """What a model becomes: the id column, scalar columns and vector columns, in order."""

    id: FieldSpec
    fields: tuple[FieldSpec, ...]
    vectors: tuple[VectorSpec, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column name: id, scalar fields, vectors."""
        return (
            self.id.name,
            *(f.name for f in self.fields),
            *(v.name for v in self.vectors),
        )

    @property
    def filterable(self) -> dict[str, ColumnType]:
        """Field name to column type for every field a filter may name (not vectors)."""
        return {self.id.name: self.id.type, **{f.name: f.type for f in self.fields}}

    @property
    def jsonb_fields(self) -> tuple[str, ...]:
        """Fields stored as jsonb (encoded to JSON text on write, decoded on read)."""
        return tuple(f.name for f in self.fields if f.type is ColumnType.JSONB)


_SCALARS: dict[Any, ColumnType] = {
    str: ColumnType.TEXT,
    int: ColumnType.BIGINT,
    float: ColumnType.DOUBLE,
    bool: ColumnType.BOOLEAN,
    dt.datetime: ColumnType.TIMESTAMPTZ,
    dt.date: ColumnType.DATE,
    uuid.UUID: ColumnType.UUID,
}
_ID_TYPES = (int, str, uuid.UUID)


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        args = typing.get_args(annotation)
        rest = tuple(a for a in args if a is not type(None))
        if len(rest) < len(args):
            inner = rest[0] if len(rest) == 1 else Union[rest]  # noqa: UP007 - built at run time
            return inner, True
    return annotation, False


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)


def _column_type(tp: Any) -> ColumnType | None:  # noqa: PLR0911, PLR0912 - one branch per type family
    """The column for a (non-optional) annotation, or ``None`` if unsupported."""
    if _is_annotated(tp):
        tp = typing.get_args(tp)[0]
    if tp in _SCALARS:
        return _SCALARS[tp]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if issubclass(tp, str):
            return ColumnType.TEXT
        if issubclass(tp, int):
            return ColumnType.BIGINT
        return None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        if all(isinstance(a, str) for a in args):
            return ColumnType.TEXT
        if all(isinstance(a, int) and not isinstance(a, bool) for a in args):
            return ColumnType.BIGINT
        return None
    if origin is list and len(args) == 1:
        if args[0] is str:
            return ColumnType.TEXT_ARRAY
        if args[0] is int:
            return ColumnType.BIGINT_ARRAY
        if _is_model(args[0]) or typing.get_origin(args[0]) in (dict, Mapping):
            return ColumnType.JSONB
        return None
    if _is_model(tp) or tp in (dict, Mapping) or origin in (dict, Mapping):
        return ColumnType.JSONB
    return None


def _is_annotated(tp: Any) -> bool:
    return typing.get_origin(tp) is Annotated


def _is_vector(info: pydantic.fields.FieldInfo) -> bool:
    return any(isinstance(m, _VectorSchema) for m in info.metadata)


def layout(model: type[Record], *, dim: int | None, id_field: str = "id") -> Layout:
    """Read a model's fields into columns.

    Args:
        model: A `Record` subclass.
        dim: The default dimension for vector fields without `Dim`.
        id_field: The primary key's field: ``id``, but an adopted table's own
            (``db.adopt(..., id_field="langchain_id")``).

    Raises:
        ConfigError: The model is not a `Record`, has no or a bad ``id``, no vector
            field, a field of an unsupported type, or a name that breaks the
            identifier rule.
    """
    if not (isinstance(model, type) and issubclass(model, Record)) or model is Record:
        raise ConfigError(
            f"the model must be a subclass of vecdb.Record, got {model!r}; "
            "declare `class Chunk(vecdb.Record): id: int; embedding: vecdb.Vector ...`",
            setting="model",
        )
    if dim is not None:
        check_int(dim, 1, MAX_DIM, name="dim", why=" (pgvector's limit)")
    fields: list[FieldSpec] = []
    vectors: list[VectorSpec] = []
    id_spec: FieldSpec | None = None
    for name, info in model.model_fields.items():
        validate_identifier(name, what=f"field name of {model.__name__}")
        annotation, nullable = _strip_optional(info.annotation)
        inner_meta = typing.get_args(annotation)[1:] if _is_annotated(annotation) else ()
        if _is_vector(info) or any(isinstance(m, _VectorSchema) for m in inner_meta):
            if nullable:
                raise ConfigError(
                    f"vector field {model.__name__}.{name} cannot be optional: every record "
                    "needs its vector. Declare it `vecdb.Vector` without `| None`.",
                    setting=name,
                )
            vectors.append(VectorSpec(name, _vector_dim(model, name, info, dim)))
            continue
        ctype = _column_type(annotation)
        if ctype is None:
            raise _unsupported(model, name, info.annotation)
        if name == id_field:
            if nullable or annotation not in _ID_TYPES:
                raise ConfigError(
                    f"{model.__name__}.{name} must be int, str or uuid.UUID (not optional), "
                    f"got {info.annotation!r}",
                    setting="id",
                )
            id_spec = FieldSpec(name, ctype, nullable=False)
        else:
            fields.append(FieldSpec(name, ctype, nullable))
    if id_spec is None:
        raise ConfigError(
            f"{model.__name__} has no `{id_field}` field: declare the primary key as "
            f"`{id_field}: int`, `{id_field}: str` or `{id_field}: uuid.UUID`",
            setting="id",
        )
    if not vectors:
        raise ConfigError(
            f"{model.__name__} has no vector field: declare one such as `embedding: vecdb.Vector`",
            setting="model",
        )
    return Layout(id=id_spec, fields=tuple(fields), vectors=tuple(vectors))


def _vector_dim(
    model: type[Record], name: str, info: pydantic.fields.FieldInfo, default: int | None
) -> int:
    # An explicit Dim wins; dim= is the default for vector fields without one.
    dims = [m.n for m in info.metadata if isinstance(m, Dim)]
    if dims:
        return dims[-1]
    if default is None:
        raise ConfigError(
            f"no dimension for vector field {model.__name__}.{name}: pass dim= to "
            "db.collection(...) or declare `Annotated[vecdb.Vector, vecdb.Dim(384)]`",
            setting="dim",
        )
    return default


def _unsupported(model: type[Record], name: str, annotation: Any) -> ConfigError:
    return ConfigError(
        f"field {model.__name__}.{name} has type {annotation!r}, which vecdb cannot store; "
        f"supported types are {_SUPPORTED}",
        setting=name,
    )
