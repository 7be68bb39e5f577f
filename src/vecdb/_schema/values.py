r"""Scalar values that PostgreSQL would refuse, found before anything is sent.

PostgreSQL's text cannot hold NUL (``\x00``), nor can jsonb (``\u0000``);
UTF-8 has no lone surrogates; bigint stops at 2**63 - 1; JSON has no NaN.
Sent as they are, such values fail in the middle of a COPY with a message
that names neither the record nor the field (or with a raw driver error), so
they are refused here, with both named, before any transaction starts.

A naive datetime is refused too, though the server would take it: asyncpg
reads it as UTC and it comes back aware, so it would not read back equal.
A NaN or infinity in a ``float`` field is stored and read back as such:
double precision holds them (NaN sorts above every number in PostgreSQL).

The checks are cheap on the bulk path: each checked column is tested whole,
in C (text: one join, ``"\x00" in``, ``isascii()``, and only for non-ASCII
text one ``encode``; bigint: ``min`` and ``max``), and only a column that
fails is looked at value by value, to name the record. jsonb text is scanned
with substring tests, and only a hit is confirmed by a slower look.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pydantic_core

from .._errors import RecordValidationError
from .columns import ColumnType
from .record import FieldSpec

__all__ = [
    "Check",
    "RefusedValueError",
    "check_ids",
    "encode_jsonb",
    "refusal",
    "row_checks",
    "run_checks",
]

BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")
# ``\u0000`` as JSON writes a NUL: preceded by an even number of backslashes (a
# string holding a literal backslash and "u0000" is written ``\u0000``).
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")

Problem = Callable[[Any], str | None]


class RefusedValueError(ValueError):
    """A value PostgreSQL would refuse; the caller names the record and field."""


def _text(value: str) -> str | None:
    if "\x00" in value:
        return (
            "holds a NUL character (\\x00), which PostgreSQL text cannot store; remove it "
            "(e.g. value.replace('\\x00', ''))"
        )
    if not value.isascii() and _SURROGATE.search(value):
        return (
            "holds a lone surrogate (a half of a UTF-16 pair, e.g. from decoding with "
            "errors='surrogateescape'), which is not valid UTF-8; decode the source text "
            "properly or replace it (errors='replace')"
        )
    return None


def _texts(value: Sequence[str]) -> str | None:
    for item in value:
        problem = _text(item)
        if problem is not None:
            return f"has an element that {problem}"
    return None


def _bigint(value: int) -> str | None:
    if BIGINT_MIN <= value <= BIGINT_MAX:
        return None
    return (
        f"is {value}, beyond bigint's range ({BIGINT_MIN} .. {BIGINT_MAX}); store larger "
        "numbers as str, or in a jsonb field (numeric there)"
    )


def _bigints(value: Sequence[int]) -> str | None:
    for item in value:
        problem = _bigint(item)
        if problem is not None:
            return f"has an element that {problem}"
    return None


def _timestamptz(value: Any) -> str | None:
    if value.tzinfo is not None and value.utcoffset() is not None:
        return None
    return (
        f"is {value.isoformat()}, a datetime without a time zone, which would be stored as "
        "if it were UTC and read back as another value; give it one "
        "(e.g. value.replace(tzinfo=datetime.UTC))"
    )


_PROBLEMS: Mapping[ColumnType, Problem] = {
    ColumnType.TEXT: _text,
    ColumnType.TEXT_ARRAY: _texts,
    ColumnType.BIGINT: _bigint,
    ColumnType.BIGINT_ARRAY: _bigints,
    ColumnType.TIMESTAMPTZ: _timestamptz,
}


# Whole-column tests, in C where possible: one join, one scan, one encode for text;
# min and max for bigint. Only a column that fails is looked at value by value.
def _clean_texts(items: list[str]) -> bool:
    joined = "".join(items)
    if "\x00" in joined:
        return False
    if joined.isascii():
        return True
    try:
        joined.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _clean_bigints(items: list[int]) -> bool:
    return not items or (min(items) >= BIGINT_MIN and max(items) <= BIGINT_MAX)


def _clean_timestamps(items: list[Any]) -> bool:
    zones = {item.tzinfo for item in items}
    # datetime.timezone (UTC and fixed offsets, as asyncpg returns) always has an
    # offset; other tzinfo classes are asked value by value.
    return all(isinstance(zone, dt.timezone) for zone in zones)


def _flat(items: list[Any]) -> list[Any]:
    return list(itertools.chain.from_iterable(items))


Clean = Callable[[list[Any]], bool]
_CLEAN: Mapping[ColumnType, tuple[bool, Clean]] = {  # (arrays: flatten first, test)
    ColumnType.TEXT: (False, _clean_texts),
    ColumnType.TEXT_ARRAY: (True, _clean_texts),
    ColumnType.BIGINT: (False, _clean_bigints),
    ColumnType.BIGINT_ARRAY: (True, _clean_bigints),
    ColumnType.TIMESTAMPTZ: (False, _clean_timestamps),
}


@dataclasses.dataclass(frozen=True, slots=True)
class Check:
    """How to look at one column: the whole-column test, then the per-value reason."""

    field: str
    flatten: bool
    clean: Clean
    problem: Problem


def row_checks(fields: Sequence[FieldSpec]) -> tuple[Check, ...]:
    """The checks for the fields whose values need a look (jsonb: `encode_jsonb`)."""
    return tuple(
        Check(f.name, *_CLEAN[f.type], _PROBLEMS[f.type]) for f in fields if f.type in _PROBLEMS
    )


def refusal(
    reason: str, *, field: str, record_id: Any, position: int | None
) -> RecordValidationError:
    """The error for a refused value, naming the record and the field."""
    label = ", ".join(
        part
        for part in (
            f"id={record_id!r}" if record_id is not None else "",
            f"position {position}" if position is not None else "",
        )
        if part
    )
    return RecordValidationError(
        f"record ({label}): field {field!r} {reason}",
        position=position,
        record_id=record_id,
        field=field,
    )


def _first(check: Check, column: Sequence[Any]) -> tuple[int, str] | None:
    present = [item for item in column if item is not None]
    if check.clean(_flat(present) if check.flatten else present):
        return None
    for j, item in enumerate(column):
        if item is not None:
            reason = check.problem(item)
            if reason is not None:
                return j, reason
    return None


def run_checks(
    checks: Sequence[Check],
    values: Sequence[Mapping[str, Any]],
    ids: Sequence[Any],
    offset: int,
) -> None:
    """Look at every checked field of every record (as ``record.__dict__``).

    Raises:
        RecordValidationError: The first value PostgreSQL would refuse.
    """
    for check in checks:
        found = _first(check, [value[check.field] for value in values])
        if found is not None:
            j, reason = found
            raise refusal(reason, field=check.field, record_id=ids[j], position=offset + j)


def check_ids(column: ColumnType, ids: Sequence[Any], offset: int, *, field: str) -> None:
    """`run_checks` for the id column, whose value names the record only by position."""
    if column not in _PROBLEMS:
        return
    found = _first(Check(field, *_CLEAN[column], _PROBLEMS[column]), ids)
    if found is not None:
        j, reason = found
        raise refusal(reason, field=field, record_id=None, position=offset + j)


def encode_jsonb(value: Any) -> str:
    """``value`` as the JSON text a jsonb column takes.

    Raises:
        RefusedValueError: It holds what JSON or jsonb cannot: NUL, a lone
            surrogate, NaN or infinity, or nesting beyond the serialiser's depth.
    """
    try:
        text = pydantic_core.to_json(value).decode()
    except pydantic_core.PydanticSerializationError as exc:
        raise RefusedValueError(_serialization_reason(str(exc))) from None
    if "\\u0000" in text and _JSON_NUL.search(text):
        raise RefusedValueError(
            "holds a NUL character (\\x00) in a string or key, which jsonb cannot store; remove it"
        )
    if ("NaN" in text or "Infinity" in text) and text != pydantic_core.to_json(
        value, inf_nan_mode="null"
    ).decode():
        raise RefusedValueError(
            "holds NaN or infinity, which JSON cannot represent; store None, or the number "
            "as a string"
        )
    return text


def _serialization_reason(message: str) -> str:
    if "surrogates not allowed" in message:
        return (
            "holds a lone surrogate (half of a UTF-16 pair), which is not valid UTF-8; "
            "decode the source text properly or replace it (errors='replace')"
        )
    if "depth" in message:
        return (
            "is nested too deeply to be written as JSON (pydantic's serialiser stops at a "
            "few hundred levels); flatten it"
        )
    return f"cannot be written as JSON ({message})"
