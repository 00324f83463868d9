"""Command line of the store: ``stats | metrics [--json] | compact | reparse | export | import | report |
methods | readers``."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import duckdb

from cache.bundle import BundleError, open_store
from cache.location import S3Location, StoreLocation, StoreLocationError
from cache.metrics import Filters, group_metrics
from cache.store import Store, StoreBusy, resolve_store
from cache.textsafe import printable, safe_output

#: a row of a MedLens part (a foreign Parquet file under responses/ gives rows without these)
MEDLENS_ROW = "key IS NOT NULL AND status IS NOT NULL"

METRIC_KEYS = (
    "model", "modality", "prompt_id", "n", "answered", "coverage", "accuracy", "accuracy_ci_low",
    "accuracy_ci_high", "accuracy_answered", "sensitivity", "specificity", "tp", "fn", "fp", "tn",
    "uncertain", "refused", "unparseable", "errors",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cache", description="The MedLens response store.")
    parser.add_argument("--store", help="store directory or s3://bucket/prefix (default: $MEDLENS_STORE or data/store)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("stats", help="rows, parts, models, runs, size")
    metrics = sub.add_parser("metrics", help="accuracy, coverage, sensitivity, specificity per group")
    metrics.add_argument("--json", action="store_true", help="print a JSON list (one object per group)")
    _filter_args(metrics)
    sub.add_parser("compact", help="merge all parts into one (atomic swap)")
    reparse = sub.add_parser("reparse", help="re-read every stored answer with the current parser (no model call)")
    reparse.add_argument("--dry-run", action="store_true", help="count what would change; write nothing")
    reparse.add_argument("--batch-rows", type=int, default=100_000, help="answers per DuckDB batch")
    reparse.add_argument("--workers", type=int, help="parser processes (default: one per core, at most 4)")
    reparse.add_argument("--no-progress", action="store_true")
    export = sub.add_parser("export", help="write a self-contained bundle (.zip) of the selected rows")
    export.add_argument("out", type=Path, metavar="OUT.zip")
    _filter_args(export)
    imp = sub.add_parser("import", help="merge a bundle (.zip or folder) into the store, deduplicated by key")
    imp.add_argument("bundle", type=Path, metavar="BUNDLE")
    report = sub.add_parser("report", help="one self-contained HTML file: metrics, confusion matrices, gallery")
    report.add_argument("out", type=Path, metavar="OUT.html")
    report.add_argument("--gallery", type=int, default=200, metavar="N", help="at most N images in the gallery")
    _filter_args(report)
    methods = sub.add_parser("methods", help="the methods-section paragraph for a paper")
    _filter_args(methods)
    readers = sub.add_parser("readers", help="reader study: per-reader metrics, agreement, ROC and MRMC tables")
    readers.add_argument("--json", action="store_true", help="print one JSON object")
    readers.add_argument("--modality", action="append", default=[], help="only this modality (repeatable)")
    return parser


def _filter_args(parser: argparse.ArgumentParser) -> None:
    for column in ("model", "modality", "prompt"):
        parser.add_argument(f"--{column}", action="append", default=[], help=f"only this {column} (repeatable)")


def _filters(args: argparse.Namespace) -> Filters:
    return Filters(model=args.model, modality=args.modality, prompt_id=args.prompt)


def main(argv: list[str] | None = None) -> int:
    with safe_output():  # nothing printed carries a secret or a terminal escape code
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    # --store is accepted before or after the sub-command
    args, rest = parser.parse_known_args(argv)
    if rest:
        extra = argparse.ArgumentParser(add_help=False)
        extra.add_argument("--store")
        more, unknown = extra.parse_known_args(rest)
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        args.store = more.store or args.store
    try:
        root = resolve_store(args.store)
    except StoreLocationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if isinstance(root, Path) and args.command != "import" and not root.exists():
        return _missing(root)
    writes = ("import", "compact", "reparse")
    if isinstance(root, Path) and args.command in writes and root.is_file():
        print(f"error: {root} is a file; `{args.command}` needs a store folder (--store DIR)", file=sys.stderr)
        return 2
    handler = {"stats": cmd_stats, "metrics": cmd_metrics, "compact": cmd_compact, "export": cmd_export,
               "import": cmd_import, "report": cmd_report, "methods": cmd_methods,
               "reparse": cmd_reparse, "readers": cmd_readers}[args.command]
    try:  # a .zip given as --store is a bundle: opened (extracted once, verified) read-only
        store = Store(root) if args.command in writes else open_store(root)
        if store.remote and args.command != "import" and not store.exists():
            return _missing(root)
        code = handler(store, args)
        sys.stdout.flush()  # a closed pipe shows up here, inside the boundary, not at exit
        return code
    except (BundleError, StoreLocationError) as exc:  # e.g. `import s3://...`: a bundle is a local file
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StoreBusy as exc:  # another process compacts or imports: it is named
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `python -m cache ... | head`: the reader left; stop quietly (Python docs)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except (duckdb.Error, OSError) as exc:  # the CLI boundary: one readable line, no traceback
        if os.environ.get("MEDLENS_DEBUG"):
            raise
        foreign = _foreign_parts(root)
        if foreign:  # one line naming the file that broke the query, and what to do
            path, reason = foreign[0]
            print(f"error: store {root}: {path} is {reason}; move it out of {_inside(root, 'responses')} "
                  "and run the command again", file=sys.stderr)
            return 1
        print(f"error: {describe_store_error(exc, root)}", file=sys.stderr)
        return 1


def _missing(root: StoreLocation) -> int:
    print(f"error: store {root} does not exist; run `python -m ingest run ... --store {root}` "
          "first, or pass --store DIR (or s3://bucket/prefix)", file=sys.stderr)
    return 2


def _inside(root: StoreLocation, name: str) -> str:
    """How a folder of the store is named in a message (a path, or an s3:// URL)."""
    return f"{root}/{name}" if isinstance(root, S3Location) else str(root / name)


def _foreign_parts(root: StoreLocation) -> list[tuple[str, str]]:
    """The foreign files among the store's parts, when they can be listed at all."""
    try:
        return Store(root).foreign_parts() if isinstance(root, S3Location) or root.is_dir() else []
    except OSError:
        return []


_PARQUET_IN_MESSAGE = re.compile(r"""([^'"\s*]+\.parquet)""")


def describe_store_error(exc: BaseException, root: StoreLocation) -> str:
    """One line naming the store; for an unreadable part, which file to move out of the way."""
    lines = str(exc).strip().splitlines()
    message = lines[0] if lines else type(exc).__name__
    text = f"store {root}: {message}"
    if isinstance(exc, duckdb.IOException | duckdb.InvalidInputException):
        found = _PARQUET_IN_MESSAGE.search(message)
        if found:
            text += (f"; if {Path(found.group(1)).name} is damaged or not a MedLens part, move it out of "
                     f"{_inside(root, 'responses')} (e.g. into {_inside(root, 'quarantine')}) and run the "
                     "command again")
    return text


def cmd_stats(store: Store, args: argparse.Namespace) -> int:
    foreign = store.foreign_parts()
    named = {f for f, _ in foreign}
    sizes = {n: b for n, b in store.part_sizes().items() if _inside(store.root, n) not in named}
    con = store.connect()
    total, ok, errors = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE status='ok'), count(*) FILTER (WHERE status='error') "
        f"FROM responses WHERE {MEDLENS_ROW}").fetchone()
    size, parts = sum(sizes.values()), sizes
    print(f"store      {store.root}")
    print(f"rows       {total} ({ok} ok, {errors} error) in {len(parts)} part(s), {size / 1e6:.1f} MB")
    print(f"results    {con.execute('SELECT count(*) FROM results').fetchone()[0]} keys answered; "
          f"{con.execute('SELECT count(*) FROM failures').fetchone()[0]} keys with open errors")
    thumbs = sum(n.endswith(".jpg") for n in store.storage.list("thumbs"))
    print(f"thumbnails {thumbs}; runs {len(store.runs())}")
    rows = con.execute(
        "SELECT model, count(*) FILTER (WHERE status='ok'), count(*) FILTER (WHERE status='error'), "
        f"min(created_at), max(created_at) FROM responses WHERE {MEDLENS_ROW} GROUP BY model ORDER BY model").fetchall()
    for model, n_ok, n_err, first, last in rows:
        dates = f"{first:%Y-%m-%d} .. {last:%Y-%m-%d}" if first and last else "no dates"
        print(f"  {printable(str(model), keep_newlines=False):<40} ok {n_ok:>7}  error {n_err:>6}  {dates}")
    if len(parts) > 50:
        print(f"hint: {len(parts)} parts slow queries down; run `python -m cache compact`")
    for path, reason in foreign:  # a foreign file is named; its rows were left out of the counts above
        print(f"warning: {path} is {reason}; its rows are not counted (move it out of "
              f"{_inside(store.root, 'responses')})", file=sys.stderr)
    return 0


