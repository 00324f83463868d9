"""``python -m cache methods``: the paragraph a paper's methods section needs, from the store itself.

It states the models and the versions their APIs reported, the generation parameters, the prompt
text (verbatim, with its sha256), how images were prepared (from the run records), the images per
modality x truth x source, the dates of the answers, and how abstentions and uncertainty were
handled, using the definitions of ``cache.metrics`` (one definition for every surface).
``provenance`` gives the same facts as data; bundles store it as ``provenance.json``.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from typing import Any

import duckdb

from cache import __version__
from cache.metrics import Filters, label_sources, label_sources_sentence
from cache.study_methods import MODEL_ROWS, grading_text, reader_study_text

SCORING = (
    "Each answer was mapped to one label: real, synthetic, uncertain (the model hedged or declined to "
    "commit), refused (the model or a safety filter refused), or unparseable (no label could be read). "
    "Accuracy counts abstentions (uncertain, refused, unparseable) as wrong; coverage is the share of "
    "images that received a real or synthetic label, and accuracy among answered images is reported "
    "beside it. Sensitivity and specificity treat synthetic as the positive class and are computed over "
    "answered images. 95% confidence intervals are Wilson score intervals. Paired comparisons of two "
    "models on the same images use McNemar's exact test (two-sided binomial test on the discordant "
    "pairs), and agreement between models is Cohen's kappa over the five labels. When an image was "
    "answered more than once under the same model, prompt and repeat, the latest successful answer is used."
)


def _records(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    cur = con.execute(sql, list(params))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def provenance(con: duckdb.DuckDBPyConnection, relation: str = "responses",
               filters: Filters | None = None) -> dict[str, Any]:
    """Prompts (id, sha256, text), models (versions, params, dates), runs and the date range of the rows."""
    where, params = (filters or Filters()).where()
    rows = f"(SELECT * FROM {relation} {where})"
    return {
        "medlens_version": __version__,
        "prompts": _records(con, f"SELECT prompt_id, prompt_sha256, any_value(prompt_text) AS prompt_text, "
                                 f"count(*) AS rows FROM {rows} GROUP BY ALL ORDER BY ALL", params),
        "models": _records(con, (
            "SELECT model, provider, list(DISTINCT model_version ORDER BY model_version) FILTER "
            "(WHERE model_version IS NOT NULL) AS model_versions, list(DISTINCT params_json ORDER BY "
            "params_json) AS params_json, count(*) AS rows, count(*) FILTER (WHERE status = 'ok') AS ok_rows, "
            "max(repeat) + 1 AS repeats, min(created_at)::VARCHAR AS first_answer, "
            f"max(created_at)::VARCHAR AS last_answer FROM {rows} GROUP BY ALL ORDER BY ALL"), params),
        "runs": _records(con, f"SELECT run_id, min(created_at)::VARCHAR AS first_row, max(created_at)::VARCHAR "
                              f"AS last_row, count(*) AS rows FROM {rows} GROUP BY ALL ORDER BY first_row", params),
        "dates": _records(con, f"SELECT min(created_at)::VARCHAR AS first, max(created_at)::VARCHAR AS last "
                               f"FROM {rows}", params)[0],
    }


def image_counts(con: duckdb.DuckDBPyConnection, filters: Filters | None = None) -> list[dict[str, Any]]:
    """Distinct images per modality x truth x source among the selected rows."""
    extra, params = (filters or Filters()).clause()
    return _records(con, "SELECT modality, truth, coalesce(source, '') AS source, count(DISTINCT image_sha256) "
                         f"AS images FROM {MODEL_ROWS} WHERE image_sha256 IS NOT NULL {extra} GROUP BY ALL "
                         "ORDER BY modality, truth, source", params)


def _params(text: str) -> str:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return text
    return ", ".join(f"{k}={v}" for k, v in sorted(value.items())) if isinstance(value, dict) else str(value)


def _model_sentence(model: dict[str, Any]) -> str:
    versions = ", ".join(model["model_versions"] or []) or "not reported"
    params = "; ".join(_params(p) for p in model["params_json"] if p) or "none recorded"
    return f"{model['model']} (version reported: {versions}; parameters: {params})"


def _images_sentence(counts: list[dict[str, Any]]) -> str:
    parts = []
    for modality in sorted({c["modality"] for c in counts}):
        cells = []
        for truth in ("real", "synthetic"):
            rows = [c for c in counts if c["modality"] == modality and c["truth"] == truth]
            total = sum(c["images"] for c in rows)
            sources = ", ".join(f"{c['source'] or 'unnamed source'} {c['images']}" for c in rows)
            cells.append(f"{total} {truth}" + (f" ({sources})" if rows else ""))
        parts.append(f"{modality.replace('_', ' ')}: {' and '.join(cells)}")
    return "; ".join(parts)


def _prep_sentence(runs: Sequence[dict[str, Any]], run_ids: set[str]) -> str:
    preps = {json.dumps(r["prep"], sort_keys=True) for r in runs if r.get("run_id") in run_ids and r.get("prep")}
    if not preps:
        return ("How images were prepared is not recorded for these rows (answers imported from elsewhere "
                "are stored as given).")
    described = []
    for prep in map(json.loads, sorted(preps)):
        fmt = str(prep.get("format", "png")).upper()
        quality = f" (quality {prep['quality']})" if "quality" in prep else ""
        side = prep.get("max_side", "?")
        if prep.get("square"):  # ingest run --square: every image sent at exactly side x side
            sizing = (f"padded to a square on black (centred) and resized to exactly {side} x {side} px "
                      "(smaller images upscaled)")
        else:
            sizing = f"resized to at most {side} px on the longest side"
        described.append(f"decoded (DICOM with its modality and VOI LUTs applied), converted to "
                         f"{prep.get('color_mode', 'RGB')}, {sizing} and re-encoded as {fmt}{quality} without metadata")
    return ("Before it was sent, every image was " + "; in other runs, ".join(described)
            + ", so file format and header fields could not reveal its origin.")


def _labels_sentence(con: duckdb.DuckDBPyConnection, filters: Filters | None) -> str:
    """Who set the labels the metrics use (parser versions as recorded), and which reading wins."""
    rows = label_sources(con, filters)
    versions = sorted({str(r["label_by"]).removeprefix("parser-") for r in rows if r["label_source"] == "parser"})
    named = [v for v in versions if v != "parser"]
    which = (f"version{'s' if len(named) > 1 else ''} {', '.join(named)}" if named else "")
    if "parser" in versions:  # rows written before the parser version was recorded (store schema 1)
        which = (which + " and " if which else "") + "the version of MedLens 0.1, not recorded"
    parser = f"MedLens's rule-based parser ({which})" if which else "MedLens's rule-based parser"
    return (f"The labels of free-text answers were read by {parser}; a judge model's reading outranks the "
            "parser's, and a human reviewer's outranks both. " + label_sources_sentence(rows)).strip()


def methods_text(con: duckdb.DuckDBPyConnection, filters: Filters | None = None,
                 runs: Sequence[dict[str, Any]] = ()) -> str:
    """The methods paragraph, then each prompt's exact text, for the selected rows of ``con``'s store;
    then the reader study and the grading protocol, when the store holds reader answers or grades."""
    study = [p for p in (reader_study_text(con, filters), grading_text(con, filters)) if p]
    facts = provenance(con, MODEL_ROWS, filters)  # models only: readers have a paragraph of their own
    if not facts["models"]:
        return "\n\n".join(study) if study else "No responses match the selection: nothing to describe."
    where, params = (filters or Filters()).where()
    errors = con.execute(f"SELECT count(*) FROM failures {where}", params).fetchone()[0]
    models, prompts = facts["models"], facts["prompts"]
    repeats = max(m["repeats"] or 1 for m in models)
    first, last = (str(facts["dates"][k])[:10] for k in ("first", "last"))
    prompt_names = ", ".join(f'"{p["prompt_id"]}" (sha256 {p["prompt_sha256"][:12]})' for p in prompts)
    text = (
        f"We asked {len(models)} model{'s' if len(models) > 1 else ''} whether each image was real or synthetic "
        f"and to interpret it: {'; '.join(_model_sentence(m) for m in models)}. Each model received every image "
        + ("once" if repeats == 1 else f"{repeats} times (independent repeats)")
        + f" with the prompt{'s' if len(prompts) > 1 else ''} {prompt_names}, given verbatim below. "
        + _prep_sentence(runs, {r["run_id"] for r in facts["runs"]})
        + f" The image set comprised {sum(c['images'] for c in image_counts(con, filters))} images: "
        + _images_sentence(image_counts(con, filters)) + ". "
        + f"Answers were collected between {first} and {last} (UTC) and stored with MedLens {__version__}"
        + (f"; {errors} call{'s' if errors != 1 else ''} that still failed after retries "
           f"{'are' if errors != 1 else 'is'} reported separately and excluded from every metric. "
           if errors else ". ")
        + SCORING + " " + _labels_sentence(con, filters)
    )
    out = [textwrap.fill(text, width=100)]
    for prompt in prompts:
        out.append(f'\nPrompt "{prompt["prompt_id"]}" (sha256 {prompt["prompt_sha256"]}):\n')
        out.append(textwrap.indent(str(prompt["prompt_text"] or "").rstrip(), "    "))
    return "\n".join(out) + "".join(f"\n\n{paragraph}" for paragraph in study)
