"""Read a model's answer into a label, a stated confidence and an interpretation.

Evidence is taken in this order; the first step that yields a label wins:

1. A non-empty ``refusal`` (OpenAI), or empty text with a blocking finish reason (content_filter,
   SAFETY, PROHIBITED_CONTENT, RECITATION, blockReason...) -> refused; other empty text -> unparseable.
2. A JSON object (plain, fenced, inside prose, or sloppy Python-style) whose label-like key maps to a
   label. A JSON label that does not map falls back to the prose rules on the whole text.
3. Labelled lines ("Verdict: X", "**Real or synthetic:** X", "Answer: REAL", a header with X on the
   next line). The last committed one (real/synthetic) wins, as it is usually the final answer.
4. A reply that opens with a verdict word ("Real.", "1. Synthetic (AI-generated)", "Not real."): the
   prompts ask for exactly that, so the first word is the verdict whatever follows.
5. The prose, clause by clause (`_scan`):
   - A verdict term counts only in a verdict context: after a copula or judgement cue ("is", "appears
     to be", "likely", "I believe", "not"), or as a clause of its own ("Definitely synthetic.").
     Generic mentions do not count: plurals ("real fundus images typically..."), "real-world",
     "realistic", "real or synthetic", "whether it is real", "resembles a real photograph".
   - An odd number of negators before the term in its clause flips it ("not a real photograph",
     "no signs of AI generation"); an even number does not ("nothing suggests it isn't genuine").
   - A committed verdict beats a hedge, a hedge beats a refusal: "It's hard to be certain, but this
     appears real" is real; "As an AI I cannot provide diagnoses" with no verdict is refused.
   - Hedges naming both options ("could be either", "might also be", "neither real nor synthetic")
     void the verdicts of their sentence, except those after a later "but"/"however".
   - Conflicting verdicts: each weighs 1, minus 1 when conceded or about looks only ("although it
     looks real", "looks like a real..."), plus 1 after a concluding or contrast marker ("however",
     "but", "overall", "ultimately"). The heaviest verdicts decide; if they still disagree, the last
     one wins when it is a stated conclusion (weight 2), otherwise the answer is uncertain.
A blocking finish reason on text that yields no label -> refused.

Speed (it runs over every stored answer): all scanning is on lowercased text, with patterns whose
branches each begin with a literal character, grouped by that character (`_trie`). `re` then skips
ahead by first character; a leading \\b or IGNORECASE would make it try every position (~10x slower).
Word starts are checked in Python instead (`_hits`). About 20-80 us for a 1 KB answer.
"""

from __future__ import annotations

import ast
import json
import re
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

#: Bumped whenever a rule change can change a reading; stored with every reading (``parser_version``).
PARSER_VERSION = "1"


@dataclass(frozen=True)
class ParsedAnswer:
    """What one model answer says about one image, and how that was decided."""

    label: str  #: real | synthetic | uncertain | refused | unparseable
    confidence: float | None  #: model-stated confidence in [0, 1], None when not stated
    interpretation: str | None  #: the model's interpretation of the image, None when absent
    #: which rule decided (cache.schema.LABEL_RULES): refusal, empty, json, labelled_line, opening, prose, none
    rule: str = "none"
    #: [start, end) character offsets into the text given to parse_answer of the deciding span, if any
    span: tuple[int, int] | None = None
    #: the rules found conflicting verdicts, or no verdict in a non-empty answer: a person should look
    needs_review: bool = False


def _branches(words: str, tail: str = r"\b") -> list[str]:
    """Space-separated alternatives ("_" stands for whitespace), each followed by `tail`."""
    return [word.replace("_", r"\s+") + tail for word in words.split()]


def _trie(branches: list[str]) -> re.Pattern[str]:
    """One pattern for the branches, grouped by first letter: c(?:an't...|ould...)|u(?:nable...)|...

    Every branch starts with a literal, so `re` skips ahead by first character and, where it stops, tries a
    handful of branches instead of all of them (see the module docstring).
    """
    groups: dict[str, list[str]] = {}
    for branch in branches:
        if not (branch[0].isalnum() or branch[0] == "'"):  # "(" or "\\" would be split apart here
            raise ValueError(f"a branch must start with a literal character: {branch}")
        groups.setdefault(branch[0], []).append(branch[1:])
    return re.compile(
        "(?:" + "|".join(f"{first}(?:{'|'.join(rest)})" for first, rest in groups.items()) + ")"
    )


def _alts(words: str, tail: str = r"\b") -> re.Pattern[str]:
    return _trie(_branches(words, tail))


