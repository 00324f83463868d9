"""Named DuckDB views over the store: the queries the dashboard, the CLI and the report share.

- ``responses``, ``readings``, ``grades``: every row of each table, with exactly the columns that
  ``cache.schema.TABLES`` declares, in that order. A column that no part holds (a store written
  before that column existed) reads as NULL; a column no version declares is left out. So stores
  outlive versions: the views never fail with "Referenced column not found".
- ``answers``: the latest ``ok`` ``detect`` row per key, exactly as stored.
- ``results``: ``answers`` with each label as read now:
  the newest reading of the highest authority (reviewer > judge > parser; the row's own label is
  the parser's reading at ingest time, and ``cache reparse`` adds newer parser readings). Adds
  ``label_source`` (parser | provider | reader | judge | reviewer), ``label_by``, ``label_rule``,
  ``label_span_start/_end``, ``needs_review`` (the parser was undecided and no judge read the
  answer, or a judge read a committed parser label otherwise; a reviewer's label settles both), ``parser_label``, ``judge_label``, ``judge_model``,
  ``reviewer_label``, and ``answered``, ``correct``, ``outcome`` (correct | wrong | abstained) from
  the label. This is what metrics use (DESIGN: labels and metrics). The row's stored ``label`` is
  kept as ``stored_label``. Keys are unique almost always, so only keys seen twice go through the
  window (it was ~96% of a metrics query over 10^6 rows); the CTEs are NOT MATERIALIZED, else
  DuckDB copies every column (RSS 1.6 GB).
- ``failures``: the latest ``error`` row of each ``detect`` key that has no ``ok`` row: the errors
  still open. An unreadable image (``error_type`` ``image_*``) has a key of its own (provider
  ``image_error`` + path), never the key of the real call, so it is closed instead by an ``ok`` row
  for the same (model, prompt_id, image_path, repeat); call errors keep the plain anti-join on key.

A connection is a snapshot of the parts present when it was made (see ``install_views``): reconnect
to see what a running ingest wrote since. On an S3 store the table views read an Arrow dataset of the
listed objects (``parts_source``); every other view is the same SQL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import duckdb

from cache.schema import AUTHORITIES, DEFAULT_TASK, TABLES, V1_LOCAL_PROVIDERS, arrow_schema

if TYPE_CHECKING:
    from cache.store import Store

_TASK = f"coalesce(task, '{DEFAULT_TASK}')"
_LOCAL_V1 = ", ".join(f"'{p}'" for p in V1_LOCAL_PROVIDERS)
_RANK = {name: rank for rank, name in enumerate(AUTHORITIES, start=1)}

DUP_KEYS_SQL = f"""
CREATE OR REPLACE TABLE _dup_keys AS
SELECT key FROM responses WHERE status = 'ok' AND {_TASK} = '{DEFAULT_TASK}' GROUP BY key HAVING count(*) > 1
"""

# Every reading of a key: parser readings (reparse), judge answers (task judge), reviewers' labels.
READINGS_SQL = f"""
CREATE OR REPLACE TABLE _readings AS
WITH r AS (
  SELECT key, {_RANK['parser']} AS rank, created_at, label, confidence, rule, span_start, span_end,
         needs_review, coalesce(made_by, 'parser-' || parser_version) AS made_by
  FROM readings WHERE authority = 'parser'
  UNION ALL
  SELECT target_key, {_RANK['judge']}, created_at, label, confidence, 'judge', NULL, NULL, needs_review, model
  FROM responses WHERE task = 'judge' AND status = 'ok' AND target_key IS NOT NULL
    AND label IN ('real', 'synthetic', 'uncertain', 'refused')  -- a judge reply it could not read is no reading
  UNION ALL
  SELECT key, {_RANK['reviewer']}, created_at, label, NULL, 'reviewer', NULL, NULL, false, made_by
  FROM readings WHERE authority = 'reviewer'
)
SELECT key,
       arg_max({{'rank': rank, 'created_at': created_at, 'label': label, 'confidence': confidence,
                 'rule': rule, 'span_start': span_start, 'span_end': span_end,
                 'needs_review': needs_review, 'made_by': made_by}}, (rank, created_at)) AS best,
       arg_max({{'created_at': created_at, 'label': label, 'confidence': confidence, 'rule': rule,
                 'span_start': span_start, 'span_end': span_end, 'needs_review': needs_review, 'made_by': made_by}},
               created_at) FILTER (WHERE rank = {_RANK['parser']}) AS parser,
       arg_max(label, created_at) FILTER (WHERE rank = {_RANK['judge']}) AS judge_label,
       arg_max(made_by, created_at) FILTER (WHERE rank = {_RANK['judge']}) AS judge_model,
       arg_max(label, created_at) FILTER (WHERE rank = {_RANK['reviewer']}) AS reviewer_label
