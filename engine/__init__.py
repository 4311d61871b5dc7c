"""Physical execution: decoding, operators, the DuckDB store."""
