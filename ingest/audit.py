"""The confound audit: file-level cues that differ between the real and synthetic images of a modality.

If every synthetic fundus photograph is a PNG and every real one a JPEG, a model (or a person, or a
baseline detector) can score well without looking at the retina. The audit compares, per modality,
file format, colour mode, bit depth, pixel size, metadata presence and the pixel size actually sent
after MedLens's resizing, and grades each difference:

- high: the attribute separates real from synthetic perfectly (no value is shared);
- medium: one value covers at least 80% of one group and at most 20% of the other;
- info: a milder difference (shares differ by 25 points or more).

Only headers are read (`describe_file`), so the audit is cheap; unreadable files are listed, not fatal.
"""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from ingest.images import ImageError, PrepOptions, describe_file, fitted_size
from ingest.manifest import TRUTH_VALUES, ManifestRow

# attribute -> what a model would be "reading" if it used it
ATTRIBUTES = {
    "format": "file type", "mode": "colour mode", "bit_depth": "bit depth", "size": "pixel size",
    "has_metadata": "metadata", "sent_size": "pixel size that MedLens still sends after resizing",
}  # fmt: skip
HIGH_SHARE, LOW_SHARE, INFO_GAP = 0.8, 0.2, 0.25


def confound_audit(
    rows: list[ManifestRow],
    manifest_dir: Path,
    max_files_per_cell: int | None = None,
    max_side: int = PrepOptions.max_side,
    square: bool = False,
) -> dict[str, Any]:
    """Describe every image (or an evenly spaced sample per modality x truth) and compare the groups.

    Returns a JSON-serialisable dict: {"modalities": {modality: {"real": summary, "synthetic": summary,
    "findings": [{"attribute", "severity", "message"}]}}, "unreadable": [image_path, ...],
    "unreadable_errors": {image_path: message}, "max_side": max_side}.
    """
    cells: dict[tuple[str, str], list[ManifestRow]] = {}
    for row in rows:
        cells.setdefault((row.modality, row.truth), []).append(row)
    unreadable: dict[str, str] = {}
    modalities: dict[str, Any] = {}
    for modality in sorted({modality for modality, _ in cells}):
        groups: dict[str, list[dict[str, Any]]] = {}
        for truth in TRUTH_VALUES:
            chosen = _sample(cells.get((modality, truth), []), max_files_per_cell)
            groups[truth] = _describe_all(chosen, Path(manifest_dir), max_side, unreadable, square)
        modalities[modality] = {
            **{
                truth: _summarise(groups[truth], len(cells.get((modality, truth), [])))
                for truth in TRUTH_VALUES
            },
            "findings": _findings(modality, groups["real"], groups["synthetic"]),
        }
    return {
        "modalities": modalities, "unreadable": sorted(unreadable),
        "unreadable_errors": dict(sorted(unreadable.items())), "max_side": max_side, "square": square,
    }  # fmt: skip


