"""Read a verdict from free prose, clause by clause (the last step of `cache.parse.parse_answer`).

- A verdict term counts only in a verdict context: after a copula or judgement cue ("is", "appears to be",
  "likely", "I believe", "not"), or as a clause of its own ("Definitely synthetic."). Generic mentions do not
  count: plurals ("real fundus images typically...", "consistent with real explosions"), "real-world",
  "realistic", "artificial lighting", "real or synthetic", "whether it is real", "resembles a real photograph",
  headings ("### Signs of AI generation"), "Key:" labels, scale legends ("0 = certainly real"), conditionals
  ("if ..., then it's fake"), checklists ("look for signs of manipulation").
- A question counts only when the next words answer it: "Is the image AI-generated? -> Likely no" is real.
- An odd number of negators in the clause before the term flips it ("not a real photograph", "no signs of
  editing that would indicate manipulation or AI generation"); an even number does not ("nothing suggests it
  isn't genuine"). A negating noun stops at its clause's verb ("the lack of artifacts supports that it is real").
  "No definitive evidence of X" is a disclaimer, not a verdict. "The likelihood of it being AI-generated is
  low" (or "3 out of 10") is real; "... is medium" is no verdict.
- A committed verdict beats a refusal, a refusal beats a hedge: "It's hard to be certain, but this appears
  real" is real; "I'm unable to view images" is refused (also when only possibilities follow); "I cannot tell"
  is uncertain.
- Hedges naming both options ("could be either", "might also be", "neither real nor synthetic") void the
  verdicts of their sentence, except those after a later "but"/"however".
- Each verdict weighs 1, plus 1 after a concluding marker ("overall", "based on these observations",
  "however") or as the opening statement of a reasoned answer, minus 1 when conceded ("although ... real"). A
  possibility ("it could be AI-generated") or a remark on looks ("it looks real") weighs 0. The heaviest
  verdicts decide by the number of sentences saying each; on a tie the last wins if it is a stated conclusion
  (weight 2), otherwise the rules found a conflict and a person should look.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from typing import NamedTuple

from cache import parse_words as w


class Verdict(NamedTuple):
    """What the prose says and the [start, end) span of the sentence(s) that said it."""

    label: str  #: real | synthetic | uncertain | refused
    start: int
    end: int
    conflict: bool = False  #: the heaviest verdicts disagree: label is then the last of them


_Vote = tuple[int, str, int, bool]
# Where a text's clauses and sentences start, hedge spans per clause, both-ways hedge ends per sentence.
_Layout = tuple[list[int], list[int], dict[int, list[tuple[int, int]]], dict[int, list[int]]]


def hits(pattern: re.Pattern[str], text: str, start: int = 0, end: int | None = None) -> list[re.Match[str]]:
    """Matches of `pattern` in text[start:end] that begin a word."""
    found = pattern.finditer(text, start, len(text) if end is None else end)
    return [m for m in found if m.start() == 0 or not text[m.start() - 1].isalnum()]


def is_real(term: str) -> bool:
    return term.startswith(w.REAL_WORDS)


def boundaries(text: str) -> tuple[list[int], list[int]]:
    """Start offsets of the sentences and of the clauses (split further at , ; : ( ) [ ] and dashes)."""
    sents = [0, *(m.end() for m in w.SENT_END.finditer(text))]
    marks = [m.end() for m in w.CLAUSE_MARK.finditer(text)]
    dash = text.find(" - ")
    while dash >= 0:
        marks.append(dash + 2)
        dash = text.find(" - ", dash + 1)
    return sents, sorted({*sents, *marks})


def scan(text: str) -> Verdict | None:
    """The verdict of lowercased prose (rules in the module docstring), or None when it states none."""
    sents, clauses = boundaries(text)
    hedges: list[re.Match[str]] = []
    terms: list[re.Match[str]] = []
    hedged: dict[int, list[tuple[int, int]]] = {}
    either: dict[int, list[int]] = {}
    for m in hits(w.CORE, text):
        if w.HEDGE.match(text, m.start()):
            hedges.append(m)
            hedged.setdefault(bisect_right(clauses, m.start()) - 1, []).append(m.span())
        elif w.EITHER.match(text, m.start()):
            hedges.append(m)
            either.setdefault(bisect_right(sents, m.start()) - 1, []).append(m.end())
        else:
            terms.append(m)
    votes, paired_until = [], -1
    for m in terms:
        if m.start() < paired_until:
            continue
        pair = (w.PAIR_SYNTHETIC if is_real(m.group()) else w.PAIR_REAL).match(text, m.end())
        if pair:  # "real or synthetic" names the question, not an answer
            paired_until = pair.end()
        elif vote := _vote(text, m, (clauses, sents, hedged, either)):
            votes.append(vote)
    # A refusal up front outweighs mere possibilities ("I can't view images. Unusual textures might indicate...").
    if votes and not all(vote[3] for vote in votes):
        return _decide(votes, sents, len(text))
    refusal = next(iter(hits(w.REFUSE, text, 0, sents[1] if votes and len(sents) > 1 else len(text))), None)
    if votes and refusal is None:
        return _decide(votes, sents, len(text))
    marker = refusal or min(hedges, key=lambda h: h.start(), default=None)
    if marker is None:
        return None
    si = bisect_right(sents, marker.start()) - 1
    return Verdict("uncertain" if marker in hedges else "refused", sents[si], _next(sents, si, len(text)))


def _decide(votes: list[_Vote], sents: list[int], size: int) -> Verdict:
    """The heaviest votes decide, by majority; a tie without a stated conclusion is a conflict."""
    top = max(vote[0] for vote in votes)
    best = [vote for vote in votes if vote[0] == top]
    # A sentence counts once per label: "no signs of editing or AI generation" is one verdict, not two.
    counts = {label: len({vote[2] for vote in best if vote[1] == label}) for label in ("real", "synthetic")}
    _, label, si, _ = best[-1]
    if counts["real"] != counts["synthetic"] and min(counts.values()):
        label = max(counts, key=counts.__getitem__)
        si = max(vote[2] for vote in best if vote[1] == label)
    elif min(counts.values()) and top < 2:
        first = min(vote[2] for vote in best)
        return Verdict(label, sents[first], _next(sents, si, size), conflict=True)
    return Verdict(label, sents[si], _next(sents, si, size))


def _vote(text: str, m: re.Match[str], layout: _Layout) -> _Vote | None:
    """(weight, label, sentence index, a mere possibility?) for one verdict term, or None when it is none."""
    clauses, sents, hedged, either = layout
    pos, end = m.start(), m.end()
    ci, si = bisect_right(clauses, pos) - 1, bisect_right(sents, pos) - 1
    # Every look-around stops REACH characters away, so a run-on answer (a model repeating itself until
    # the token limit) costs linear time, not quadratic.
    start, sent = max(clauses[ci], pos - w.REACH), max(sents[si], pos - w.REACH)
    stop = min(_next(clauses, ci, len(text)), end + w.REACH)
    spans = hedged.get(ci, [])  # the nearest disclaimers before and after, if no "but" separates them
    i = bisect_right(spans, (pos,))
    gaps = ([(spans[i - 1][1], pos)] if i else []) + ([(end, spans[i][0])] if i < len(spans) else [])
    if any(hi - lo < w.REACH and not hits(w.CONTRAST, text, lo, hi) for lo, hi in gaps):
        return None
    ends = either.get(si, [])  # rescued only by a "but"/"however" after the last both-ways hedge before it
    if ends and (
        (j := bisect_right(ends, pos) - 1) < 0 or not hits(w.CONCLUDE, text, max(ends[j], sent), pos)
    ):
        return None
    sent_end = _next(sents, si, len(text))
    if _last_char(text, sent_end) == "?":  # a question: a verdict only when answered yes or no
        return _answered(text, m, sent_end, sents)
    segment, scope = start, start  # the clause up to the term, and the window before it that qualifies it
    for hit in hits(w.CUT, text, start, pos):
        scope = max(scope, hit.end())
        segment = hit.start() if hit.group() in w.CONTRAST_WORDS else segment
    cut = max(scope, pos - 80)
    if not _is_verdict(text, m, cut, scope, stop):
        return None
    label = _label(text, m, (scope, cut, sent, stop))
    if label is None:
        return None
    maybe = bool(hits(w.MAYBE, text, cut, pos)) and not hits(w.LEAN, text, cut, pos)
    prefix = text[cut:pos]
    if (
        maybe or _LOOKS.search(prefix) and w.APPEAR.search(prefix)
    ):  # a possibility, or looks only: never decides
        return 0, label, si, maybe
    # An opening statement followed by its reasoning ("This image appears to be real. Here's why: ...").
    weight = 1 + bool(hits(w.CONCLUDE, text, sent, pos)) + (si == 0 and len(sents) > _REASONED)
    led = ci > 0 and clauses[ci - 1] >= sents[si] and w.CONCEDE_LEAD.match(text, clauses[ci - 1], clauses[ci])
    return weight - bool(hits(w.CONCEDE, text, segment, pos) or led), label, si, False


def _label(text: str, m: re.Match[str], windows: tuple[int, int, int, int]) -> str | None:
    """The label a verdict term gives after negations and a stated likelihood; None for "likelihood: medium"."""
    scope, cut, sent, stop = windows
    pos, end = m.start(), m.end()
    label = "real" if is_real(m.group()) else "synthetic"
    # A negator anywhere in the clause reaches the term: "no signs of editing that would indicate AI generation".
    negators = [n for n in hits(w.NEG, text, scope, pos) if not _ends_before(text, n, pos)]
    if (len(negators) + text.count("n't", scope, pos)) % 2:
        label = w.FLIP[label]
    prefix = text[cut:pos]
    if not (_NUMBERED.search(prefix) and w.LIKELIHOOD_OF.search(prefix)):
        return label
    level = _level(text, sent, pos, end, stop)
    if level == "mid":  # "the likelihood of it being real: Medium" decides nothing
        return None
    return w.FLIP[label] if level == "low" else label


_REASONED = 4  # sentences after which an answer's first sentence counts as its opening statement
# Cheap gates in front of patterns that would otherwise try every position of the window.
_NUMBERED = re.compile(r"lihood|probab|chance|odds|\d")
_LOOKS = re.compile(r"look|seem|appear")
_PROOF = re.compile(r"definit|conclusiv|absolut|certaint")


def _ends_before(text: str, negator: re.Match[str], pos: int) -> bool:
    """Whether a negating noun's scope ends before `pos`: "the absence of artifacts supports (that it is real)"."""
    return negator.group().split()[0] in w.NOMINAL_NEG and bool(w.MAIN_VERB.search(text, negator.end(), pos))


