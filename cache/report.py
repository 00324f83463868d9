"""``python -m cache report``: one self-contained HTML file that opens offline in any browser.

Contents: the metric table (``cache.metrics.group_metrics``), a confusion matrix per model x modality
x prompt (counts, row percentages, cells shaded by share), paired comparisons when several models
answered the same images, the open errors, a gallery of thumbnails (inline base64 JPEGs) with truth,
source, each model's label (✓ correct, ✗ wrong or abstained: abstentions count as wrong) and
interpretation, and the methods paragraph with the prompts. No script, font, stylesheet or image is
fetched: a Content-Security-Policy forbids it, and every value from the store is escaped. Like an
export, the report leaves the machine: image paths and messages go through ``cache.redact``.
"""

from __future__ import annotations

import base64
import html
from itertools import combinations
from pathlib import Path
from typing import Any

import duckdb

from cache import __version__
from cache.methods import methods_text
from cache.metrics import (
    Filters,
    compare_models,
    confusion_matrix,
    group_metrics,
    label_sources,
    label_sources_sentence,
)
from cache.redact import safe_image_path, scrub_secrets, scrub_text
from cache.schema import LABELS
from cache.store import Store, atomic_write_bytes, utcnow

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem} .meta{color:#666} table{border-collapse:collapse;margin:.5rem 0 1.5rem}
th,td{border:1px solid #ccc;padding:.3rem .5rem;text-align:right;font-size:.9rem} th{background:#f3f3f3}
td.text,th.text{text-align:left} .cm td{min-width:5.5rem;text-align:center} .cm small{display:block;color:#444}
.matrices{display:flex;flex-wrap:wrap;gap:1.5rem} .note{background:#fff8e1;border:1px solid #f0d68a;padding:.6rem}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:1rem}
figure.card{margin:0;border:1px solid #ddd;border-radius:6px;padding:.5rem;background:#fafafa}
img.thumb{width:100%;height:auto;display:block;background:#000}
.placeholder{height:180px;background:#ddd;display:flex;align-items:center;justify-content:center;color:#666}
ul.answers{list-style:none;padding:0;margin:.4rem 0 0} ul.answers li{margin:.3rem 0;font-size:.85rem}
.correct .mark{color:#1b7f3b;font-weight:bold} .wrong .mark{color:#b3261e;font-weight:bold}
.interp{color:#444} pre{white-space:pre-wrap;background:#f6f6f6;padding:.6rem}
"""
RGB = {"correct": (27, 127, 59), "wrong": (179, 38, 30), "abstained": (120, 120, 120)}


def esc(value: Any) -> str:
    """Escape for HTML text and attributes, secrets scrubbed (the report leaves the machine); None
    becomes an empty string."""
    return html.escape(scrub_secrets("" if value is None else str(value)), quote=True)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _ci(value: float | None, low: float | None, high: float | None) -> str:
    return "–" if value is None else f"{_pct(value)} [{_pct(low)}, {_pct(high)}]"


def metrics_table(groups: list[dict[str, Any]]) -> str:
    head = ("model", "modality", "prompt", "n", "coverage", "accuracy [95% CI]", "accuracy (answered)",
            "sensitivity [95% CI]", "specificity [95% CI]", "uncertain", "refused", "unparseable", "errors")
    rows = []
    for g in groups:
        cells = [g["model"], g["modality"], g["prompt_id"], g["n"], _pct(g["coverage"]),
                 _ci(g["accuracy"], g["accuracy_ci_low"], g["accuracy_ci_high"]), _pct(g["accuracy_answered"]),
                 _ci(g["sensitivity"], g["sensitivity_ci_low"], g["sensitivity_ci_high"]),
                 _ci(g["specificity"], g["specificity_ci_low"], g["specificity_ci_high"]),
                 g["uncertain"], g["refused"], g["unparseable"], g["errors"]]
        rows.append("<tr>" + "".join(f'<td{" class=text" if i < 3 else ""}>{esc(c)}</td>'
                                     for i, c in enumerate(cells)) + "</tr>")
    header = "".join(f'<th{" class=text" if i < 3 else ""}>{esc(h)}</th>' for i, h in enumerate(head))
    return f'<table class="metrics"><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def matrix_html(model: str, modality: str, prompt_id: str, cm: dict[str, dict[str, int]]) -> str:
    """A confusion matrix: rows truth, columns predicted label, counts with row percentages."""
    head = "".join(f'<th scope="col">{esc(label)}</th>' for label in LABELS)
    body = []
    for truth in ("real", "synthetic"):
        total = sum(cm[truth].values())
        cells = []
        for label in LABELS:
            count = cm[truth][label]
            share = count / total if total else 0.0
            kind = "abstained" if label not in ("real", "synthetic") else ("correct" if label == truth else "wrong")
            red, green, blue = RGB[kind]
            alpha = 0.08 + 0.6 * share if count else 0.0
            cells.append(f'<td class="cell {kind}" data-truth="{esc(truth)}" data-label="{esc(label)}" '
                         f'style="background-color:rgba({red},{green},{blue},{alpha:.2f})">'
                         f'<span class="count">{count}</span><small class="pct">{_pct(share if total else None)}'
                         "</small></td>")
        body.append(f'<tr><th scope="row">{esc(truth)}</th>{"".join(cells)}<td class="total">{total}</td></tr>')
    return (f'<section class="confusion" data-model="{esc(model)}" data-modality="{esc(modality)}" '
            f'data-prompt="{esc(prompt_id)}"><h3>{esc(model)} · {esc(modality)} · prompt {esc(prompt_id)}</h3>'
            f'<table class="cm"><thead><tr><th>truth \\ predicted</th>{head}<th>n</th></tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></section>')


def matrices(con: duckdb.DuckDBPyConnection, filters: Filters, groups: list[dict[str, Any]]) -> list[str]:
    out = []
    for prompt_id in sorted({g["prompt_id"] for g in groups if g["n"]}):
        for (model, modality), cm in confusion_matrix(con, filters.narrowed(prompt_id=[prompt_id])).items():
            out.append(matrix_html(model, modality, prompt_id, cm))
    return out


def comparisons(con: duckdb.DuckDBPyConnection, filters: Filters, groups: list[dict[str, Any]]) -> str:
    rows = []
    for modality, prompt_id in sorted({(g["modality"], g["prompt_id"]) for g in groups if g["n"]}):
        models = sorted({g["model"] for g in groups if (g["modality"], g["prompt_id"]) == (modality, prompt_id) and g["n"]})
        for a, b in combinations(models, 2):
            c = compare_models(con, a, b, filters.narrowed(modality=[modality], prompt_id=[prompt_id]))
            kappa = "–" if c["kappa"] is None else f"{c['kappa']:.2f}"
            rows.append(f"<tr><td class=text>{esc(modality)}</td><td class=text>{esc(prompt_id)}</td>"
                        f"<td class=text>{esc(a)}</td><td class=text>{esc(b)}</td><td>{c['n_pairs']}</td>"
                        f"<td>{c['a_only_correct']}</td><td>{c['b_only_correct']}</td>"
                        f"<td>{c['mcnemar_p']:.3g}</td><td>{kappa}</td></tr>")
    if not rows:
        return ""
    return ("<h2>Paired comparisons</h2><table class=pairs><thead><tr><th class=text>modality</th>"
            "<th class=text>prompt</th><th class=text>model A</th><th class=text>model B</th><th>pairs</th>"
            "<th>only A correct</th><th>only B correct</th><th>McNemar exact p</th><th>Cohen's kappa</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def errors_table(con: duckdb.DuckDBPyConnection, filters: Filters) -> str:
    where, params = filters.where()
    rows = con.execute(f"SELECT model, error_type, count(*), any_value(error_message) FROM failures {where} "
                       "GROUP BY ALL ORDER BY ALL", params).fetchall()
    if not rows:
        return "<h2>Open errors</h2><p>None: every call that failed was answered on a later try.</p>"
    body = "".join(f"<tr><td class=text>{esc(m)}</td><td class=text>{esc(t)}</td><td>{n}</td>"
                   f"<td class=text>{esc(scrub_text(msg or ''))}</td></tr>" for m, t, n, msg in rows)
    return ("<h2>Open errors</h2><p>Calls that failed and were never answered; excluded from every metric.</p>"
            "<table class=errors><thead><tr><th class=text>model</th><th class=text>error type</th><th>calls</th>"
            f"<th class=text>example message</th></tr></thead><tbody>{body}</tbody></table>")


GALLERY_SQL = """
SELECT image_sha256, modality, truth, source, image_path, answers FROM (
  SELECT image_sha256, modality, truth, coalesce(source, '') AS source, min(image_path) AS image_path,
         list({{'model': model, 'prompt_id': prompt_id, 'repeat': repeat, 'label': label, 'correct': correct,
                'interpretation': interpretation}} ORDER BY model, prompt_id, repeat) AS answers,
         row_number() OVER (PARTITION BY modality, truth ORDER BY coalesce(source, ''), min(image_path)) AS rn
  FROM results {where} GROUP BY image_sha256, modality, truth, coalesce(source, '')
) ORDER BY rn, modality, truth LIMIT ?
"""


def gallery(store: Store, con: duckdb.DuckDBPyConnection, filters: Filters, limit: int) -> tuple[str, int, int]:
    """Cards for at most ``limit`` images (balanced across modality x truth); (html, shown, total)."""
    where, params = filters.where()
    total = con.execute(f"SELECT count(DISTINCT (image_sha256, modality)) FROM results {where}", params).fetchone()[0]
    cur = con.execute(GALLERY_SQL.format(where=where), [*params, max(0, limit)])
    names = [d[0] for d in cur.description]
    images = sorted((dict(zip(names, r, strict=True)) for r in cur.fetchall()),
                    key=lambda i: (i["modality"], i["truth"], i["source"], i["image_path"] or ""))
    return "".join(_card(store, image) for image in images), len(images), total


def _card(store: Store, image: dict[str, Any]) -> str:
    image = image | {"image_path": safe_image_path(image["image_path"])}  # the report leaves the machine too
    thumb = store.read_thumb(image["image_sha256"])  # None for an id that is not a sha256
    if thumb is not None and thumb.startswith(b"\xff\xd8"):
        data = base64.b64encode(thumb).decode("ascii")
        picture = f'<img class="thumb" alt="{esc(image["image_path"])}" src="data:image/jpeg;base64,{data}">'
    else:
        picture = '<div class="placeholder">no thumbnail</div>'
    answers = []
    for a in image["answers"]:
        kind = "correct" if a["correct"] else "wrong"
        text = scrub_text(a["interpretation"] or "")
        short = esc(text[:400]) + (f"… <details><summary>more</summary>{esc(text)}</details>" if len(text) > 400 else "")
        suffix = f" · {esc(a['prompt_id'])}" + (f" #{a['repeat']}" if a["repeat"] else "")
        answers.append(f'<li class="{kind}"><span class="mark">{"✓" if a["correct"] else "✗"}</span> '
                       f'<b>{esc(a["model"])}</b>{suffix}: <span class="label">{esc(a["label"])}</span>'
                       f'<div class="interp">{short}</div></li>')
    return (f'<figure class="card" data-truth="{esc(image["truth"])}">{picture}<figcaption>'
            f'<b>truth: {esc(image["truth"])}</b> · {esc(image["modality"])} · source: {esc(image["source"] or "–")}'
            f'<br><small>{esc(image["image_path"])}</small></figcaption>'
            f'<ul class="answers">{"".join(answers)}</ul></figure>')


def build_report(store: Store, filters: Filters | None = None, gallery_limit: int = 200) -> tuple[str, dict[str, int]]:
    """The report's HTML and a summary of what it holds."""
    filters = filters or Filters()
    con = store.connect()
    groups = group_metrics(con, filters)
    cms = matrices(con, filters, groups)
    cards, shown, total = gallery(store, con, filters, gallery_limit)
    note = ""
    demo = store.read_json("demo.json", 1 << 20)  # a demo store says so (capped, regular files only)
    if isinstance(demo, dict):
        note = f'<p class="note"><b>Demo data.</b> {esc(demo.get("contents", ""))}</p>'
    chosen = "; ".join(f"{k}: {', '.join(v)}" for k, v in
                       (("model", filters.model), ("modality", filters.modality), ("prompt", filters.prompt_id)) if v)
    methods = methods_text(con, filters, runs=store.runs())
    body = (
        f"<h1>MedLens report</h1><p class=meta>Generated {esc(utcnow().strftime('%Y-%m-%d %H:%M UTC'))} by "
        f"MedLens {esc(__version__)}. Selection: {esc(chosen or 'all rows')}.</p>{note}"
        "<h2>Metrics</h2><p>Accuracy counts abstentions (uncertain, refused, unparseable) as wrong; coverage "
        "is the share answered real or synthetic; sensitivity and specificity (positive class: synthetic) "
        "are over answered images; 95% Wilson intervals.</p>" + metrics_table(groups)
        + f"<p class=meta>{esc(label_sources_sentence(label_sources(con, filters)))}</p>"
        + "<h2>Confusion matrices</h2><p>Rows: truth; columns: the model's label; each cell: count and share "
        f"of its row.</p><div class=matrices>{''.join(cms)}</div>" + comparisons(con, filters, groups)
        + errors_table(con, filters)
        + f"<h2>Gallery</h2><p>{shown} of {total} image(s). ✓ correct, ✗ wrong or abstained.</p>"
        + f"<div class=gallery>{cards}</div><h2>Methods</h2><pre class=methods>{esc(methods)}</pre>"
    )
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>MedLens report</title>'
            f"<style>{CSS}</style></head><body>{body}</body></html>")
    return page, {"groups": len(groups), "matrices": len(cms), "gallery": shown, "images": total}


def write_report(store: Store, out: Path, filters: Filters | None = None, gallery_limit: int = 200) -> dict[str, int]:
    """Write the report to ``out`` atomically; returns its summary."""
    page, summary = build_report(store, filters, gallery_limit)
    atomic_write_bytes(Path(out), page.encode("utf-8"))
    return summary
