"""Bundles: a store selection that leaves the machine (``export``), comes back (``import``), or is opened.

A bundle is a zip holding the same layout as a store folder, so an extracted bundle *is* a store::

    manifest.json              format, bundle and MedLens versions, filters, row counts, and every
                               other file with its sha256 and size (checked when the bundle is opened)
    provenance.json            prompts (id, sha256, text), models (versions, params), runs, dates
    responses/bundle.parquet   the selected rows, ok and error, one compacted part, with the judge
                               answers about them
    readings/bundle.parquet    later readings of those answers (reparse, reviewers), if any
    grades/bundle.parquet      graders' ratings of their interpretations, if any
    thumbs/<image_sha256>.jpg  metadata-free JPEG thumbnails of those images
    runs/<run_id>.json         the run records of those rows
    demo.json                  only when exported from the demo store
    README.txt                 what this is, for a reader without MedLens

What never leaves: absolute paths (an ``image_path`` that is absolute, home-relative or climbs out with
``..`` keeps only its file name; paths inside messages and run records likewise), secrets (values of
environment variables named like keys, and anything shaped like an API key, become ``[redacted]``),
and image metadata (a thumbnail carrying an EXIF/XMP/ICC/comment segment is re-encoded from
pixels). The rules are in ``cache.redact``.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cache import __version__
from cache.extract import (  # noqa: F401 (open_store, read_manifest, bundle_cache_dir: the public API)
    BUNDLE_FORMAT,
    BUNDLE_VERSION,
    MANIFEST,
    BundleError,
    bundle_cache_dir,
    check_part_values,
    open_store,
    read_manifest,
)
from cache.methods import provenance
from cache.metrics import Filters
from cache.redact import clean_jpeg, scrub_json, scrub_table
from cache.schema import ARROW_SCHEMA, SCHEMA_VERSION, arrow_schema
from cache.store import RUN_MAX_BYTES, Store, atomic_write_bytes, utcnow
from cache.untrusted import RUN_ID, SHA256, is_run_id, is_sha256, read_capped
from cache.views import parts_source

PART = "responses/bundle.parquet"


# -- export ---------------------------------------------------------------------------------------
#: What a bundle holds of each table besides the responses: rows about the exported answers' keys.
SIDE_TABLES = ("readings", "grades")
SELECTED_SQL = """
SELECT * FROM responses WHERE coalesce(task, 'detect') <> 'judge' {clause}
UNION ALL BY NAME
SELECT j.* FROM responses j SEMI JOIN (SELECT key FROM responses WHERE true {clause}) s ON j.target_key = s.key
WHERE j.task = 'judge'
ORDER BY created_at, key
"""


def export_bundle(store: Store, out: Path, filters: Filters | None = None) -> dict[str, Any]:
    """Write the bundle of the rows matching ``filters`` to ``out``; returns its manifest.

    The judge answers and the later readings and grades of the selected answers go with them, so a
    collaborator sees the labels as they are read now (a judge row is selected by the answer it
    judged, whatever its own model)."""
    con = store.connect()
    clause, params = (filters or Filters()).clause()
    table = con.sql(SELECTED_SQL.format(clause=clause), params=params * 2).to_arrow_table()
    if table.num_rows == 0:
        raise BundleError(f"{store.root}: no rows match the filters; nothing to export")
    table = _null_unsafe_ids(scrub_table(table))
    files: dict[str, bytes] = {PART: _parquet_bytes(table)}
    con.register("_selected_keys", table.select(["key"]))
    side_rows = {}
    for side in SIDE_TABLES:
        rows = scrub_table(con.sql(f"SELECT * FROM {side} SEMI JOIN _selected_keys USING (key) "
                                   "ORDER BY created_at").to_arrow_table())
        side_rows[side] = rows.num_rows
        if rows.num_rows:
            files[f"{side}/bundle.parquet"] = _parquet_bytes(rows)
    # image ids and run ids become member names: only valid ones (a store may hold rows imported by
    # an older MedLens from a hostile bundle; their files are left behind)
    for sha in sorted(s for s in set(table.column("image_sha256").drop_null().to_pylist()) if is_sha256(s)):
        data = store.read_thumb(sha)
        try:
            if data is not None:
                files[f"thumbs/{sha}.jpg"] = clean_jpeg(data)
        except (ValueError, OSError):  # not a readable JPEG: the bundle goes without this thumbnail
            continue
    for run_id in sorted(r for r in set(table.column("run_id").drop_null().to_pylist()) if is_run_id(r)):
        record = store.read_json(store.run_name(run_id), RUN_MAX_BYTES)
        if record is not None:
            files[f"runs/{run_id}.json"] = _json_bytes(scrub_json(record))
    demo = store.read_json("demo.json")
    if isinstance(demo, dict):  # still a demo; its counts describe what was exported
        demo = scrub_json(demo)
        if filters is not None and _filters_dict(filters):
            images = len(set(table.column("image_sha256").drop_null().to_pylist()))
            demo |= {"images": images, "selection": _filters_dict(filters)}
        files["demo.json"] = _json_bytes(demo)
    con = duckdb.connect()
    con.register("bundle_rows", table)
    files["provenance.json"] = _json_bytes(scrub_json(provenance(con, "bundle_rows") | {"filters": _filters_dict(filters)}))
    files["README.txt"] = README.encode("utf-8")
    manifest = {
        "format": BUNDLE_FORMAT, "bundle_version": BUNDLE_VERSION, "schema_version": SCHEMA_VERSION,
        "medlens_version": __version__, "created_at": utcnow().isoformat(),
        "filters": scrub_json(_filters_dict(filters)), "rows": table.num_rows, "side_rows": side_rows,
        "files": [{"path": n, "sha256": hashlib.sha256(d).hexdigest(), "bytes": len(d)} for n, d in sorted(files.items())],
    }  # fmt: skip
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST, _json_bytes(manifest))
        for name, data in sorted(files.items()):
            archive.writestr(name, data, zipfile.ZIP_STORED if name.endswith((".jpg", ".parquet")) else None)
    atomic_write_bytes(Path(out), zipped.getvalue())
    return manifest


def _parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def _null_unsafe_ids(table: pa.Table) -> pa.Table:
    """image_sha256 / run_id values that could not be file names become NULL: never shipped onward."""
    for name, pattern in (("image_sha256", SHA256), ("run_id", RUN_ID)):
        column = table.column(name)
        valid = pc.fill_null(pc.match_substring_regex(column, f"^(?:{pattern.pattern})$"), True)
        if not pc.all(valid).as_py():
            table = table.set_column(table.column_names.index(name), table.schema.field(name),
                                     pc.if_else(valid, column, pa.scalar(None, column.type)))
    return table


def _read_json(path: Path) -> Any:
    """A JSON file of the store (capped, regular files only), or None."""
    try:
        return json.loads(read_capped(path, RUN_MAX_BYTES))
    except (OSError, ValueError):
        return None


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8")


def _filters_dict(filters: Filters | None) -> dict[str, list[str]]:
    filters = filters or Filters()
    return {name: list(getattr(filters, name)) for name in ("model", "modality", "prompt_id") if getattr(filters, name)}


# -- import ---------------------------------------------------------------------------------------
IMPORT_SQL = """
SELECT i.* FROM incoming i
WHERE NOT EXISTS (SELECT 1 FROM target t WHERE t.key = i.key AND t.status = 'ok')
  AND NOT (i.status = 'error' AND EXISTS (SELECT 1 FROM incoming o WHERE o.key = i.key AND o.status = 'ok'))
  AND NOT EXISTS (SELECT 1 FROM target t WHERE t.key = i.key AND t.status = i.status
                  AND t.run_id IS NOT DISTINCT FROM i.run_id AND t.created_at IS NOT DISTINCT FROM i.created_at)
