"""The parser's vocabulary: every word list and pattern that `cache.parse` reads answers with.

All patterns run on lowercased text and every branch begins with a literal character, grouped by that
character (`trie`): `re` then skips ahead by first character, where a leading \\b or IGNORECASE would make it
try every position (~10x slower). Word starts are checked in Python instead (`cache.parse_prose.hits`).
"""

from __future__ import annotations

import re


def branches(words: str, tail: str = r"\b") -> list[str]:
    """Space-separated alternatives ("_" stands for whitespace), each followed by `tail`."""
    return [word.replace("_", r"\s+") + tail for word in words.split()]


def trie(alternatives: list[str]) -> re.Pattern[str]:
    """One pattern for the branches, grouped by first letter: c(?:an't...|ould...)|u(?:nable...)|...

    Every branch starts with a literal, so `re` skips ahead by first character and, where it stops, tries a
    handful of branches instead of all of them.
    """
    groups: dict[str, list[str]] = {}
    for branch in alternatives:
        if not (branch[0].isalnum() or branch[0] == "'"):  # "(" or "\\" would be split apart here
            raise ValueError(f"a branch must start with a literal character: {branch}")
        groups.setdefault(branch[0], []).append(branch[1:])
    return re.compile(
        "(?:" + "|".join(f"{first}(?:{'|'.join(rest)})" for first, rest in groups.items()) + ")"
    )


def alts(words: str, tail: str = r"\b") -> re.Pattern[str]:
    return trie(branches(words, tail))


