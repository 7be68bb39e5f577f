"""The typed table the filter tests run against: one column of every filterable type."""

from __future__ import annotations

# Text compares in the "C" collation, i.e. by code point, as Python's str does.
DDL = """
CREATE TABLE t (
    id bigint PRIMARY KEY,
    name text COLLATE "C",
    year bigint,
    score double precision,
    flag boolean,
    ts timestamptz,
    day date,
    uid uuid,
    tags text[],
    nums bigint[],
    meta jsonb
)
"""
