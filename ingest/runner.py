"""`ingest run`: every image x model x repeat is answered once, recorded once, never paid twice.

Phases: (1) identify each image by the sha256 of its prepared bytes (memoised by path, size and
mtime, so a cached re-run reads no pixels); (2) compute keys and drop the ones the store already
holds as ``ok``; (3) let local detectors see the whole manifest (out-of-fold baseline); (4) call the
providers with bounded concurrency, retries and rate limits, streaming rows into the store at least
once a second. Ctrl-C / SIGTERM flush what is done; running the same command again resumes.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cache.schema import canonical_json, response_key
from cache.store import Store, StoreWriter, utcnow
from ingest.images import ImageError, PrepOptions
from ingest.items import ImageCache, ImageItem, baseline_items, identify_images, image_error_key, progress_bar
from ingest.manifest import ManifestRow
from ingest.parse import parse_answer
from ingest.prompts import Prompt
from ingest.providers.base import CallRequest, Provider
from ingest.providers.retry import CallOutcome, RateLimiter, call_with_retry, scrub


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
    skipped_budget: int = 0
    estimate_usd: float | None = None


@dataclass
class RunResult:
    run_id: str
    tallies: dict[str, ModelTally]
    image_errors: list[str]
    interrupted: bool = False
    budget_stopped: bool = False
    dry_run: bool = False


class Runner:
    """Runs one manifest against several providers. See module docstring for the phases."""

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
    ):
        self.store, self.rows, self.manifest_dir = store, rows, manifest_dir
        self.providers, self.prompt, self.prep = providers, prompt, prep
        self.repeats, self.budget_usd, self.prices = repeats, budget_usd, prices
        self.progress = progress
        self.run_id = utcnow().strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]
        self.run_meta = dict(run_meta or {})
        self.images = ImageCache(prep, store)
        self.tallies = {p.spec.raw: ModelTally() for p in providers}
        self.spent = 0.0
        self.inflight = 0.0
        self.budget_stopped = False

    async def identify(self) -> list[ImageItem]:
        """Phase 1: every manifest row with its prepared image's sha256 (or its ImageError)."""
        return await identify_images(self.rows, self.manifest_dir, self.images, self.progress)

    # -- phase 2: plan --------------------------------------------------------------------
    def plan(self, items: list[ImageItem], done: set[str]) -> list[Task]:
        tasks: list[Task] = []
        seen: set[str] = set()
        for provider in self.providers:
            tally = self.tallies[provider.spec.raw]
            params = provider.params()
            for item in items:
                if item.sha256 is None:
                    continue
                for repeat in range(self.repeats):
                    key = response_key(
                        provider=provider.spec.provider, model=provider.spec.raw, params=params,
                        prompt_text=self.prompt.text, image_sha256=item.sha256, repeat=repeat,
                    )
                    if key in done:
                        tally.cached += 1
                    elif key not in seen:
                        seen.add(key)
                        tasks.append(Task(item, provider, repeat, key))
                        tally.pending += 1
        return tasks

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
                cost = self.prices.estimate(
                    provider.spec, self.prompt.text, task.item.width, task.item.height,
                    detail=provider.options.detail,
                )
                total = None if cost is None or total is None else total + cost
            tally.estimate_usd = total

    # -- phase 4: call --------------------------------------------------------------------
    def _row(self, task: Task, outcome: CallOutcome | None, error: tuple[str, str] | None) -> dict:
        item, provider = task.item, task.provider
        row: dict[str, Any] = {
            "key": task.key, "run_id": self.run_id, "created_at": utcnow(),
            "provider": provider.spec.provider, "model": provider.spec.raw,
            "params_json": canonical_json(provider.params()), "prompt_id": self.prompt.id,
            "prompt_sha256": self.prompt.sha256, "prompt_text": self.prompt.text,
            "image_sha256": item.sha256, "image_path": item.row.image_path,
            "modality": item.row.modality, "truth": item.row.truth, "source": item.row.source,
            "repeat": task.repeat, "attempts": outcome.attempts if outcome else 0,
            "latency_ms": outcome.latency_ms if outcome else None,
        }
        if error is None and outcome is not None and outcome.error is not None:
            error = (outcome.error.error_type, outcome.error.message)
        if error is not None:
            return row | {"status": "error", "error_type": error[0], "error_message": error[1]}
        reply = outcome.reply
        if reply.label is not None:
            label, confidence, interpretation = reply.label, reply.confidence, reply.interpretation
        else:
            parsed = parse_answer(reply.text, reply.finish_reason, reply.refusal)
            label, confidence, interpretation = parsed.label, parsed.confidence, parsed.interpretation
        cost = None
        if self.prices is not None:
            cost = self.prices.cost(provider.spec, reply.input_tokens, reply.output_tokens)
        return row | {
            "status": "ok", "model_version": reply.model_version, "raw_text": reply.text,
            "label": label, "confidence": confidence, "interpretation": interpretation,
            "finish_reason": reply.finish_reason, "input_tokens": reply.input_tokens,
            "output_tokens": reply.output_tokens, "cost_usd": cost,
        }

    def _over_budget(self, task: Task) -> float | None:
        """The call's cost estimate, or None when scheduling it would pass the budget."""
        if self.budget_usd is None or task.provider.local or self.prices is None:
            return 0.0
        estimate = self.prices.estimate(
            task.provider.spec, self.prompt.text, task.item.width, task.item.height,
            detail=task.provider.options.detail,
        ) or 0.0
        if self.spent + self.inflight + estimate > self.budget_usd:
            return None
        return estimate

    async def _worker(self, queue: asyncio.Queue, limiter: RateLimiter, writer: StoreWriter, bar) -> None:
        while True:
            try:
                task: Task = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            tally = self.tallies[task.provider.spec.raw]
            estimate = self._over_budget(task)
            if estimate is None:
                self.budget_stopped = True
                tally.skipped_budget += 1
                bar.update(1)
                continue
            self.inflight += estimate
            try:
                try:
                    prepared = await asyncio.to_thread(self.images.get, task.item)
                except ImageError as exc:
                    row = self._row(task, None, (f"image_{exc.reason}", str(exc)))
                else:
                    request = CallRequest(
                        image=prepared.data, mime=prepared.mime, image_sha256=prepared.sha256,
                        prompt_id=self.prompt.id, prompt_text=self.prompt.text,
                        modality=task.item.row.modality, structured=self.prompt.structured,
                    )
                    outcome = await call_with_retry(task.provider, request, limiter=limiter)
                    try:
                        row = self._row(task, outcome, None)
                    except Exception as exc:  # a bug of ours must not end the run: record it
                        row = self._row(task, outcome, ("internal_error", scrub(f"{type(exc).__name__}: {exc}")))
            finally:
                self.inflight -= estimate
            self.spent += row.get("cost_usd") or 0.0
            tally.cost_usd += row.get("cost_usd") or 0.0
            if row["status"] == "ok":
                tally.ok += 1
                tally.labels[row["label"]] += 1
            else:
                tally.errors[row["error_type"]] += 1
            writer.add(row)
            bar.update(1)
            bar.set_postfix_str(self._postfix(), refresh=False)

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

    async def execute(self, items: list[ImageItem], tasks: list[Task], writer: StoreWriter) -> None:
        for provider in self.providers:
            if any(t.provider is provider for t in tasks):
                await provider.prepare(baseline_items(provider, items, self.images))
        bar = progress_bar(len(tasks), "calling models", self.progress)
        bar.set_postfix_str(self._postfix())
        workers = []
        for provider in self.providers:
            queue: asyncio.Queue = asyncio.Queue()
            for task in (t for t in tasks if t.provider is provider):
                queue.put_nowait(task)
            limiter = RateLimiter(provider.options.rpm)
            workers += [
                asyncio.create_task(self._worker(queue, limiter, writer, bar))
                for _ in range(min(provider.concurrency, max(1, queue.qsize())))
            ]
        flusher = asyncio.create_task(_flush_every(writer, 0.5))
        try:
            await asyncio.gather(*workers)
        finally:
            flusher.cancel()
            for worker in workers:
                worker.cancel()
            bar.close()

    async def run(self, dry_run: bool = False) -> RunResult:
        started = utcnow()
        result = RunResult(self.run_id, self.tallies, [], dry_run=dry_run)
        if dry_run:  # identify and plan only: no call, no row
            items = await self.identify()
            self.estimate(self.plan(items, self.store.done_keys()))
            result.image_errors = [str(i.error) for i in items if i.error]
            return result
        writer = StoreWriter(self.store)
        try:
            items = await self.identify()
            tasks = self.plan(items, self.store.done_keys())
            result.image_errors = self.record_image_errors(items, writer)
            await self.execute(items, tasks, writer)
        except asyncio.CancelledError:
            result.interrupted = True
        finally:
            writer.close()
            for provider in self.providers:
                await provider.aclose()
            result.budget_stopped = self.budget_stopped
            self.store.write_run(self.run_id, self._run_record(started, result))
        return result

    def _run_record(self, started, result: RunResult) -> dict[str, Any]:
        return self.run_meta | {
            "run_id": self.run_id, "started_at": started.isoformat(),
            "finished_at": utcnow().isoformat(), "prompt_id": self.prompt.id,
            "prompt_sha256": self.prompt.sha256, "repeats": self.repeats,
            "prep": self.prep.as_params(), "interrupted": result.interrupted,
            "budget_usd": self.budget_usd, "budget_stopped": result.budget_stopped,
            "models": {
                name: {"params": p.params(), "pending": t.pending, "cached": t.cached, "ok": t.ok,
                       "errors": dict(t.errors), "labels": dict(t.labels), "cost_usd": t.cost_usd,
                       "skipped_budget": t.skipped_budget}
                for (name, t), p in zip(self.tallies.items(), self.providers, strict=True)
            },
        }


async def _flush_every(writer: StoreWriter, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        if writer.pending:
            await asyncio.to_thread(writer.flush)


def run_with_signals(runner: Runner, dry_run: bool = False) -> RunResult:
    """Run the runner; SIGINT / SIGTERM cancel it cleanly so the writer flushes."""

    async def main() -> RunResult:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await runner.run(dry_run=dry_run)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    return asyncio.run(main())
