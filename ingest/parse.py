"""Read a model's answer into a label, a stated confidence and an interpretation.

Evidence is taken in this order; the first step that yields a label wins:

1. A non-empty ``refusal`` (OpenAI), or empty text with a blocking finish reason (content_filter,
   SAFETY, PROHIBITED_CONTENT, RECITATION, blockReason...) -> refused; other empty text -> unparseable.
2. A JSON object (plain, fenced, inside prose, or sloppy Python-style) whose label-like key maps to a
   label. A JSON label that does not map falls back to the prose rules on the whole text.
3. Labelled lines ("Verdict: X", "**Real or synthetic:** X", "Answer: REAL", a header with X on the
   next line). The last committed one (real/synthetic) wins, as it is usually the final answer.
4. A reply that opens with the verdict ("Real.", "1. Synthetic (AI-generated)", "Not real.").
5. The prose, clause by clause (`_scan`):
   - A verdict term counts only in a verdict context: after a copula or judgement cue ("is", "appears
     to be", "likely", "I believe", "not"), or as a clause of its own ("Definitely synthetic.").
     Generic mentions do not count: plurals ("real fundus images typically..."), "real-world",
     "realistic", "real or synthetic", "whether it is real", "resembles a real photograph".
   - An odd number of negators before the term in its clause flips it ("not a real photograph",
     "no signs of AI generation"); an even number does not ("nothing suggests it isn't genuine").
   - A committed verdict beats a hedge, a hedge beats a refusal: "It's hard to be certain, but this
     appears real" is real; "As an AI I cannot provide diagnoses" with no verdict is refused.
   - Hedges naming both options ("could be either", "might also be") void the verdicts of their
     sentence, except those after a later "but"/"however" ("could be either, but I lean real").
   - Conflicting verdicts: each weighs 1, minus 1 when conceded or about looks only ("although it
     looks real", "looks like a real..."), plus 1 after a concluding or contrast marker ("however",
     "but", "overall", "ultimately"). The heaviest verdicts decide; if they still disagree, the last
     one wins when it is a stated conclusion (weight 2), otherwise the answer is uncertain.
A blocking finish reason on text that yields no label -> refused.
A blocking finish reason on text that yields no label -> refused.

Speed: all scanning runs on lowercased text with patterns that begin with a literal, so `re` can skip
ahead by first character (a leading \b or IGNORECASE makes it try every position, ~10x slower); word
starts are checked in Python (`_hits`). About 50-100 us for a 1 KB answer.
"""

from __future__ import annotations

import ast
import json
import re
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ParsedAnswer:
    """What one model answer says about one image."""

    label: str  #: real | synthetic | uncertain | refused | unparseable
    confidence: float | None  #: model-stated confidence in [0, 1], None when not stated
    interpretation: str | None  #: the model's interpretation of the image, None when absent


def _alts(words: str, tail: str = r"\b") -> re.Pattern[str]:
    """Any of the space-separated alternatives ("_" stands for whitespace), followed by `tail`."""
    return re.compile("(?:" + "|".join(w.replace("_", r"\s+") for w in words.split()) + ")" + tail)


