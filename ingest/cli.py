"""Command line of the pipeline (DESIGN: command-line contract).

Exit codes: 0 done (error rows included: they are in the store and in the summary); 2 bad usage or
bad input file (the message names the file, the line and the fix); 1 unexpected failure;
130 interrupted (what was done is saved; the same command resumes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from cache.redact import scrub_secrets
from cache.store import Store, resolve_store
from cache.textsafe import safe_output
from ingest import batch_cli

USAGE_ERRORS: tuple[type[BaseException], ...] = ()


def _usage_errors() -> tuple[type[BaseException], ...]:
    from cache.location import StoreLocationError
    from ingest.batch_ledger import LedgerError
    from ingest.importer import ImportFileError
    from ingest.manifest import ManifestError
    from ingest.prompts import PromptError
    from ingest.providers.base import MissingCredentials, SpecError

    return (ManifestError, PromptError, SpecError, MissingCredentials, ImportFileError, LedgerError,
            StoreLocationError)


def _provider_error() -> type[BaseException]:
    from ingest.providers.base import ProviderError

    return ProviderError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ingest", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    scan = sub.add_parser("scan", help="scan DATASET_DIR/<modality>/<real|synthetic>/[<source>/] into a manifest")
    scan.add_argument("dataset_dir", type=Path)
    scan.add_argument("--out", type=Path, required=True, help="manifest CSV to write")
    scan.add_argument("--no-audit", action="store_true", help="skip the confound audit")

    run = sub.add_parser("run", help="send every image to each model and store the answers")
    run.add_argument("--manifest", type=Path, required=True)
    run.add_argument("--model", dest="models", action="append", required=True, metavar="SPEC",
                     help="a model spec, e.g. openai:gpt-4o (repeatable; `python -m ingest models` lists the forms)")
    run.add_argument("--prompt", default="paper", help="prompt id (python -m ingest prompts) or a .txt file")
    _store_arg(run)
    run.add_argument("--concurrency", type=int, help="calls in flight per model (default: provider's)")
    run.add_argument("--rpm", type=float, help="requests per minute per model")
    run.add_argument("--repeats", type=int, default=1, help="answers per image and model (default 1)")
    run.add_argument("--limit", type=int, help="use only the first N manifest rows")
    run.add_argument("--dry-run", action="store_true", help="print the calls still to make and their cost")
    run.add_argument("--budget", type=float, metavar="USD", help="stop scheduling calls past this spend")
    run.add_argument("--wait-claims", action="store_true",
                     help="wait for keys another run on the store is calling (default: skip them)")
    _prep_args(run)
    run.add_argument("--detail", choices=("high", "low", "auto"), default="high", help="OpenAI image detail")
    run.add_argument("--temperature", type=float, default=0.0)
    run.add_argument("--max-tokens", type=int, default=1024)
    run.add_argument("--timeout", type=float, default=120.0, help="seconds per call")
    run.add_argument("--max-attempts", type=int, default=6, help="attempts per call, retries included")
    run.add_argument("--max-retry-wait", type=float, default=120.0,
                     help="longest wait honoured for one Retry-After / backoff (s)")
    run.add_argument("--compat-key-env", metavar="NAME",
                     help="env var holding the key for compat: servers (default MEDLENS_COMPAT_API_KEY)")
    run.add_argument("--no-progress", action="store_true")
    batch_cli.add_run_args(run)

    judge = sub.add_parser("judge", help="a judge model reads stored answers (text only) into labels")
    judge.add_argument("--model", dest="models", action="append", required=True, metavar="SPEC",
                       help="the judge model, e.g. openai:gpt-4o-mini (repeatable)")
    judge.add_argument("--only", choices=("needs_review", "all"), default="needs_review",
                       help="answers the parser could not decide (default), or every parser-read answer")
    judge.add_argument("--prompt", default="judge", help="judge prompt id or .txt file (header 'task: judge')")
    judge.add_argument("--judged-model", action="append", default=[], metavar="SPEC",
                       help="only answers of this model (repeatable)")
    judge.add_argument("--modality", action="append", default=[], help="only this modality (repeatable)")
    _store_arg(judge)
    for name, kind, default, text in (("--concurrency", int, None, "calls in flight per judge model"),
                                      ("--rpm", float, None, "requests per minute per judge model"),
                                      ("--limit", int, None, "judge at most N answers"),
                                      ("--budget", float, None, "stop scheduling calls past this spend (USD)"),
                                      ("--temperature", float, 0.0, None), ("--max-tokens", int, 300, None),
                                      ("--timeout", float, 120.0, "seconds per call"),
                                      ("--max-attempts", int, 6, "attempts per call, retries included"),
                                      ("--max-retry-wait", float, 120.0, "longest Retry-After / backoff wait (s)")):
        judge.add_argument(name, type=kind, default=default, help=text)
    judge.add_argument("--dry-run", action="store_true", help="print the calls still to make and their cost")
    judge.add_argument("--wait-claims", action="store_true", help="wait for keys another run is calling")
    judge.add_argument("--compat-key-env", metavar="NAME", help="env var holding the key for compat: servers")
    judge.add_argument("--no-progress", action="store_true")
    judge.set_defaults(detail="high")

    imp = sub.add_parser("import", help="store answers collected by hand (CSV or JSONL)")
    imp.add_argument("answers", type=Path)
    imp.add_argument("--manifest", type=Path, required=True)
    imp.add_argument("--model", required=True, help="a name for the model, e.g. chatgpt-web-gpt-4v")
    imp.add_argument("--prompt", default="paper")
    _store_arg(imp)
    _prep_args(imp)

    batch_cli.add_batches_parser(sub)
    sub.add_parser("models", help="providers, priced models and whether credentials are set")
    sub.add_parser("prompts", help="list prompt files with their sha256")
    return parser


def _prep_args(parser: argparse.ArgumentParser) -> None:
    """Image preparation: part of each image's identity, so `import` takes the same options as the
    `run` whose answers it should pair with."""
    parser.add_argument("--max-side", type=int, default=1024, help="longest side of sent images (px)")
    parser.add_argument("--image-format", choices=("png", "jpeg"), default="png")
    parser.add_argument("--square", action="store_true",
                        help="pad every image to a square and resize to exactly --max-side px, so the pixel "
                             "size sent cannot reveal real vs synthetic (see the confound audit)")


def _prep_options(args: argparse.Namespace):
    from ingest.images import PrepOptions
    from ingest.providers.base import SpecError

    try:
        return PrepOptions(image_format=args.image_format, max_side=args.max_side, square=args.square)
    except ValueError as exc:
        raise SpecError(f"--max-side / --image-format: {exc}") from None


def _store_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", help="store directory or s3://bucket/prefix (default: $MEDLENS_STORE or data/store)")


def main(argv: list[str] | None = None) -> int:
    with safe_output():  # nothing printed carries a secret or a terminal escape code (cache.textsafe)
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"scan": cmd_scan, "run": cmd_run, "judge": cmd_judge, "import": cmd_import, "batches": batch_cli.cmd_batches,
               "models": cmd_models, "prompts": cmd_prompts}[args.command]
    try:
        return handler(args)
    except _usage_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except _provider_error() as exc:  # a batch step the provider refused; the ledger keeps the state
        print(f"error: {exc}; the batch state is kept, the same command resumes", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the CLI boundary: one readable line, traceback on request
        if os.environ.get("MEDLENS_DEBUG"):
            raise
        print(f"unexpected failure: {type(exc).__name__}: {scrub_secrets(str(exc))} "
              "(set MEDLENS_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


def cmd_scan(args: argparse.Namespace) -> int:
    from ingest.audit import confound_audit, format_audit
    from ingest.manifest import ManifestError, count_table, scan_dataset, write_manifest

    if not args.dataset_dir.is_dir():
        raise ManifestError(f"{args.dataset_dir}: not a folder; give DATASET_DIR/<modality>/<real|synthetic>/...")
    rows = scan_dataset(args.dataset_dir)
    write_manifest(rows, args.out)
    print(f"wrote {args.out}: {len(rows)} images")
    print(format_counts(count_table(rows)))
    if not args.no_audit:
        audit = confound_audit(rows, args.dataset_dir)
        audit_path = args.out.with_suffix(".audit.json")
        audit_path.write_text(json.dumps(audit, indent=2, default=str))
        print()
        print(format_audit(audit))
        print(f"(audit saved to {audit_path})")
    return 0


def format_counts(table: list[tuple]) -> str:
    lines = [f"{'modality':<14} {'truth':<10} {'source':<28} {'images':>6}"]
    lines += [f"{m:<14} {t:<10} {s or '-':<28} {n:>6}" for m, t, s, n in table]
    return "\n".join(lines)


def _provider_options(args: argparse.Namespace):
    from ingest.providers.base import ProviderOptions

    return ProviderOptions(
        temperature=args.temperature, max_tokens=args.max_tokens, detail=args.detail,
        timeout_s=args.timeout, max_attempts=args.max_attempts,
        max_retry_wait_s=args.max_retry_wait, concurrency=args.concurrency, rpm=args.rpm,
        extra={"api_key_env": args.compat_key_env} if args.compat_key_env else {},
    )


def cmd_run(args: argparse.Namespace) -> int:
    from ingest.audit import confound_audit
    from ingest.manifest import read_manifest
    from ingest.pricing import BatchPrices, PriceTable
    from ingest.prompts import load_prompt
    from ingest.providers.base import SpecError
    from ingest.providers.registry import create_provider, parse_spec
    from ingest.runner import Runner, run_with_signals

    for name in ("repeats", "limit", "concurrency", "max_side", "max_tokens", "max_attempts"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SpecError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    for name in ("rpm", "budget", "timeout"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise SpecError(f"--{name.replace('_', '-')} must be positive, got {value}")
    batch_cli.check_options(args)
    store = Store(resolve_store(args.store))  # a malformed --store fails before any file is read
    prompt = load_prompt(args.prompt)
    rows = read_manifest(args.manifest)[: args.limit]
    options = _provider_options(args)
    specs = list({spec.raw: spec for spec in (parse_spec(s) for s in args.models)}.values())
    for warning in dict.fromkeys(w for spec in specs for w in spec.warnings):
        print(f"warning: {warning}", file=sys.stderr)
    providers = [create_provider(spec, options) for spec in specs]
    if not args.dry_run:
        for provider in providers:  # before any call: a missing key stops the run here
            provider.check_credentials()
    try:
        prices = PriceTable.load()
    except ValueError as exc:  # a malformed price table is bad input: exit 2 naming file and line
        raise SpecError(str(exc)) from None
    if args.batch:  # batch calls cost the batch price: --dry-run and --budget count that
        batch_cli.check_batch_capable(providers)
        prices = BatchPrices(prices)
    if args.budget is not None:
        unpriced = [p.spec.raw for p in providers if not p.local and prices.cost(p.spec, 1, 1) is None]
        if unpriced:
            raise SpecError(f"--budget cannot be kept for unpriced model(s) {', '.join(unpriced)}: add them "
                            "to data/prices.csv (or $MEDLENS_PRICES), or run without --budget")
    manifest_dir = args.manifest.resolve().parent
    meta = {"manifest": args.manifest.name, "images": len(rows), "command": "ingest run", "batch": args.batch}

    def audit() -> dict:  # only when there are calls to make: a cached re-run opens no image file
        return confound_audit(rows, manifest_dir, max_files_per_cell=200, max_side=args.max_side,
                              square=args.square)
    runner = Runner(
        store=store, rows=rows, manifest_dir=manifest_dir, providers=providers, prompt=prompt,
        prep=_prep_options(args),
        repeats=args.repeats, budget_usd=args.budget, prices=prices,
        progress=not args.no_progress, run_meta=meta, wait_claims=args.wait_claims,
        batch=_submit_planned() if args.batch else None, audit=None if args.dry_run else audit,
    )
    result = run_with_signals(runner, dry_run=args.dry_run)
    print(format_summary(result, store))
    if result.disk_full and "kept in" in result.disk_full:
        return 1
    if args.batch and not args.dry_run:
        return batch_cli.after_run(store, prices.table, result, args)
    return 130 if result.interrupted else 0


def cmd_judge(args: argparse.Namespace) -> int:
    from cache.filters import Filters
    from cache.review import judge_agreement
    from ingest.images import PrepOptions
    from ingest.judge import JudgeRunner
    from ingest.pricing import PriceTable
    from ingest.prompts import load_prompt
    from ingest.providers.base import SpecError
    from ingest.providers.registry import create_provider, parse_spec
    from ingest.runner import run_with_signals

    for name in ("limit", "concurrency", "max_tokens", "max_attempts"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SpecError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    for name in ("rpm", "budget", "timeout"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise SpecError(f"--{name.replace('_', '-')} must be positive, got {value}")
    specs = list({spec.raw: spec for spec in (parse_spec(s) for s in args.models)}.values())
    providers = [create_provider(spec, _provider_options(args)) for spec in specs]
    if not args.dry_run:
        for provider in providers:
            provider.check_credentials()
    try:
        prices = PriceTable.load()
    except ValueError as exc:
        raise SpecError(str(exc)) from None
    if args.budget is not None and any(prices.cost(p.spec, 1, 1) is None for p in providers):
        raise SpecError("--budget cannot be kept for an unpriced judge model: add it to data/prices.csv")
    store = Store(resolve_store(args.store))
    filters = Filters(model=args.judged_model, modality=args.modality)
    runner = JudgeRunner(
        store=store, providers=providers, prompt=load_prompt(args.prompt), prep=PrepOptions(),
        budget_usd=args.budget, prices=prices, progress=not args.no_progress, wait_claims=args.wait_claims,
        only=args.only, filters=filters, limit=args.limit,
        run_meta={"command": "ingest judge", "only": args.only, "filters": filters.as_dict()},
    )
    result = run_with_signals(runner, dry_run=args.dry_run)
    print(format_summary(result, store))
    if not args.dry_run:
        for row in judge_agreement(store.connect(), filters):
            kappa = "-" if row["kappa"] is None else f"{row['kappa']:.3f}"
            print(f"parser vs {row['judge_model']} on {row['model']}: {row['agree']} of {row['judged']} agree "
                  f"({100 * row['agreement']:.1f}%), Cohen's kappa {kappa}; {row['disagreements']} go to review")
    return 130 if result.interrupted else 0


def _submit_planned():
    from ingest.batch import submit_planned  # imported only for --batch

    return submit_planned


def format_summary(result, store: Store) -> str:
    lines = []
    if result.dry_run:
        lines.append(f"dry run: nothing was called. Store: {store.root}")
        lines.append(f"{'model':<40} {'to call':>8} {'cached':>8} {'est. cost':>12}")
        for name, t in result.tallies.items():
            est = "unpriced" if t.estimate_usd is None else f"${t.estimate_usd:,.4f}"
            lines.append(f"{name:<40} {t.pending:>8} {t.cached:>8} {est:>12}")
        total = [t.estimate_usd for t in result.tallies.values()]
        if all(v is not None for v in total):
            lines.append(f"estimated total: ${sum(total):,.4f} (prices from data/prices.csv; check them)")
    else:
        lines.append(f"run {result.run_id} -> {store.root}")
        lines.append(f"{'model':<40} {'called':>7} {'ok':>6} {'errors':>7} {'cached':>7} {'cost':>10}  labels")
        for name, t in result.tallies.items():
            errors = sum(t.errors.values())
            labels = ", ".join(f"{k} {v}" for k, v in sorted(t.labels.items()))
            cost = f"${t.cost_usd:.4f}" if t.priced else "unpriced"
            lines.append(f"{name:<40} {t.ok + errors:>7} {t.ok:>6} {errors:>7} {t.cached:>7} "
                         f"{cost:>10}  {labels}")
            for etype, count in sorted(t.errors.items()):
                lines.append(f"    error {etype}: {count}")
    lines += [f"warning: {w}" for w in result.warnings]
    if result.image_errors:
        lines.append(f"{len(result.image_errors)} image(s) could not be read:")
        lines += [f"    {m}" for m in result.image_errors[:20]]
    claimed = sum(t.skipped_claimed for t in result.tallies.values())
    if claimed:
        holders = "; ".join(h.describe() for h in result.claimed_by.values())
        lines.append(f"skipped {claimed} call(s) that another run is making ({holders}): nothing is paid "
                     "twice; run again when it finishes, or pass --wait-claims to wait for them")
    if result.disk_full:
        lines.append(f"disk full: {result.disk_full}")
    if result.budget_stopped:
        skipped = sum(t.skipped_budget for t in result.tallies.values())
        lines.append(f"budget reached: {skipped} call(s) not made; raise --budget and run again to finish")
    if result.interrupted:
        lines.append("interrupted: everything answered so far is saved; run the same command again to "
                     "resume (answered calls are skipped, never paid twice)")
    return "\n".join(lines)


def cmd_import(args: argparse.Namespace) -> int:
    from ingest.importer import build_import_rows, import_answers, read_answers
    from ingest.items import ImageCache, identify_images
    from ingest.manifest import read_manifest
    from ingest.prompts import load_prompt

    store = Store(resolve_store(args.store))  # a malformed --store fails before any file is read
    prompt = load_prompt(args.prompt)
    answers = read_answers(args.answers)
    rows = read_manifest(args.manifest)
    images = ImageCache(_prep_options(args), store)
    items = asyncio.run(identify_images(rows, args.manifest.resolve().parent, images, progress=False))
    new_rows = build_import_rows(answers, args.answers, items, f"import:{args.model}", prompt)
    with store.owner("ingest import") as owner:
        store.recover(owner)  # a dead run's journal first, so its answers count as present
        added, present = import_answers(store, new_rows)
    print(f"imported {added} answer(s) for import:{args.model} into {store.root}"
          + (f"; {present} already present" if present else ""))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from ingest.pricing import PriceTable
    from ingest.providers.registry import entries

    print(f"{'provider':<10} {'credentials':<44} {'spec':<28} summary")
    for entry in entries():
        names = entry.keys.envs
        if names:
            found = [e for e in names if os.environ.get(e)]
            cred = f"{found[0]} is set" if found else f"missing: set {' or '.join(names)}"
        else:
            cred = "none needed"
        if entry.notes:
            cred += f" ({entry.notes})"
        can = [name for name, on in vars(entry.capabilities).items() if on]
        summary = entry.summary + (f" [{', '.join(can)}]" if can else "")
        print(f"{entry.prefix:<10} {cred:<44} {entry.form:<28} {summary}")
    table = PriceTable.load()
    print("\npriced models (USD per million tokens; edit data/prices.csv):")
    for line in table.describe():
        print(f"  {line}")
    return 0


def cmd_prompts(args: argparse.Namespace) -> int:
    from ingest.prompts import list_prompts

    for prompt in list_prompts():
        kind = "json" if prompt.structured else "free text"
        print(f"{prompt.id:<10} v{prompt.version}  {prompt.sha256}  {kind:<9}  {prompt.description}")
    return 0