def _is_verdict(text: str, m: re.Match[str], cut: int, scope: int, stop: int) -> bool:
    """Whether the term stands in a verdict context (not a heading, a legend, a comparison, a disclaimer)."""
    pos, end = m.start(), m.end()
    line = text.rfind("\n", 0, pos) + 1
    if w.HEADING.match(text, line) or hits(w.NEUTRAL, text, cut, pos):
        return False
    if w.KEY_END.match(text, end) and "**" in text[line:pos]:  # "**Signs of AI generation**:" names a key
        return False
    legend = text[max(0, pos - 30) : pos]
    if ("=" in legend or ":" in legend) and w.LEGEND.search(legend):
        return False
    if _PROOF.search(text, scope, pos) and w.UNPROVEN.search(text, scope, pos):
        return False
    prefix = text[cut:pos]
    if hits(w.CUE, text, cut, pos) or "n't" in prefix or "'s" in prefix:
        return True
    after = hits(w.CONTRAST, text, end, stop)  # no cue: only a clause of its own is a verdict
    return len(prefix.split()) <= 2 and len(text[end : after[0].start() if after else stop].split()) <= 3


def _last_char(text: str, end: int) -> str:
    """The last non-space character of text[:end] ('' if none)."""
    at = end - 1
    while at >= 0 and text[at].isspace():
        at -= 1
    return text[at] if at >= 0 else ""


