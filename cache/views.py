"""Named DuckDB views over the store: the queries the dashboard, the CLI and the report share.

- ``responses``: every row ever written (ok and error), all parts, ``union_by_name``.
- ``results``: the latest ``ok`` row per key, with ``answered``, ``correct`` and ``outcome``
  (correct | wrong | abstained). This is what metrics use (DESIGN: labels and metrics).
- ``failures``: the latest ``error`` row of each key that has no ``ok`` row: the errors still open.

The views re-read the part glob at every query, so new parts written by a running ingest show up
without reconnecting (once at least one part exists when the connection is made).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import duckdb

from cache.schema import ARROW_SCHEMA

if TYPE_CHECKING:
    from cache.store import Store

RESULTS_SQL = """
CREATE OR REPLACE VIEW results AS
SELECT *,
       label IN ('real', 'synthetic') AS answered,
       label = truth AS correct,
       CASE WHEN label NOT IN ('real', 'synthetic') THEN 'abstained'
            WHEN label = truth THEN 'correct' ELSE 'wrong' END AS outcome
FROM responses
WHERE status = 'ok'
QUALIFY row_number() OVER (PARTITION BY key ORDER BY created_at DESC, run_id DESC) = 1
"""

FAILURES_SQL = """
CREATE OR REPLACE VIEW failures AS
SELECT *, 'error' AS outcome
FROM responses r
WHERE status = 'error'
  AND NOT EXISTS (SELECT 1 FROM responses o WHERE o.status = 'ok' AND o.key = r.key)
QUALIFY row_number() OVER (PARTITION BY key ORDER BY created_at DESC, run_id DESC) = 1
"""


def install_views(con: duckdb.DuckDBPyConnection, store: Store) -> None:
    """Create ``responses``, ``results`` and ``failures`` on ``con`` for ``store``."""
    if store.part_paths():
        glob = str(store.responses_dir / "**" / "*.parquet").replace("'", "''")
        con.execute(
            f"CREATE OR REPLACE VIEW responses AS "
            f"SELECT * FROM read_parquet('{glob}', union_by_name=true)"
        )
    else:
        empty = ARROW_SCHEMA.empty_table()
        con.register("_empty_responses", empty)
        con.execute("CREATE OR REPLACE VIEW responses AS SELECT * FROM _empty_responses")
    con.execute(RESULTS_SQL)
    con.execute(FAILURES_SQL)