def cmd_metrics(store: Store, args: argparse.Namespace) -> int:
    groups = group_metrics(store.connect(), _filters(args))
    for line in mixed_settings_warnings(groups):
        print(line, file=sys.stderr)
    if args.json:
        print(json.dumps([{k: g[k] for k in METRIC_KEYS} for g in groups], indent=2))
        return 0
    print(format_metrics_table(groups))
    return 0


def mixed_settings_warnings(groups: list[dict]) -> list[str]:
    """One line per group whose rows mix generation parameters (params_json) or prompt versions."""
    lines = []
    for g in groups:
        params, prompts = g.get("param_sets") or 0, g.get("prompt_versions") or 0
        if params <= 1 and prompts <= 1:
            continue
        what = []
        if params > 1:
            what.append(f"{params} generation settings (params_json)")
        if prompts > 1:
            what.append(f"{prompts} prompt versions (prompt_sha256)")
        lines.append(f"warning: {g['model']} / {g['modality']} / {g['prompt_id']} mixes {' and '.join(what)} — "
                     "its rows come from runs with different parameters; use a separate --store per setting")
    return lines


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def format_metrics_table(groups: list[dict]) -> str:
    header = (f"{'model':<32} {'modality':<12} {'prompt':<8} {'n':>5} {'cover':>6} "
              f"{'accuracy [95% CI]':>24} {'acc.ans':>7} {'sens':>6} {'spec':>6} "
              f"{'unc':>4} {'ref':>4} {'unp':>4} {'err':>4}")
    lines = [header, "-" * len(header)]
    for g in groups:
        acc = f"{_pct(g['accuracy'])} [{_pct(g['accuracy_ci_low'])}, {_pct(g['accuracy_ci_high'])}]"
        lines.append(
            f"{g['model']:<32} {g['modality']:<12} {g['prompt_id']:<8} {g['n']:>5} "
            f"{_pct(g['coverage']):>6} {acc:>24} {_pct(g['accuracy_answered']):>7} "
            f"{_pct(g['sensitivity']):>6} {_pct(g['specificity']):>6} {g['uncertain']:>4} "
            f"{g['refused']:>4} {g['unparseable']:>4} {g['errors']:>4}")
    if not groups:
        lines.append("(no responses yet)")
    return "\n".join(lines)


