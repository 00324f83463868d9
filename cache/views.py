"""Named DuckDB views over the store: the queries the dashboard, the CLI and the report share.

- ``responses``: every row ever written (ok and error), all parts, ``union_by_name``.
- ``results``: the latest ``ok`` row per key, with ``answered``, ``correct`` and ``outcome``
  (correct | wrong | abstained). This is what metrics use (DESIGN: labels and metrics). Keys are
  unique almost always, so only keys seen twice go through the window (it was ~96% of a metrics
  query over 10^6 rows); the CTEs are NOT MATERIALIZED, else DuckDB copies every column (RSS 1.6 GB).
- ``failures``: the latest ``error`` row of each key that has no ``ok`` row: the errors still open.
  An unreadable image (``error_type`` ``image_*``) has a key of its own (provider ``image_error`` +
  path), never the key of the real call, so it is closed instead by an ``ok`` row for the same
  (model, prompt_id, image_path, repeat); call errors keep the plain hash anti-join on ``key``. Plain
  correlated NOT EXISTS on ``responses`` (no CTE: a CTE here blocked projection pushdown, 2-4x slower).

A connection is a snapshot of the parts present when it was made (see ``install_views``): reconnect
to see what a running ingest wrote since.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import duckdb

from cache.schema import ARROW_SCHEMA

if TYPE_CHECKING:
    from cache.store import Store

RESULTS_SQL = """
CREATE OR REPLACE VIEW results AS
WITH ok AS NOT MATERIALIZED (SELECT * FROM responses WHERE status = 'ok')
SELECT *,
       label IN ('real', 'synthetic') AS answered,
       label = truth AS correct,
       CASE WHEN label NOT IN ('real', 'synthetic') THEN 'abstained'
            WHEN label = truth THEN 'correct' ELSE 'wrong' END AS outcome
FROM (SELECT * FROM ok ANTI JOIN _dup_keys USING (key)
      UNION ALL
      (SELECT * FROM ok SEMI JOIN _dup_keys USING (key)
       QUALIFY row_number() OVER (PARTITION BY key ORDER BY created_at DESC, run_id DESC) = 1))
"""

DUP_KEYS_SQL = """
CREATE OR REPLACE TABLE _dup_keys AS
SELECT key FROM responses WHERE status = 'ok' GROUP BY key HAVING count(*) > 1
"""

FAILURES_SQL = """
CREATE OR REPLACE VIEW failures AS
SELECT *, 'error' AS outcome
FROM (SELECT * FROM responses r
      WHERE status = 'error' AND NOT starts_with(coalesce(error_type, ''), 'image_')
        AND NOT EXISTS (SELECT 1 FROM responses o WHERE o.status = 'ok' AND o.key = r.key)
      UNION ALL
      SELECT * FROM responses e
      WHERE status = 'error' AND starts_with(error_type, 'image_')
        AND NOT EXISTS (SELECT 1 FROM responses o WHERE o.status = 'ok' AND o.model = e.model
                        AND o.prompt_id = e.prompt_id AND o.image_path = e.image_path AND o.repeat = e.repeat))
QUALIFY row_number() OVER (PARTITION BY key ORDER BY created_at DESC, run_id DESC) = 1
"""


def install_views(con: duckdb.DuckDBPyConnection, store: Store) -> None:
    """Create ``responses``, ``results`` and ``failures`` on ``con`` for ``store``.

    The connection is a snapshot: ``responses`` reads the parts present now (an explicit file
    list, not the glob), and the keys with more than one ``ok`` row among them are found once,
    here, into ``_dup_keys`` (a plain table, so the connection's cursors share it). Metrics then
    skip the per-query dedup over every key (0.37 s -> 0.15 s at 10^6 rows). Reconnect to see
    parts written later; a part removed by ``compact`` makes the old snapshot raise IOException.
    """
    parts = store.part_paths()
    if parts:
        files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in parts)
        con.execute(
            f"CREATE OR REPLACE VIEW responses AS "
            f"SELECT * FROM read_parquet([{files}], union_by_name=true)"
        )
    else:
        empty = ARROW_SCHEMA.empty_table()
        con.register("_empty_responses", empty)
        con.execute("CREATE OR REPLACE VIEW responses AS SELECT * FROM _empty_responses")
    con.execute(DUP_KEYS_SQL)
    con.execute(RESULTS_SQL)
    con.execute(FAILURES_SQL)