_GEN = r"[-\s]?(?:generated|created|made|produced|synthesi[sz]ed)"
# A term followed by a plural noun speaks of images in general ("real fundus photographs show...").
_PLURAL = r"images|photos|photographs|pictures|x-?rays|radiographs|scans|ones|examples|samples|data|datasets"
_TERM = _alts(
    r"real(?![-\s](?:world|life|time|estate|looking)\b) authentic genuine synthetic(?:ally)? synthesi[sz]ed fake"
    rf" deep-?fake artificial(?:ly)?(?!_intelligence) generated gans? ai[-\s]?generation ai{_GEN} computer{_GEN}"
    rf" machine{_GEN} gan{_GEN} diffusion{_GEN} algorithmically{_GEN} stable_diffusion diffusion_models? dall-?e"
    " midjourney cgi",
    rf"\b(?!(?:[\s-]+[\w-]+){{0,2}}?\s+(?:{_PLURAL})\b)",
)
_REAL_WORDS = ("real", "authentic", "genuine")
_PAIR = re.compile(
    r"\s*(?:or|and|/|vs\.?|versus)\s*(?:real|authentic|genuine|synthetic|fake|artificial|ai[-\s]?generated|generated)\b"
)
_VERB = (
    r"\s+(?:\w+\s+){0,2}?(?:say|tell|determine|know|distinguish|differentiate|decide|judge|ascertain|verify|confirm"
    r"|be\s+(?:sure|certain|definitive)|definitive(?:ly)?|conclusive(?:ly)?|reliably|confidently|with\s+certainty)\b"
)
_HEDGE = _alts(  # a disclaimer: voids verdict terms in its own clause
    " ".join(
        lead + _VERB
        for lead in [
            "can't",
            "cannot",
            "unable_to",
            "not_able_to",
            "difficult_to",
            "hard_to",
            "impossible_to",
        ]
    )
    + f" not_possible_to{_VERB} challenging_to{_VERB} not_(?:sure|certain) uncertain(?!_significance) unsure"
    " undetermined indeterminate inconclusive unclear_(?:whether|if) no_way_to_(?:tell|know) don't_know do_not_know"
    " without_(?:more|additional|further)_(?:context|information|data|metadata)"
)
_EITHER = _alts(  # a hedge naming both options: voids the verdicts of its whole sentence
    " ".join(f"{modal}_{rest}" for modal in ("could", "might", "may", "can") for rest in ("be_either", "go_either_way",
             "(?:also|equally|just_as_(?:easily|well))_be")) + " either_way 50/50 fifty-fifty coin_(?:flip|toss)"
)  # fmt: skip
_EITHER_NEEDLES = ("either", "also be", "equally be", "just as", "50/50", "fifty", "coin ")
_REFUSE_WHAT = (
    r"\s+(?:\w+\s+)?(?:help|assist|comply|fulfil+|(?:provide|offer|give|make)\s+(?:a\s+|any\s+)?(?:medical|clinical"
    r"|diagnos\w*|professional)|(?:analy[sz]e|interpret|evaluate|review|process|diagnose)\s+(?:medical|this|these|the"
    r"|such|images?))"
)
_REFUSE = _alts(
    " ".join(
        f"{lead}{_REFUSE_WHAT}"
        for lead in ["can't", "cannot", "unable_to", "not_able_to", "won't", "will_not", "decline_to"]
    )
)
_NEG = _alts(  # "n't" is counted separately: it does not start a word
    r"not(?!_only) no(?!_(?:doubt|question)) never nothing none neither nor cannot without lacks? lacking absence"
    r" absent free_of than unlikely doubt(?<!no\sdoubt)(?:s|ful)? non"
)
_CONTRAST_WORDS = ("but", "however", "although", "though", "yet", "whereas", "while", "whilst")
_CONTRAST = _alts(" ".join(_CONTRAST_WORDS))  # starts a new clause
_CUT = _alts(
    "and or because since which so " + " ".join(_CONTRAST_WORDS)
)  # a negation does not reach past these
_NEUTRAL = _alts(  # an indirect question or a comparison, not a verdict
    r"whether if similar_to resembl\w* mimic\w* imitat\w* compar\w+ unlike distinguish\w* differentiat\w* versus vs"
    r" such_as as_in"
)
_CUE = _alts(
    r"is was be been being are am appears? appearing looks? looking seems? likely probably possibly definitely"
    r" clearly certainly most classif\w+ consider\w* believe think judge conclude label\w* as indicat\w* suggest\w*"
    r" consistent taken captured acquired lean\w* guess go_with say not no never"
)
_APPEAR = re.compile(
    r"(?:looks?|looking|seems?|appears?)\s+(?:like\s+)?(?:an?\s+)?"
    r"(?:(?:very|quite|highly|remarkably|fairly|so|extremely|convincingly)\s+)?$"
)
_CONCLUDE = _alts(
    r"but however yet nevertheless nonetheless ultimately overall in_conclusion in_summary to_summari[sz]e therefore"
    r" thus hence on_balance closer_(?:inspection|examination|look) that_said final(?:ly)? all_things_considered"
    r" in_fact actually conclude conclusion"
)
_CONCEDE = _alts("although though while whilst even_if despite")
_CONCEDE_LEAD = re.compile(
    r"\W*(?:at\s+first(?:\s+(?:glance|sight))?|initially|superficially|on\s+the\s+surface)\W*$"
)
_PUNCT = re.compile(r"[.!?\n,;:()\[\]\u2014\u2013-]")
_HEADS = (
    r"(?:(?:final|overall|my)\s+)?(?:answer|verdict|label|classification|conclusion|determination|assessment"
    r"|prediction|decision|result|judge?ment)|authenticity|(?:image\s+)?(?:type|origin|source)"
    r"|(?:is\s+(?:this|the|it)\s+(?:image\s+)?)?(?:real\s+or\s+(?:synthetic|fake|ai[- ]generated|generated)"
    r"|(?:synthetic|fake)\s+or\s+real|real\s*/\s*(?:synthetic|fake))"
)
_LINE_LEAD = r"(?m)^[ \t>#*_+\-\d.)\[{\"',]*"
_LABELLED = re.compile(
    rf"{_LINE_LEAD}(?:{_HEADS})[\"'*_ \t]*(?:\?[*_ \t]*:?|:|=|[\u2014\u2013]|\s-\s|[ \t*_]*$)[ \t*_:]*"
    r"(?P<value>[^\n]*)(?:(?=\n\s*(?P<next>[^\n]*)))?"
)
_OPENING = re.compile(r"[ \t>#*_+\-\d.)\[(]*(?:(?:not|definitely|likely|probably)\s+)?")
_OPENING_END = re.compile(r"[.!?]+(?=\s|$)|\n|\s[-\u2014\u2013]\s|:\s")
_SECTION = re.compile(
    r"(?m)^[ \t>#*_+\-\d.)]*(?:(?:image|clinical|medical|radiological|detailed|brief)\s+)?(?:interpretation"
    r"|findings|description|analysis|observations|explanation|reasoning|rationale|key\s+(?:findings|observations"
    r"|features))(?:\s+of\s+(?:the\s+)?image)?[*_ \t]*(?::[*_ \t]*|$)"
)
_JSON_FIELD = re.compile(
    r"[\"'](?:interpretation|description|findings|reasoning)[\"']\s*:\s*[\"']((?:[^\"\\\n]|\\.)+)"
)
_CONF_LINE = re.compile(
    rf"(?i){_LINE_LEAD}(?:confidence|certainty)(?:\s+(?:level|score))?[*_ \t]*[:=\u2014\u2013-][^\n]*\n?"
)
_CONF_HEAD = r"(?:confidence|certainty)(?:\s+(?:level|score|rating))?[\"'*_]*\s*(?:[:=\u2014-]|is|of|at)?\s*[\"'*_]*\s*"
_CONF_NUM = re.compile(
    rf"{_CONF_HEAD}(?:(?:about|around|approximately|roughly|~)\s*)?(\d{{1,3}}(?:\.\d+)?\s*(?:%|percent|/\s*10{{1,2}}\b)?)"
)
_CONF_PCT = re.compile(
    r"(\d{1,3}(?:\.\d+)?\s*(?:%|percent))\s+(?:sure|certain|confident|confidence|likely|likelihood|probability|chance)"
)
_CONF_WORD = re.compile(
    rf"{_CONF_HEAD}(?:very\s+)?(high|medium|moderate|low)\b|(?:very\s+)?(high|medium|moderate|low)\s+(?:confidence|certainty)\b"
)
_NUMBER = re.compile(r"(-?\d+(?:\.\d+)?)\s*(%|percent|/\s*(\d+))?")
_KEY_CHARS = re.compile(r"[^a-z0-9]+")
_LOOSE_WORDS = re.compile(r"\b(?:true|false|null)\b")
_PYTHON = {"true": "True", "false": "False", "null": "None"}
_DECODER = json.JSONDecoder()

