"""Check records and query vectors before any SQL, and turn rows back into records.

Vector checks run once per batch over a stacked float32 matrix (lengths,
``np.isfinite``, norms), not element by element in Python: for a 384-d batch
they cost a few microseconds per record, next to pydantic's own validation.

Rows read back come from the collection's own table, so their values were
validated on the way in and have the column's type: a record is assembled
from them directly (as ``model_construct`` would), converting only what the
driver returns in another form (enum members, jsonb text). Models whose
reading could differ from a full validation (validators, annotated types with
their own schema) are validated as before.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import typing
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, Literal

import asyncpg
import numpy as np
import numpy.typing as npt
import pydantic

from .._errors import DimensionMismatchError, InvalidVectorError, RecordValidationError
from .._typing import M
from .record import Record, VectorSpec, _strip_optional, _to_array
from .spec import CollectionSpec
from .values import RefusedValueError, check_ids, encode_jsonb, refusal, row_checks, run_checks

__all__ = ["HALF_MAX", "RecordCodec", "check_vectors", "query_vector"]

HALF_MAX = 65504.0  # the largest finite float16: halfvec cannot hold more
_NO_VECTOR = np.empty(0, dtype=np.float32)

# Field types whose column value (as asyncpg returns it) is exactly what
# pydantic's validation would make of it: the value is kept as it comes.
_AS_STORED: frozenset[Any] = frozenset(
    {str, int, float, bool, dt.datetime, dt.date, uuid.UUID, list[str], list[int]}
)
_set = object.__setattr__  # what pydantic itself uses to fill a model without validation


def _record_label(record_id: Any, position: int | None, query: bool) -> str:
    if query:
        return "the query vector" if position is None else f"query vector {position}"
    parts = []
    if record_id is not None:
        parts.append(f"id={record_id!r}")
    if position is not None:
        parts.append(f"position {position}")
    return f"record ({', '.join(parts)})"


def check_vectors(
    vectors: Sequence[Any],
    spec: CollectionSpec,
    field: VectorSpec,
    *,
    ids: Sequence[Any] | None = None,
    offset: int = 0,
    queries: bool = False,
) -> npt.NDArray[np.float32]:
    """Check a batch of vectors for one field; return them stacked (n x dim, float32).

    Args:
        vectors: One vector per record (float32 arrays, or anything `Vector` accepts).
        spec: The collection (dimension, metric, storage).
        field: The vector field.
        ids: The records' ids, for the error messages.
        offset: The position of ``vectors[0]`` in the caller's whole input.
        queries: The vectors are queries: name them by position (when there
            are several), not by record.

    Raises:
        InvalidVectorError: A vector is missing, empty, holds NaN or infinity,
            exceeds halfvec's range, or is all zeros under cosine.
        DimensionMismatchError: A vector has the wrong length.
    """

    def where(j: int) -> tuple[Any, int | None, str]:
        record_id = ids[j] if ids is not None else None
        position = None if queries and len(vectors) == 1 else offset + j
        return record_id, position, _record_label(record_id, position, queries)

    arrays: list[npt.NDArray[np.float32]] = []
    for j, value in enumerate(vectors):
        if value is None or (isinstance(value, np.ndarray) and value is _NO_VECTOR):
            record_id, position, label = where(j)
            raise InvalidVectorError(
                f"{label} has no vector in {field.name!r}. Records read by search() without "
                "include_vectors=True carry none: set the vector before writing it back.",
                record_id=record_id,
                position=position,
                field=field.name,
            )
        arrays.append(value if isinstance(value, np.ndarray) else _to_array(value))
    lengths = np.fromiter((a.shape[0] for a in arrays), dtype=np.int64, count=len(arrays))
    wrong = np.flatnonzero(lengths != field.dim)
    if wrong.size:
        j = int(wrong[0])
        record_id, position, label = where(j)
        if lengths[j] == 0:
            raise InvalidVectorError(
                f"{label}: the vector in {field.name!r} is empty; give {field.dim} numbers",
                record_id=record_id,
                position=position,
                field=field.name,
            )
        raise DimensionMismatchError(
            f"{label}: the vector in {field.name!r} has {int(lengths[j])} dimensions, the "
            f"collection {spec.name!r} expects {field.dim}; embed with the model the "
            "collection was made for",
            expected=field.dim,
            got=int(lengths[j]),
            record_id=record_id,
            position=position,
        )
    matrix = np.stack(arrays) if arrays else np.empty((0, field.dim), dtype=np.float32)
    matrix = matrix.astype(np.float32, copy=False)
    problems = (
        (~np.isfinite(matrix).all(axis=1), "holds NaN or infinity; fix the embedding"),
        (
            (np.abs(matrix) > HALF_MAX).any(axis=1)
            if spec.storage == "halfvec"
            else np.zeros(len(arrays), dtype=bool),
            f"holds a value beyond ±{HALF_MAX:g}, which halfvec storage cannot represent; "
            "normalise the vector or use storage='vector'",
        ),
        (
            ~matrix.any(axis=1) if spec.metric == "cosine" else np.zeros(len(arrays), dtype=bool),
            "is all zeros, which has no direction: cosine distance is undefined for it",
        ),
    )
    for mask, message in problems:
        bad = np.flatnonzero(mask)
        if bad.size:
            record_id, position, label = where(int(bad[0]))
            raise InvalidVectorError(
                f"{label}: the vector in {field.name!r} {message}",
                record_id=record_id,
                position=position,
                field=field.name,
            )
    return matrix


def query_vector(vector: Any, spec: CollectionSpec, field: VectorSpec) -> npt.NDArray[np.float32]:
    """One query vector, checked as ``check_vectors([vector], ..., queries=True)[0]`` checks it.

    A float32 array of the right shape is checked in place (finite; not zero
    under cosine; within halfvec's range), a few microseconds instead of
    ~15; anything else, and any vector that fails, goes through
    `check_vectors`, which converts it or raises its usual error.
    """
    if (
        type(vector) is np.ndarray
        and vector.dtype == np.float32
        and vector.shape == (field.dim,)
        and np.isfinite(vector).all()
        and (spec.metric != "cosine" or vector.any())
        and (spec.storage != "halfvec" or np.abs(vector).max() <= HALF_MAX)
    ):
        return vector
    checked: npt.NDArray[np.float32] = check_vectors([vector], spec, field, queries=True)[0]
    return checked


def _field_types(model: type[pydantic.BaseModel]) -> dict[str, str]:
    """Each field's annotation and metadata, as text: equal for a class made again."""
    return {
        name: repr(info.annotation) + "".join(f" {m!r}" for m in info.metadata)
        for name, info in model.model_fields.items()
    }


class RecordCodec(Generic[M]):
    """Records to COPY rows and back, for one collection."""

    def __init__(self, model: type[M], spec: CollectionSpec) -> None:
        self.model = model
        self.spec = spec
        lay = spec.layout
        self.columns = lay.columns
        self.scalar_columns = (lay.id.name, *(f.name for f in lay.fields))
        self.jsonb = frozenset(lay.jsonb_fields)
        id_type: Any = model.model_fields[lay.id.name].annotation
        self._id_adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(id_type)
        self._fast = _row_decoder(model, spec)
        self._checks = row_checks(lay.fields)
        self._jsonb_at = tuple((k, c) for k, c in enumerate(self.scalar_columns) if c in self.jsonb)

    def validate(self, item: Any, position: int) -> M:
        """One input (a model instance or a dict) as a validated record."""
        if isinstance(item, self.model):
            return item
        if isinstance(item, pydantic.BaseModel):
            return self._from_twin(item, position)
        if not isinstance(item, Mapping):
            raise RecordValidationError(
                f"record at position {position} is a {type(item).__name__}; pass "
                f"{self.model.__name__} instances or dicts",
                position=position,
            )
        try:
            return self.model.model_validate(item)
        except pydantic.ValidationError as exc:
            record_id = item.get(self.spec.layout.id.name)
            label = f" (id={record_id!r})" if record_id is not None else ""
            raise RecordValidationError(
                f"record at position {position}{label} is not a valid {self.model.__name__}: {exc}",
                position=position,
                errors=exc.errors(include_url=False),
            ) from None

    def _from_twin(self, item: pydantic.BaseModel, position: int) -> M:
        """A record of another class: accepted when it is the model's twin, else refused.

        A notebook cell run again, or a module reloaded (``uvicorn --reload``),
        makes a new class of the same name and fields; its records are the model's.
        """
        other, mine = type(item), self.model
        theirs_fields, my_fields = _field_types(other), _field_types(mine)
        if other.__name__ == mine.__name__ and theirs_fields == my_fields:
            try:
                return mine.model_validate(item, from_attributes=True)
            except pydantic.ValidationError as exc:
                raise RecordValidationError(
                    f"record at position {position} is not a valid {mine.__name__}: {exc}",
                    position=position,
                    errors=exc.errors(include_url=False),
                ) from None
        differences = [
            *(f"{n!r} only in {other.__qualname__}" for n in theirs_fields if n not in my_fields),
            *(f"{n!r} only in {mine.__qualname__}" for n in my_fields if n not in theirs_fields),
            *(
                f"{n!r} is {theirs_fields[n]} in the first, {my_fields[n]} in the second"
                for n in my_fields
                if n in theirs_fields and theirs_fields[n] != my_fields[n]
            ),
        ]
        why = "; ".join(differences) or "the classes have different names"
        raise RecordValidationError(
            f"record at position {position} is a {other.__module__}.{other.__qualname__}, but "
            f"collection {self.spec.name!r} holds {mine.__module__}.{mine.__qualname__} "
            f"({why}). Pass {mine.__qualname__} instances or dicts (record.model_dump()).",
            position=position,
        )

    def rows(self, records: Sequence[M], offset: int) -> tuple[list[tuple[Any, ...]], list[Any]]:
        """COPY rows (in `columns` order) and ids for validated records.

        Raises:
            InvalidVectorError, DimensionMismatchError: See `check_vectors`.
            RecordValidationError: A value PostgreSQL would refuse (see `values`).
        """
        lay = self.spec.layout
        values = [r.__dict__ for r in records]
        ids = [v[lay.id.name] for v in values]
        check_ids(lay.id.type, ids, offset, field=lay.id.name)
        run_checks(self._checks, values, ids, offset)
        matrices = [
            check_vectors([v.get(vec.name) for v in values], self.spec, vec, ids=ids, offset=offset)
            for vec in self.spec.layout.vectors
        ]
        rows: list[tuple[Any, ...]] = []
        for j, value in enumerate(values):
            scalars = [value[c] for c in self.scalar_columns]
            for k, name in self._jsonb_at:
                if scalars[k] is not None:
                    try:
                        scalars[k] = encode_jsonb(scalars[k])
                    except RefusedValueError as exc:
                        raise refusal(
                            str(exc), field=name, record_id=ids[j], position=offset + j
                        ) from None
            rows.append((*scalars, *(m[j] for m in matrices)))
        return rows, ids

    def from_row(self, row: Mapping[str, Any] | asyncpg.Record, *, with_vectors: bool) -> M:
        """A record from a table row; without vectors, vector fields hold ``None``.

        The record equals what ``model_validate`` makes of the row (same field
        values and types, same ``model_fields_set``); see the module docstring.
        """
        fast = self._fast
        if fast is None:
            return self._validate_row(row, with_vectors=with_vectors)
        data = {name: row[name] for name in self.scalar_columns}
        for name, convert in fast.converters:
            value = data[name]
            if value is not None:
                data[name] = convert(value)
        if with_vectors:
            for name in fast.vectors:
                value = row[name]
                # The codec returns float32 arrays already; anything else is converted
                # as the Vector type would convert it.
                ok = type(value) is np.ndarray and value.dtype == np.float32 and value.ndim == 1
                data[name] = value if ok else _to_array(value)
            fields_set = set(fast.fields)
        else:
            for name in fast.vectors:
                data[name] = None
            fields_set = set(fast.scalar_fields)
        if fast.order is not None:
            data = {name: data[name] for name in fast.order}
        record = self.model.__new__(self.model)
        _set(record, "__dict__", data)
        _set(record, "__pydantic_fields_set__", fields_set)
        _set(record, "__pydantic_extra__", {} if fast.extra else None)
        _set(record, "__pydantic_private__", None)
        if fast.post_init:
            record.model_post_init(None)
        return record

    def from_rows(self, rows: Sequence[asyncpg.Record], *, with_vectors: bool) -> list[M]:
        """`from_row` for each row, in one loop: a search's ``k`` rows without vectors.

        The same records as `from_row` makes; without vectors, the per-row work
        is hoisted out of the loop (the column names, the vector fields' ``None``,
        the model's slots), which halves a 10-row search's decoding.
        """
        fast = self._fast
        if fast is None or with_vectors or not rows:
            return [self.from_row(row, with_vectors=with_vectors) for row in rows]
        names = self.scalar_columns
        # The values by position when the statement selects the scalar columns
        # first, in their order (vecdb's search statements do): no lookup by name.
        by_position = tuple(rows[0].keys())[: len(names)] == names
        unset = dict.fromkeys(fast.vectors)
        converters, order, scalar_fields = fast.converters, fast.order, fast.scalar_fields
        extra, post_init = fast.extra, fast.post_init
        model = self.model
        new = model.__new__
        records: list[M] = []
        for row in rows:
            data = (
                dict(zip(names, row, strict=False)) if by_position else {n: row[n] for n in names}
            )
            for name, convert in converters:
                value = data[name]
                if value is not None:
                    data[name] = convert(value)
            data.update(unset)
            if order is not None:
                data = {name: data[name] for name in order}
            record = new(model)
            _set(record, "__dict__", data)
            _set(record, "__pydantic_fields_set__", set(scalar_fields))
            _set(record, "__pydantic_extra__", {} if extra else None)
            _set(record, "__pydantic_private__", None)
            if post_init:
                record.model_post_init(None)
            records.append(record)
        return records

    def _validate_row(self, row: Mapping[str, Any] | asyncpg.Record, *, with_vectors: bool) -> M:
        """`from_row` through full validation, for models `_row_decoder` does not take."""
        data = {c: row[c] for c in self.scalar_columns}
        for name in self.jsonb:
            if data[name] is not None:
                data[name] = json.loads(data[name])
        vectors = self.spec.layout.vectors
        if with_vectors:
            data.update({v.name: row[v.name] for v in vectors})
            return self.model.model_validate(data)
        # Validate everything else (nested models, datetimes) as usual; vectors are
        # given a placeholder to satisfy the model, then set to None and left out
        # of model_fields_set, so that model_dump(exclude_unset=True) omits them.
        data.update({v.name: _NO_VECTOR for v in vectors})
        record = self.model.model_validate(data)
        for v in vectors:
            record.__dict__[v.name] = None
            record.__pydantic_fields_set__.discard(v.name)
        return record

    def coerce_id(self, value: Any) -> Any:
        """An id as the id column wants it.

        Raises:
            RecordValidationError: It cannot be one.
        """
        try:
            return self._id_adapter.validate_python(value)
        except pydantic.ValidationError as exc:
            raise RecordValidationError(
                f"{value!r} is not a valid id for {self.model.__name__} "
                f"({self.spec.layout.id.type.value}): {exc.errors()[0]['msg']}",
                errors=exc.errors(include_url=False),
            ) from None


@dataclasses.dataclass(frozen=True, slots=True)
class _RowDecoder:
    """What `RecordCodec.from_row` needs to assemble a record without validation.

    Attributes:
        converters: ``(field, function)`` for fields whose non-NULL column value
            must be converted (an enum from its value, jsonb text to its type).
        vectors: The vector fields.
        fields: Every field (``model_fields_set`` with vectors).
        scalar_fields: Every field but the vectors (``model_fields_set`` without).
        order: The model's field order, when the columns come in another one
            (a vector field declared before scalar fields); ``None`` otherwise.
        extra: ``extra="allow"``: validation leaves ``__pydantic_extra__ = {}``.
        post_init: The model has ``model_post_init`` or private attributes.
    """

    converters: tuple[tuple[str, Callable[[Any], Any]], ...]
    vectors: tuple[str, ...]
    fields: frozenset[str]
    scalar_fields: frozenset[str]
    order: tuple[str, ...] | None
    extra: bool
    post_init: bool


def _row_decoder(model: type[Record], spec: CollectionSpec) -> _RowDecoder | None:
    """How to read ``model`` from its table without validation, or ``None`` if it may differ.

    ``None`` (validate every row) when the model has validators of its own, or
    a field whose type or annotations could transform a stored value.
    """
    decorators = model.__pydantic_decorators__
    if (
        decorators.validators
        or decorators.field_validators
        or decorators.root_validators
        or decorators.model_validators
        or model.__pydantic_root_model__
    ):
        return None
    lay = spec.layout
    vectors = tuple(v.name for v in lay.vectors)
    converters: list[tuple[str, Callable[[Any], Any]]] = []
    for name in (lay.id.name, *(f.name for f in lay.fields)):
        info = model.model_fields[name]
        if any(hasattr(m, "__get_pydantic_core_schema__") for m in info.metadata):
            return None  # AfterValidator & co., or a type with its own schema
        annotation, _ = _strip_optional(info.annotation)
        origin = typing.get_origin(annotation)
        if annotation in _AS_STORED or (
            origin is Literal and all(type(a) in (str, int) for a in typing.get_args(annotation))
        ):
            continue
        if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
            converters.append((name, annotation))
        elif name in lay.jsonb_fields and typing.get_origin(annotation) is not typing.Annotated:
            adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(annotation)
            converters.append((name, adapter.validate_json))
        else:
            return None
    columns = lay.columns
    order = tuple(model.model_fields)
    return _RowDecoder(
        converters=tuple(converters),
        vectors=vectors,
        fields=frozenset(columns),
        scalar_fields=frozenset(columns) - frozenset(vectors),
        order=None if order == columns else order,
        extra=model.model_config.get("extra") == "allow",
        post_init=bool(model.__pydantic_post_init__),
    )
