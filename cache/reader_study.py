"""A blinded reader study: which images, in which order per reader, and the rows readers' answers become.

Files in the store (JSON, written atomically; ids checked before they become file names)::

    <store>/reader_studies/<study_id>.json              the study: cases, training cases, instructions
    <store>/reader_sessions/<study_id>/<reader_id>.json one reader's order, answers so far, first-shown times

A study's scored cases are drawn balanced by modality x truth (as far as the images allow); a
training block, if any, uses other images. Each reader gets their own random order (seeded by the
study and the reader, and stored), so a reload or a second sitting resumes at the same case. The time
per case is the server's clock from when the case was first shown to the answer.

An answer is a ``responses`` row like a model's (provider ``reader``, model ``reader:<name>``,
``label_rule`` ``reader``, ``rating`` 1..5), with the image's modality, truth, source and path copied
from the models' rows, so readers appear in every metric. Its key is ``cache.schema.response_key``
over the reader, the block and the instructions, so answering again never adds a second row. Training
answers have ``task = 'reader_training'`` and are never in a metric.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
import unicodedata
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cache.review import check_person_name
from cache.schema import canonical_json, response_key
from cache.store import Store, utcnow

PROVIDER = "reader"
PROMPT_ID = "reader"
BLOCKS = {"scored": "detect", "training": "reader_training"}  # block -> task
RATINGS = {
    1: "definitely real",
    2: "probably real",
    3: "unsure",
    4: "probably synthetic",
    5: "definitely synthetic",
}
INSTRUCTIONS = (
    "You will see medical images one at a time. Some are real acquisitions, some were made by a generative "
    "model. For each image, pick how sure you are on the five-point scale, then press Real or Synthetic. "
    "Optionally, say what made you decide. There is no time limit, but the time you take is recorded."
)
STUDY_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,47}")
DEFAULT_SIZE = 20


def clock_ms() -> float:
    """The server's wall clock in milliseconds (a module function so tests can move it)."""
    return time.time() * 1000.0


def reader_model(name: str) -> str:
    """'reader:<name>' for a checked name."""
    return f"reader:{check_person_name(name)}"


def reader_id(name: str) -> str:
    """A file-name-safe id for a reader: a lower-case slug of the name and 10 hex digits of its sha256
    (two names that slug alike still get two files)."""
    name = check_person_name(name)
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:40] or "reader"
    return f"{slug}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:10]}"


def instructions_sha256(study: Study) -> str:
    """The prompt_sha256 of the study's answer rows."""
    return hashlib.sha256(study.instructions.encode("utf-8")).hexdigest()


def check_study_id(study_id: str) -> str:
    if not STUDY_ID.fullmatch(str(study_id)):
        raise ValueError("a study id is 1-48 lower-case letters, digits and '-'")
    return str(study_id)


@dataclass
class Study:
    """A reader study: the scored cases and the training cases (image sha256s), the instructions, and
    optional invite codes (code -> the pseudonym the reader is stored under)."""

    study_id: str
    cases: list[str]
    training: list[str] = field(default_factory=list)
    instructions: str = INSTRUCTIONS
    seed: int = 0
    created_at: str = ""
    invites: dict[str, str] = field(default_factory=dict)


@dataclass
class Session:
    """One reader's sitting(s) in a study."""

    study_id: str
    reader: str
    reader_id: str
    order: dict[str, list[str]]  # block -> image sha256s in this reader's order
    answered: dict[str, list[str]] = field(default_factory=lambda: {b: [] for b in BLOCKS})
    shown_at_ms: dict[str, float] = field(default_factory=dict)  # "<block>:<sha>" -> first shown


def _name(study_id: str, rid: str | None = None) -> str:
    """The store-relative file of a study, or of one reader's session in it."""
    check_study_id(study_id)
    if rid is None:
        return f"reader_studies/{study_id}.json"
    if not re.fullmatch(r"[a-z0-9-]{1,60}", rid):
        raise ValueError(f"not a reader id: {rid!r}")
    return f"reader_sessions/{study_id}/{rid}.json"


def _write(store: Store, name: str, value: Any) -> None:
    store.storage.put(name, json.dumps(value, indent=2, sort_keys=True).encode("utf-8"))


def _read(store: Store, name: str) -> Any:
    return json.loads(store.storage.read(name).decode("utf-8"))


def balanced_cases(
    images: Sequence[Mapping[str, Any]],
    size: int,
    seed: int,
    exclude: set[str] | frozenset[str] = frozenset(),
) -> list[str]:
    """Up to ``size`` image sha256s, drawn in turn from each modality x truth cell (shuffled with
    ``seed``), so the cells are as equal as the images allow; returned in cell-turn order."""
    rng = random.Random(seed)
    cells: dict[tuple[str, str], list[str]] = {}
    for image in sorted(images, key=lambda i: str(i["image_sha256"])):
        if image["image_sha256"] not in exclude:
            cells.setdefault((str(image["modality"]), str(image["truth"])), []).append(
                str(image["image_sha256"])
            )
    pools = [rng.sample(shas, len(shas)) for _cell, shas in sorted(cells.items())]
    chosen: list[str] = []
    while len(chosen) < size and any(pools):
        for pool in pools:
            if pool and len(chosen) < size:
                chosen.append(pool.pop())
    return chosen