_CONF_WORDS = {"high": 0.9, "medium": 0.6, "moderate": 0.6, "low": 0.3}
_FLIP = {"real": "synthetic", "synthetic": "real"}
# Whole label values that the prose rules would not read as verdicts on their own.
_EXACT = dict.fromkeys(("ai", "gan", "diffusion"), "synthetic") | {"natural": "real"}
_EXACT |= dict.fromkeys(("unknown", "either", "both", "unsure"), "uncertain")
_LABEL_KEYS = ("label", "classification", "answer", "verdict", "prediction", "real_or_synthetic", "result",
               "class", "decision", "determination", "conclusion", "authenticity")  # fmt: skip
_BOOL_KEYS = dict.fromkeys(
    ("is_synthetic", "is_ai_generated", "is_generated", "is_fake", "synthetic"), "synthetic"
)
_BOOL_KEYS["is_real"] = "real"
_CONF_KEYS = ("confidence", "confidence_score", "confidence_level", "certainty")
_INTERP_KEYS = ("interpretation", "image_interpretation", "clinical_interpretation", "description",
                "findings", "reasoning", "explanation", "rationale", "analysis")  # fmt: skip
_YES_NO = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
# Where a text's clauses and sentences start, hedges per clause, both-ways hedge ends per sentence.
_Layout = tuple[list[int], list[int], dict[int, list[re.Match[str]]], dict[int, list[int]]]


