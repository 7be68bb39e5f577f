"""Identifiers: validated against one rule, then quoted.

Values never go through here: they are always bound parameters. Identifiers
cannot be bound, so every name that reaches SQL text (schema, collection,
field, index) is first checked by :func:`validate_identifier` and then written
with :func:`quote_ident`. Nothing else is ever formatted into SQL.
"""

from __future__ import annotations

import re

from ._errors import ConfigError

__all__ = ["IDENTIFIER_RULE", "qualified", "quote_ident", "validate_identifier"]

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
_MAX_LENGTH = 48  # leaves room under PostgreSQL's 63-byte limit for derived index names

# Words that PostgreSQL reserves outright (cannot be column or table names
# unquoted); we refuse them even though we quote, so that hand-written SQL
# against a collection never needs quoting either.
_RESERVED = frozenset(
    """
    all analyse analyze and any array as asc asymmetric authorization binary both case cast
    check collate collation column concurrently constraint create cross current_catalog
    current_date current_role current_schema current_time current_timestamp current_user
    default deferrable desc distinct do else end except false fetch for foreign freeze from
    full grant group having ilike in initially inner intersect into is isnull join lateral
    leading left like limit localtime localtimestamp natural not notnull null offset on only
    or order outer overlaps placing primary references returning right select session_user
    similar some symmetric system_user table tablesample then to trailing true union unique
    user using variadic verbose when where window with
    """.split()  # noqa: SIM905 - a word list reads like the SQL standard's own table
)

IDENTIFIER_RULE = (
    f"names must match [a-z_][a-z0-9_]* (lower case letters, digits, underscores, "
    f"not starting with a digit), be at most {_MAX_LENGTH} characters long, "
    f"and not be an SQL reserved word such as 'select' or 'order'"
)


def validate_identifier(name: object, *, what: str = "name") -> str:
    """Return ``name`` if it is a safe identifier, else raise `ConfigError` stating the rule.

    Args:
        name: The candidate identifier.
        what: What the name is for, used in the message ("collection name", "field").

    Raises:
        ConfigError: The name breaks the rule.
    """
    if not isinstance(name, str):
        raise ConfigError(f"{what} must be a string, got {type(name).__name__}: {IDENTIFIER_RULE}")
    if not _IDENTIFIER.match(name) or len(name) > _MAX_LENGTH:
        raise ConfigError(f"invalid {what} {name!r}: {IDENTIFIER_RULE}.")
    if name in _RESERVED:
        raise ConfigError(
            f"invalid {what} {name!r}: it is an SQL reserved word; {IDENTIFIER_RULE}."
        )
    return name


def quote_ident(name: str) -> str:
    """Quote an identifier for SQL text (doubling any embedded quote)."""
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    """Return ``"schema"."name"``, both quoted."""
    return f"{quote_ident(schema)}.{quote_ident(name)}"
