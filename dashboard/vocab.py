"""Vocabulary for interpretation quality (pure): modality-specific findings and hedging phrases.

The seed study found GPT-4V's interpretations generic. An interpretation "names a finding" when it
mentions at least one structure or sign a reader of that modality would look for; it "hedges" when it
uses a hedging phrase. Patterns are RE2 regular expressions (DuckDB ``regexp_matches``), matched on
the lower-cased text.
"""

from __future__ import annotations

import re

#: modality family -> finding name -> pattern
FINDINGS: dict[str, dict[str, str]] = {
    "fundus": {
        "optic disc": r"optic (disc|disk|nerve head)",
        "macula / fovea": r"macula|macular|fovea",
        "vessels": r"vessel|vascula|arteriol|venule|arcade",
        "exudates": r"exudate",
        "haemorrhages": r"ha?emorrhag",
        "microaneurysms": r"micro-?aneurysm",
        "cup-to-disc": r"cup[- ]to[- ]disc|\bcdr\b",
        "drusen": r"\bdrusen",
        "cotton-wool spots": r"cotton[- ]wool",
        "neovascularisation": r"neovasculari[sz]",
        "papilloedema": r"papill?o?edema",
    },
    "chest": {
        "lung fields": r"lung (field|zone)s?",
        "costophrenic angles": r"costophrenic",
        "cardiac silhouette": r"cardiac silhouette|heart size|cardiomegaly|cardiothoracic",
        "opacities": r"opacit",
        "consolidation": r"consolidat",
        "pleural effusion": r"effusion",
        "pneumothorax": r"pneumothora",
        "diaphragm": r"diaphragm",
        "mediastinum": r"mediastin",
        "hila": r"\bhil(um|a|ar)\b",
        "infiltrates": r"infiltrat",
        "atelectasis": r"atelecta",
        "nodules": r"nodul",
    },
}

#: a modality name -> family, by substring (modality names are free text in manifests)
FAMILY_HINTS: dict[str, tuple[str, ...]] = {
    "fundus": ("fundus", "retina", "retinal", "eye", "ophthalm"),
    "chest": ("chest", "lung", "xray", "x-ray", "cxr", "thorax", "radiograph"),
}

HEDGES: tuple[str, ...] = (
    r"\bmay\b", r"\bmight\b", r"\bcould\b", r"\bpossibl[ey]\b", r"\bperhaps\b", r"\bprobabl[ey]\b",
    r"\blikely\b", r"\bappears? to\b", r"\bappears\b", r"\bseems?\b", r"\bsuggest", r"\bunclear\b",
    r"\buncertain", r"\bnot (entirely )?(sure|certain|possible to)\b",
    r"\bcannot (be )?(determined?|tell|say|assess|confirm)", r"\bcan't (determine|tell|say)",
    r"\bdifficult to (determine|say|tell|assess)", r"\bhard to (determine|say|tell)",
)


def family(modality: str | None) -> str | None:
    """'fundus', 'chest' or None for a modality name."""
    name = (modality or "").lower()
    for fam, hints in FAMILY_HINTS.items():
        if any(h in name for h in hints):
            return fam
    return None


def findings_pattern(fam: str) -> str:
    """One alternation matching any finding of a family."""
    return "|".join(f"(?:{p})" for p in FINDINGS[fam].values())


def hedge_pattern() -> str:
    return "|".join(f"(?:{p})" for p in HEDGES)


def names_finding(text: str, modality: str) -> bool:
    """Python mirror of the SQL test, for unit tests and single answers."""
    fam = family(modality)
    return bool(fam and re.search(findings_pattern(fam), text.lower()))


def hedges(text: str) -> bool:
    return bool(re.search(hedge_pattern(), text.lower()))
