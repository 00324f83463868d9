"""Read a model's answer into a label, a stated confidence, an interpretation, and how the label was decided.

Evidence is taken in this order; the first step that yields a label wins (its name is `ParsedAnswer.rule`):

1. `refusal`: a non-empty ``refusal`` (OpenAI), or empty text with a blocking finish reason (content_filter,
   SAFETY, PROHIBITED_CONTENT, RECITATION, blockReason...) -> refused. `empty`: other empty text -> unparseable.
2. `json`: a JSON object (plain, fenced, inside prose, or sloppy Python-style) whose label-like key maps to a
   label. A JSON label that does not map falls back to the prose rules on the whole text.
3. `labelled_line`: "Verdict: X", "**Real or synthetic:** X", "Assessment: Likely Real (...)", "Final Score:
   2/10 - Certainly Real", a header with X on the next line. The last committed one (real/synthetic) wins, as it
   is usually the final answer. A value that opens with a verdict is that verdict whatever follows it.
4. `opening`: a reply that opens with a verdict word ("Real.", "1. Synthetic (AI-generated)", "Not real.",
   "<answer> real </answer>"): the prompts ask for exactly that, so the first word is the verdict.
5. `prose`: the text clause by clause (`cache.parse_prose`). Conflicting verdicts with no stated conclusion
   -> unparseable with `needs_review`: a conflict is not hidden in `uncertain`, which is kept for hedges.
6. `none`: a non-empty answer with no verdict, hedge or refusal -> unparseable with `needs_review`.
A reasoning model's answer after ``</think>`` is read first; its thinking only when the answer says nothing.
A blocking finish reason on text that yields no label -> refused (rule `refusal`).

`span` is the [start, end) of the deciding words or line in the text given to `parse_answer`, for a UI to
highlight. Speed (it runs over every stored answer): over the 342 answers of tests/data/parser_corpus (median
1.5 KB) the median answer takes ~180 us on this 2-core machine under load, ~140 us per KB in aggregate (version
1: ~180 us, ~135 us per KB). See `cache.parse_words` for why the patterns are built the way they are.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from cache import parse_words as w
from cache.parse_prose import Verdict, scan
from cache.schema import PARSER_RULES

#: Bumped whenever a rule change can change a reading; stored with every reading (``parser_version``).
PARSER_VERSION = "2"
#: The rules `parse_answer` decides by (declared with the others in cache.schema.LABEL_RULES).
RULES = PARSER_RULES


@dataclass(frozen=True)
class ParsedAnswer:
    """What one model answer says about one image, and how that was decided."""

    label: str  #: real | synthetic | uncertain | refused | unparseable
    confidence: float | None  #: model-stated confidence in [0, 1], None when not stated
    interpretation: str | None  #: the model's interpretation of the image, None when absent
    #: which rule decided (RULES): refusal, empty, json, labelled_line, opening, prose, none
    rule: str = "none"
    #: [start, end) character offsets into the text given to parse_answer of the deciding span, if any
    span: tuple[int, int] | None = None
    #: the rules found conflicting verdicts, or no verdict in a non-empty answer: a person should look
    needs_review: bool = False


_NOT = re.compile(r"\bnot\b")


class _Reading(NamedTuple):
    label: str
    start: int
    end: int
    rule: str
    conflict: bool = False


def reading_columns(parsed: ParsedAnswer) -> dict[str, Any]:
    """The store columns (responses schema v2) that record a parser reading and how it was decided."""
    start, end = parsed.span if parsed.span is not None else (None, None)
    return {
        "label": parsed.label, "confidence": parsed.confidence, "interpretation": parsed.interpretation,
        "label_rule": parsed.rule, "label_span_start": start, "label_span_end": end,
        "parser_version": PARSER_VERSION, "needs_review": parsed.needs_review,
    }


def parse_answer(
    text: str | None, finish_reason: str | None = None, refusal: str | None = None
) -> ParsedAnswer:
    """Parse one answer (rules in the module docstring). Pure, no I/O."""
    if refusal and refusal.strip():
        return ParsedAnswer("refused", None, None, "refusal")
    raw = text or ""
    body = raw.strip()
    blocked = bool(finish_reason and w.BLOCKED.search(finish_reason))
    if not body:
        return ParsedAnswer(
            *(("refused", None, None, "refusal") if blocked else ("unparseable", None, None, "empty"))
        )
    answer = (_from_json(body) if "{" in body else None) or _from_prose(body)
    if blocked and answer.label == "unparseable":
        return ParsedAnswer("refused", answer.confidence, answer.interpretation, "refusal")
    if answer.span is None:
        return answer
    shift = len(raw) - len(raw.lstrip())  # spans were found in the stripped text
    start, end = answer.span[0] + shift, answer.span[1] + shift
    while start < end and raw[start].isspace():  # the words themselves, not the blanks around them
        start += 1
    while end > start and raw[end - 1].isspace():
        end -= 1
    return ParsedAnswer(**{**answer.__dict__, "span": (start, end) if end > start else None})


def _result(reading: _Reading | None, confidence: float | None, interpretation: str | None) -> ParsedAnswer:
    if reading is None:
        return ParsedAnswer("unparseable", confidence, interpretation, "none", None, True)
    label = "unparseable" if reading.conflict else reading.label
    span = (reading.start, reading.end) if reading.end > reading.start else None
    return ParsedAnswer(label, confidence, interpretation, reading.rule, span, reading.conflict)


def _from_json(body: str) -> ParsedAnswer | None:
    """The answer from a JSON object in the text, or None when there is no object."""
    found = _find_json(body)
    if found is None:
        return None
    flat, start, end = found
    confidence = _norm_confidence(_pick(flat, w.CONF_KEYS))
    field = _pick(flat, w.INTERP_KEYS)
    # Without a field, prose around the object is the interpretation if it says something ("Here is the JSON:" does not).
    outside = _tidy(body[:start] + "\n" + body[end:])
    interpretation = (
        _as_text(field) if field is not None else outside if len((outside or "").split()) > 7 else None
    )
    label = _json_label(flat)
    if label is None:  # the JSON does not say: read the whole text as prose
        prose = _from_prose(body)
        confidence = prose.confidence if confidence is None else confidence
        return ParsedAnswer(**{**prose.__dict__, "confidence": confidence,
                               "interpretation": interpretation or prose.interpretation})  # fmt: skip
    return ParsedAnswer(label, confidence, interpretation, "json", (start, end))


def _find_json(body: str) -> tuple[dict[str, Any], int, int] | None:
    """The first JSON-ish object (in a fenced block if there is one), keys flattened, and its text span."""
    fence = w.FENCE.search(body)
    low, high = (fence.start(), fence.end()) if fence else (0, len(body))
    first, last = body.find("{", low), body.rfind("}", low, high) + 1
    start, end = (low, high) if fence else (first, last if last > first else len(body))
    try:  # strict JSON, possibly followed by prose or a second object
        value = json.JSONDecoder().raw_decode(body, first)[0]
    except (ValueError, RecursionError):
        try:  # Python-style: single quotes, trailing commas, True/None (literal_eval never runs code)
            value = ast.literal_eval(w.LOOSE_WORDS.sub(lambda m: w.PYTHON_WORDS[m.group()], body[first:last]))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return None
    return (_flat(value), start, end) if isinstance(value, dict) else None


def _flat(obj: dict[str, Any]) -> dict[str, Any]:
    """Keys compared case- and punctuation-insensitively: "Real or Synthetic" -> "real_or_synthetic"."""
    return {w.KEY_CHARS.sub("_", str(key).lower()).strip("_"): value for key, value in obj.items()}


def _pick(flat: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((flat[key] for key in keys if flat.get(key) not in (None, "")), None)


def _json_label(flat: dict[str, Any], nested: bool = True) -> str | None:
    """The label a JSON object states: label-like keys, then yes/no keys, then one level down."""
    for key in w.LABEL_KEYS:
        if isinstance(flat.get(key), str) and (found := _value_label(_lower(flat[key]))):
            return found[0]
    for key, yes in w.BOOL_KEYS.items():
        if (value := w.YES_NO.get(str(flat.get(key)).strip().lower())) is not None:
            return yes if value else w.FLIP[yes]
    inner = (_json_label(_flat(v), False) for v in flat.values() if nested and isinstance(v, dict))
    return next((label for label in inner if label), None)


def _value_label(value: str) -> tuple[str, int, int] | None:
    """The label of a lowercased label value ("likely real (with concerns)", "not synthetic", "cannot
    determine") and its span in the value; None when it states none (or only a refusal)."""
    exact = w.EXACT.get(value.strip().strip(".!*\"' "))
    if exact:
        return exact, 0, len(value)
    found = _opening(value) or scan(value)
    if found is None or found[0] == "refused" or (isinstance(found, Verdict) and found.conflict):
        return None
    return found[0], found[1], found[2]


def _lower(text: str) -> str:
    """Lowercase with straight apostrophes, keeping the length (so spans stay valid in the original)."""
    low = text.replace("\u2019", "'").lower()
    return low if len(low) == len(text) else "".join(c if len(c.lower()) > 1 else c.lower() for c in text)


def _from_prose(body: str) -> ParsedAnswer:
    """The answer from free text: labelled lines, then the opening words, then the prose."""
    low = _lower(body)
    cut = low.rfind(w.THINK_END)
    answer_part = _read(low, cut + len(w.THINK_END)) if cut >= 0 else None
    if answer_part is None or answer_part[0].conflict:  # the thinking may say what a cut-off answer does not
        answer_part = _read(low, 0) or answer_part
    reading, labelled = answer_part or (None, [])
    confidence = _find_confidence(low)
    if reading is None:
        return _result(None, confidence, body)
    spans = [(reading.start, reading.end), *labelled]
    return _result(reading, confidence, _interpretation(body, low, spans))


def _read(low: str, start: int) -> tuple[_Reading, list[tuple[int, int]]] | None:
    """The reading of low[start:] (offsets into `low`) and the spans of its labelled lines, or None."""
    labelled: list[tuple[str, int, int]] = []
    for line, m in _line_matches(w.LABELLED, low, start):
        value, at = m.group("value"), m.start("value")
        if not value.strip(" \t*_#:") and m.group("next") is not None:
            value, at = m.group("next"), m.start("next")
        if value.startswith(('"', "'")):  # a quoted (JSON-like) value ends at its closing quote
            value = value[1:].split(value[0], 1)[0]
            at += 1
        if found := _value_label(value):
            labelled.append((found[0], line, at + len(value)))
    lines = [(s, e) for _, s, e in labelled]
    committed = [line for line in labelled if line[0] in w.FLIP]
    if chosen := (committed or labelled or [None])[-1]:
        return _Reading(chosen[0], chosen[1], chosen[2], "labelled_line"), lines
    if opening := _opening(low, start):
        return _Reading(*opening, "opening"), lines
    if prose := scan(low[start:]):
        return _Reading(prose.label, prose.start + start, prose.end + start, "prose", prose.conflict), lines
    return None


def _line_matches(pattern: re.Pattern[str], text: str, start: int = 0) -> Iterator[tuple[int, re.Match[str]]]:
    """(line start, match) of a (?m)^ line pattern at each line start from `start`.

    In finditer a (?m)^ pattern is tried at every position; the same pattern led by a newline instead lets `re`
    jump from newline to newline.
    """
    if (start == 0 or text[start - 1] == "\n") and (m := pattern.match(text, start)):
        yield start, m
    if (after_newline := _AFTER_NEWLINE.get(pattern)) is None:
        after_newline = _AFTER_NEWLINE[pattern] = re.compile(pattern.pattern.replace("(?m)^", "(?m)\n", 1))
    for m in after_newline.finditer(text, start):
        yield m.start() + 1, m


_AFTER_NEWLINE: dict[re.Pattern[str], re.Pattern[str]] = {}


def _opening(low: str, start: int = 0) -> tuple[str, int, int] | None:
    """The verdict a reply opens with ("Real.", "Not real.", "1. Synthetic (AI-generated)") and its span."""
    lead = w.OPENING.match(low, start)
    at = lead.end() if lead else start  # (the pattern always matches, maybe empty)
    term = w.TERM.match(low, at)
    if (
        term
        and at < len(low)
        and not (w.PAIR_SYNTHETIC if _is_real(term) else w.PAIR_REAL).match(low, term.end())
    ):
        label = "real" if _is_real(term) else "synthetic"
        label = w.FLIP[label] if lead and _NOT.search(lead.group()) else label
    elif low.startswith("uncertain", at):
        label = "uncertain"
    else:
        return None
    stop = w.OPENING_END.search(low, term.end() if term else at)
    return label, start, stop.end() if stop else len(low)


def _is_real(term: Any) -> bool:
    return term.group().startswith(w.REAL_WORDS)


def _interpretation(body: str, low: str, spans: list[tuple[int, int]]) -> str | None:
    """A section headed Interpretation/Findings/...; otherwise the text minus the verdict lines."""
    if "{" in low and (field := w.JSON_FIELD.search(low)):  # a JSON object too broken to load
        return body[field.start(1) : field.end(1)].strip() or None
    headers = list(_line_matches(w.SECTION, low))
    if found := min(headers, key=lambda h: w.SECTION_RANK.get(h[1].group("name"), 1), default=None):
        top, section = found
        # It ends at the next verdict or confidence line, or the next header that is not a list item
        # (Gemini nests "* **Findings:** ..." bullets inside its Interpretation section).
        ends = [start for start, _ in spans if start >= section.end()]
        ends += [line for line, _ in _line_matches(w.CONF_LINE, low, section.end())]
        ends += [line for line, h in headers if line > top and not h.group("bullet")]
        return _tidy(body[section.end() : min(ends, default=len(body))])
    pieces, last = [], 0
    for start, end in sorted(spans):
        pieces.append(body[last : max(start, last)])
        last = max(last, end)
    return _tidy("".join(pieces) + body[last:])


def _tidy(text: str) -> str | None:
    if "onfiden" in text or "ONFIDEN" in text or "ertainty:" in text:  # cheap gate for the line pattern
        text = w.CONF_LINE.sub("", text)
    return text.strip().lstrip(":").strip() or None


def _as_text(value: Any) -> str | None:
    """A JSON interpretation field: a string verbatim, a list one item per line."""
    text = "\n".join(map(str, value)) if isinstance(value, list) else str(value)
    return text if text.strip() else None


def _norm_confidence(value: Any) -> float | None:
    """A stated confidence in [0, 1] from 0.85, 85, "85%", "8/10" or high/medium/low (0.9/0.6/0.3)."""
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip().lower()
    if (word := text.rsplit(None, 1)[-1] if text else "") in w.CONF_WORDS:
        return w.CONF_WORDS[word]
    if not (m := w.NUMBER.search(text)):
        return None
    number = float(m.group(1))
    if m.group(3):
        number = number / float(m.group(3)) if float(m.group(3)) else -1.0
    elif m.group(2) or number > 1:  # a percentage, with or without the sign
        number /= 100
    return number if 0 <= number <= 1 else None


def _find_confidence(low: str) -> float | None:
    """A confidence stated in lowercased prose: "confidence: 80%", "i am 90% sure", "high confidence"."""
    named = "confiden" in low or "certainty:" in low  # cheap gates: most answers state no confidence
    if m := named and w.CONF_NUM.search(low):
        return _norm_confidence(m.group(1))
    for m in w.CONF_PCT.finditer(low) if "%" in low or "percent" in low else ():
        if not w.NOT_SURE.search(low[max(0, m.start() - 30) : m.start()].rsplit(". ", 1)[-1]):
            return _norm_confidence(m.group(1))  # ("not 100% sure" states no confidence)
    m = named and (w.CONF_STATED.search(low) or w.CONF_LEVEL.search(low))
    return w.CONF_WORDS[m.group(1)] if m else None