FROM r GROUP BY key
"""

# The row's own reading (ingest time), and who made it.
_OWN_SOURCE = (f"CASE WHEN o.label_rule IN ('provider', 'reader') THEN o.label_rule "
               f"WHEN o.label_rule IS NULL AND o.provider IN ({_LOCAL_V1}) THEN 'provider' ELSE 'parser' END")
_OWN_BY = f"coalesce('parser-' || o.parser_version, {_OWN_SOURCE})"
_OWN_REVIEW = "coalesce(o.needs_review, false)"


def results_sql(with_readings: bool = True) -> str:
    """The ``results`` view. Without any reading in the store (the common case) the label columns
    come from the row alone: no join, no per-row CASE over readings (a tenth of the overview query)."""
    if with_readings:
        reparsed = "(p.parser IS NOT NULL AND p.parser.created_at >= o.created_at)"
        parser_label = f"CASE WHEN {reparsed} THEN p.parser.label ELSE o.label END"
        parser_review = f"CASE WHEN {reparsed} THEN p.parser.needs_review ELSE {_OWN_REVIEW} END"
        over = f"(p.best.rank > {_RANK['parser']} OR {reparsed})"

        def pick(field: str, own: str) -> str:
            return f"CASE WHEN {over} THEN p.best.{field} ELSE {own} END"

        source = (f"CASE WHEN p.best.rank = {_RANK['reviewer']} THEN 'reviewer' WHEN p.best.rank = "
                  f"{_RANK['judge']} THEN 'judge' WHEN {reparsed} THEN 'parser' ELSE {_OWN_SOURCE} END")
        # a person should look when the parser was undecided and no judge has read the answer, or
        # when a judge read a committed parser label otherwise (a judge settling an undecided
        # parser is not a disagreement); a reviewer's label settles either
        review = (f"p.reviewer_label IS NULL AND (({parser_review} AND p.judge_label IS NULL) OR "
                  f"(p.judge_label IS NOT NULL AND NOT {parser_review} "
                  f"AND p.judge_label IS DISTINCT FROM {parser_label}))")
        others, join = "p.judge_label, p.judge_model, p.reviewer_label", "LEFT JOIN _readings p USING (key)"
    else:
        parser_label, review, source, join = "o.label", _OWN_REVIEW, _OWN_SOURCE, ""

        def pick(field: str, own: str) -> str:
            return own

        others = "NULL::VARCHAR AS judge_label, NULL::VARCHAR AS judge_model, NULL::VARCHAR AS reviewer_label"
    return f"""
CREATE OR REPLACE VIEW results AS
WITH read AS NOT MATERIALIZED (
  SELECT o.* REPLACE (
           {pick('label', 'o.label')} AS label,
           {pick('confidence', 'o.confidence')} AS confidence,
           {pick('rule', 'o.label_rule')} AS label_rule,
           {pick('span_start', 'o.label_span_start')} AS label_span_start,
           {pick('span_end', 'o.label_span_end')} AS label_span_end,
           {review} AS needs_review),
         o.label AS stored_label, {source} AS label_source, {pick('made_by', _OWN_BY)} AS label_by,
         {parser_label} AS parser_label, {others}
  FROM answers o {join})