def cmd_compact(store: Store, args: argparse.Namespace) -> int:
    parts, rows = store.compact()
    print(f"compacted {parts} part(s) into 1: {rows} rows")
    return 0


def cmd_reparse(store: Store, args: argparse.Namespace) -> int:
    from cache.reparse import format_result, reparse

    if args.batch_rows < 1 or (args.workers is not None and args.workers < 1):
        print("error: --batch-rows and --workers must be at least 1", file=sys.stderr)
        return 2
    if not args.dry_run:
        with store.owner("cache reparse") as owner:
            store.recover(owner)  # a dead run's journal first: its answers are read too
    result = reparse(store, dry_run=args.dry_run, rows_per_batch=args.batch_rows, workers=args.workers,
                     progress=not args.no_progress)
    print(format_result(result))
    return 0


def cmd_export(store: Store, args: argparse.Namespace) -> int:
    from cache.bundle import export_bundle

    manifest = export_bundle(store, args.out, _filters(args))
    thumbs = sum(f["path"].startswith("thumbs/") for f in manifest["files"])
    runs = sum(f["path"].startswith("runs/") for f in manifest["files"])
    size = args.out.stat().st_size
    shown = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"
    print(f"wrote {args.out}: {manifest['rows']} rows, {thumbs} thumbnails, {runs} run record(s), {shown} "
          "(absolute paths reduced to file names, key-like values redacted)")
    return 0


def cmd_import(store: Store, args: argparse.Namespace) -> int:
    from cache.bundle import import_bundle
    from cache.leases import layout_lease

    with store.owner("cache import") as owner, layout_lease(store.storage, owner, "`cache import`", store.root):
        store.fold_dead_journals(owner)
        counts = import_bundle(args.bundle, store)
    print(f"imported {counts['added_ok'] + counts['added_error']} row(s) into {store.root} "
          f"({counts['added_ok']} ok, {counts['added_error']} error); skipped {counts['skipped']} already "
          f"answered or present; {counts['thumbs']} thumbnail(s), {counts['runs']} run record(s), "
          f"{counts['readings']} reading(s), {counts['grades']} grade(s) added")
    return 0


def cmd_report(store: Store, args: argparse.Namespace) -> int:
    from cache.report import write_report

    summary = write_report(store, args.out, _filters(args), gallery_limit=args.gallery)
    print(f"wrote {args.out}: {summary['groups']} metric group(s), {summary['matrices']} confusion matrices, "
          f"{summary['gallery']} of {summary['images']} image(s) in the gallery; opens offline in any browser")
    return 0


def cmd_methods(store: Store, args: argparse.Namespace) -> int:
    from cache.methods import methods_text

    print(methods_text(store.connect(), _filters(args), runs=store.runs()))
    return 0


def cmd_readers(store: Store, args: argparse.Namespace) -> int:
    from cache.readers_report import format_readers_report, readers_report

    report = readers_report(store.connect(), Filters(modality=args.modality))
    print(json.dumps(report, indent=2) if args.json else format_readers_report(report).rstrip("\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
