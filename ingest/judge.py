"""`ingest judge`: a judge model reads stored answers (their text, never the image) into labels.

The rule-based parser (``cache.parse``) reads every answer; where its rules were undecided
(``needs_review``), or for every answer (``--only all``), a judge model is given the answer text in
a versioned extraction prompt (``data/prompts/judge.txt``, task ``judge``) and asked which verdict
the answer states. Its reply is a response row like any other (``task = 'judge'``, ``target_key`` =
the key of the answer judged), so the judge goes through everything ``ingest run`` has: one cache
key per (judge model, parameters, prompt with the answer, answer judged), claims, the journal,
retries, rate limits, the budget, Ctrl-C, resume. The ``results`` view then ranks the judge's
reading above the parser's (and a reviewer's above both); the dashboard shows parser-vs-judge
agreement and sends disagreements to review.

The judge's reply is read strictly: a JSON object whose ``label`` is real, synthetic, uncertain or
refused; anything else is ``unparseable`` (rule ``json`` or ``none``), so a judge that does not
follow the prompt is visible, never guessed at.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from cache.filters import Filters
from cache.parse import PARSER_VERSION
from cache.schema import canonical_json, response_key
from ingest.prompts import Prompt
from ingest.providers.base import CallRequest, SpecError
from ingest.providers.retry import CallOutcome, RateLimiter, call_with_retry, scrub
from ingest.rows import CallMeta
from ingest.runner import Runner

#: How long an answer may be inside the judge prompt (longer ones are cut, and the cut is said).
MAX_ANSWER_CHARS = 20_000
JUDGE_LABELS = ("real", "synthetic", "uncertain", "refused")
ONLY = ("needs_review", "all")
_OBJECT = re.compile(r"\{.*\}", re.S)

TARGETS_SQL = """
SELECT key, raw_text, image_sha256, image_path, modality, truth, coalesce(source, '') AS source
FROM results
WHERE label_source = 'parser' AND coalesce(trim(raw_text), '') <> '' {only} {filters}
ORDER BY model, modality, image_path, key
"""


@dataclass(frozen=True)
class Target:
    """A stored answer to read (the latest ok answer of its key)."""

    key: str
    raw_text: str
    image_sha256: str | None
    image_path: str
    modality: str
    truth: str
    source: str
    error: None = None  #: (the runner asks each item for an image error: an answer has none)


@dataclass(frozen=True)
class JudgeTask:
    """One judge call: the runner's worker loop needs ``provider`` and ``key``."""

    target: Target
    provider: Any
    key: str
    repeat: int = 0


def fill_prompt(prompt: Prompt, answer: str) -> str:
    """The judge prompt with the answer in place (cut at MAX_ANSWER_CHARS, saying so)."""
    if len(answer) > MAX_ANSWER_CHARS:
        answer = answer[:MAX_ANSWER_CHARS] + f"\n[... cut: the answer has {len(answer):,} characters]"
    return prompt.text.replace("{answer}", answer)


def read_verdict(text: str | None) -> dict[str, Any]:
    """The label columns of a judge's reply: its JSON ``label`` if it is one of JUDGE_LABELS."""
    found = _OBJECT.search(text or "")
    value: Any = None
    if found:
        try:
            value = json.loads(found.group(0))
        except ValueError:
            value = None
    label = str(value.get("label", "")).strip().lower() if isinstance(value, dict) else ""
    confidence = value.get("confidence") if isinstance(value, dict) else None
    ok = label in JUDGE_LABELS
    return {
        "label": label if ok else "unparseable",
        "confidence": float(confidence) if ok and isinstance(confidence, int | float) and 0 <= confidence <= 1
        else None,
        "interpretation": str(value.get("quote")) if ok and value.get("quote") else None,
        "label_rule": "json" if isinstance(value, dict) else "none",
        "label_span_start": found.start() if found else None, "label_span_end": found.end() if found else None,
        "parser_version": PARSER_VERSION, "needs_review": not ok,
    }  # fmt: skip


def load_targets(con: Any, only: str, filters: Filters) -> list[Target]:
    """The answers to judge: parser-read, non-empty, in the selection (and undecided, by default)."""
    if only not in ONLY:
        raise SpecError(f"--only {only!r}: use one of {', '.join(ONLY)}")
    clause, params = filters.clause()
    sql = TARGETS_SQL.format(only="AND needs_review" if only == "needs_review" else "", filters=clause)
    return [Target(*row) for row in con.execute(sql, params).fetchall()]


