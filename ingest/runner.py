"""`ingest run`: every image x model x repeat is answered once, recorded once, never paid twice.

Phases: (1) identify each image by the sha256 of its prepared bytes (memoised by path, size and
mtime, so a cached re-run reads no pixels); (2) compute keys and drop the ones the store already
holds as ``ok``; (3) let local detectors see the whole manifest (out-of-fold baseline); (4) call the
providers with bounded concurrency, retries and rate limits. Before calling, a run claims the keys
a chunk at a time (``cache.claiming``: other runs on the store skip or wait for them, and a key
answered since the plan is dropped) and reads the chunk's prepared images on the same worker thread,
so a call starts without a thread hop of its own; each answer is journaled (durable) before the
next call starts on that worker, then batched into parts by the writer's thread (no Parquet write
on the event loop). Ctrl-C / SIGTERM flush what is done; running the same command again resumes.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from cache.claiming import KeyClaimer
from cache.leases import Holder, new_owner_id
from cache.schema import KeyMaker, canonical_json
from cache.storage import is_disk_full
from cache.store import Store, StoreWriter, rows_to_table, utcnow
from ingest.batch_ledger import open_keys
from ingest.images import ImageError, PrepOptions
from ingest.items import ImageCache, ImageItem, detector_items, identify_images, image_error_key, progress_bar
from ingest.manifest import ManifestError, ManifestRow
from ingest.prompts import Prompt
from ingest.providers.base import CallRequest, Provider
from ingest.providers.retry import CallOutcome, RateLimiter, call_with_retry, scrub
from ingest.rows import CallMeta, response_row


def warm_up() -> None:
    """What the first answer would otherwise wait for, done before the first call: the answer
    parser's patterns (0.2 s to compile) and Arrow's first conversion of Python values, which
    imports pandas (0.3 s, on the writer's thread, while the first answers wait to be journaled)."""
    importlib.import_module("cache.parse")
    rows_to_table([])


@dataclass(frozen=True)
class Task:
    item: ImageItem
    provider: Provider
    repeat: int
    key: str


@dataclass
class ModelTally:
    pending: int = 0
    cached: int = 0
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    labels: Counter[str] = field(default_factory=Counter)
    cost_usd: float = 0.0
    priced: bool = True  # False once a call's cost could not be priced
    skipped_budget: int = 0
    skipped_claimed: int = 0  # keys another live run was calling
    estimate_usd: float | None = None


@dataclass
class RunResult:
    run_id: str
    tallies: dict[str, ModelTally]
    image_errors: list[str]
    interrupted: bool = False
    budget_stopped: bool = False
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)
    claimed_by: dict[str, Holder] = field(default_factory=dict)  # owner id -> who held keys we skipped
    disk_full: str | None = None  # what was kept, and where, when the disk filled up
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase (in the run record)
    batches: list[dict[str, Any]] = field(default_factory=list)  # --batch: the open batches of its models


