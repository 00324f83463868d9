"""Bundles: a store selection that leaves the machine (``export``), comes back (``import``), or is opened.

A bundle is a zip holding the same layout as a store folder, so an extracted bundle *is* a store::

    manifest.json              format, bundle and MedLens versions, filters, row counts, and every
                               other file with its sha256 and size (checked when the bundle is opened)
    provenance.json            prompts (id, sha256, text), models (versions, params), runs, dates
    responses/bundle.parquet   the selected rows, ok and error, one compacted part (schema v1)
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
import os
import shutil
import tempfile
import uuid
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cache import __version__
from cache.methods import provenance
from cache.metrics import Filters
from cache.redact import clean_jpeg, safe_image_path, scrub_json, scrub_table
from cache.schema import ARROW_SCHEMA, SCHEMA_VERSION
from cache.store import Store, atomic_write_bytes, utcnow

BUNDLE_FORMAT = "medlens-bundle"
BUNDLE_VERSION = 1
MANIFEST = "manifest.json"
PART = "responses/bundle.parquet"
class BundleError(ValueError):
    """A bundle that cannot be written, read or trusted (exit code 2); names the file and the fix."""


# -- export ---------------------------------------------------------------------------------------
def export_bundle(store: Store, out: Path, filters: Filters | None = None) -> dict[str, Any]:
    """Write the bundle of the rows matching ``filters`` to ``out``; returns its manifest."""
    con = store.connect()
    where, params = (filters or Filters()).where()
    table = con.sql(f"SELECT * FROM responses {where} ORDER BY created_at, key", params=params).to_arrow_table()
    if table.num_rows == 0:
        raise BundleError(f"{store.root}: no rows match the filters; nothing to export")
    table = scrub_table(table)
    files: dict[str, bytes] = {}
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    files[PART] = buffer.getvalue()
    for sha in sorted(set(table.column("image_sha256").drop_null().to_pylist())):
        if store.thumb_path(sha).is_file():
            try:
                files[f"thumbs/{sha}.jpg"] = clean_jpeg(store.thumb_path(sha).read_bytes())
            except (ValueError, OSError):  # not a readable JPEG: the bundle goes without this thumbnail
                continue
    for run_id in sorted(set(table.column("run_id").drop_null().to_pylist())):
        path = store.runs_dir / f"{run_id}.json"
        if path.is_file() and path.parent == store.runs_dir:
            record = scrub_json(json.loads(path.read_text(encoding="utf-8")))
            files[f"runs/{safe_image_path(run_id)}.json"] = _json_bytes(record)
    if (store.root / "demo.json").is_file():  # still a demo; its counts describe what was exported
        demo = scrub_json(json.loads((store.root / "demo.json").read_text()))
        if filters is not None and _filters_dict(filters):
            images = len(set(table.column("image_sha256").drop_null().to_pylist()))
            demo |= {"images": images, "selection": _filters_dict(filters)}
        files["demo.json"] = _json_bytes(demo)
    con = duckdb.connect()
    con.register("bundle_rows", table)
    files["provenance.json"] = _json_bytes(provenance(con, "bundle_rows") | {"filters": _filters_dict(filters)})
    files["README.txt"] = README.encode("utf-8")
    manifest = {
        "format": BUNDLE_FORMAT, "bundle_version": BUNDLE_VERSION, "schema_version": SCHEMA_VERSION,
        "medlens_version": __version__, "created_at": utcnow().isoformat(),
        "filters": _filters_dict(filters), "rows": table.num_rows,
        "files": [{"path": n, "sha256": hashlib.sha256(d).hexdigest(), "bytes": len(d)} for n, d in sorted(files.items())],
    }  # fmt: skip
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST, _json_bytes(manifest))
        for name, data in sorted(files.items()):
            archive.writestr(name, data, zipfile.ZIP_STORED if name.endswith((".jpg", ".parquet")) else None)
    atomic_write_bytes(Path(out), zipped.getvalue())
    return manifest


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
    if store.root.exists() and source.root.resolve() == store.root.resolve():
        raise BundleError(f"{bundle}: is the store itself; nothing to import")
    con = duckdb.connect()
    incoming = con.sql("SELECT * FROM read_parquet(?, union_by_name=true)", params=[[str(p) for p in parts]]).to_arrow_table()
    con.register("incoming", incoming)
    if store.part_paths():  # the parts holding rows (not those a merged part replaces)
        files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in store.part_paths())
        con.execute("CREATE VIEW target AS SELECT key, status, run_id, created_at "
                    f"FROM read_parquet([{files}], union_by_name=true)")
    else:
        con.register("target", ARROW_SCHEMA.empty_table().select(["key", "status", "run_id", "created_at"]))
    keep = con.sql(IMPORT_SQL).to_arrow_table()
    store.write_part(keep)
    thumbs = runs = 0
    for sha in set(incoming.column("image_sha256").drop_null().to_pylist()):
        src = source.thumb_path(sha)
        if src.is_file() and not store.thumb_path(sha).exists():
            store.write_thumb(sha, src.read_bytes())
            thumbs += 1
    for path in sorted(source.runs_dir.glob("*.json")) if source.runs_dir.is_dir() else []:
        if not (store.runs_dir / path.name).exists():
            atomic_write_bytes(store.runs_dir / path.name, path.read_bytes())
            runs += 1
    added_ok = int(pc.sum(pc.equal(keep.column("status"), "ok")).as_py() or 0)
    return {"rows": incoming.num_rows, "added_ok": added_ok, "added_error": keep.num_rows - added_ok,
            "skipped": incoming.num_rows - keep.num_rows, "thumbs": thumbs, "runs": runs}


# -- open -----------------------------------------------------------------------------------------
def bundle_cache_dir() -> Path:
    """Where opened bundles are extracted: $MEDLENS_BUNDLE_CACHE, else ~/.cache/medlens/bundles."""
    if os.environ.get("MEDLENS_BUNDLE_CACHE"):
        return Path(os.environ["MEDLENS_BUNDLE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "medlens" / "bundles"


def open_store(path: str | os.PathLike[str]) -> Store:
    """A Store for a store folder, or for a bundle .zip extracted once (keyed by the zip's sha256).

    A path that is not a zip file is taken as a store folder (which may not exist yet). Raises
    BundleError for a missing, damaged or tampered .zip.
    """
    path = Path(path)
    if path.is_file() and zipfile.is_zipfile(path):
        digest = _sha256_file(path)
        fallback = Path(tempfile.gettempdir()) / f"medlens-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
        for base in (bundle_cache_dir(), fallback / "bundles"):
            try:
                return Store(_extract(path, base / digest))
            except PermissionError:
                continue
        raise BundleError(f"{path}: no writable folder to extract it into (set MEDLENS_BUNDLE_CACHE)")
    if path.suffix.lower() == ".zip":
        raise BundleError(f"{path}: {'not a zip file' if path.exists() else 'file not found'}")
    return Store(path)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _extract(zip_path: Path, final: Path) -> Path:
    if (final / MANIFEST).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with zipfile.ZipFile(zip_path) as archive:
            manifest = read_manifest(zip_path, archive)
            for entry in manifest["files"]:
                name = entry["path"]
                if PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts or "\\" in name:
                    raise BundleError(f"{zip_path}: unsafe member name {name!r}; refusing the bundle")
                try:
                    data = archive.read(name)
                except KeyError:
                    raise BundleError(f"{zip_path}: {name} is listed in {MANIFEST} but missing") from None
                got = hashlib.sha256(data).hexdigest()
                if got != entry["sha256"]:
                    raise BundleError(f"{zip_path}: {name} has sha256 {got}, {MANIFEST} says {entry['sha256']}; "
                                      "the bundle is damaged or was altered")
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                (staging / name).write_bytes(data)
            (staging / MANIFEST).write_bytes(archive.read(MANIFEST))
        try:
            os.rename(staging, final)
        except OSError:  # another process extracted the same bundle first
            if not (final / MANIFEST).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def read_manifest(zip_path: Path, archive: zipfile.ZipFile) -> dict[str, Any]:
    """The bundle's manifest, checked for format and version."""
    try:
        manifest = json.loads(archive.read(MANIFEST))
    except (KeyError, ValueError):
        raise BundleError(f"{zip_path}: no readable {MANIFEST}; not a MedLens bundle") from None
    if manifest.get("format") != BUNDLE_FORMAT or not isinstance(manifest.get("files"), list):
        raise BundleError(f"{zip_path}: {MANIFEST} is not a {BUNDLE_FORMAT} manifest")
    if int(manifest.get("bundle_version", 0)) > BUNDLE_VERSION:
        raise BundleError(f"{zip_path}: bundle version {manifest['bundle_version']} is newer than this MedLens "
                          f"reads ({BUNDLE_VERSION}); upgrade MedLens")
    return manifest


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
