"""Interpretation grading (issue 12, part 2): the protocol, validated grade rows and the blinded
queue. cache.grade_stats summarises the grades (which grade counts: ``CURRENT_GRADES``).

Protocol. A grader rates one model interpretation at a time, blinded: they see the image thumbnail
and the interpretation as plain text, never the model, provider, truth, source, file name, label or
confidence. Scales (``SCALES``, anchors shown to the grader): correctness 1-5, specificity 1-5
(1 = would describe any image of this modality, 5 = findings with location or extent unique to
this image), hallucinated findings yes/no with a count, an optional note. Grades are rows of the
store's ``grades`` table (cache.schema.GRADE_COLUMNS), appended at once; ``session_id`` starts
with the origin of the session (``ORIGINS``): ``queue`` (every interpretation) or ``image`` (one
image's interpretations, opened from the gallery detail, where the grader may have seen the
models' answers and the truth first).

Order. Each grader's queue is the interpretations they have not graded, across models, sorted by
sha256(``ORDER_SALT`` + grader + response key): a random permutation per grader, derived
reproducibly (a reload resumes it), and stable when the store grows (a new answer lands at a random
place without reordering the rest). The order says nothing about the model. ``queue_page`` reads
the queue a page (``QUEUE_PAGE``) at a time, so a grade costs no pass over the store.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow.parquet as pq

from cache.schema import READER_PREFIX, READER_PROVIDER
from cache.store import utcnow

#: scale -> grade -> anchor shown to the grader (grades without an anchor lie between)
SCALES: dict[str, dict[int, str]] = {
    "correctness": {
        1: "wrong: what it describes is not in the image, or is misread",
        3: "partly right, partly wrong",
        5: "right in everything it states",
    },
    "specificity": {
        1: "would describe any image of this modality",
        3: "names findings of this image, without location or extent",
        5: "findings with location or extent unique to this image",
    },
}
GRADES = (1, 2, 3, 4, 5)
ORIGINS = ("queue", "image")
ORDER_SALT = "medlens-grading-order-v1:"
QUEUE_PAGE = 100
GRADER_NAME = re.compile(r"[^\W_][\w .'-]{0,39}")  # letters/digits first; no markup, no path
NOTE_MAX = 1000


def is_reader_sql(alias: str = "") -> str:
    """SQL true for a human reader's row (provider ``reader`` or model ``reader:<name>``)."""
    p = f"{alias}." if alias else ""
    return f"({p}provider = '{READER_PROVIDER}' OR starts_with({p}model, '{READER_PREFIX}'))"


def gradable_sql(alias: str = "") -> str:
    """SQL true for an answer a grader can grade: a model's (not a reader's cue) with an interpretation."""
    p = f"{alias}." if alias else ""
    return f"NOT coalesce({is_reader_sql(alias)}, false) AND regexp_matches(coalesce({p}interpretation, ''), '\\S')"


#: the grade that counts: a grader's latest for an interpretation
CURRENT_GRADES = """SELECT * FROM grades
QUALIFY row_number() OVER (PARTITION BY grader, key ORDER BY created_at DESC, grade_id DESC) = 1"""


def valid_grader(name: object) -> str:
    """The grader's name, trimmed and NFC-normalised; ValueError unless it is 1-40 letters, digits,
    spaces or . ' - _ starting with a letter or digit."""
    text = " ".join(unicodedata.normalize("NFC", str(name or "")).split())
    if not GRADER_NAME.fullmatch(text):
        raise ValueError(
            "a grader's name is 1-40 letters, digits, spaces or . ' - _, starting with a letter or digit"
        )
    return text


def new_session_id(origin: str) -> str:
    """``<origin>-<random hex>`` for one grading session."""
    if origin not in ORIGINS:
        raise ValueError(f"unknown grading origin {origin!r} ({' | '.join(ORIGINS)})")
    return f"{origin}-{uuid.uuid4().hex[:16]}"


@dataclass(frozen=True)
class Grade:
    """One grade, checked when made: a row of the ``grades`` table via :meth:`row`."""

    key: str
    grader: str
    correctness: int
    specificity: int
    hallucinated: bool
    hallucination_count: int
    session_id: str
    note: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "grader", valid_grader(self.grader))
        if not re.fullmatch(r"[0-9a-f]{64}", str(self.key)):
            raise ValueError("the graded key must be a response key (64 hex digits)")
        for scale in SCALES:
            if getattr(self, scale) not in GRADES:
                raise ValueError(f"{scale} is a grade from 1 to 5, not {getattr(self, scale)!r}")
        if not isinstance(self.hallucinated, bool):
            raise ValueError("hallucinated is yes or no")
        count = self.hallucination_count
        if not isinstance(count, int) or count < 0 or count > 99:
            raise ValueError("the number of hallucinated findings is a whole number from 0 to 99")
        if self.hallucinated != (count > 0):
            raise ValueError("say how many findings are hallucinated (at least 1), or answer no (0)")
        if not str(self.session_id).startswith(tuple(f"{o}-" for o in ORIGINS)):
            raise ValueError("session_id comes from new_session_id")
        note = (self.note or "").strip()[:NOTE_MAX]
        object.__setattr__(self, "note", note or None)

    def row(self) -> dict[str, Any]:
        """The grades row, with a new grade_id and the time now (UTC)."""
        return {
            "grade_id": uuid.uuid4().hex,
            "key": self.key,
            "created_at": utcnow(),
            "grader": self.grader,
            "correctness": self.correctness,
            "specificity": self.specificity,
            "hallucinated": self.hallucinated,
            "hallucination_count": self.hallucination_count,
            "note": self.note,
            "session_id": self.session_id,
        }