_BLOCKED = re.compile(r"(?i)content.?filter|safety|block|prohibited|recitation|spii|refus")
_FENCE = re.compile(r"(?s)```[A-Za-z]*\s*\{.*?```")
_GEN = r"[-\s]?(?:generated|created|made|produced|synthesi[sz]ed)"
# A term followed by a plural noun speaks of images in general ("real fundus photographs show...").
_PLURAL = r"images|photos|photographs|pictures|x-?rays|radiographs|scans|ones|examples|samples|data|datasets"
_TERMS = _branches(
    r"real(?![-\s](?:world|life|time|estate|looking)\b) authentic genuine synthetic(?:ally)? synthesi[sz]ed synthesis"
    rf" fake deep-?fake artificial(?:ly)?(?!_intelligence) generated gans? ai[-\s]?generation ai{_GEN} computer{_GEN}"
    rf" machine{_GEN} gan{_GEN} diffusion{_GEN} algorithmically{_GEN} stable_diffusion diffusion_models? dall-?e"
    " midjourney cgi",
    rf"\b(?!(?:[\s-]+[\w-]+){{0,2}}?\s+(?:{_PLURAL})\b)",
)
_TERM = _trie(_TERMS)
_REAL_WORDS = ("real", "authentic", "genuine")
_PAIR = re.compile(
    r"\s*(?:or|and|/|vs\.?|versus)\s*(?:real|authentic|genuine|synthetic|fake|artificial|ai[-\s]?generated|generated)\b"
)
_VERB = (
    r"\s+(?:\w+\s+){0,2}?(?:say|tell|determine|know|distinguish|differentiate|decide|judge|ascertain|verify|confirm"
    r"|be\s+(?:sure|certain|definitive)|definitive(?:ly)?|conclusive(?:ly)?|reliably|confidently|with\s+certainty)\b"
)
_TO = "(?:_for_(?:me|us|anyone))?_to"
_HEDGES = _branches(  # a disclaimer: voids verdict terms in its own clause
    rf"can't cannot unable_to not_able_to ability_to capability_to too(?:_\w+){{1,3}}?_to difficult{_TO} hard{_TO}"
    rf" impossible{_TO} not_possible{_TO} challenging{_TO}",
    _VERB,
) + _branches(
    r"not_(?:sure|certain) uncertain(?!_significance) unsure undetermined indeterminate inconclusive"
    r" unclear_(?:whether|if) no_(?:\w+_)?way_to_(?:tell|know|say|determine) don't_know do_not_know"
    r" without_(?:more|additional|further)_(?:context|information|data|metadata) insufficient_(?:information|evidence)"
    r" not_enough_(?:information|evidence|detail|context)"
)
_BOTH_WAYS = _branches(  # a hedge naming both options: voids the verdicts of its whole sentence
    "could might may can",
    r"\s+(?:be\s+either|go\s+either\s+way|(?:also|equally|just\s+as\s+(?:easily|well))\s+be)\b",
) + _branches(r"either_way 50/50 fifty-fifty coin_(?:flip|toss) neither(?:_\w+){1,4}?_nor")
_HEDGE, _EITHER = _trie(_HEDGES), _trie(_BOTH_WAYS)
_CORE = _trie(_HEDGES + _BOTH_WAYS + _TERMS)  # one pass over the text finds all three
_REFUSE = _alts(
    "can't cannot unable_to not_able_to won't will_not decline_to",
    r"\s+(?:\w+\s+)?(?:help|assist|comply|fulfil+|(?:provide|offer|give|make)\s+(?:a\s+|an\s+|any\s+)?(?:medical"
    r"|clinical|diagnos\w*|professional|determination|assessment|judge?ment|evaluation|opinion)"
    r"|(?:analy[sz]e|interpret|evaluate|review|process|diagnose)\s+(?:medical|this|these|the|such|images?))\b",
)
_NEG = _alts(  # "n't" is counted separately: it does not start a word
    r"not(?!_only) no(?!_(?:doubt|question)) never nothing none neither nor cannot without lacks? lacking absence"
    r" absent free_of than unlikely doubt(?<!no\sdoubt)(?:s|ful)? non"
)
_CONTRAST_WORDS = ("but", "however", "although", "though", "yet", "whereas", "while", "whilst")
_CONTRAST = _alts(" ".join(_CONTRAST_WORDS))  # starts a new clause
# A negation or a cue does not reach back past these.
_CUT = _alts("and or because since which so " + " ".join(_CONTRAST_WORDS))
_NEUTRAL = _alts(  # an indirect question or a comparison, not a verdict
    r"whether if similar_to resembl\w* mimic\w* imitat\w* compar\w+ unlike distinguish\w* differentiat\w* versus vs"
    r" such_as as_in"
)
_CUE = _alts(
    r"is was be been being are am appears? appearing looks? looking seems? likely probably possibly definitely"
    r" clearly certainly most classif\w+ consider\w* believe think judge conclude label\w* as indicat\w* suggest\w*"
    r" consistent taken captured acquired lean\w* guess go_with say not no never hallmarks? signs? evidence"
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
_SENT_END = re.compile(r"[.!?\n](?:(?<=\n)|(?!\S))")  # not a decimal point, nor the first dots of "..."
_CLAUSE_MARK = re.compile(r"[,;:()\[\]\u2014\u2013]")
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
_SECTION = re.compile(  # a header line; the text under it up to the next header is the interpretation
    r"(?m)^(?P<bullet>[ \t]*[*+-][ \t])?[ \t>#*_+\-\d.)]*(?:(?:image|clinical|medical|radiological|detailed|brief)\s+)?"
    r"(?P<name>interpretation|findings|description|observations|analysis|key\s+(?:findings|observations|features)"
    r"|explanation|reasoning|rationale)(?:\s+of\s+(?:the\s+)?image)?[*_ \t]*(?::[*_ \t]*|$)"
)
_SECTION_RANK = {"interpretation": 0, "explanation": 2, "reasoning": 2, "rationale": 2}  # others: 1
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
_NOT_SURE = re.compile(r"not|n't|impossible|never|unable")
_CONF_STATED = re.compile(rf"{_CONF_HEAD}(?:very\s+)?(high|medium|moderate|low)\b")
_CONF_LEVEL = re.compile(r"(high|medium|moderate|low)\s+(?:confidence|certainty)\b")
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
# Where a text's clauses and sentences start, hedge spans per clause, both-ways hedge ends per sentence.
_Layout = tuple[list[int], list[int], dict[int, list[tuple[int, int]]], dict[int, list[int]]]
_REACH = 300  # characters: how far around a verdict term the rules look


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
        return ParsedAnswer("refused", None, None)
    body = (text or "").strip()
    blocked = bool(finish_reason and _BLOCKED.search(finish_reason))
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
    fence = _FENCE.search(body)
    low, high = (fence.start(), fence.end()) if fence else (0, len(body))
    first, last = body.find("{", low), body.rfind("}", low, high) + 1
    start, end = (low, high) if fence else (first, last)
    try:  # strict JSON, possibly followed by prose or a second object
        value = _DECODER.raw_decode(body, first)[0]
    except (ValueError, RecursionError):
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
        if value.startswith(('"', "'")):  # a quoted (JSON-like) value ends at its closing quote
            value = value[1:].split(value[0], 1)[0]
        if found := _map_value(value):
            labelled.append((found, m.start(), end))
    committed = [line for line in labelled if line[0] in _FLIP]
    result = (committed or labelled or [None])[-1]
    if result is None:
        result = _opening(low)
    result = result or _scan(low)
    confidence = _find_confidence(low)
    if result is None:
        return ParsedAnswer("unparseable", confidence, body)
    spans = [(start, end) for _, start, end in (result, *labelled)]
    return ParsedAnswer(result[0], confidence, _interpretation(body, low, spans))


def _opening(low: str) -> tuple[str, int, int] | None:
    """The verdict a reply opens with ("Real.", "Not real.", "1. Synthetic (AI-generated)") and its span."""
    lead = _OPENING.match(low)
    start = lead.end() if lead else 0  # (the pattern always matches, maybe empty)
    term = _TERM.match(low, start)
    if term and not _PAIR.match(low, term.end()):  # "Real or synthetic? ..." restates the question
        label = "real" if term.group().startswith(_REAL_WORDS) else "synthetic"
        label = _FLIP[label] if lead and "not" in lead.group() else label
    elif low.startswith("uncertain", start):
        label = "uncertain"
    else:
        return None
    stop = _OPENING_END.search(low, start)
    return label, 0, stop.end() if stop else len(low)


def _hits(pattern: re.Pattern[str], text: str, start: int = 0, end: int | None = None) -> list[re.Match[str]]:
    """Matches of `pattern` in text[start:end] that begin a word."""
    found = pattern.finditer(text, start, len(text) if end is None else end)
    return [m for m in found if m.start() == 0 or not text[m.start() - 1].isalnum()]


def _boundaries(text: str) -> tuple[list[int], list[int]]:
    """Start offsets of the sentences and of the clauses (split further at , ; : ( ) [ ] and dashes)."""
    sents = [0, *(m.end() for m in _SENT_END.finditer(text))]
    marks = [m.end() for m in _CLAUSE_MARK.finditer(text)]
    dash = text.find(" - ")
    while dash >= 0:
        marks.append(dash + 2)
        dash = text.find(" - ", dash + 1)
    return sents, sorted({*sents, *marks})


def _scan(text: str) -> tuple[str, int, int] | None:
    """The verdict of lowercased prose and the span of the sentence that decided it (see module docstring)."""
    sents, clauses = _boundaries(text)
    hedges: list[re.Match[str]] = []
    terms: list[re.Match[str]] = []
    hedged: dict[int, list[tuple[int, int]]] = {}
    either: dict[int, list[int]] = {}
    for m in _hits(_CORE, text):
        if _HEDGE.match(text, m.start()):
            hedges.append(m)
            hedged.setdefault(bisect_right(clauses, m.start()) - 1, []).append(m.span())
        elif _EITHER.match(text, m.start()):
            hedges.append(m)
            either.setdefault(bisect_right(sents, m.start()) - 1, []).append(m.end())
        else:
            terms.append(m)
    votes, paired_until = [], -1
    for m in terms:
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
    elif hedges or (refusals := _hits(_REFUSE, text)):
        marker = min(hedges, key=lambda hedge: hedge.start()) if hedges else refusals[0]
        label, sent = "uncertain" if hedges else "refused", bisect_right(sents, marker.start()) - 1
    else:
        return None
    return label, sents[sent], _next(sents, sent, len(text))


def _vote(text: str, m: re.Match[str], layout: _Layout) -> tuple[int, str, int] | None:
    """(weight, label, sentence index) for one verdict term, or None when it is not a verdict."""
    clauses, sents, hedged, either = layout
    pos, end = m.start(), m.end()
    ci, si = bisect_right(clauses, pos) - 1, bisect_right(sents, pos) - 1
    # Every look-around stops _REACH characters away, so a run-on answer (a model repeating itself until
    # the token limit) costs linear time, not quadratic.
    start, sent = max(clauses[ci], pos - _REACH), max(sents[si], pos - _REACH)
    stop = min(_next(clauses, ci, len(text)), end + _REACH)
    spans = hedged.get(ci, [])  # the nearest disclaimers before and after, if no "but" separates them
    i = bisect_right(spans, (pos,))
    gaps = ([(spans[i - 1][1], pos)] if i else []) + ([(end, spans[i][0])] if i < len(spans) else [])
    if any(hi - lo < _REACH and not _hits(_CONTRAST, text, lo, hi) for lo, hi in gaps):
        return None
    ends = either.get(si, [])  # rescued only by a "but"/"however" after the last both-ways hedge before it
    if ends and (
        (j := bisect_right(ends, pos) - 1) < 0 or not _hits(_CONCLUDE, text, max(ends[j], sent), pos)
    ):
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
    weight = 1 + bool(_hits(_CONCLUDE, text, sent, pos))
    led = ci > 0 and clauses[ci - 1] >= sents[si] and _CONCEDE_LEAD.match(text, clauses[ci - 1], clauses[ci])
    if _APPEAR.search(text, cut, pos) or _hits(_CONCEDE, text, segment, pos) or led:
        weight -= 1
    return weight, label, si


def _next(starts: list[int], index: int, default: int) -> int:
    return starts[index + 1] if index + 1 < len(starts) else default


def _interpretation(body: str, low: str, spans: list[tuple[int, int]]) -> str | None:
    """A section headed Interpretation/Findings/...; otherwise the text minus the verdict lines."""
    if "{" in low and (field := _JSON_FIELD.search(low)):  # a JSON object too broken to load
        return body[field.start(1) : field.end(1)].strip() or None
    headers = list(_SECTION.finditer(low))
    if section := min(headers, key=lambda h: _SECTION_RANK.get(h.group("name"), 1), default=None):
        # It ends at the next verdict or confidence line, or the next header that is not a list item
        # (Gemini nests "* **Findings:** ..." bullets inside its Interpretation section).
        ends = [start for start, _ in spans if start >= section.end()]
        ends += [line.start() for line in _CONF_LINE.finditer(low, section.end())]
        ends += [h.start() for h in headers if h.start() > section.start() and not h.group("bullet")]
        return _tidy(body[section.end() : min(ends, default=len(body))])
    pieces, last = [], 0
    for start, end in sorted(spans):
        pieces.append(body[last : max(start, last)])
        last = max(last, end)
    return _tidy("".join(pieces) + body[last:])


def _tidy(text: str) -> str | None:
    if "onfiden" in text or "ONFIDEN" in text or "ertainty:" in text:  # cheap gate for the line pattern
        text = _CONF_LINE.sub("", text)
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
    named = "confiden" in low or "certainty:" in low  # cheap gates: most answers state no confidence
    if m := named and _CONF_NUM.search(low):
        return _norm_confidence(m.group(1))
    for m in _CONF_PCT.finditer(low) if "%" in low or "percent" in low else ():
        if not _NOT_SURE.search(low[max(0, m.start() - 30) : m.start()].rsplit(". ", 1)[-1]):
            return _norm_confidence(m.group(1))  # ("not 100% sure" states no confidence)
    m = named and (_CONF_STATED.search(low) or _CONF_LEVEL.search(low))
    return _CONF_WORDS[m.group(1)] if m else None