def parse_answer(
    text: str | None, finish_reason: str | None = None, refusal: str | None = None
) -> ParsedAnswer:
    """Parse one answer (rules in the module docstring). Pure, no I/O."""
    if refusal and refusal.strip():
        return ParsedAnswer("refused", None, None)
    body = (text or "").strip()
    blocked = bool(
        finish_reason
        and re.search(r"(?i)content.?filter|safety|block|prohibited|recitation|spii|refus", finish_reason)
    )
    if not body:
        return ParsedAnswer("refused" if blocked else "unparseable", None, None)
    answer = (_from_json(body) if "{" in body else None) or _from_prose(body)
    if blocked and answer.label == "unparseable":
        return ParsedAnswer("refused", answer.confidence, answer.interpretation)
    return answer


def _from_json(body: str) -> ParsedAnswer | None:
    """The answer from a JSON object in the text, or None when there is no object."""
    found = _find_json(body)
    if found is None:
        return None
    flat, start, end = found
    confidence = _norm_confidence(_pick(flat, _CONF_KEYS))
    field = _pick(flat, _INTERP_KEYS)
    # Without a field, prose around the object is the interpretation if it says something ("Here is the JSON:" does not).
    outside = _tidy(body[:start] + "\n" + body[end:])
    interpretation = (
        _as_text(field) if field is not None else outside if len((outside or "").split()) > 7 else None
    )
    label = _json_label(flat)
    if label is None:  # the JSON does not say: read the whole text as prose
        prose = _from_prose(body)
        label, confidence = prose.label, prose.confidence if confidence is None else confidence
        interpretation = interpretation or prose.interpretation
    return ParsedAnswer(label, confidence, interpretation)


def _find_json(body: str) -> tuple[dict[str, Any], int, int] | None:
    """The first JSON-ish object (in a fenced block if there is one), keys flattened, and its text span."""
    fence = re.search(r"```[A-Za-z]*\s*\{.*?```", body, re.S)
    low, high = (fence.start(), fence.end()) if fence else (0, len(body))
    first, last = body.find("{", low), body.rfind("}", low, high) + 1
    start, end = (low, high) if fence else (first, last)
    try:  # strict JSON, possibly followed by prose or a second object
        value = _DECODER.raw_decode(body, first)[0]
    except ValueError:
        try:  # Python-style: single quotes, trailing commas, True/None (literal_eval never runs code)
            value = ast.literal_eval(_LOOSE_WORDS.sub(lambda m: _PYTHON[m.group()], body[first:last]))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return None
    return (_flat(value), start, end) if isinstance(value, dict) else None


def _flat(obj: dict[str, Any]) -> dict[str, Any]:
    """Keys compared case- and punctuation-insensitively: "Real or Synthetic" -> "real_or_synthetic"."""
    return {_KEY_CHARS.sub("_", str(key).lower()).strip("_"): value for key, value in obj.items()}