class JudgeRunner(Runner):
    """The runner of `ingest run`, with stored answers (text only) in place of images."""

    loads_images = False

    def __init__(self, *, only: str = "needs_review", filters: Filters | None = None, limit: int | None = None,
                 **kwargs: Any):
        super().__init__(rows=[], manifest_dir=None, **kwargs)  # type: ignore[arg-type]
        if self.prompt.task != "judge":
            raise SpecError(f"prompt {self.prompt.id!r} is not a judge prompt (its header needs 'task: judge')")
        for provider in self.providers:
            if not provider.entry.capabilities.text_only:
                raise SpecError(f"{provider.spec.raw} cannot judge: its provider takes no text-only request")
        self.only, self.filters, self.limit = only, filters or Filters(), limit

    async def identify(self) -> list[Target]:  # type: ignore[override]
        targets = load_targets(self.store.connect(), self.only, self.filters)
        return targets[: self.limit] if self.limit else targets

    def check_duplicates(self, items: list[Any]) -> None:
        """Answers are keys of the store: nothing to check."""

    def check_stored_truth(self, items: list[Any], cached: set[str], con: Any) -> None:
        """A judge reads text; the truth stored with the answer is copied, never compared."""

    def record_image_errors(self, items: list[Any], writer: Any) -> list[str]:
        return []

    def done_keys(self, con: Any) -> set[str]:
        rows = con.execute("SELECT DISTINCT key FROM responses WHERE status = 'ok' AND task = 'judge'").fetchall()
        return {key for (key,) in rows}

    def plan(self, items: list[Target], done: set[str]) -> list[JudgeTask]:  # type: ignore[override]
        self._cached_sha = {}
        tasks = []
        for provider in self.providers:
            tally, params = self.tallies[provider.spec.raw], provider.params()
            for target in items:
                key = self.judge_key(provider, params, target)
                if key in done:
                    tally.cached += 1
                else:
                    tasks.append(JudgeTask(target, provider, key))
                    tally.pending += 1
        return tasks

    def judge_key(self, provider: Any, params: dict[str, Any], target: Target) -> str:
        """What changes the judge's answer: its model and parameters, the prompt with the answer in
        it, and which answer it is (two answers with the same words are judged separately)."""
        return response_key(provider=provider.spec.provider, model=provider.spec.raw,
                            params=params | {"judged": target.key}, prompt_text=fill_prompt(self.prompt, target.raw_text),
                            image_sha256=target.image_sha256 or "", repeat=0)  # fmt: skip

    def call_estimate(self, task: JudgeTask) -> float | None:  # type: ignore[override]
        return self.prices.estimate(task.provider.spec, fill_prompt(self.prompt, task.target.raw_text), 0, 0)

    def call_meta(self, task: JudgeTask) -> CallMeta:  # type: ignore[override]
        target, provider = task.target, task.provider
        return CallMeta(
            key=task.key, provider=provider.spec.provider, model=provider.spec.raw,
            params_json=canonical_json(provider.params() | {"judged": target.key}), prompt_id=self.prompt.id,
            prompt_sha256=self.prompt.sha256, prompt_text=self.prompt.text, image_sha256=target.image_sha256,
            image_path=target.image_path, modality=target.modality, truth=target.truth, source=target.source,
            repeat=0,
        )

    def _row(self, task: JudgeTask, outcome: CallOutcome | None, error: tuple[str, str] | None) -> dict:  # type: ignore[override]
        row = super()._row(task, outcome, error) | {"task": "judge", "target_key": task.target.key}
        if row["status"] == "ok":
            row |= read_verdict(row.get("raw_text"))
        return row

    async def _call(self, task: JudgeTask, limiter: RateLimiter) -> dict[str, Any]:  # type: ignore[override]
        request = CallRequest(image=None, mime="", image_sha256=task.target.image_sha256 or "",
                              prompt_id=self.prompt.id, prompt_text=fill_prompt(self.prompt, task.target.raw_text),
                              modality=task.target.modality, structured=False)  # fmt: skip
        outcome = await call_with_retry(task.provider, request, limiter=limiter)
        try:
            return self._row(task, outcome, None)
        except Exception as exc:  # a bug of ours must not end the run: record it
            return self._row(task, outcome, ("internal_error", scrub(f"{type(exc).__name__}: {exc}")))