def new_study(
    store: Store,
    images: Sequence[Mapping[str, Any]],
    size: int = DEFAULT_SIZE,
    training: int = 0,
    invites: int = 0,
    seed: int | None = None,
) -> Study:
    """Draw and save a new study over ``images`` (dicts with image_sha256, modality, truth)."""
    seed = random.SystemRandom().randrange(2**31) if seed is None else int(seed)
    cases = balanced_cases(images, size, seed)
    practice = balanced_cases(images, training, seed + 1, exclude=set(cases))
    codes = {uuid.uuid4().hex[:8]: f"R{n:02d}" for n in range(1, invites + 1)}
    study = Study(
        study_id=f"study-{utcnow():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}",
        cases=cases,
        training=practice,
        seed=seed,
        created_at=utcnow().isoformat(),
        invites=codes,
    )
    _write(store, _name(study.study_id), asdict(study))
    return study


def studies(store: Store) -> list[Study]:
    """The store's studies, newest first (unreadable files are skipped)."""
    found = []
    for name in store.storage.list("reader_studies"):
        if not name.endswith(".json"):
            continue
        try:
            found.append(load_study(store, name.rsplit("/", 1)[-1][: -len(".json")]))
        except (OSError, ValueError, TypeError, KeyError):
            continue
    return sorted(found, key=lambda s: s.created_at, reverse=True)


def load_study(store: Store, study_id: str) -> Study:
    data = _read(store, _name(study_id))
    return Study(**{k: data[k] for k in Study.__dataclass_fields__ if k in data})


def reader_name(study: Study, typed: str) -> str:
    """Who the reader is stored as: the pseudonym of an invite code, else the typed name. A study with
    invite codes takes only codes. Raises ValueError."""
    typed = check_person_name(typed)
    if study.invites:
        if typed not in study.invites:
            raise ValueError("this study takes invite codes only; that is not one of them")
        return study.invites[typed]
    return typed


def start_session(store: Store, study: Study, name: str) -> Session:
    """The reader's stored session, or a new one with this reader's own order (saved at once)."""
    rid = reader_id(name)
    try:
        data = _read(store, _name(study.study_id, rid))
    except FileNotFoundError:
        data = None
    if data is not None:
        return Session(**{k: data[k] for k in Session.__dataclass_fields__ if k in data})
    rng = random.Random(f"{study.seed}:{rid}")
    session = Session(
        study_id=study.study_id,
        reader=check_person_name(name),
        reader_id=rid,
        order={
            "training": rng.sample(study.training, len(study.training)),
            "scored": rng.sample(study.cases, len(study.cases)),
        },
    )
    save_session(store, session)
    return session


def save_session(store: Store, session: Session) -> None:
    _write(store, _name(session.study_id, session.reader_id), asdict(session))


def next_case(session: Session) -> tuple[str, str, int, int] | None:
    """(block, image sha256, case number from 1, cases in the block) of the next unanswered case:
    training first, then the scored block; None when everything is answered."""
    for block in ("training", "scored"):
        done = set(session.answered.get(block, []))
        for index, sha in enumerate(session.order.get(block, []), start=1):
            if sha not in done:
                return block, sha, index, len(session.order[block])
    return None


def shown(store: Store, session: Session, block: str, sha: str) -> float:
    """When the case was first shown (recorded now, and saved, if this is the first time)."""
    mark = f"{block}:{sha}"
    if mark not in session.shown_at_ms:
        session.shown_at_ms[mark] = clock_ms()
        save_session(store, session)
    return session.shown_at_ms[mark]


def answer_row(
    study: Study,
    session: Session,
    block: str,
    image: Mapping[str, Any],
    label: str,
    rating: int,
    cue: str = "",
) -> dict[str, Any]:
    """The responses row of one answer (checked: label real|synthetic agrees with the rating)."""
    if rating not in RATINGS:
        raise ValueError("pick how sure you are (1 to 5) before answering")
    if label not in ("real", "synthetic"):
        raise ValueError("answer Real or Synthetic")
    if (label == "real" and rating > 3) or (label == "synthetic" and rating < 3):
        raise ValueError(f"the confidence you picked ({RATINGS[rating]}) does not fit the answer {label}")
    model, sha = reader_model(session.reader), str(image["image_sha256"])
    params = {"block": block}
    cue = " ".join((cue or "").split())[:2000]
    latency = max(0.0, clock_ms() - session.shown_at_ms.get(f"{block}:{sha}", clock_ms()))
    return {
        "key": response_key(
            provider=PROVIDER,
            model=model,
            params=params,
            prompt_text=study.instructions,
            image_sha256=sha,
            repeat=0,
        ),
        "run_id": f"reader-{study.study_id}-{session.reader_id}",
        "created_at": utcnow(),
        "provider": PROVIDER,
        "model": model,
        "params_json": canonical_json(params),
        "prompt_id": PROMPT_ID,
        "prompt_sha256": instructions_sha256(study),
        "prompt_text": study.instructions,
        "image_sha256": sha,
        "image_path": image.get("image_path"),
        "modality": image.get("modality"),
        "truth": image.get("truth"),
        "source": image.get("source"),
        "repeat": 0,
        "status": "ok",
        "attempts": 1,
        "label": label,
        "label_rule": "reader",
        "rating": rating,
        "raw_text": f"{label.capitalize()}; confidence {rating} of 5 ({RATINGS[rating]})",
        "interpretation": cue or None,
        "latency_ms": latency,
        "needs_review": False,
        "task": BLOCKS[block],
    }