def _sample(rows: list[ManifestRow], limit: int | None) -> list[ManifestRow]:
    """Evenly spaced rows, so a cap does not keep only the first source in path order."""
    ordered = sorted(rows, key=lambda row: row.image_path)
    if limit is None or len(ordered) <= limit:
        return ordered
    return [ordered[index * len(ordered) // limit] for index in range(limit)]


def _describe_all(
    rows: list[ManifestRow], manifest_dir: Path, max_side: int, unreadable: dict[str, str],
    square: bool = False,
) -> list[dict[str, Any]]:
    facts = []
    for row in rows:
        try:
            described = describe_file(row.resolve(manifest_dir))
        except ImageError as exc:
            unreadable[row.image_path] = str(exc)
            continue
        width, height = described["width"], described["height"]
        sent = (max_side, max_side) if square else fitted_size(width, height, max_side)
        facts.append({
            **described, "size": f"{width}x{height}", "sent_size": f"{sent[0]}x{sent[1]}",
            "has_metadata": "with metadata" if described["has_metadata"] else "without metadata",
            "bit_depth": f"{described['bit_depth']}-bit",
        })  # fmt: skip
    return facts


def _summarise(facts: list[dict[str, Any]], n_rows: int) -> dict[str, Any]:
    summary: dict[str, Any] = {"n_rows": n_rows, "n_described": len(facts)}
    for attribute in ATTRIBUTES:
        summary[attribute] = dict(Counter(fact[attribute] for fact in facts).most_common(10))
    summary["distinct_sizes"] = len({fact["size"] for fact in facts})
    if facts:
        summary["median_width"] = statistics.median(fact["width"] for fact in facts)
        summary["median_height"] = statistics.median(fact["height"] for fact in facts)
    keys = Counter(key for fact in facts for key in fact["metadata_keys"])
    summary["metadata_keys"] = dict(keys.most_common(10))
    return summary


def _findings(
    modality: str, real: list[dict[str, Any]], synthetic: list[dict[str, Any]]
) -> list[dict[str, str]]:
    if not real or not synthetic:
        missing = "real" if not real else "synthetic"
        return [
            {
                "attribute": "all",
                "severity": "info",
                "message": f"no readable {missing} {modality} images: nothing to compare",
            }
        ]
    # When no image is over the size cap, the sizes sent are the file sizes: report them once.
    resized = any(fact["size"] != fact["sent_size"] for fact in real + synthetic)
    findings = []
    for attribute, what in ATTRIBUTES.items():
        if attribute == "sent_size" and not resized:
            continue
        count = {
            truth: Counter(fact[attribute] for fact in facts)
            for truth, facts in (("real", real), ("synthetic", synthetic))
        }
        found = _compare(modality, what, count["real"], count["synthetic"])
        if found and attribute == "size" and not resized:
            found["message"] += " (no image is over the size cap, so the model sees these sizes too)"
        if found:
            findings.append({"attribute": attribute, **found})
    order = {"high": 0, "medium": 1, "info": 2}
    return sorted(findings, key=lambda finding: order[finding["severity"]])


def _compare(modality: str, what: str, real: Counter, synthetic: Counter) -> dict[str, str] | None:
    """Grade how well one attribute separates the two groups (None: no notable difference)."""
    n_real, n_synthetic = sum(real.values()), sum(synthetic.values())
    if not set(real) & set(synthetic):
        if len(real) == 1 and len(synthetic) == 1:
            text = f"all {n_synthetic} synthetic {modality} images are {_only(synthetic)} and all {n_real} real ones {_only(real)}"
        else:
            text = f"synthetic {modality} images are {_listing(synthetic)} and real ones {_listing(real)}, with no value shared"
        return {"severity": "high", "message": f"{text}: a model could score well by reading the {what}"}
    shares = {
        value: (real[value] / n_real, synthetic[value] / n_synthetic)
        for value in sorted(set(real) | set(synthetic))
    }
    value, (real_share, synthetic_share) = max(shares.items(), key=lambda item: abs(item[1][0] - item[1][1]))
    detail = f"{synthetic_share:.0%} of synthetic {modality} images are {value} against {real_share:.0%} of real ones"
    if max(real_share, synthetic_share) >= HIGH_SHARE and min(real_share, synthetic_share) <= LOW_SHARE:
        return {"severity": "medium", "message": f"{detail}: the {what} differs strongly between the groups"}
    if abs(real_share - synthetic_share) >= INFO_GAP:
        return {"severity": "info", "message": f"{detail}: the {what} differs somewhat"}
    return None


def _only(counts: Counter) -> str:
    return str(next(iter(counts)))


def _listing(counts: Counter) -> str:
    return ", ".join(f"{value} ({count})" for value, count in counts.most_common(4)) + (
        ", ..." if len(counts) > 4 else ""
    )


def format_audit(audit: dict[str, Any]) -> str:
    """A human-readable report; high findings are prefixed "WARNING CONFOUND:"."""
    lines = ["Confound audit: file-level cues that differ between real and synthetic images", ""]
    for modality, entry in audit["modalities"].items():
        real, synthetic = entry["real"], entry["synthetic"]
        lines.append(
            f"{modality}: {real['n_described']} real and {synthetic['n_described']} synthetic images described"
        )
        for attribute in ATTRIBUTES:
            lines.append(
                f"  {attribute:<13} real: {_brief(real[attribute])}   synthetic: {_brief(synthetic[attribute])}"
            )
        for finding in entry["findings"]:
            prefix = {"high": "WARNING CONFOUND:", "medium": "Warning:", "info": "Note:"}[finding["severity"]]
            lines.append(f"  {prefix} {finding['message']}")
        if not entry["findings"]:
            lines.append("  No difference found between real and synthetic on these attributes.")
        lines.append("")
    if audit["unreadable"]:
        lines.append(f"Unreadable files ({len(audit['unreadable'])}), left out of the audit:")
        lines.extend(f"  {audit['unreadable_errors'].get(path, path)}" for path in audit["unreadable"])
        lines.append("")
    side = audit.get("max_side", PrepOptions.max_side)
    if audit.get("square"):
        sizing = f"padded to a square and resized to exactly {side}x{side} px"
        leaks = "resampling and compression artefacts, and the padding itself"
    else:
        sizing = f"with the longest side capped at {side} px"
        leaks = ("resolution (images smaller than the cap keep their size; `ingest run --square` sends "
                 "every image at one size), resampling and compression artefacts")
    lines.append(
        f"MedLens re-encodes every image to one format and colour mode, without metadata, {sizing}, before "
        f"sending it, so file type, bit depth and metadata do not reach the model; pixel content can still "
        f"leak: {leaks}."
    )
    return "\n".join(lines)


def _brief(counts: dict[str, int]) -> str:
    return ", ".join(f"{value} x{count}" for value, count in counts.items()) or "-"