BLOCKED = re.compile(r"(?i)content.?filter|safety|block|prohibited|recitation|spii|refus")
FENCE = re.compile(r"(?s)```[A-Za-z]*\s*\{.*?```")
_GEN = r"[-\s]?(?:generated|created|made|produced|synthesi[sz]ed|rendered)"
# A term followed by a plural noun speaks of images in general ("real fundus photographs show...").
_PLURAL = (
    r"images|photos|photographs|pictures|x-?rays|radiographs|scans|ones|examples|samples|data|datasets|media|content"
    r"|imagery|detection|detectors?|tools|techniques|software|models|generators|artifacts|characteristics|traits"
)
#: Words that say "not a genuine acquisition": AI generation, and also manipulation (the study asks real or not).
SYNTHETIC_TERMS = (
    r"synthetic(?:ally)? synthesi[sz]ed synthesis fake deep-?fake artificial(?:ly)?(?!_(?:intelligence|light\w*|street)) generated gans?"
    rf" ai[-\s]?generation ai{_GEN} a(?<!an\sa)i(?=\s*(?:[.!?,;)\n]|$)) computer{_GEN} machine{_GEN} gan{_GEN} diffusion{_GEN}"
    rf" algorithmically{_GEN} stable_diffusion diffusion_models? dall-?e midjourney cgi slop"
    r" manipulated manipulation altered digitally_(?:edited|manipulated|enhanced) doctored photoshopped tampered"
)
REAL_WORDS = ("real", "authentic", "genuine", "pristine", "unaltered", "unmanipulated", "unedited")
_REAL_TERMS = r"real(?![-\s](?:world|life|time|estate|looking)\b) authentic genuine pristine unaltered unmanipulated unedited"
# ... or by any plural noun right after it ("consistent with real explosions", "or synthetic textures").
_ANY_PLURAL = r"(?![\s-]+[a-z]{3,}s(?<!ss)(?<!us)(?<!is)\b)"
TERMS = branches(
    f"{_REAL_TERMS} {SYNTHETIC_TERMS}", rf"\b(?!(?:[\s-]+[\w-]+){{0,2}}?\s+(?:{_PLURAL})\b){_ANY_PLURAL}"
)
TERM = trie(TERMS)
# "real or synthetic", "real, manipulated, or AI-generated": a term paired with its opposite names the question.
_OR = r"\s*(?:,\s*(?:manipulated|edited|altered)\s*,?\s*)?(?:or|and|/|vs\.?|versus)\s*"
PAIR_SYNTHETIC = re.compile(
    rf"{_OR}(?:synthetic|fake|artificial|ai\b|ai[-\s]?generated|generated|manipulated)\b"
)
PAIR_REAL = re.compile(rf"{_OR}(?:real|authentic|genuine)\b")
_VERB = (
    r"\s+(?:\w+\s+){0,2}?(?:say|tell|determine|know|distinguish|differentiate|decide|judge|ascertain|verify|confirm"
    r"|rule\s+out|ruled\s+out|be\s+(?:sure|certain|definitive)|definitive(?:ly)?|conclusive(?:ly)?|reliably|confidently"
    r"|with\s+certainty)\b"
)
_TO = "(?:_for_(?:me|us|anyone))?_to"
HEDGES = branches(  # a disclaimer: voids verdict terms in its own clause
    rf"can't cannot unable_to not_able_to ability_to capability_to too(?:_\w+){{1,3}}?_to difficult{_TO} hard{_TO}"
    rf" impossible{_TO} not_possible{_TO} challenging{_TO}",
    _VERB,
) + branches(
    r"not_(?:sure|certain) uncertain(?!_significance) unsure undetermined indeterminate inconclusive"
    r" unclear_(?:whether|if) no_(?:\w+_)?way_to_(?:tell|know|say|determine) don't_know do_not_know"
    r" without_(?:more|additional|further)_(?:context|information|data|metadata) insufficient_(?:information|evidence)"
    r" not_enough_(?:information|evidence|detail|context)"
)
BOTH_WAYS = branches(  # a hedge naming both options: voids the verdicts of its whole sentence
    "could might may can",
    r"\s+(?:be\s+either|go\s+either\s+way|(?:also|equally|just\s+as\s+(?:easily|well))\s+be)\b",
) + branches(r"either_way 50/50 fifty-fifty coin_(?:flip|toss) neither(?:_\w+){1,4}?_nor")
HEDGE, EITHER = trie(HEDGES), trie(BOTH_WAYS)
CORE = trie(HEDGES + BOTH_WAYS + TERMS)  # one pass over the text finds all three
REFUSE = alts(
    "can't cannot unable_to not_able_to won't will_not decline_to",
    r"\s+(?:\w+\s+){0,2}?(?:help|assist|comply|fulfil+|(?:provide|offer|give|make)\s+(?:a\s+|an\s+|any\s+)?(?:medical"
    r"|clinical|diagnos\w*|professional|determination|assessment|judge?ment|evaluation|opinion)"
    r"|(?:view|analy[sz]e|interpret|evaluate|assess|review|process|diagnose|verify|examine|access)\s+(?:or\s+\w+\s+)?"
    r"(?:medical|this|these|the|such|images?|media|photos?|pictures?|videos?|content))\b",
)
NEG = alts(  # "n't" is counted separately: it does not start a word
    r"not(?!_only) no(?!_(?:doubt|question)) never nothing none neither nor cannot without lacks? lacking absence"
    r" absent free_of than unlikely doubt(?<!no\sdoubt)(?:s|ful)? non"
)
# "the lack of artifacts suggests that it is real": a negating noun does not reach past the verb of its clause.
NOMINAL_NEG = ("lack", "lacks", "lacking", "absence", "absent", "without", "free")
MAIN_VERB = re.compile(
    r"\b(?:suggests|indicates|supports?|confirms|shows|points|means|implies|makes|leads)\b"
)
CONTRAST_WORDS = ("but", "however", "although", "though", "yet", "whereas", "while", "whilst")
CONTRAST = alts(" ".join(CONTRAST_WORDS))  # starts a new clause
# A negation or a cue does not reach back past these. ("or" is not one: "no signs of editing or AI generation")
CUT = alts("and because since which so " + " ".join(CONTRAST_WORDS))
NEUTRAL = alts(  # an indirect question or a comparison, not a verdict
    r"whether if similar_to resembl\w* mimic\w* imitat\w* compar\w+ unlike distinguish\w* differentiat\w* versus vs"
    r" such_as as_in then any_(?:\w+_)?signs? look\w*_for check\w*_for for_(?:\w+_)?(?:signs?|evidence|indications?|artifacts)"
)
CUE = alts(
    r"is was be been being are am appears? appearing looks? looking seems? likely probably possibly definitely"
    r" clearly certainly most classif\w+ consider\w* believe think judge conclude label\w* as indicat\w* suggest\w*"
    r" consistent taken captured acquired lean\w* guess go_with say not no never hallmarks? signs? evidence"
)
APPEAR = re.compile(
    r"(?:looks?|looking|seems?|appears?)\s+(?:like\s+)?(?:an?\s+)?"
    r"(?:(?:very|quite|highly|remarkably|fairly|so|extremely|convincingly)\s+)?$"
)
# A possibility, not a verdict: "it could be AI-generated", "the possibility of manipulation".
MAYBE = alts(
    r"could might may possibly potentially perhaps possible possibility potential plausibl(?:y|e_as|e_that) hint\w* raises? rule\w*_out"
)
LEAN = alts(r"lean\w* likely")  # "leaning towards the possibility of AI generation" is a verdict
# Not a verdict but a disclaimer about proof: "without definitive evidence of manipulation", "prevents certainty".
UNPROVEN = re.compile(
    r"(?:no|not|without|lacks?|lacking)\s+(?:\w+\s+)?(?:definitive|conclusive|absolute)\s+(?:evidence|proof|indicat\w+"
    r"|signs?|confirmation)|(?:prevents?|precludes?|without|no|lacks?)\s+(?:\w+\s+){0,2}certainty"
)
# "Is the image AI-generated? -> Likely no": a restated question answered yes or no.
YES_NO_AFTER = re.compile(
    r"[\s*_>:\-\u2192]*(?:answer:?\s*)?(?:(?:likely|probably|definitely|most\s+likely|certainly)\s+)?(yes|no)\b"
)
# A term that names a heading or a "Key:" label, not a verdict: "### Signs of AI generation", "**Signs of ...**:".
HEADING = re.compile(r"[ \t]*#")
KEY_END = re.compile(r"[*_]*\s*:")
# A scale legend, not a verdict: "(0 = certainly real, 10 = certainly fake)", "- 0: Certainly Real".
LEGEND = re.compile(r"(?:^|[^/\d])\d{1,2}\s*[:=]\s*[*_]*\s*(?:certainly|definitely)?\s*$")
# "the likelihood of it being AI-generated is low": the level after (or a score before) decides the reading.
LIKELIHOOD_OF = re.compile(
    r"(?:(?:likelihood|probability|chance|odds)(?:\s+scale)?\s+(?:of|that)|\d{1,2}\s*(?:/|out\s+of)\s*10\s+(?:for"
    r"|of|on\s+(?:the\s+)?(?:likelihood\s+)?(?:scale\s+)?of))\s+(?:(?:it|the|this|image|media|photo"
    r"|photograph|being|is|was)\s+){0,4}(?:[\w-]+,?\s+(?:or|and)\s+(?:\w+ly\s+)?){0,2}$"
)
LEVEL = re.compile(
    r"\b(?:(low|minimal|slim|negligible|small|unlikely)|(high|strong|significant)|(medium|moderate))\b"
    r"|\b(\d{1,2})(?:\.\d)?\s*(?:/|out\s+of)\s*10\b"
)
CONCLUDE = alts(
    r"but however yet nevertheless nonetheless ultimately overall in_conclusion in_summary to_summari[sz]e therefore"
    r" thus hence on_balance closer_(?:inspection|examination|look) that_said final(?:ly)? all_things_considered"
    r" in_fact actually conclude conclusion based_on given_(?:these|this|the|all) considering leans? leaning"
    r" my_(?:final_)?(?:assessment|verdict|conclusion)"
)
CONCEDE = alts("although though while whilst even_if despite")
CONCEDE_LEAD = re.compile(
    r"\W*(?:at\s+first(?:\s+(?:glance|sight))?|initially|superficially|on\s+the\s+surface)\W*$"
)
SENT_END = re.compile(r"[.!?\n](?:(?<=\n)|(?!\S))")  # not a decimal point, nor the first dots of "..."
CLAUSE_MARK = re.compile(r"[,;:()\[\]\u2014\u2013]")
THINK_END = "</think>"
_HEADS = (
    r"(?:(?:final|overall|my)\s+)?(?:answer|verdict|label|classification|conclusion|determination|assessment"
    r"|prediction|decision|result|judge?ment|score|rating|likelihood)|authenticity|(?:image\s+)?(?:type|origin|source)"
    r"|(?:is\s+(?:this|the|it)\s+(?:image\s+)?)?(?:real\s+or\s+(?:synthetic|fake|ai[- ]generated|generated)"
    r"|(?:synthetic|fake)\s+or\s+real|real\s*/\s*(?:synthetic|fake))"
)
LINE_LEAD = r"(?m)^[ \t>#*_+\-\d.)\[{\"',]*"
LABELLED = re.compile(
    rf"{LINE_LEAD}(?:{_HEADS})[\"'*_ \t]*(?:\?[*_ \t]*:?|:|=|[\u2014\u2013]|\s-\s|[ \t*_]*$)[ \t*_:]*"
    r"(?P<value>[^\n]*)(?:(?=\n\s*(?P<next>[^\n]*)))?"
)
# A value or reply that opens with its verdict: "Likely Real (with some concerns)", "Not real.", "1. Synthetic".
OPENING = re.compile(
    r"[ \t>#*_+\-\d.)\[(<]*(?:answer>\s*)?(?:(?:not|definitely|certainly|likely|probably|most\s+likely|highly\s+likely"
    r"|very\s+likely|more\s+likely|leaning)\s+)*"
)
OPENING_END = re.compile(r"[.!?]+(?=\s|$)|\n|\s[-\u2014\u2013]\s|:\s")
SECTION = re.compile(  # a header line; the text under it up to the next header is the interpretation
    r"(?m)^(?P<bullet>[ \t]*[*+-][ \t])?[ \t>#*_+\-\d.)]*(?:(?:image|clinical|medical|radiological|detailed|brief)\s+)?"
    r"(?P<name>interpretation|findings|description|observations|analysis|key\s+(?:findings|observations|features)"
    r"|explanation|reasoning|rationale)(?:\s+of\s+(?:the\s+)?image)?[*_ \t]*(?::[*_ \t]*|$)"
)
SECTION_RANK = {"interpretation": 0, "explanation": 2, "reasoning": 2, "rationale": 2}  # others: 1
JSON_FIELD = re.compile(
    r"[\"'](?:interpretation|description|findings|reasoning)[\"']\s*:\s*[\"']((?:[^\"\\\n]|\\.)+)"
)
CONF_LINE = re.compile(
    rf"(?i){LINE_LEAD}(?:confidence|certainty)(?:\s+(?:level|score))?[*_ \t]*[:=\u2014\u2013-][^\n]*\n?"
)
_CONF_HEAD = r"(?:confidence|certainty)(?:\s+(?:level|score|rating))?[\"'*_]*\s*(?:[:=\u2014-]|is|of|at)?\s*[\"'*_]*\s*"
CONF_NUM = re.compile(
    rf"{_CONF_HEAD}(?:(?:about|around|approximately|roughly|~)\s*)?(\d{{1,3}}(?:\.\d+)?\s*(?:%|percent|/\s*10{{1,2}}\b)?)"
)
CONF_PCT = re.compile(
    r"(\d{1,3}(?:\.\d+)?\s*(?:%|percent))\s+(?:sure|certain|confident|confidence|likely|likelihood|probability|chance)"
)
NOT_SURE = re.compile(r"not|n't|impossible|never|unable")
CONF_STATED = re.compile(rf"{_CONF_HEAD}(?:very\s+)?(high|medium|moderate|low)\b")
CONF_LEVEL = re.compile(r"(high|medium|moderate|low)\s+(?:confidence|certainty)\b")
NUMBER = re.compile(r"(-?\d+(?:\.\d+)?)\s*(%|percent|/\s*(\d+))?")
KEY_CHARS = re.compile(r"[^a-z0-9]+")
LOOSE_WORDS = re.compile(r"\b(?:true|false|null)\b")
PYTHON_WORDS = {"true": "True", "false": "False", "null": "None"}

CONF_WORDS = {"high": 0.9, "medium": 0.6, "moderate": 0.6, "low": 0.3}
FLIP = {"real": "synthetic", "synthetic": "real"}
# Whole label values that the prose rules would not read as verdicts on their own.
EXACT = dict.fromkeys(("ai", "gan", "diffusion"), "synthetic") | {"natural": "real"}
EXACT |= dict.fromkeys(("unknown", "either", "both", "unsure"), "uncertain")
LABEL_KEYS = ("label", "classification", "answer", "verdict", "prediction", "real_or_synthetic", "result",
              "class", "decision", "determination", "conclusion", "authenticity")  # fmt: skip
BOOL_KEYS = dict.fromkeys(
    ("is_synthetic", "is_ai_generated", "is_generated", "is_fake", "synthetic"), "synthetic"
)
BOOL_KEYS["is_real"] = "real"
CONF_KEYS = ("confidence", "confidence_score", "confidence_level", "certainty")
INTERP_KEYS = ("interpretation", "image_interpretation", "clinical_interpretation", "description",
               "findings", "reasoning", "explanation", "rationale", "analysis")  # fmt: skip
YES_NO = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
REACH = 300  # characters: how far around a verdict term the rules look
