"""What a collection is: records, column types, the spec, DDL and row codecs."""