SELECT *,
       label IN ('real', 'synthetic') AS answered,
       label = truth AS correct,
       CASE WHEN label NOT IN ('real', 'synthetic') THEN 'abstained'
            WHEN label = truth THEN 'correct' ELSE 'wrong' END AS outcome
FROM read
"""


# The latest ok answer per key, exactly as stored (no later reading applied): what `reparse` re-reads.
ANSWERS_SQL = f"""
CREATE OR REPLACE VIEW answers AS
WITH ok AS NOT MATERIALIZED (SELECT * FROM responses WHERE status = 'ok' AND {_TASK} = '{DEFAULT_TASK}')
SELECT * FROM ok ANTI JOIN _dup_keys USING (key)
UNION ALL
(SELECT * FROM ok SEMI JOIN _dup_keys USING (key)
 QUALIFY row_number() OVER (PARTITION BY key ORDER BY created_at DESC, run_id DESC) = 1)
"""

FAILURES_SQL = f"""
CREATE OR REPLACE VIEW failures AS
SELECT *, 'error' AS outcome
FROM (SELECT * FROM responses r
      WHERE status = 'error' AND {_TASK} = '{DEFAULT_TASK}' AND NOT starts_with(coalesce(error_type, ''), 'image_')
        AND NOT EXISTS (SELECT 1 FROM responses o WHERE o.status = 'ok' AND o.key = r.key)
      UNION ALL
      SELECT * FROM responses e
      WHERE status = 'error' AND starts_with(error_type, 'image_')
        AND NOT EXISTS (SELECT 1 FROM responses o WHERE o.status = 'ok' AND o.model = e.model
                        AND o.prompt_id = e.prompt_id AND o.image_path = e.image_path AND o.repeat = e.repeat))
