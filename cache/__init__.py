"""The MedLens response store: schema, keys, the append-only Parquet writer, DuckDB views and metrics.

`cache/` imports neither `ingest/` nor `dashboard/`; both of them use it.
"""

__version__ = "0.2.0"
