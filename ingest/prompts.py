"""Versioned prompt files under ``data/prompts/``.

Each file is a small header (``id``, ``version``, ``structured``, ``description``, and ``task``:
``detect`` by default, ``judge`` for a judge's extraction prompt, whose text holds ``{answer}``), a
line ``---``, then the exact text sent to the model. The text's sha256 is recorded with every response and is part
of the cache key, so editing a prompt can never be mistaken for the old one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cache.untrusted import MiB, read_capped

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "data" / "prompts"
PROMPT_MAX_BYTES = 1 * MiB


class PromptError(ValueError):
    """A prompt id that does not exist or a malformed prompt file (exit code 2)."""


@dataclass(frozen=True)
class Prompt:
    id: str
    version: int
    structured: bool
    description: str
    text: str
    path: Path
    task: str = "detect"  #: cache.schema.TASKS: what the prompt asks (detect: an image; judge: an answer)

    @cached_property  # read for every row of a run
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def parse_prompt_file(path: Path) -> Prompt:
    try:  # a prompt is text a person wrote: 1 MiB is far more than any prompt needs
        raw = read_capped(path, PROMPT_MAX_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptError(f"{path}: cannot be read as a prompt file ({exc})") from None
    head, sep, body = raw.partition("\n---\n")
    if not sep:
        raise PromptError(f"{path}: no '---' line between the header and the prompt text")
    meta: dict[str, str] = {}
    for number, line in enumerate(head.splitlines(), start=1):
        if line.strip():
            name, colon, value = line.partition(":")
            if not colon:
                raise PromptError(f"{path}, line {number}: expected 'name: value', got {line!r}")
            meta[name.strip()] = value.strip()
    try:
        version = int(meta.get("version", "1"))
    except ValueError as exc:
        raise PromptError(f"{path}: version must be a whole number, got {meta['version']!r}") from exc
    task = meta.get("task", "detect")
    if task not in ("detect", "judge"):
        raise PromptError(f"{path}: task must be detect or judge, got {task!r}")
    if task == "judge" and "{answer}" not in body:
        raise PromptError(f"{path}: a judge prompt must hold {{answer}}, where the answer text goes")
    return Prompt(
        task=task,
        id=meta.get("id", path.stem),
        version=version,
        structured=meta.get("structured", "false").lower() in ("true", "yes", "1"),
        description=meta.get("description", ""),
        text=body.strip() + "\n",
        path=path,
    )


def list_prompts(directory: Path = PROMPTS_DIR) -> list[Prompt]:
    return [parse_prompt_file(p) for p in sorted(directory.glob("*.txt"))]


def load_prompt(prompt_id: str, directory: Path = PROMPTS_DIR) -> Prompt:
    """A prompt by id, or by path to a prompt file."""
    candidate = Path(prompt_id)
    if candidate.suffix == ".txt" and candidate.exists():
        return parse_prompt_file(candidate)
    for prompt in list_prompts(directory):
        if prompt.id == prompt_id:
            return prompt
    known = ", ".join(p.id for p in list_prompts(directory)) or "(none)"
    raise PromptError(f"prompt {prompt_id!r} not found in {directory}; known prompts: {known}")
