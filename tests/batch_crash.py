"""``python -m tests.batch_crash POINT ingest-args...``: run the ingest CLI and SIGKILL it at POINT.

The kill is a real SIGKILL of the process (no cleanup, no flush, no finally), placed exactly:

    save:<state>/<pending>   right after the ledger records that state with that step pending
                             (``built/None``, ``built/upload``, ``uploaded/submit``, ...)
    after:upload             the provider has the file, the ledger does not know yet
    after:create             the provider has the batch, the ledger does not know yet
    after:rows               the collected rows are in the store, the ledger does not say collected
"""

from __future__ import annotations

import os
import signal
import sys


def _kill() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install(point: str) -> None:
    from ingest import batch_collect, batch_ledger
    from ingest.providers.gemini_batch import GeminiBatch
    from ingest.providers.openai_batch import OpenAIBatch

    kind, _, target = point.partition(":")
    if kind == "save":
        save = batch_ledger.save

        def save_then_die(root, entry):
            save(root, entry)
            if f"{entry.state}/{entry.pending}" == target:
                _kill()

        batch_ledger.save = save_then_die
    elif target in ("upload", "create"):
        for cls in (OpenAIBatch, GeminiBatch):
            original = getattr(cls, target)

            def call_then_die(self, *args, _original=original):
                _original(self, *args)
                _kill()

            setattr(cls, target, call_then_die)
    elif target == "rows":

        class DyingWriter(batch_collect.StoreWriter):
            def __exit__(self, *exc: object) -> None:
                super().__exit__(*exc)
                _kill()

        batch_collect.StoreWriter = DyingWriter
    else:
        raise SystemExit(f"unknown crash point {point!r}")


if __name__ == "__main__":
    install(sys.argv[1])
    from ingest.cli import main

    raise SystemExit(main(sys.argv[2:]))
