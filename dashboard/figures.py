"""Plotly figure builders (pure: data in, figure out; no Streamlit, no SQL).

Category names (models, sources) are user data: they are HTML-escaped before they reach plotly,
whose text fields understand a subset of HTML (including links). Model answers never reach a figure.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from cache.schema import LABELS, TRUTHS

METRIC_TITLES = {"accuracy": "Accuracy", "sensitivity": "Sensitivity", "specificity": "Specificity",
                 "accuracy_answered": "Accuracy on answered images"}
LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=60, b=60), font=dict(size=13))


def plain(text: Any) -> str:
    """Text safe for plotly's pseudo-HTML."""
    return html.escape("" if text is None else str(text), quote=False)


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def accuracy_bars(groups: Sequence[Mapping[str, Any]], metric: str = "accuracy") -> go.Figure:
    """Grouped bars (x = model, one trace per modality[, prompt]) with 95% Wilson interval whiskers."""
    traces: dict[str, dict[str, list[Any]]] = {}
    multi_prompt = len({g.get("prompt_id") for g in groups}) > 1
    for g in groups:
        name = str(g["modality"]) + (f" · {g.get('prompt_id')}" if multi_prompt else "")
        t = traces.setdefault(name, {"x": [], "y": [], "plus": [], "minus": [], "text": []})
        value, low, high = (_num(g.get(metric)), _num(g.get(f"{metric}_ci_low")),
                            _num(g.get(f"{metric}_ci_high")))
        t["x"].append(plain(g["model"]))
        t["y"].append(value)
        t["plus"].append(None if value is None or high is None else high - value)
        t["minus"].append(None if value is None or low is None else value - low)
        t["text"].append("" if value is None else f"{value:.2f}")
    fig = go.Figure()
    for name, t in traces.items():
        fig.add_bar(name=plain(name), x=t["x"], y=t["y"], text=t["text"], textposition="inside",
                    insidetextanchor="start",
                    error_y=dict(type="data", array=t["plus"], arrayminus=t["minus"], visible=True))
    fig.update_layout(**LAYOUT, barmode="group", title=f"{METRIC_TITLES.get(metric, metric)} (95% Wilson CI)",
                      yaxis=dict(range=[0, 1.08], title=METRIC_TITLES.get(metric, metric)),
                      xaxis_title="model", legend_title="modality")
    fig.add_hline(y=0.5, line_dash="dot", line_color="grey", annotation_text="chance",
                  annotation_position="top left")
    return fig


def source_heatmap(groups: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Which generator fools which model: rows modality · truth · source, columns model, cell accuracy."""
    rows = sorted({(str(g["modality"]), str(g["truth"]), str(g.get("source") or "")) for g in groups})
    models = sorted({str(g["model"]) for g in groups})
    cell = {(str(g["modality"]), str(g["truth"]), str(g.get("source") or ""), str(g["model"])): g for g in groups}
    z, text = [], []
    for r in rows:
        zr, tr = [], []
        for m in models:
            g = cell.get((*r, m))
            acc = None if g is None else _num(g.get("accuracy"))
            zr.append(acc)
            tr.append("" if g is None or acc is None else f"{acc:.2f} (n={g['n']})")
        z.append(zr)
        text.append(tr)
    labels = [plain(f"{mod} · {truth} · {src or '(none)'}") for mod, truth, src in rows]
    fig = go.Figure(go.Heatmap(z=z, x=[plain(m) for m in models], y=labels, text=text,
                               texttemplate="%{text}", zmin=0, zmax=1, colorscale="RdYlGn",
                               colorbar=dict(title="accuracy")))
    fig.update_layout(**LAYOUT, title="Accuracy by source / generator (low = the model is fooled)",
                      height=max(300, 60 + 40 * len(rows)), yaxis=dict(autorange="reversed"))
    return fig


def confusion_heatmap(cm: Mapping[str, Mapping[str, int]], title: str) -> go.Figure:
    """Truth (real, synthetic) x predicted label (all five), counts and row percentages."""
    z, text = [], []
    for truth in TRUTHS:
        counts = [int(cm.get(truth, {}).get(label, 0)) for label in LABELS]
        total = sum(counts)
        z.append([c / total if total else 0.0 for c in counts])
        text.append([f"{c}<br>({100 * c / total:.0f}%)" if total else "0" for c in counts])
    fig = go.Figure(go.Heatmap(z=z, x=list(LABELS), y=list(TRUTHS), text=text, texttemplate="%{text}",
                               zmin=0, zmax=1, colorscale="Blues", colorbar=dict(title="row share")))
    fig.update_layout(**LAYOUT, title=plain(title), height=320, xaxis_title="predicted label",
                      yaxis=dict(title="truth", autorange="reversed"))
    return fig


def latency_box(stats: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Box per model from precomputed quantiles (the rows never leave DuckDB)."""
    fig = go.Figure()
    for s in stats:
        fig.add_trace(go.Box(name=plain(s["model"]), x=[plain(s["model"])], q1=[s["q1"]], median=[s["median"]], q3=[s["q3"]],
                             lowerfence=[s["p05"]], upperfence=[s["p95"]], mean=[s["mean"]],
                             boxpoints=False))
    fig.update_layout(**LAYOUT, title="Latency per model (box: quartiles, whiskers: 5th–95th percentile)",
                      yaxis=dict(title="latency (ms)", type="log"), showlegend=False)
    return fig


def latency_histogram(bins: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Histogram of latency per model from binned counts (bin_start, bin_end, count)."""
    fig = go.Figure()
    for model in sorted({str(b["model"]) for b in bins}):
        mine = [b for b in bins if str(b["model"]) == model]
        fig.add_bar(name=plain(model), x=[(b["bin_start"] + b["bin_end"]) / 2 for b in mine],
                    y=[b["count"] for b in mine], width=[b["bin_end"] - b["bin_start"] for b in mine],
                    opacity=0.6)
    fig.update_layout(**LAYOUT, barmode="overlay", title="Latency distribution", xaxis_title="latency (ms)",
                      yaxis_title="responses")
    return fig


def cost_by_run(runs: Sequence[Mapping[str, Any]]) -> go.Figure:
    fig = go.Figure(go.Bar(x=[plain(r["run_id"]) for r in runs], y=[_num(r.get("cost_usd")) or 0.0 for r in runs]))
    fig.update_layout(**LAYOUT, title="Cost per run (USD)", xaxis_title="run", yaxis_title="USD")
    return fig


def quality_bars(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Share of answers naming a modality-specific finding vs. share hedging, per model x modality."""
    x = [plain(f"{r['model']} · {r['modality']}") for r in rows]
    fig = go.Figure()
    fig.add_bar(name="names a finding", x=x, y=[_num(r.get("finding_share")) for r in rows])
    fig.add_bar(name="hedges", x=x, y=[_num(r.get("hedge_share")) for r in rows])
    fig.update_layout(**LAYOUT, barmode="group", title="Interpretation quality",
                      yaxis=dict(range=[0, 1.05], title="share of answers with text"))
    return fig