QUALIFY row_number() OVER (PARTITION BY key ORDER BY created_at DESC, run_id DESC) = 1
"""


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


#: The DuckDB type of each Arrow type cache.schema declares (views are typed without pandas or a
#: registered Arrow table: registering imports pandas, 0.4 s of every cached run, and a registered
#: table is invisible to the connection's cursors).
_SQL_TYPES = {"string": "VARCHAR", "int32": "INTEGER", "int64": "BIGINT", "double": "DOUBLE", "bool": "BOOLEAN",
              "timestamp[us, tz=UTC]": "TIMESTAMP WITH TIME ZONE"}


def declared_types(table: str) -> dict[str, str]:
    """column -> DuckDB type, in declared order."""
    return {field.name: _SQL_TYPES[str(field.type)] for field in arrow_schema(table)}


def empty_view_sql(table: str) -> str:
    """A typed, empty ``SELECT`` with every declared column of ``table``."""
    columns = ", ".join(f"NULL::{kind} AS {_ident(name)}" for name, kind in declared_types(table).items())
    return f"SELECT {columns} WHERE false"


def table_view_sql(con: duckdb.DuckDBPyConnection, table: str, files: list[str]) -> str:
    """``SELECT`` of every declared column of ``table`` from ``files``: present columns cast to the
    declared type when they differ, absent ones as typed NULLs, undeclared ones left out."""
    source = f"read_parquet([{', '.join(_quote(f) for f in files)}], union_by_name=true)"
    present = {name: kind for name, kind, *_ in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    columns = []
    for name, kind in declared_types(table).items():
        if name not in present:
            columns.append(f"NULL::{kind} AS {_ident(name)}")
        elif present[name] != kind:
            columns.append(f"TRY_CAST({_ident(name)} AS {kind}) AS {_ident(name)}")
        else:
            columns.append(_ident(name))
    return f"SELECT {', '.join(columns)} FROM {source}"


def parts_source(
    con: duckdb.DuckDBPyConnection, store: Store, table: str, names: list[str], sizes: dict[str, int] | None = None
) -> str:
    """A FROM-expression over the parts ``names`` of ``table`` (store-relative, non-empty).

    A local store: ``read_parquet`` of the files (``union_by_name``). An S3 store: a view over an Arrow
    dataset of exactly those objects (``remote_dataset``; ``sizes`` from the listing, if known).
    The view is made with ``from_arrow(...).create_view``: unlike ``con.register``, the connection's
    cursors (the dashboard's threads) see it."""
    if not store.remote:
        files = [str(store.root / n) for n in names]
        return f"read_parquet([{', '.join(_quote(f) for f in files)}], union_by_name=true)"
    view = f"_parts_{table}"
    con.from_arrow(remote_dataset(store, table, names, sizes)).create_view(view, replace=True)
    return view


#: Ranged reads of a part are merged across gaps smaller than what one more request costs in
#: transfer time (pyarrow's rule, for ~30 ms to first byte and ~100 MiB/s, typical of S3 in-region):
#: on moto this took the overview query from ~18 to ~5 requests per part (0.9 MB parts).
TIME_TO_FIRST_BYTE_MS, BANDWIDTH_MIB_S = 30, 100


def remote_dataset(store: Store, table: str, names: list[str], sizes: dict[str, int] | None = None) -> Any:
    """An Arrow dataset of exactly the objects ``names``, with the declared schema of ``table``
    (cache.schema.TABLES): a column a part lacks reads as NULL, one no version declares is left out.

    DuckDB's httpfs cannot be installed offline; an explicit file list keeps the connection a snapshot.
    Each fragment gets its size from the listing (no HEAD per scan) and its footer read once, here, in
    parallel (not once per scan: a query scans ``responses`` several times)."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa
    import pyarrow.dataset as ds

    if sizes is None:
        sizes = {e.name: e.size for e in store.storage.entries(table)}
    filesystem, paths = store.storage.arrow_files(names)
    cache = pa.CacheOptions.from_network_metrics(TIME_TO_FIRST_BYTE_MS, BANDWIDTH_MIB_S)
    fmt = ds.ParquetFileFormat(default_fragment_scan_options=ds.ParquetFragmentScanOptions(
        pre_buffer=True, cache_options=cache))  # fmt: skip
    fragments = [fmt.make_fragment(path, filesystem=filesystem, file_size=sizes.get(name))
                 for path, name in zip(paths, names, strict=True)]  # fmt: skip
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda f: f.ensure_complete_metadata(), fragments))
    return ds.FileSystemDataset(fragments, schema=arrow_schema(table), format=fmt, filesystem=filesystem)


def install_views(con: duckdb.DuckDBPyConnection, store: Store) -> None:
    """Create the table views, ``results`` and ``failures`` on ``con`` for ``store``.

    The connection is a snapshot: each table view reads the parts present now (an explicit file
    list, not the glob); the keys with more than one ``ok`` row among them, and every reading per
    key, are found once, here, into plain tables (so the connection's cursors share them). Metrics
    then skip a per-query dedup over every key (0.37 s -> 0.15 s at 10^6 rows). Reconnect to see
    parts written later; a part removed by ``compact`` makes the old snapshot raise IOException.
    """
    for table in TABLES:
        if store.remote:  # one listing gives names and sizes; typed by the dataset's declared schema
            sizes = {e.name: e.size for e in store.part_entries(table)}
            body = f"SELECT * FROM {parts_source(con, store, table, list(sizes), sizes)}" if sizes else ""
        else:
            names = store.part_names(table)
            body = table_view_sql(con, table, [str(store.root / n) for n in names]) if names else ""
        body = body or empty_view_sql(table)
        con.execute(f"CREATE OR REPLACE VIEW {table} AS {body}")
    con.execute(DUP_KEYS_SQL)
    con.execute(READINGS_SQL)
    con.execute(ANSWERS_SQL)
    con.execute(results_sql(with_readings=con.execute("SELECT count(*) FROM _readings").fetchone()[0] > 0))
    con.execute(FAILURES_SQL)