def _pick(flat: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((flat[key] for key in keys if flat.get(key) not in (None, "")), None)


def _json_label(flat: dict[str, Any], nested: bool = True) -> str | None:
    """The label a JSON object states: label-like keys, then yes/no keys, then one level down."""
    for key in _LABEL_KEYS:
        if isinstance(flat.get(key), str) and (label := _map_value(_lower(flat[key]))):
            return label
    for key, yes in _BOOL_KEYS.items():
        if (value := _YES_NO.get(str(flat.get(key)).strip().lower())) is not None:
            return yes if value else _FLIP[yes]
    inner = (_json_label(_flat(v), False) for v in flat.values() if nested and isinstance(v, dict))
    return next((label for label in inner if label), None)


def _map_value(value: str) -> str | None:
    """Map a lowercased label value ("ai-generated", "not synthetic", "cannot determine") to a label."""
    found = _EXACT.get(value.strip().strip(".!*\"' ")) or (_scan(value) or ("",))[0]
    return found if found and found != "refused" else None


def _lower(text: str) -> str:
    """Lowercase with straight apostrophes, keeping the length (so spans stay valid in the original)."""
    low = text.replace("\u2019", "'").lower()
    return low if len(low) == len(text) else "".join(c if len(c.lower()) > 1 else c.lower() for c in text)


def _from_prose(body: str) -> ParsedAnswer:
    """The answer from free text: labelled lines, then the opening words, then the prose."""
    low = _lower(body)
    labelled: list[tuple[str, int, int]] = []
    for m in _LABELLED.finditer(low):
        value, end = m.group("value"), m.end("value")
        if not value.strip(" \t*_#:") and m.group("next") is not None:
            value, end = m.group("next"), m.end("next")
        if value[:1] in "\"'":  # a quoted (JSON-like) value ends at its closing quote
            value = value[1:].split(value[0], 1)[0]
        if found := _map_value(value):
            labelled.append((found, m.start(), end))
    committed = [line for line in labelled if line[0] in _FLIP]
    result = (committed or labelled or [None])[-1]
    opening = _OPENING.match(low).end()  # type: ignore[union-attr]  # the pattern can match empty
    if result is None and (_TERM.match(low, opening) or low.startswith("uncertain", opening)):
        stop = _OPENING_END.search(low, opening)
        end = stop.end() if stop else len(low)
        result = (found[0], 0, end) if (found := _scan(low[:end])) else None
    result = result or _scan(low)
    confidence = _find_confidence(low)
    if result is None:
        return ParsedAnswer("unparseable", confidence, body)
    spans = [(start, end) for _, start, end in (result, *labelled)]
    return ParsedAnswer(result[0], confidence, _interpretation(body, low, spans))


def _hits(pattern: re.Pattern[str], text: str, start: int = 0, end: int | None = None) -> list[re.Match[str]]:
    """Matches of `pattern` in text[start:end] that begin a word."""
    found = pattern.finditer(text, start, len(text) if end is None else end)
    return [m for m in found if m.start() == 0 or not text[m.start() - 1].isalnum()]


def _boundaries(text: str) -> tuple[list[int], list[int]]:
    """Start offsets of the sentences and of the clauses (split further at , ; : ( ) [ ] and dashes)."""
    sents, clauses = [0], [0]
    for m in _PUNCT.finditer(text):
        i, mark, after = m.start(), m.group(), text[m.end() : m.end() + 1]
        if mark in ".!?":
            if after and not after.isspace():
                continue  # a decimal point, "e.g", or the first dots of "..."
            sents.append(i + 1)
        elif mark == "\n":
            sents.append(i + 1)
        elif mark == "-" and not (after == " " and text[i - 1 : i] == " "):
            continue  # a hyphen inside a word
        clauses.append(i + 1)
    return sents, clauses


def _scan(text: str) -> tuple[str, int, int] | None:
    """The verdict of lowercased prose and the span of the sentence that decided it (see module docstring)."""
    sents, clauses = _boundaries(text)
    hedges = _hits(_HEDGE, text)
    hedged: dict[int, list[re.Match[str]]] = {}
    for hedge in hedges:
        hedged.setdefault(bisect_right(clauses, hedge.start()) - 1, []).append(hedge)
    either: dict[int, list[int]] = {}
    for hedge in _hits(_EITHER, text) if any(needle in text for needle in _EITHER_NEEDLES) else ():
        hedges.append(hedge)
        either.setdefault(bisect_right(sents, hedge.start()) - 1, []).append(hedge.end())
    votes, paired_until = [], -1
    for m in _hits(_TERM, text):
        if m.start() < paired_until:
            continue
        if pair := _PAIR.match(text, m.end()):  # "real or synthetic" names the question, not an answer
            paired_until = pair.end()
        elif vote := _vote(text, m, (clauses, sents, hedged, either)):
            votes.append(vote)
    if votes:
        top = max(vote[0] for vote in votes)
        best = [vote for vote in votes if vote[0] == top]
        if top < 2 and len({vote[1] for vote in best}) > 1:
            return "uncertain", 0, 0  # contradictory verdicts and no stated conclusion
        _, label, sent = best[-1]
    elif marker := min(hedges, key=lambda h: h.start(), default=None) or next(
        iter(_hits(_REFUSE, text)), None
    ):
        label, sent = (
            "refused" if marker.re is _REFUSE else "uncertain",
            bisect_right(sents, marker.start()) - 1,
        )
    else:
        return None
    return label, sents[sent], _next(sents, sent, len(text))


def _vote(text: str, m: re.Match[str], layout: _Layout) -> tuple[int, str, int] | None:
    """(weight, label, sentence index) for one verdict term, or None when it is not a verdict."""
    clauses, sents, hedged, either = layout
    pos, end = m.start(), m.end()
    ci, si = bisect_right(clauses, pos) - 1, bisect_right(sents, pos) - 1
    start, stop = clauses[ci], _next(clauses, ci, len(text))
    for hedge in hedged.get(ci, ()):  # a disclaimer in the same clause, with no "but" in between
        if not _hits(_CONTRAST, text, *((hedge.end(), pos) if hedge.start() < pos else (end, hedge.start()))):
            return None
    if si in either:  # rescued only by a "but"/"however" after the last both-ways hedge before it
        prior = [hedge_end for hedge_end in either[si] if hedge_end <= pos]
        if not prior or not _hits(_CONCLUDE, text, prior[-1], pos):
            return None
    segment, cut = start, max(start, pos - 80)  # the window before the term that qualifies it
    for hit in _hits(_CUT, text, start, pos):
        cut = max(cut, hit.end())
        segment = hit.start() if hit.group() in _CONTRAST_WORDS else segment
    prefix = text[cut:pos]
    if _hits(_NEUTRAL, text, cut, pos):
        return None
    if not (_hits(_CUE, text, cut, pos) or "n't" in prefix or "'s" in prefix):
        after = _hits(_CONTRAST, text, end, stop)
        if len(prefix.split()) > 2 or len(text[end : after[0].start() if after else stop].split()) > 3:
            return None
    label = "real" if m.group().startswith(_REAL_WORDS) else "synthetic"
    if (len(_hits(_NEG, text, cut, pos)) + prefix.count("n't")) % 2:
        label = _FLIP[label]
    weight = 1 + bool(_hits(_CONCLUDE, text, sents[si], pos))
    led = ci > 0 and clauses[ci - 1] >= sents[si] and _CONCEDE_LEAD.match(text, clauses[ci - 1], start)
    if _APPEAR.search(text, cut, pos) or _hits(_CONCEDE, text, segment, pos) or led:
        weight -= 1
    return weight, label, si


def _next(starts: list[int], index: int, default: int) -> int:
    return starts[index + 1] if index + 1 < len(starts) else default


def _interpretation(body: str, low: str, spans: list[tuple[int, int]]) -> str | None:
    """A section headed Interpretation/Findings/...; otherwise the text minus the verdict lines."""
    if "{" in low and (field := _JSON_FIELD.search(low)):  # a JSON object too broken to load
        return body[field.start(1) : field.end(1)].strip() or None
    if section := _SECTION.search(low):
        ends = [start for start, _ in spans if start >= section.end()]
        ends += [line.start() for line in _CONF_LINE.finditer(low, section.end())]
        return _tidy(body[section.end() : min(ends, default=len(body))])
    pieces, last = [], 0
    for start, end in sorted(spans):
        pieces.append(body[last : max(start, last)])
        last = max(last, end)
    return _tidy("".join(pieces) + body[last:])


def _tidy(text: str) -> str | None:
    if "confiden" in text.lower() or "certainty" in text.lower():
        text = _CONF_LINE.sub("", text)
    return text.strip(" \t\r\n:-\u2014\u2013") or None


def _as_text(value: Any) -> str | None:
    """A JSON interpretation field: a string verbatim, a list one item per line."""
    text = "\n".join(map(str, value)) if isinstance(value, list) else str(value)
    return text if text.strip() else None


def _norm_confidence(value: Any) -> float | None:
    """A stated confidence in [0, 1] from 0.85, 85, "85%", "8/10" or high/medium/low (0.9/0.6/0.3)."""
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip().lower()
    if (word := text.rsplit(None, 1)[-1] if text else "") in _CONF_WORDS:
        return _CONF_WORDS[word]
    if not (m := _NUMBER.search(text)):
        return None
    number = float(m.group(1))
    if m.group(3):
        number = number / float(m.group(3)) if float(m.group(3)) else -1.0
    elif m.group(2) or number > 1:  # a percentage, with or without the sign
        number /= 100
    return number if 0 <= number <= 1 else None


def _find_confidence(low: str) -> float | None:
    """A confidence stated in lowercased prose: "confidence: 80%", "i am 90% sure", "high confidence"."""
    if "%" in low or "percent" in low or "confiden" in low or "certainty" in low:
        if m := _CONF_NUM.search(low) or _CONF_PCT.search(low):
            return _norm_confidence(m.group(1))
        if m := _CONF_WORD.search(low):
            return _CONF_WORDS[m.group(1) or m.group(2)]
    return None