QUALIFY row_number() OVER (PARTITION BY i.key, i.status, i.run_id, i.created_at) = 1
ORDER BY i.created_at, i.key
"""


def import_bundle(bundle: Path, store: Store) -> dict[str, int]:
    """Merge a bundle (.zip or folder) into ``store``, deduplicating by key; returns counts.

    Skipped: rows whose key already has an ok row in the store, error rows for keys that are ok in
    the store or the bundle, and rows already present (same key, status, run and time).
    """
    source = open_store(bundle)
    parts = source.part_paths()
    if not parts:
        raise BundleError(f"{bundle}: holds no responses/*.parquet; is it a MedLens bundle or store?")
    if not store.remote and store.root.exists() and source.root.resolve() == store.root.resolve():
        raise BundleError(f"{bundle}: is the store itself; nothing to import")
    check_part_values(Path(bundle), parts)  # a folder bundle is checked here, a zip on opening too
    con = duckdb.connect()
    incoming = con.sql("SELECT * FROM read_parquet(?, union_by_name=true)", params=[[str(p) for p in parts]]).to_arrow_table()
    con.register("incoming", incoming)
    held = store.part_names()  # the parts holding rows (not those a merged part replaces)
    if held:
        con.execute("CREATE VIEW target AS SELECT key, status, run_id, created_at "
                    f"FROM {parts_source(con, store, 'responses', held)}")
    else:
        con.register("target", ARROW_SCHEMA.empty_table().select(["key", "status", "run_id", "created_at"]))
    keep = con.sql(IMPORT_SQL).to_arrow_table()
    store.write_part(keep)
    side = {name: _import_side(source, store, name) for name in SIDE_TABLES}
    thumbs = runs = 0
    for sha in sorted(set(incoming.column("image_sha256").drop_null().to_pylist())):  # checked: all sha256
        data = source.read_thumb(sha)
        if data is not None and not store.has_thumb(sha):
            try:
                store.write_thumb(sha, clean_jpeg(data))
            except (ValueError, OSError):  # not a JPEG: the store goes without this thumbnail
                continue
            thumbs += 1
    names = sorted(p.name[:-5] for p in source.runs_dir.glob("*.json")) if source.runs_dir.is_dir() else []
    for run_id in filter(is_run_id, names):
        record = None if (source.runs_dir / f"{run_id}.json").is_symlink() else _read_json(source.run_path(run_id))
        if isinstance(record, dict) and not store.storage.exists(store.run_name(run_id)):
            store.storage.put(store.run_name(run_id), _json_bytes(record))
            runs += 1
    added_ok = int(pc.sum(pc.equal(keep.column("status"), "ok")).as_py() or 0)
    return {"rows": incoming.num_rows, "added_ok": added_ok, "added_error": keep.num_rows - added_ok,
            "skipped": incoming.num_rows - keep.num_rows, "thumbs": thumbs, "runs": runs, **side}


def _import_side(source: Store, store: Store, table: str) -> int:
    """Append the bundle's rows of ``table`` (readings, grades) that the store does not hold yet
    (by their id: importing twice adds nothing); returns how many."""
    parts = source.part_paths(table)
    if not parts:
        return 0
    check_part_values(source.root, parts, table)
    ident = "reading_id" if table == "readings" else "grade_id"
    con = duckdb.connect()
    con.register("incoming", con.sql("SELECT * FROM read_parquet(?, union_by_name=true)",
                                     params=[[str(p) for p in parts]]).to_arrow_table())
    held = store.part_names(table)
    present = (f"SELECT {ident} FROM {parts_source(con, store, table, held)}" if held
               else f"SELECT NULL::VARCHAR AS {ident} WHERE false")
    new = con.sql(f"SELECT * FROM incoming WHERE {ident} NOT IN ({present}) "
                  f"QUALIFY row_number() OVER (PARTITION BY {ident}) = 1").to_arrow_table()
    declared = arrow_schema(table)
    new = new.select([c for c in declared.names if c in new.column_names])
    store.append(new.to_pylist(), table)
    return new.num_rows


README = """MedLens results bundle
======================

This zip holds answers of multimodal models to "is this medical image real or synthetic?",
exported with `python -m cache export`. Nothing in it needs MedLens to be read:

- responses/bundle.parquet: one row per model call (ok) or failed call (error); open it with DuckDB
  (SELECT * FROM 'responses/bundle.parquet'), pandas/pyarrow, R (arrow::read_parquet) or Excel (Power Query).
  Metrics use, per key, the latest row with status 'ok'. Labels: real, synthetic, uncertain, refused,
  unparseable; positive class: synthetic; abstentions count as wrong in accuracy.
- thumbs/<image_sha256>.jpg: small metadata-free thumbnails of the images (column image_sha256).
- provenance.json: prompts (full text and sha256), models and versions, parameters, runs and dates.
- runs/*.json: the run records (arguments, confound audit, per-model tallies).
- manifest.json: every file with its sha256.

With MedLens: `python -m dashboard --store THIS.zip`, `python -m cache report OUT.html --store THIS.zip`,
or merge it into your store with `python -m cache import THIS.zip --store DIR`.
Absolute paths were reduced to file names and key-like values replaced by [redacted] on export.
"""
