"""All SQL of the dashboard: one cached read-only connection per store and cached query functions.

Every cached function takes plain arguments: the store root, the store ``signature`` (part count,
bytes and newest mtime of every table, so a new part written by a running ingest, a review or a reader
is a cache miss) and the filters.
Metrics come from cache.metrics (defined once); the SQL here only selects and aggregates rows.
Model text is aggregated in DuckDB (lengths, regex hits) and never pulled in bulk into pandas.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pandas as pd
import streamlit as st

from cache import bundle, prepared, review, untrusted
from cache import metrics as cm
from cache.location import is_s3, parse_location
from cache.metrics import Filters
from cache.schema import TABLES
from cache.store import Store
from dashboard import vocab

TTL = 3600
T = TypeVar("T")
_GENERATIONS: dict[str, int] = {}  # root -> bumped by refresh(): a new connection for everyone
ROWS = "(SELECT * FROM results UNION ALL BY NAME SELECT * FROM failures)"  # ok rows + open errors


@st.cache_resource(max_entries=8, show_spinner="Opening the bundle…")
def _bundle_root(path: str, mtime_ns: int, size: int) -> str:
    return str(bundle.open_store(path).root)  # checked and extracted once per zip (cache.bundle)


def store_root(path: str) -> str:
    """The store folder behind ``--store``: a folder as given, a bundle .zip extracted once, an
    ``s3://bucket/prefix`` as its URL. Raises cache.bundle.BundleError for a missing, damaged or
    tampered zip, cache.location.StoreLocationError for a malformed location."""
    if is_s3(path):
        return str(parse_location(path))
    target = Path(path)
    if target.suffix.lower() != ".zip" and not target.is_file():
        return path
    try:
        stat = target.stat()
    except OSError:
        bundle.open_store(path)  # raises BundleError with the reason
        raise
    return _bundle_root(path, stat.st_mtime_ns, stat.st_size)


def open_store(root: str) -> duckdb.DuckDBPyConnection:
    """Open a store folder for reading (a bundle is resolved to its folder by store_root first)."""
    return Store(root).connect()


@st.cache_resource(max_entries=4, show_spinner=False)
def _connection(root: str, generation: int, signature: str) -> duckdb.DuckDBPyConnection:
    # one connection per store state: a connection is a snapshot of the parts it was made over
    return open_store(root)


def store_signature(root: str) -> str:
    """'response-parts:parts:bytes:newest-mtime-ns' over the parts of every table (responses, readings,
    grades), so a review or a grade written since is a cache miss too; cheap (directory listings;
    on an S3 store one ListObjectsV2 per table)."""
    responses = count = size = newest = 0
    if is_s3(root):
        storage = Store(root).storage
        for table in TABLES:
            for entry in storage.entries(table):
                if entry.name.endswith(".parquet"):
                    count, size, newest = count + 1, size + entry.size, max(newest, entry.mtime_ns)
                    responses += table == "responses"
        return f"{responses}:{count}:{size}:{newest}"
    for table in TABLES:
        for dirpath, _dirs, files in os.walk(Path(root) / table):
            for name in files:
                if name.endswith(".parquet"):
                    try:
                        stat = os.stat(os.path.join(dirpath, name))
                    except FileNotFoundError:  # removed by compact while we listed
                        continue
                    count, size, newest = count + 1, size + stat.st_size, max(newest, stat.st_mtime_ns)
                    responses += table == "responses"
    return f"{responses}:{count}:{size}:{newest}"


@st.cache_data(ttl=TTL, max_entries=16, show_spinner=False)
def foreign_parts(root: str, signature: str) -> list[tuple[str, str]]:
    """(file, reason) for Parquet files under responses/ that are not MedLens parts (footers only)."""
    return Store(root).foreign_parts()


def has_parts(signature: str) -> bool:
    """Whether the store has any responses part (readings alone show nothing)."""
    return not signature.startswith("0:")


def refresh(root: str) -> None:
    """Forget cached results and reconnect (the sidebar's Refresh button)."""
    _GENERATIONS[root] = _GENERATIONS.get(root, 0) + 1
    st.cache_data.clear()


def _run(root: str, signature: str, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    """Run ``fn`` on a cursor of the store's connection for this signature (cursors are per thread).

    A connection is a snapshot of the parts listed when it was made (cache.views); `cache compact`
    can remove them under it. Then the parts are listed again and a fresh snapshot answers.
    """
    for attempt in range(3):
        cur = None
        try:  # opening the snapshot reads the parts too: a part removed meanwhile fails here as well
            cur = _connection(root, _GENERATIONS.get(root, 0), signature).cursor()
            return fn(cur)
        except (duckdb.IOException, duckdb.InvalidInputException):
            if attempt == 2:
                raise
            time.sleep(0.05 * (attempt + 1))
            signature = store_signature(root)
        finally:
            if cur is not None:
                cur.close()
    raise AssertionError("unreachable")


def _df(root: str, signature: str, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
    return _run(root, signature, lambda cur: cur.execute(sql, params or []).df())


# -- store-level -------------------------------------------------------------------------------
@st.cache_data(ttl=TTL, max_entries=16, show_spinner=False)
def store_totals(root: str, signature: str) -> dict[str, int]:
    if not has_parts(signature):
        return {"rows": 0, "ok": 0, "errors": 0, "images": 0}
    sql = ("SELECT count(*), count(*) FILTER (WHERE status = 'ok'), count(*) FILTER (WHERE status = 'error'), "
           "count(DISTINCT image_sha256) FROM responses")
    rows, ok, errors, images = _run(root, signature, lambda cur: cur.execute(sql).fetchone())
    return {"rows": rows, "ok": ok, "errors": errors, "images": images}


@st.cache_data(ttl=TTL, max_entries=16, show_spinner=False)
def filter_options(root: str, signature: str) -> dict[str, list[str]]:
    """Distinct values of each filter column (source '' = none)."""
    fields = ("model", "modality", "prompt_id", "source", "truth")
    if not has_parts(signature):
        return {f: [] for f in fields}
    sql = ("SELECT DISTINCT model, modality, prompt_id, coalesce(source, ''), truth FROM responses "
           "WHERE coalesce(task, 'detect') = 'detect'")  # judge and training rows are in no metric
    combos = _run(root, signature, lambda cur: cur.execute(sql).fetchall())
    return {f: sorted({str(c[i]) for c in combos if c[i] is not None}) for i, f in enumerate(fields)}


@st.cache_data(ttl=TTL, max_entries=16, show_spinner=False)
def run_records(root: str, signature: str) -> list[dict[str, Any]]:
    """Run provenance records (runs/<run_id>.json), oldest first."""
    return Store(root).runs()


@st.cache_data(ttl=TTL, max_entries=16, show_spinner=False)
def demo_info(root: str, signature: str) -> dict[str, Any] | None:
    """The store's demo.json (written by `python -m data demo`), or None for a research store."""
    # a small regular file of the store (a FIFO or a huge file here is refused, not waited on)
    info = Store(root).read_json("demo.json", untrusted.MiB)
    return info if isinstance(info, dict) and info.get("demo") else None


def confound_warnings(runs: list[dict[str, Any]], modalities: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The high-severity findings of the runs' confound audits (newest run first, each message once),
    for the selected modalities (all when none are selected)."""
    seen: dict[str, None] = {}
    for run in reversed(runs):
        audit = run.get("audit") or {}
        for modality, cell in (audit.get("modalities") or {}).items():
            if modalities and modality not in modalities:
                continue
            for finding in cell.get("findings") or []:
                if finding.get("severity") == "high" and finding.get("message"):
                    seen.setdefault(f"{modality}: {finding['message']}", None)
    return list(seen)


def thumbnail(root: str, image_sha256: str) -> bytes | None:
    """The stored JPEG thumbnail of an image, or None (also for an id from a link that is no sha256)."""
    return Store(root).read_thumb(image_sha256)


# -- metrics (cache.metrics) ---------------------------------------------------------------------
@st.cache_data(ttl=TTL, max_entries=64, show_spinner=False)
def overview(root: str, signature: str, filters: Filters, by: tuple[str, ...] = cm.GROUP_BY) -> list[dict[str, Any]]:
    """cache.metrics.group_metrics: one dict per group."""
    if not has_parts(signature):
        return []
    return _run(root, signature, lambda cur: cm.group_metrics(cur, filters, by=by))


@st.cache_data(ttl=TTL, max_entries=64, show_spinner=False)
def confusion(root: str, signature: str, filters: Filters) -> dict[tuple[str, str], dict[str, dict[str, int]]]:
    """cache.metrics.confusion_matrix: (model, modality) -> truth -> label -> count."""
    if not has_parts(signature):
        return {}
    return _run(root, signature, lambda cur: cm.confusion_matrix(cur, filters))


@st.cache_data(ttl=TTL, max_entries=32, show_spinner=False)
def compare(root: str, signature: str, model_a: str, model_b: str, filters: Filters,
            limit: int = 500, prompts: tuple[str, str] | None = None) -> dict[str, Any]:
    """cache.metrics.compare_models, aggregated in DuckDB so it scales to 10^6 rows: pair counts,
    McNemar and kappa overall and per modality, and the first ``limit`` disagreements (``prompts``:
    pair A's prompt with B's, for models that answered different prompts, e.g. a reader)."""
    result = _run(root, signature, lambda cur: cm.compare_models(cur, model_a, model_b, filters, limit, prompts))
    return result | {"disagreements": pd.DataFrame(result["disagreements"])}


@st.cache_data(ttl=TTL, max_entries=16, show_spinner=False)
def model_prompts(root: str, signature: str) -> dict[str, list[str]]:
    """model -> the prompts it has current answers to."""
    if not has_parts(signature):
        return {}
    rows = _run(root, signature, lambda cur: cur.execute(
        "SELECT DISTINCT model, prompt_id FROM results ORDER BY ALL").fetchall())
    out: dict[str, list[str]] = {}
    for model, prompt in rows:
        out.setdefault(model, []).append(prompt)
    return out


# -- gallery ---------------------------------------------------------------------------------------
@st.cache_data(ttl=TTL, max_entries=64, show_spinner=False)
def gallery_page(root: str, signature: str, filters: Filters, wrong_only: bool, disagree_only: bool,
                 offset: int, limit: int) -> tuple[int, pd.DataFrame]:
    """(number of matching images, one page of them). An image matches when at least one of its
    ok rows / open errors matches the filters; 'wrong' = a wrong or abstained answer; 'disagree' =
    at least two different labels among its matching answers. One pass: the total rides along."""
    if not has_parts(signature):
        return 0, pd.DataFrame()
    where, params = filters.where(with_outcome=True)
    sql = f"""
        WITH images AS (
            SELECT image_sha256, min(image_path) AS image_path, any_value(modality) AS modality,
                   any_value(truth) AS truth, any_value(source) AS source, count(*) AS answers,
                   bool_or(outcome IN ('wrong', 'abstained')) AS any_wrong,
                   coalesce(min(label) <> max(label), false) AS disagree
            FROM {ROWS} {where} GROUP BY image_sha256)
        SELECT *, count(*) OVER () AS total FROM images
        WHERE (NOT ? OR any_wrong) AND (NOT ? OR disagree)
        ORDER BY modality, truth, source, image_path, image_sha256 LIMIT ? OFFSET ?"""
    page = _df(root, signature, sql, [*params, bool(wrong_only), bool(disagree_only), limit, offset])
    if page.empty and offset > 0:  # past the last page: the total still matters for the pager
        total, _ = gallery_page(root, signature, filters, wrong_only, disagree_only, 0, 1)
        return total, page.drop(columns="total")
    total = int(page["total"].iloc[0]) if len(page) else 0
    return total, page.drop(columns="total")


@st.cache_data(ttl=TTL, max_entries=64, show_spinner=False)
def gallery_answers(root: str, signature: str, filters: Filters, shas: tuple[str, ...]) -> pd.DataFrame:
    """The matching answers (and open errors) for the images on one gallery page."""
    extra, params = filters.clause(with_outcome=True)
    return _df(root, signature,
               f"SELECT image_sha256, model, prompt_id, repeat, status, label, outcome, correct, "
               f"interpretation, error_type FROM {ROWS} WHERE list_contains(?, image_sha256) {extra} "
               f"ORDER BY model, prompt_id, repeat", [list(shas), *params])


@st.cache_data(ttl=TTL, max_entries=64, show_spinner=False)
def image_detail(root: str, signature: str, image_sha256: str) -> pd.DataFrame:
    """Every current answer (latest ok row per key) and open error for one image, unfiltered."""
    return _df(root, signature, f"SELECT * EXCLUDE (params_json) FROM {ROWS} WHERE image_sha256 = ? "
                                f"ORDER BY model, prompt_id, repeat", [image_sha256])


# -- runs & errors ---------------------------------------------------------------------------------
@st.cache_data(ttl=TTL, max_entries=32, show_spinner=False)
def error_types(root: str, signature: str, filters: Filters) -> pd.DataFrame:
    """Per model and error type: error rows ever written, keys affected, still open, latest message."""
    where, params = filters.where()
    extra, _ = filters.clause()
    return _df(root, signature, f"""
        WITH e AS (SELECT model, coalesce(error_type, '(none)') AS error_type, count(*) AS error_rows,
                          count(DISTINCT key) AS keys_affected, max(created_at) AS latest_at,
                          arg_max(error_message, created_at) AS latest_message
                   FROM responses WHERE status = 'error' {extra} GROUP BY ALL),
             o AS (SELECT model, coalesce(error_type, '(none)') AS error_type, count(*) AS still_open
                   FROM failures {where} GROUP BY ALL)
        SELECT e.model, e.error_type, e.error_rows, e.keys_affected, coalesce(o.still_open, 0) AS still_open,
               e.latest_at, e.latest_message
        FROM e LEFT JOIN o USING (model, error_type) ORDER BY e.model, e.error_rows DESC""", params + params)


@st.cache_data(ttl=TTL, max_entries=32, show_spinner=False)
def latest_errors(root: str, signature: str, filters: Filters, limit: int = 20) -> pd.DataFrame:
    extra, params = filters.clause()
    return _df(root, signature, f"SELECT created_at, model, error_type, error_message, attempts, image_path, run_id "
                                f"FROM responses WHERE status = 'error' {extra} "
                                f"ORDER BY created_at DESC LIMIT ?", [*params, limit])


@st.cache_data(ttl=TTL, max_entries=32, show_spinner=False)
def run_costs(root: str, signature: str, filters: Filters) -> pd.DataFrame:
    """Per run_id: rows, ok, errors, tokens and cost (all rows written, retries included)."""
    where, params = filters.where()
    return _df(root, signature, f"""
        SELECT run_id, min(created_at) AS first_row, max(created_at) AS last_row,
               string_agg(DISTINCT model, ', ' ORDER BY model) AS models, count(*) AS rows,
               count(*) FILTER (WHERE status = 'ok') AS ok, count(*) FILTER (WHERE status = 'error') AS errors,
               sum(input_tokens)::BIGINT AS input_tokens, sum(output_tokens)::BIGINT AS output_tokens,
               sum(cost_usd) AS cost_usd
        FROM responses {where} GROUP BY run_id ORDER BY first_row, run_id""", params)


@st.cache_data(ttl=TTL, max_entries=32, show_spinner=False)
def latency_stats(root: str, signature: str, filters: Filters) -> pd.DataFrame:
    """Latency quantiles per model over current ok answers."""
    where, params = filters.where()
    df = _df(root, signature, f"""
        SELECT model, count(latency_ms) AS n, avg(latency_ms) AS mean,
               quantile_cont(latency_ms, [0.05, 0.25, 0.5, 0.75, 0.95]) AS q
        FROM results {where} GROUP BY model HAVING count(latency_ms) > 0 ORDER BY model""", params)
    if df.empty:
        return pd.DataFrame(columns=["model", "n", "mean", "p05", "q1", "median", "q3", "p95"])
    q = pd.DataFrame(df.pop("q").tolist(), columns=["p05", "q1", "median", "q3", "p95"])
    return pd.concat([df, q], axis=1)


@st.cache_data(ttl=TTL, max_entries=32, show_spinner=False)
def latency_histogram(root: str, signature: str, filters: Filters, bins: int = 40) -> pd.DataFrame:
    """Binned latency counts per model (bins from the minimum to the 99th percentile; the tail is
    counted in the last bin)."""
    extra, params = filters.clause()
    return _df(root, signature, f"""
        WITH r AS (SELECT model, latency_ms AS x FROM results WHERE latency_ms IS NOT NULL {extra}),
             b AS (SELECT min(x) AS lo, greatest((quantile_cont(x, 0.99) - min(x)) / ?, 1e-9) AS w FROM r),
             h AS (SELECT model, least(floor((x - lo) / w), ? - 1)::INTEGER AS bin, count(*) AS count
                   FROM r, b GROUP BY ALL)
        SELECT model, bin, lo + bin * w AS bin_start, lo + (bin + 1) * w AS bin_end, count
        FROM h, b ORDER BY model, bin""", [*params, bins, bins])


# -- grading and reader statistics (cache.grades, cache.readers, cache.readers_mrmc) ---------------
# imported when first used: scipy.stats and scikit-learn cost seconds at start-up, and most page
# views need neither
def parts_signature(root: str, table: str) -> str:
    """'parts:bytes:newest-mtime-ns' of one table's parts (for responses: what store_signature says)."""
    store = Store(root)
    if store.remote:
        held = set(store.part_names(table))
        found = [e for e in store.storage.entries(table) if e.name in held]
        return f"{len(found)}:{sum(e.size for e in found)}:{max((e.mtime_ns for e in found), default=0)}"
    stats = []
    for part in store.part_paths(table):
        try:
            stats.append(part.stat())
        except FileNotFoundError:  # removed by compact while we listed
            continue
    return f"{len(stats)}:{sum(s.st_size for s in stats)}:{max((s.st_mtime_ns for s in stats), default=0)}"


@st.cache_data(ttl=TTL, max_entries=64, show_spinner=False)
def queue_page(root: str, signature: str, grader: str, image: str | None,
               exclude: tuple[str, ...]) -> Any:
    """cache.grades.queue_page (a QueuePage) on the snapshot of ``signature``, the responses' parts:
    a grade written since does not reconnect; the page is filtered by :func:`graded_keys`."""
    from cache import grades

    if not has_parts(signature):
        return grades.QueuePage([], 0, 0, 0)
    return _run(root, signature, lambda cur: grades.queue_page(cur, grader, image, exclude))


@st.cache_data(max_entries=20_000, show_spinner=False)
def _part_grader_keys(path: str, mtime_ns: int, size: int) -> dict[str, frozenset[str]]:
    from cache import grades

    if is_s3(path):  # an object of an S3 store: <store url>/<name>
        root, name = path.rsplit("/grades/", 1)
        with Store(root).storage.open_input(f"grades/{name}") as handle:
            return grades.part_grader_keys(handle)
    return grades.part_grader_keys(path)


def graded_keys(root: str, grader: str) -> frozenset[str]:
    """Every key ``grader`` has graded, read now (each grades part is read once: parts never change)."""
    found: set[str] = set()
    store = Store(root)
    if store.remote:
        held = set(store.part_names("grades"))
        for entry in store.storage.entries("grades"):
            if entry.name in held:
                keys = _part_grader_keys(f"{root}/{entry.name}", entry.mtime_ns, entry.size)
                found |= keys.get(grader, frozenset())
        return frozenset(found)
    for part in store.part_paths("grades"):
        try:
            stat = part.stat()
        except FileNotFoundError:
            continue
        found |= _part_grader_keys(str(part), stat.st_mtime_ns, stat.st_size).get(grader, frozenset())
    return frozenset(found)


@st.cache_data(ttl=TTL, max_entries=32, show_spinner=False)
def grade_summary(root: str, signature: str, filters: Filters) -> list[dict[str, Any]]:
    """cache.grade_stats.grade_summary: per model and modality."""
    from cache import grade_stats

    return _run(root, signature, lambda cur: grade_stats.grade_summary(cur, filters)) if has_parts(signature) else []


#: above this many interpretations the quality page runs the swap test only when asked (~40 s at 10^6)
SWAP_TEST_AUTO = 50_000


@st.cache_data(ttl=TTL, max_entries=32, show_spinner="Comparing interpretations of different images…")
def genericness(root: str, signature: str, filters: Filters) -> list[dict[str, Any]]:
    """cache.readers.genericness_table: the TF-IDF swap test per model and modality."""
    from cache import readers

    return _run(root, signature, lambda cur: readers.genericness_table(cur, filters)) if has_parts(signature) else []


@st.cache_data(ttl=TTL, max_entries=16, show_spinner="Computing ROC, calibration and MRMC tables…")
def reader_statistics(root: str, signature: str, filters: Filters) -> dict[str, list[dict[str, Any]]]:
    """The cache.readers / cache.readers_mrmc tables: readers, agreement, roc (with points),
    calibration, retest, and the two MRMC tables for both figures of merit."""
    from cache import readers, readers_mrmc
    from cache.readers_report import FOMS

    if not has_parts(signature):
        return {}

    def tables(cur: duckdb.DuckDBPyConnection) -> dict[str, list[dict[str, Any]]]:
        frame = readers.load_results(cur, filters, readers.SCORE_COLUMNS)  # read once for every table
        return {"readers": readers.reader_metrics(frame), "agreement": readers.reader_agreement(frame),
                "roc": readers.roc_table(frame, with_points=True),
                "calibration": readers.calibration_table(frame),
                "retest": readers.retest_agreement(frame),
                "model_vs_panel": [r for fom in FOMS for r in readers_mrmc.mrmc_model_vs_panel(frame, fom=fom)],
                "readers_across_conditions": [r for fom in FOMS for r in readers_mrmc.mrmc_readers(frame, fom=fom)]}

    return _run(root, signature, tables)


# -- interpretation quality ------------------------------------------------------------------------
def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _family_case(modalities: list[str], patterns: dict[str, str], text: str) -> str:
    """CASE over modality families with constant patterns (compiled once by DuckDB)."""
    arms = []
    for fam, pattern in patterns.items():
        members = [m for m in modalities if vocab.family(m) == fam]
        if members:
            in_list = ", ".join(_literal(m) for m in members)
            arms.append(f"WHEN modality IN ({in_list}) THEN regexp_matches({text}, {_literal(pattern)}, 'i')")
    return f"CASE {' '.join(arms)} ELSE NULL END" if arms else "NULL"


@st.cache_data(ttl=TTL, max_entries=32, show_spinner=False)
def quality(root: str, signature: str, filters: Filters, modalities: tuple[str, ...]) -> pd.DataFrame:
    """Per model x modality: answers, with text, length in characters, how many name a modality-specific
    finding and how many hedge. One pass in DuckDB; each regex runs once per row."""
    where, params = filters.where()
    patterns = {fam: vocab.findings_pattern(fam) for fam in vocab.FINDINGS}
    finding = _family_case(list(modalities), patterns, "txt")
    df = _df(root, signature, f"""
        WITH t AS (SELECT model, modality, coalesce(interpretation, '') AS txt FROM results {where}),
             f AS (SELECT model, modality, length(trim(txt)) AS chars, {finding} AS finding,
                          regexp_matches(txt, {_literal(vocab.hedge_pattern())}, 'i') AS hedged
                   FROM t)
        SELECT model, modality, count(*) AS answers, count(*) FILTER (WHERE chars > 0) AS with_text,
               avg(chars) FILTER (WHERE chars > 0) AS mean_chars,
               median(chars) FILTER (WHERE chars > 0) AS median_chars,
               count(*) FILTER (WHERE chars > 0 AND finding) AS names_finding,
               count(*) FILTER (WHERE chars > 0 AND hedged) AS hedged
        FROM f GROUP BY ALL ORDER BY model, modality""", params)
    df["has_vocabulary"] = [vocab.family(m) is not None for m in df["modality"]]
    return df


@st.cache_data(ttl=TTL, max_entries=32, show_spinner=False)
def finding_terms(root: str, signature: str, filters: Filters, modality: str) -> pd.DataFrame:
    """For one modality: per model, how many answers name each finding of its vocabulary."""
    fam = vocab.family(modality)
    if fam is None:
        return pd.DataFrame()
    where, params = filters.narrowed(modality=(modality,)).where()
    counts = ", ".join(f"count(*) FILTER (WHERE regexp_matches(txt, {_literal(p)}, 'i')) AS {_identifier(name)}"
                       for name, p in vocab.FINDINGS[fam].items())
    return _df(root, signature, f"SELECT model, count(*) AS answers, {counts} FROM "
                                f"(SELECT model, coalesce(interpretation, '') AS txt FROM results {where}) "
                                f"GROUP BY model ORDER BY model", params)


# -- label provenance ------------------------------------------------------------------------------
@st.cache_data(ttl=TTL, max_entries=32, show_spinner=False)
def label_sources(root: str, signature: str, filters: Filters) -> list[dict[str, Any]]:
    """cache.metrics.label_sources: how many current labels each source set."""
    if not has_parts(signature):
        return []
    return _run(root, signature, lambda cur: cm.label_sources(cur, filters))


# -- review labels -----------------------------------------------------------------------------------
REVIEW_MODES = ("needs review", "parser ≠ judge", "by filter")
_DISAGREE = "judge_label IS NOT NULL AND judge_label IS DISTINCT FROM parser_label"


@st.cache_data(ttl=TTL, max_entries=32, show_spinner=False)
def review_queue(root: str, signature: str, filters: Filters, mode: str, labels: tuple[str, ...] = (),
                 limit: int = 1000) -> tuple[int, pd.DataFrame]:
    """(length of the queue, its first ``limit`` readings): current answers that need review (the
    parser was undecided, or parser and judge disagree, and no reviewer has settled it), only the
    disagreements, or every answer matching the filters (outcome too) and, if given, current labels.
    Small columns only: the answer text is read per item (:func:`review_item`)."""
    if not has_parts(signature):
        return 0, pd.DataFrame()
    where, params = filters.where(with_outcome=True)
    pick = {"needs review": "needs_review", "parser ≠ judge": f"reviewer_label IS NULL AND {_DISAGREE}",
            "by filter": "true"}[mode]
    if labels:
        pick += f" AND label IN ({', '.join('?' * len(labels))})"
    where = f"{where} AND {pick}" if where else f"WHERE {pick}"
    sql = f"""
        SELECT key, model, modality, prompt_id, repeat, image_sha256, image_path, label, label_source, label_by,
               parser_label, judge_label, judge_model,
               CASE WHEN reviewer_label IS NOT NULL THEN 'reviewed'
                    WHEN {_DISAGREE} THEN 'parser and judge disagree'
                    WHEN needs_review THEN 'the parser was undecided' ELSE '' END AS reason,
               count(*) OVER () AS total
        FROM results {where}
        ORDER BY model, modality, image_path, prompt_id, repeat, key LIMIT ?"""
    df = _df(root, signature, sql, [*params, *labels, limit])
    total = int(df["total"].iloc[0]) if len(df) else 0
    return total, df.drop(columns="total")


@st.cache_data(ttl=TTL, max_entries=64, show_spinner=False)
def review_item(root: str, signature: str, key: str) -> dict[str, Any] | None:
    """One current answer with its text and the provenance of its label (no truth: a reviewer labels
    what the answer says, not what the image is)."""
    df = _df(root, signature, """
        SELECT r.key, r.model, r.modality, r.prompt_id, r.repeat, r.image_sha256, r.raw_text, r.label,
               r.label_source, r.label_by, r.label_rule, r.label_span_start, r.label_span_end, r.parser_label,
               r.judge_label, r.judge_model, r.reviewer_label, r.needs_review, r.finish_reason,
               -- the parser's own span, while its label is still the one read at ingest (no newer reparse)
               CASE WHEN a.label IS NOT DISTINCT FROM r.parser_label THEN a.label_span_start END AS parser_span_start,
               CASE WHEN a.label IS NOT DISTINCT FROM r.parser_label THEN a.label_span_end END AS parser_span_end
        FROM results r JOIN answers a USING (key) WHERE r.key = ?""", [key])
    return None if df.empty else df.iloc[0].to_dict()


@st.cache_data(ttl=TTL, max_entries=32, show_spinner=False)
def judge_agreement(root: str, signature: str, filters: Filters) -> list[dict[str, Any]]:
    """cache.review.judge_agreement: parser vs judge per model (percent agreement, Cohen's kappa)."""
    if not has_parts(signature):
        return []
    return _run(root, signature, lambda cur: review.judge_agreement(cur, filters))


def is_bundle(root: str) -> bool:
    """Whether ``root`` is a bundle extracted for reading (its manifest.json says so): read-only."""
    if is_s3(root):
        return False
    try:
        manifest = json.loads((Path(root) / bundle.MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == bundle.BUNDLE_FORMAT


# -- reader study ------------------------------------------------------------------------------------
@st.cache_data(ttl=TTL, max_entries=16, show_spinner=False)
def study_images(root: str, signature: str) -> pd.DataFrame:
    """Images the models answered (current detect rows of providers other than readers) with their
    modality, truth, source and path, and whether the store keeps their prepared bytes."""
    if not has_parts(signature):
        return pd.DataFrame(columns=["image_sha256", "modality", "truth", "source", "image_path", "prepared"])
    df = _df(root, signature, """
        SELECT image_sha256, any_value(modality) AS modality, any_value(truth) AS truth,
               any_value(source) AS source, min(image_path) AS image_path
        FROM results WHERE provider IS DISTINCT FROM 'reader' AND truth IN ('real', 'synthetic')
        GROUP BY image_sha256 ORDER BY image_sha256""")
    have = prepared.prepared_shas(Store(root))
    df["prepared"] = [sha in have for sha in df["image_sha256"]]
    return df


def reader_done(root: str, model: str, prompt_sha256: str) -> dict[str, set[str]]:
    """task -> the images a reader has an ok answer for (under these instructions), read from the store
    now (not cached: it decides what the reader sees next)."""
    signature = store_signature(root)
    if not has_parts(signature):
        return {}
    rows = _run(root, signature, lambda cur: cur.execute(
        "SELECT coalesce(task, 'detect'), image_sha256 FROM responses WHERE status = 'ok' AND provider = 'reader' "
        "AND model = ? AND prompt_sha256 = ?", [model, prompt_sha256]).fetchall())
    out: dict[str, set[str]] = {}
    for task, sha in rows:
        out.setdefault(task, set()).add(sha)
    return out