@dataclass(frozen=True)
class QueuePage:
    """The first items of a grader's queue (in their order) and the counts to say how many are left."""

    items: list[dict[str, str]]  #: key, image_sha256, interpretation
    in_scope: int  #: gradable answers in the queue (all, or one image's)
    graded_in_scope: int  #: of them, graded by the grader in the snapshot
    graded_all: int  #: keys the grader had graded anywhere, in the snapshot
    scope_keys: frozenset[str] | None = None  #: every key of a one-image queue (it is small)

    def left(self, done: Collection[str]) -> int:
        """How many the grader has not graded, ``done`` being every key graded by now (a superset
        of the snapshot's): grades given since the snapshot count as in scope, as the queue gives them."""
        if self.scope_keys is not None:
            return len(self.scope_keys - set(done))
        return max(0, self.in_scope - self.graded_in_scope - (len(done) - self.graded_all))


_MINE = "SELECT DISTINCT key FROM grades WHERE grader = ? AND key IS NOT NULL"
# the counts come from an aggregate joined to every row: a windowed count(*) FILTER took minutes at 10^6
_PAGE_SQL = f"""
WITH mine AS ({_MINE}),
     scope AS NOT MATERIALIZED (
         SELECT key, image_sha256, key IN (SELECT key FROM mine) AS graded FROM results
         WHERE {gradable_sql()} AND (?::VARCHAR IS NULL OR image_sha256 = ?)),
     totals AS (SELECT count(*) AS in_scope, count(*) FILTER (WHERE graded) AS done FROM scope)
SELECT key, image_sha256, in_scope, done FROM scope, totals
WHERE NOT graded AND key NOT IN (SELECT unnest(?::VARCHAR[]))
ORDER BY sha256(? || key) LIMIT ?"""


def _texts(con: duckdb.DuckDBPyConnection, keys: list[str]) -> dict[str, str]:
    sql = "SELECT key, interpretation FROM results WHERE key IN (SELECT unnest(?::VARCHAR[]))"
    return dict(con.execute(sql, [keys]).fetchall()) if keys else {}


def queue_page(
    con: duckdb.DuckDBPyConnection,
    grader: str,
    image: str | None = None,
    exclude: Sequence[str] = (),
    limit: int | None = None,
) -> QueuePage:
    """The gradable answers ``grader`` has not graded in ``con``'s snapshot, ``exclude`` left out:
    the first ``limit`` (default ``QUEUE_PAGE``) in the grader's order. ``image`` keeps one image's
    answers. A pass over ``results`` costs about a second at 10^6 rows, so one page serves many
    grades (``pick_next``); the texts are read for the page's keys only."""
    limit = QUEUE_PAGE if limit is None else limit
    rows = con.execute(
        _PAGE_SQL, [grader, image, image, list(exclude), ORDER_SALT + grader, limit]
    ).fetchall()
    texts = _texts(con, [r[0] for r in rows])
    scope_keys = None
    if image is not None:
        sql = f"SELECT key FROM results WHERE {gradable_sql()} AND image_sha256 = ?"
        scope_keys = frozenset(k for (k,) in con.execute(sql, [image]).fetchall())
    return QueuePage(
        items=[{"key": k, "image_sha256": sha, "interpretation": texts[k]} for k, sha, _n, _d in rows],
        in_scope=int(rows[0][2]) if rows else 0,
        graded_in_scope=int(rows[0][3]) if rows else 0,
        graded_all=int(con.execute(f"SELECT count(*) FROM ({_MINE})", [grader]).fetchone()[0]),
        scope_keys=scope_keys,
    )


def pick_next(
    page: Sequence[dict[str, str]], done: Collection[str], skipped: Collection[str] = ()
) -> dict[str, str] | None:
    """The first item of a queue page that is neither graded (``done``) nor skipped, or None."""
    return next((item for item in page if item["key"] not in done and item["key"] not in skipped), None)


def next_interpretation(
    con: duckdb.DuckDBPyConnection, grader: str, skipped: Sequence[str] = (), image: str | None = None
) -> tuple[int, dict[str, str] | None]:
    """(how many interpretations ``grader`` has not graded yet, the next one; None when none is
    left), from ``con``'s grades. ``skipped`` keys come after all the others, in the grader's order."""
    page = queue_page(con, grader, image, exclude=skipped, limit=1)
    if not page.items:  # only skipped ones are left, if any
        page = queue_page(con, grader, image, limit=1)
    return page.in_scope - page.graded_in_scope, (page.items[0] if page.items else None)


def part_grader_keys(path: str) -> dict[str, frozenset[str]]:
    """grader -> the keys they graded, in one grades part (parts never change: cache by path)."""
    table = pq.read_table(path, columns=["grader", "key"])
    keys: dict[str, set[str]] = {}
    for grader, key in zip(table["grader"].to_pylist(), table["key"].to_pylist(), strict=True):
        keys.setdefault(grader, set()).add(key)
    return {grader: frozenset(found) for grader, found in keys.items()}
