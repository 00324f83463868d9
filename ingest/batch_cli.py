"""Command line of the provider batch APIs: ``ingest run --batch [--wait]`` and ``ingest batches``.

Exit codes as for ``run`` (0 done, 2 bad usage, 1 a provider refused a batch step: the ledger keeps
the state and the same command resumes), plus 3: ``--wait`` ran out of time with batches still
running (their state is kept; ``python -m ingest batches --collect`` collects them later).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cache.store import Store, resolve_store

WAIT_TIMEOUT_EXIT = 3


def add_run_args(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--batch",
        action="store_true",
        help="send the calls through the provider's batch API (half price, answers within 24 h)",
    )
    run.add_argument("--wait", action="store_true", help="with --batch: poll until every batch is collected")
    run.add_argument(
        "--wait-timeout",
        type=float,
        default=86_400.0,
        metavar="S",
        help="with --wait: give up waiting after S seconds, keeping the state (default 24 h)",
    )
    run.add_argument("--poll-interval", type=float, default=60.0, metavar="S",
                     help="with --wait: seconds between polls (default 60)")  # fmt: skip


def add_batches_parser(sub: Any) -> None:
    batches = sub.add_parser("batches", help="list the store's provider batches; poll, collect, cancel them")
    batches.add_argument("--store", help="store directory (default: $MEDLENS_STORE or data/store)")
    batches.add_argument(
        "--collect", action="store_true", help="write finished batches' answers into the store"
    )
    batches.add_argument(
        "--cancel", metavar="LEDGER_ID", help="cancel one batch (its unanswered calls stay open)"
    )


def check_batch_capable(providers: list[Any]) -> None:
    """--batch only for providers with a batch API (their registry entry says so)."""
    from ingest.providers.base import SpecError

    lacking = [p.spec.raw for p in providers if not p.entry.capabilities.batch]
    if lacking:
        able = ", ".join(e.form for e in _entries() if e.capabilities.batch)
        raise SpecError(f"--batch: {', '.join(lacking)} has no batch API (batch providers: {able}); "
                        "run those models without --batch")  # fmt: skip


def _entries() -> list[Any]:
    from ingest.providers.registry import entries

    return entries()


def check_options(args: argparse.Namespace) -> None:
    from ingest.providers.base import SpecError

    if args.wait and not args.batch:
        raise SpecError("--wait goes with --batch (an online run always waits for its calls)")
    if args.wait_timeout <= 0 or args.poll_interval <= 0:
        raise SpecError("--wait-timeout and --poll-interval must be positive")


def format_submitted(batches: list[dict[str, Any]]) -> list[str]:
    calls = sum(b["requests"] for b in batches)
    lines = [
        f"{calls} call(s) in {len(batches)} open batch(es) of these models (ledger id, model, batch id):"
    ]
    lines += [
        f"    {b['ledger_id']}  {b['model']}  {b['batch_id']}  {b['requests']} call(s)" for b in batches
    ]
    return lines


def after_run(store: Store, prices: Any, result: Any, args: argparse.Namespace) -> int:
    """Print the submitted batches; with --wait, poll and collect them."""
    from ingest.batch_collect import wait

    if result.batches:
        print("\n".join(format_submitted(result.batches)))
    if result.interrupted:
        return 130
    if not args.wait or not result.batches:
        if result.batches:
            print("collect them when they finish: python -m ingest batches --collect" + _store_flag(store))
        return 0
    ids = {b["ledger_id"] for b in result.batches}
    progress = wait(store, prices, ids, timeout_s=args.wait_timeout, poll_s=args.poll_interval)
    for entry, rows in progress.collected:
        print(f"collected {entry.ledger_id} ({entry.outcome}): {rows} row(s)")
    for problem in progress.problems:
        print(f"error: {problem}; the batch state is kept", file=sys.stderr)
    if progress.problems:
        return 1
    if progress.open:
        waiting = ", ".join(f"{e.ledger_id} ({e.provider_state or e.state})" for e in progress.open)
        print(
            f"still running after {args.wait_timeout:g} s: {waiting}; their state is kept in {store.local_dir}/batches. "
            "Collect them later: python -m ingest batches --collect" + _store_flag(store),
            file=sys.stderr,
        )
        return WAIT_TIMEOUT_EXIT
    return 0


def _store_flag(store: Store) -> str:
    return f" --store {store.root}"


def format_entries(entries: list[Any]) -> str:
    header = f"{'ledger id':<26} {'model':<28} {'state':<10} {'provider state':<22} {'calls':>6} {'rows':>6}  batch id"
    lines = [header]
    for e in entries:
        state = e.state + ("*" if e.pending else "")
        counts = (
            "/".join(str(e.counts.get(k, "-")) for k in ("completed", "failed", "total")) if e.counts else ""
        )
        provider = (e.provider_state or "-") + (f" {counts}" if counts else "")
        lines.append(f"{e.ledger_id:<26} {e.model:<28} {state:<10} {provider:<22} {e.requests:>6} "
                     f"{e.rows_collected:>6}  {e.batch_id or '-'}")  # fmt: skip
        if e.message:
            lines.append(f"    {e.message}")
    if any(e.pending for e in entries):
        lines.append("* a step was cut short; `ingest run --batch` with the same model resumes it")
    return "\n".join(lines)


def cmd_batches(args: argparse.Namespace) -> int:
    from ingest import batch_ledger as ledger
    from ingest.batch_collect import cancel, client_for, poll_once
    from ingest.pricing import PriceTable

    store = Store(resolve_store(args.store))
    if args.cancel:
        entry = ledger.load(store.local_dir, args.cancel)
        client = client_for(entry)
        try:
            entry = cancel(store.local_dir, entry, client)
        finally:
            client.close()
        print(f"cancel requested for {entry.ledger_id}: {entry.provider_state or entry.state}")
    progress = poll_once(store, PriceTable.load(), collect_finished=args.collect)
    for entry, rows in progress.collected:
        print(f"collected {entry.ledger_id} ({entry.outcome}): {rows} row(s)")
    entries = ledger.entries(store.local_dir)
    print(format_entries(entries) if entries else f"no batches in {store.local_dir}")
    for problem in progress.problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if progress.problems else 0
