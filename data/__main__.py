"""``python -m data fetch-samples | demo``: public sample images and the demo store.

Exit codes: 0 done (also when the network was unavailable: the command continues with what it has
and says so in one line); 2 bad usage, a malformed registry, or a file whose sha256 does not match
the registry (the message names the file and both hashes); 1 unexpected failure.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from data.samples import DEFAULT_DEST, DEFAULT_TIMEOUT_S, REGISTRY


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data", description="Public sample images and the demo store.")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch-samples", help="download (or copy from a mirror) the registry's samples")
    fetch.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="folder for the images (default data/samples)")
    demo = sub.add_parser("demo", help="build the demo store: samples + package images, answered by the baseline")
    demo.add_argument("--store", type=Path, help="demo store to (re)build (default data/demo_store)")
    demo.add_argument("--samples-dir", type=Path, default=DEFAULT_DEST, help="where samples are fetched to")
    demo.add_argument("--demo-dir", type=Path, help="image layout to (re)build (default data/demo)")
    demo.add_argument("--if-stale", action="store_true",
                      help="rebuild only when the demo store is missing, incomplete or from another MedLens version")
    for command in (fetch, demo):
        command.add_argument("--mirror", type=Path, help="local copy of the samples (a folder laid out like data/samples)")
        command.add_argument("--offline", action="store_true", help="never use the network")
        command.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per network wait")
        command.add_argument("--registry", type=Path, default=REGISTRY, help="registry CSV (default data/samples.csv)")
        command.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from data.demo import DemoError
    from data.samples import RegistryError

    args.mirror = _usable_mirror(args.mirror)
    args.progress = not args.no_progress and sys.stderr.isatty()
    try:
        return cmd_fetch(args) if args.command == "fetch-samples" else cmd_demo(args)
    except (DemoError, RegistryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # the CLI boundary: one readable line
        if os.environ.get("MEDLENS_DEBUG"):
            raise
        print(f"unexpected failure: {type(exc).__name__}: {exc} (set MEDLENS_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 1


def _usable_mirror(mirror: Path | None) -> Path | None:
    if mirror is None or mirror.is_dir():
        return mirror
    print(f"notice: sample mirror {mirror} not found; using the origin URLs instead")
    return None


def cmd_fetch(args: argparse.Namespace) -> int:
    from data.samples import Downloader, fetch_samples, load_registry, summary_lines

    report = fetch_samples(load_registry(args.registry), args.dest, mirror=args.mirror,
                           downloader=Downloader(not args.offline, args.timeout), progress=args.progress)
    print("\n".join(summary_lines(report, args.dest)))
    for problem in report.problems:
        print(f"error: {problem}", file=sys.stderr)
    return 2 if report.problems else 0


def cmd_demo(args: argparse.Namespace) -> int:
    import time

    from data.demo import DEMO_DIR, DEMO_STORE, build_demo, stale_reason

    if args.if_stale:
        why = stale_reason(args.store or DEMO_STORE, args.registry)
        if why is None:
            print(f"demo store {args.store or DEMO_STORE} is up to date")
            return 0
        print(f"building the demo store: {why}")
    started = time.perf_counter()
    result = build_demo(store=args.store or DEMO_STORE, demo_dir=args.demo_dir or DEMO_DIR,
                        samples_dir=args.samples_dir, mirror=args.mirror, offline=args.offline,
                        timeout=args.timeout, registry=args.registry, progress=args.progress, log=print)
    marker = result.marker
    print(f"demo store {result.store}: {marker['images']} image(s) answered by {', '.join(marker['models'])} "
          f"({', '.join(f'{k} {v}' for k, v in marker['labels'].items())}) in {time.perf_counter() - started:.0f} s")
    print(f"open it: python -m dashboard --store {result.store}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