class Runner:
    """Runs one manifest against several providers. See module docstring for the phases."""

    loads_images: ClassVar[bool] = True  # the feeder reads each task's prepared image ahead of its call

    def __init__(
        self,
        *,
        store: Store,
        rows: list[ManifestRow],
        manifest_dir: Path,
        providers: list[Provider],
        prompt: Prompt,
        prep: PrepOptions,
        repeats: int = 1,
        budget_usd: float | None = None,
        prices: Any = None,
        progress: bool = True,
        run_meta: dict[str, Any] | None = None,
        wait_claims: bool = False,
        claim_poll_s: float = 1.0,
        batch: Any = None,
        audit: Any = None,
    ):
        self.store, self.rows, self.manifest_dir = store, rows, manifest_dir
        self.providers, self.prompt, self.prep = providers, prompt, prep
        self.repeats, self.budget_usd, self.prices = repeats, budget_usd, prices
        self.progress = progress
        self.wait_claims, self.claim_poll_s = wait_claims, claim_poll_s
        self.run_id = new_owner_id()
        self.run_meta = dict(run_meta or {})
        self.images = ImageCache(prep, store)
        self.tallies = {p.spec.raw: ModelTally() for p in providers}
        self.spent = 0.0
        self.inflight = 0.0
        self.budget_stopped = False
        self.stopping = False
        self.disk_stopped = False
        self.warnings: list[str] = []
        self.claimed_by: dict[str, Holder] = {}
        # model spec -> its parameters as stored; they do not change during a run (read per row)
        self._params_json = {p.spec.raw: canonical_json(p.params()) for p in providers}
        self._loaded: dict[str, Any] = {}  # key -> prepared image (or its ImageError), read by the feeder
        self.batch = batch  # --batch: ``ingest.batch.submit_planned`` answers the plan instead of execute
        self.audit = audit  # () -> the confound audit for the run record, when there are calls to make

    async def identify(self) -> list[ImageItem]:
        """Phase 1: every manifest row with its prepared image's sha256 (or its ImageError)."""
        return await identify_images(self.rows, self.manifest_dir, self.images, self.progress)

    # -- phase 2: plan --------------------------------------------------------------------
    def check_duplicates(self, items: list[ImageItem]) -> None:
        """Identical images (same prepared bytes) are answered once; with different truths or
        modalities the study would contradict itself, so that stops the run (exit 2)."""
        by_sha: dict[str, list[ImageItem]] = {}
        for item in items:
            if item.sha256:
                by_sha.setdefault(item.sha256, []).append(item)
        repeated = [group for group in by_sha.values() if len(group) > 1]
        for group in repeated:
            if len({(i.row.truth, i.row.modality) for i in group}) > 1:
                listed = "; ".join(f"{i.row.image_path} ({i.row.modality}, {i.row.truth})" for i in group)
                raise ManifestError(
                    f"the same image (sha256 {group[0].sha256[:12]}) is listed with different truth or "
                    f"modality: {listed}; fix the manifest so each image has one truth")
        if repeated:
            self.warnings.append(
                f"{sum(len(g) - 1 for g in repeated)} manifest row(s) repeat an image already listed "
                f"(identical pixels, e.g. {repeated[0][1].row.image_path} = {repeated[0][0].row.image_path}); "
                "each image is answered once")

    def check_stored_truth(self, items: list[ImageItem], cached: set[str], con: Any) -> None:
        """Warn when cached answers were stored with another truth / modality / source than the
        manifest now gives: metrics use the values stored with each answer. The comparison runs
        in DuckDB, so a store of 10^6 answers is not pulled into Python; over `answers`, the rows as
        stored (truth, modality and source are never re-read), not `results` and its readings."""
        if not cached:
            return
        by_sha = {i.sha256: i for i in items if i.sha256}
        keys = sorted(cached)
        rows = [by_sha[self._cached_sha[k]].row for k in keys]
        # the expected values go in as list parameters: converting Python lists to Arrow would make
        # pyarrow import pandas (0.25 s of every cached re-run)
        changed = con.execute(
            "WITH e AS (SELECT unnest($1::VARCHAR[]) AS key, unnest($2::VARCHAR[]) AS truth, "
            "unnest($3::VARCHAR[]) AS modality, unnest($4::VARCHAR[]) AS source) "
            "SELECT count(*) OVER (), e.key, r.truth, r.modality, coalesce(r.source, '') FROM answers r "
            "JOIN e USING (key) WHERE r.truth IS DISTINCT FROM e.truth OR r.modality IS DISTINCT "
            "FROM e.modality OR coalesce(r.source, '') <> e.source LIMIT 1",
            [keys, [r.truth for r in rows], [r.modality for r in rows], [r.source or "" for r in rows]],
        ).fetchone()
        if changed:
            count, key, *stored = changed
            row = by_sha[self._cached_sha[key]].row
            self.warnings.append(
                f"{count} cached answer(s) were stored with a different truth/modality/source than the "
                f"manifest now gives (e.g. {row.image_path}: stored {'/'.join(stored)}, manifest "
                f"{row.truth}/{row.modality}/{row.source}); metrics use the stored values, so start a new "
                "--store to score the corrected labels")

    def plan(self, items: list[ImageItem], done: set[str]) -> list[Task]:
        self._cached_sha: dict[str, str] = {}
        tasks: list[Task] = []
        seen: set[str] = set()
        for provider in self.providers:
            tally = self.tallies[provider.spec.raw]
            keys = KeyMaker(provider=provider.spec.provider, model=provider.spec.raw, params=provider.params(),
                            prompt_text=self.prompt.text)
            for item in items:
                if item.sha256 is None:
                    continue
                for repeat in range(self.repeats):
                    key = keys.key(item.sha256, repeat)
                    if key in done:
                        tally.cached += 1
                        self._cached_sha[key] = item.sha256
                    elif key not in seen:
                        seen.add(key)
                        tasks.append(Task(item, provider, repeat, key))
                        tally.pending += 1
        return tasks

    def call_estimate(self, task: Task) -> float | None:
        """The estimated cost of one call still to make (None when its model is unpriced)."""
        return self.prices.estimate(
            task.provider.spec, self.prompt.text, task.item.width, task.item.height,
            detail=task.provider.options.detail,
        )

    def estimate(self, tasks: list[Task]) -> None:
        """Fill each model's estimated cost of the calls still to make (None when unpriced)."""
        for provider in self.providers:
            tally = self.tallies[provider.spec.raw]
            if provider.local:
                tally.estimate_usd = 0.0
                continue
            if self.prices is None:
                continue
            total: float | None = 0.0
            for task in (t for t in tasks if t.provider is provider):
                cost = self.call_estimate(task)
                total = None if cost is None or total is None else total + cost
            tally.estimate_usd = total

    def done_keys(self, con: Any) -> set[str]:
        """The keys answered ok in the store snapshot ``con`` (never called again)."""
        return {key for (key,) in con.execute("SELECT key FROM results").fetchall()}

    # -- phase 4: call --------------------------------------------------------------------
    def _not_to_call(self, done: set[str]) -> set[str]:
        """Answered keys, and keys waiting in provider batches not yet collected (paid or on their way)."""
        queued = open_keys(self.store.local_dir) - done
        if queued:
            self.warnings.append(f"{len(queued)} call(s) of this store wait in provider batches not yet "
                                 "collected (python -m ingest batches); they are not called again")
        return done | queued

    def call_meta(self, task: Task) -> CallMeta:
        """The columns that identify a call and its image."""
        item, provider = task.item, task.provider
        return CallMeta(
            key=task.key, provider=provider.spec.provider, model=provider.spec.raw,
            params_json=self._params_json[provider.spec.raw], prompt_id=self.prompt.id,
            prompt_sha256=self.prompt.sha256, prompt_text=self.prompt.text, image_sha256=item.sha256,
            image_path=item.row.image_path, modality=item.row.modality, truth=item.row.truth,
            source=item.row.source, repeat=task.repeat,
        )

    def _row(self, task: Task, outcome: CallOutcome | None, error: tuple[str, str] | None) -> dict:
        provider, meta = task.provider, self.call_meta(task)
        failed = outcome.error if outcome is not None else None
        if error is None and failed is not None:
            error = (failed.error_type, failed.message)

        def price(reply: Any) -> float | None:
            if self.prices is None:
                return None
            return self.prices.cost(provider.spec, reply.input_tokens, reply.output_tokens)

        return response_row(
            meta, self.run_id, reply=outcome.reply if outcome is not None else None, error=error, price=price,
            attempts=outcome.attempts if outcome else 0, latency_ms=outcome.latency_ms if outcome else None,
            paid=failed.reply if failed is not None else None,
        )

    def _over_budget(self, task: Task) -> float | None:
        """The call's cost estimate, or None when scheduling it would pass the budget."""
        if self.budget_usd is None or task.provider.local or self.prices is None:
            return 0.0
        estimate = self.call_estimate(task) or 0.0
        if self.spent + self.inflight + estimate > self.budget_usd:
            return None
        return estimate

    async def _worker(self, queue: asyncio.Queue, limiter: RateLimiter, writer: StoreWriter,
                      claimer: KeyClaimer, bar) -> None:
        while (task := await queue.get()) is not None:
            if self.stopping or self.disk_stopped:  # a first Ctrl-C, or a full disk: start no more calls
                self._loaded.pop(task.key, None)
                continue  # drain: the claims of what is left are released at the end
            if not claimer.owner.valid():
                self.warnings.append("this run's lease lapsed (no heartbeat written in time): it stopped "
                                     "calling, so that no other run pays for its keys a second time")
                self.stopping = True
                continue
            tally = self.tallies[task.provider.spec.raw]
            estimate = self._over_budget(task)
            if estimate is None:
                self.budget_stopped = True
                tally.skipped_budget += 1
                bar.update(1)
                continue
            claimer.started(task.key)
            self.inflight += estimate
            try:
                row = await self._call(task, limiter)
            finally:
                self.inflight -= estimate
            self._tally(task, tally, row)
            try:  # durable in the journal before this worker starts another paid call
                await asyncio.wrap_future(writer.add(row))
            except OSError:
                self.disk_stopped = True  # the writer keeps the row in memory and tries again
            claimer.added(task.key)
            if writer.disk_full is not None:
                self.disk_stopped = True
            bar.update(1)
            bar.set_postfix_str(self._postfix(), refresh=False)

    def _claim_and_load(self, claimer: KeyClaimer, part: list[Task]) -> tuple[Any, dict[str, Any]]:
        """Claim a chunk of keys, then read the prepared bytes of the ones won (on a worker thread,
        one hop per chunk): a worker then starts its call without waiting on a thread."""
        got = claimer.claim([t.key for t in part])
        loaded: dict[str, Any] = {}
        if not self.loads_images:
            return got, loaded
        won = set(got.won)
        for task in part:
            if task.key in won:
                try:
                    loaded[task.key] = self.images.get(task.item)
                except ImageError as exc:
                    loaded[task.key] = exc
        return got, loaded

    async def _call(self, task: Task, limiter: RateLimiter) -> dict[str, Any]:
        prepared = self._loaded.pop(task.key, None)
        try:
            if prepared is None:
                prepared = await asyncio.to_thread(self.images.get, task.item)
            elif isinstance(prepared, ImageError):
                raise prepared
        except ImageError as exc:
            return self._row(task, None, (f"image_{exc.reason}", str(exc)))
        request = CallRequest(
            image=prepared.data, mime=prepared.mime, image_sha256=prepared.sha256,
            prompt_id=self.prompt.id, prompt_text=self.prompt.text,
            modality=task.item.row.modality, structured=self.prompt.structured,
        )
        outcome = await call_with_retry(task.provider, request, limiter=limiter)
        try:
            return self._row(task, outcome, None)
        except Exception as exc:  # a bug of ours must not end the run: record it
            return self._row(task, outcome, ("internal_error", scrub(f"{type(exc).__name__}: {exc}")))

    def _tally(self, task: Task, tally: ModelTally, row: dict[str, Any]) -> None:
        self.spent += row.get("cost_usd") or 0.0
        tally.cost_usd += row.get("cost_usd") or 0.0
        if row["status"] == "ok" and row.get("cost_usd") is None and not task.provider.local:
            tally.priced = False
        if row["status"] == "ok":
            tally.ok += 1
            tally.labels[row["label"]] += 1
        else:
            tally.errors[row["error_type"]] += 1

    async def _feed(self, tasks: list[Task], queue: asyncio.Queue, claimer: KeyClaimer, workers: int,
                    bar) -> None:
        """Claim the tasks a few at a time, just before they are called, and queue the ones won.
        Keys held by another live run are skipped (or, with ``wait_claims``, tried again until
        their holder finishes them or dies); keys found answered meanwhile count as cached."""
        chunk = max(8, workers)
        pending, held = tasks, []
        while True:
            for start in range(0, len(pending), chunk):
                if self.stopping or self.disk_stopped:
                    break
                part = pending[start : start + chunk]
                try:
                    got, loaded = await asyncio.to_thread(self._claim_and_load, claimer, part)
                except OSError as exc:  # a full disk cannot take a claim: start no more calls
                    if not is_disk_full(exc):
                        raise
                    self.disk_stopped = True
                    break
                won, done = set(got.won), set(got.done)
                self._loaded.update(loaded)
                for task in part:
                    if task.key in won:
                        await queue.put(task)
                    elif task.key in done:
                        tally = self.tallies[task.provider.spec.raw]
                        tally.pending, tally.cached = tally.pending - 1, tally.cached + 1
                        bar.update(1)
                    else:
                        held.append((task, got.held[task.key]))
            if not held or not self.wait_claims or self.stopping or self.disk_stopped:
                break
            await asyncio.sleep(self.claim_poll_s)
            pending, held = [t for t, _ in held], []
        for task, owner_id in held:
            self.tallies[task.provider.spec.raw].skipped_claimed += 1
            if owner_id not in self.claimed_by:
                self.claimed_by[owner_id] = await asyncio.to_thread(claimer.holder, owner_id)
            bar.update(1)
        for _ in range(workers):
            await queue.put(None)

    def _postfix(self) -> str:
        ok = sum(t.ok for t in self.tallies.values())
        err = sum(sum(t.errors.values()) for t in self.tallies.values())
        cached = sum(t.cached for t in self.tallies.values())
        return f"done={ok} cached={cached} errors={err}" + (f" ${self.spent:.4f}" if self.spent else "")

    def record_image_errors(self, items: list[ImageItem], writer: StoreWriter) -> list[str]:
        messages = []
        for item in (i for i in items if i.error is not None):
            messages.append(str(item.error))
            for provider in self.providers:
                for repeat in range(self.repeats):
                    key = image_error_key(item, provider.spec.raw, self.prompt, repeat)
                    row = self._row(Task(item, provider, repeat, key), None,
                                    (f"image_{item.error.reason}", str(item.error)))
                    writer.add(row)
                    self.tallies[provider.spec.raw].errors[row["error_type"]] += 1
        return messages

    async def execute(self, items: list[ImageItem], tasks: list[Task], writer: StoreWriter,
                      claimer: KeyClaimer) -> None:
        for provider in self.providers:  # local detectors see the whole manifest first (by capability)
            if not any(t.provider is provider for t in tasks):
                continue  # nothing to call: its SDK is never imported (a cached re-run stays quick)
            await asyncio.to_thread(provider.load)
            if provider.entry.capabilities.local_detector:
                await provider.prepare(detector_items(items, self.images))
        if tasks:
            await asyncio.to_thread(warm_up)
        bar = progress_bar(len(tasks), "calling models", self.progress)
        bar.set_postfix_str(self._postfix())
        jobs = []
        for provider in self.providers:
            mine = [t for t in tasks if t.provider is provider]
            if not mine:
                continue
            workers = min(provider.concurrency, len(mine))
            queue: asyncio.Queue = asyncio.Queue(maxsize=2 * workers)  # claimed just ahead of calling
            limiter = RateLimiter(provider.options.rpm)
            jobs.append(asyncio.create_task(self._feed(mine, queue, claimer, workers, bar)))
            jobs += [asyncio.create_task(self._worker(queue, limiter, writer, claimer, bar)) for _ in range(workers)]
        # What exists now (imported SDKs, the manifest, the plan) lives until the run ends: out of the
        # collector's sight while calling, a full collection no longer stops every call in flight
        # (95 ms measured in bench_run before; the calls' own garbage is collected as usual).
        gc.freeze()
        try:
            await asyncio.gather(*jobs)
        finally:
            gc.unfreeze()
            for job in jobs:
                job.cancel()
            bar.close()

    async def run(self, dry_run: bool = False) -> RunResult:
        started = utcnow()
        result = RunResult(self.run_id, self.tallies, [], dry_run=dry_run, warnings=self.warnings,
                           claimed_by=self.claimed_by)
        if dry_run:  # identify and plan only: no call, no row, no claim
            items = await self.identify()
            self.check_duplicates(items)
            self.estimate(self.plan(items, self._not_to_call(self.store.done_keys())))
            result.image_errors = [str(i.error) for i in items if i.error]
            return result
        owner = self.store.owner("ingest run", self.run_id).start()
        claimers: list[KeyClaimer] = []  # the writer releases claims once rows are in parts
        writer = None
        try:
            self.store.recover(owner)  # what a dead run journaled is in the store before we plan
            self.store.reserve_run(self.run_id)
            writer = StoreWriter(self.store, owner=owner,
                                 on_durable=lambda keys: [c.release(keys) for c in claimers])
            clock = time.perf_counter()
            items = await self.identify()
            result.timings["identify_s"] = round(time.perf_counter() - clock, 3)
            self.check_duplicates(items)
            parts = self.store.part_names()
            con = self.store.connect()  # one snapshot answers both: what is done, and with which truth
            done = self.done_keys(con)
            tasks = self.plan(items, self._not_to_call(done))
            self.check_stored_truth(items, set(self._cached_sha) & done, con)
            if tasks and self.audit is not None:
                self.run_meta["audit"] = self.audit()
            claimers.append(KeyClaimer(self.store, owner, parts))
            result.image_errors = self.record_image_errors(items, writer)
            result.timings["plan_s"] = round(time.perf_counter() - clock - result.timings["identify_s"], 3)
            clock = time.perf_counter()
            if self.batch is not None:  # --batch: the provider batch APIs answer the planned calls
                result.batches = await self.batch(self, tasks, writer, claimers[0])
            else:
                await self.execute(items, tasks, writer, claimers[0])
            result.timings["calls_s"] = round(time.perf_counter() - clock, 3)
        except asyncio.CancelledError:
            result.interrupted = True
        finally:
            clock = time.perf_counter()
            self._finish(result, writer, claimers)
            result.timings["close_s"] = round(time.perf_counter() - clock, 3)
            result.timings["images_prepared"] = self.images.prepared
            for provider in self.providers:
                await provider.aclose()
            try:
                self.store.write_run(self.run_id, self._run_record(started, result))
            except OSError as exc:
                result.warnings.append(f"the run record could not be written ({exc})")
            owner.stop()
        return result

    def _finish(self, result: RunResult, writer: StoreWriter | None, claimers: list[KeyClaimer]) -> None:
        """Release the claims not called, close the writer (keeping in the journal what the disk
        could not take), and say so in the result."""
        for claimer in claimers:
            claimer.release_unused()
        if writer is not None:
            try:
                writer.close()
            except OSError as exc:
                result.disk_full = str(exc)
        if self.disk_stopped and result.disk_full is None:
            result.disk_full = "the disk filled up: the run stopped starting calls; every answer was written"
        result.budget_stopped = self.budget_stopped

    def _run_record(self, started, result: RunResult) -> dict[str, Any]:
        return self.run_meta | {
            "run_id": self.run_id, "started_at": started.isoformat(),
            "finished_at": utcnow().isoformat(), "prompt_id": self.prompt.id,
            "prompt_sha256": self.prompt.sha256, "repeats": self.repeats,
            "prep": self.prep.as_params(), "interrupted": result.interrupted,
            "budget_usd": self.budget_usd, "budget_stopped": result.budget_stopped,
            "disk_full": result.disk_full, "timings": result.timings, "batches": result.batches,
            "claimed_by_other_runs": {k: h.describe() for k, h in result.claimed_by.items()},
            "models": {
                name: {"params": p.params(), "pending": t.pending, "cached": t.cached, "ok": t.ok,
                       "errors": dict(t.errors), "labels": dict(t.labels), "cost_usd": t.cost_usd,
                       "skipped_budget": t.skipped_budget, "skipped_claimed": t.skipped_claimed}
                for (name, t), p in zip(self.tallies.items(), self.providers, strict=True)
            },
        }


def run_with_signals(runner: Runner, dry_run: bool = False, grace_s: float = 15.0) -> RunResult:
    """Run the runner. A first SIGINT / SIGTERM stops scheduling calls and lets those in flight
    finish (they are paid for) for up to ``grace_s``; a second one, or the deadline, cancels them.
    Either way the writer flushes what is done."""

    async def main() -> RunResult:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def on_signal() -> None:
            if runner.stopping:
                task.cancel()
                return
            runner.stopping = True
            print(f"\nstopping: finishing the calls in flight (up to {grace_s:.0f} s); press Ctrl-C again "
                  "to cancel them", file=sys.stderr, flush=True)
            loop.call_later(grace_s, task.cancel)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        try:
            result = await runner.run(dry_run=dry_run)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        result.interrupted = result.interrupted or runner.stopping
        return result

    return asyncio.run(main())