def _answered(text: str, m: re.Match[str], sent_end: int, sents: list[int]) -> _Vote | None:
    """The vote of a question with one verdict term when the next words answer it: "AI-generated? Likely no"."""
    answer = w.YES_NO_AFTER.match(text, sent_end)
    if answer is None:
        return None
    label = "real" if is_real(m.group()) else "synthetic"
    si = bisect_right(sents, answer.start(1)) - 1
    return 1, label if answer.group(1) == "yes" else w.FLIP[label], si, False


def _level(text: str, sent: int, pos: int, end: int, stop: int) -> str | None:
    """low | high | mid: the level stated for a likelihood, after the term or as a score before it."""
    for m in w.LEVEL.finditer(text, end, min(stop + 40, len(text))):
        return _level_name(m)
    found = list(w.LEVEL.finditer(text, sent, pos))
    return _level_name(found[-1]) if found and found[-1].group(4) else None


def _level_name(m: re.Match[str]) -> str:
    if m.group(4):
        score = int(m.group(4))
        return "low" if score <= 3 else "high" if score >= 7 else "mid"
    return "low" if m.group(1) else "high" if m.group(2) else "mid"


def _next(starts: list[int], index: int, default: int) -> int:
    return starts[index + 1] if index + 1 < len(starts) else default
