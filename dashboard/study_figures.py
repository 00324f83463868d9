"""Figures of the reader study and of interpretation grading (pure: rows in, plotly figure out).

Rows are those of cache.readers (roc_table with points, calibration_table) and cache.grades
(cache.grade_stats: grade_summary, beside_genericness). Names are user data and go through figures.plain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from dashboard.figures import LAYOUT, plain


def _rater(row: Mapping[str, Any]) -> str:
    prompt = row.get("prompt_id")
    return f"{row['model']} · {prompt}" if prompt else str(row["model"])


def _diagonal(fig: go.Figure, name: str) -> None:
    fig.add_scatter(
        x=[0, 1], y=[0, 1], mode="lines", name=name, line=dict(color="grey", dash="dot"), hoverinfo="skip"
    )


def roc_curves(rows: Sequence[Mapping[str, Any]], modality: str) -> go.Figure:
    """Empirical ROC curves of one modality: one line per reader (solid) and model (dashed), the AUC
    and its 95% interval in the legend."""
    fig = go.Figure()
    _diagonal(fig, "chance")
    for row in rows:
        if row["modality"] != modality or not row.get("points"):
            continue
        name = f"{_rater(row)}: AUC {row['auc']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
        fig.add_scatter(
            x=row["points"]["fpr"],
            y=row["points"]["tpr"],
            mode="lines+markers",
            name=plain(name),
            line=dict(dash="solid" if row["kind"] == "reader" else "dash"),
        )
    fig.update_layout(
        **LAYOUT,
        title=plain(f"ROC · {modality} (readers: rating; models: stated confidence)"),
        xaxis=dict(title="1 - specificity (real called synthetic)", range=[-0.02, 1.02]),
        yaxis=dict(title="sensitivity (synthetic called synthetic)", range=[-0.02, 1.02]),
        legend=dict(orientation="h", y=-0.2),
        height=560,
    )
    return fig


def reliability_diagram(rows: Sequence[Mapping[str, Any]], modality: str) -> go.Figure:
    """Reliability diagram of one modality: per model, each non-empty bin's mean stated confidence
    against its accuracy (marker area ~ answers in the bin); ECE in the legend."""
    fig = go.Figure()
    _diagonal(fig, "perfect calibration")
    for row in rows:
        if row["modality"] != modality:
            continue
        bins = [b for b in row["bins"] if b["count"]]
        most = max((b["count"] for b in bins), default=1)
        fig.add_scatter(
            x=[b["mean_confidence"] for b in bins],
            y=[b["accuracy"] for b in bins],
            mode="lines+markers",
            name=plain(f"{_rater(row)}: ECE {row['ece']:.3f} (n={row['n']})"),
            marker=dict(size=[8 + 18 * (b["count"] / most) ** 0.5 for b in bins]),
            text=[f"n={b['count']}" for b in bins],
            hovertemplate="%{x:.2f} → %{y:.2f} (%{text})",
        )
    fig.update_layout(
        **LAYOUT,
        title=plain(f"Reliability · {modality} (confidence in the model's own label)"),
        xaxis=dict(title="mean stated confidence", range=[-0.02, 1.02]),
        yaxis=dict(title="share correct", range=[-0.02, 1.02]),
        legend=dict(orientation="h", y=-0.2),
        height=520,
    )
    return fig


def grade_means(summary: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Graders' mean correctness and specificity per model and modality, with 95% t intervals."""
    x = [plain(f"{s['model']} · {s['modality']}") for s in summary]
    fig = go.Figure()
    for scale, title in (("correctness", "correctness"), ("specificity", "specificity")):
        means = [s[f"{scale}_mean"] for s in summary]
        plus = [
            None if s[f"{scale}_ci_high"] is None else s[f"{scale}_ci_high"] - s[f"{scale}_mean"]
            for s in summary
        ]
        minus = [
            None if s[f"{scale}_ci_low"] is None else s[f"{scale}_mean"] - s[f"{scale}_ci_low"]
            for s in summary
        ]
        fig.add_scatter(
            x=x,
            y=means,
            mode="markers",
            name=title,
            marker=dict(size=12),
            error_y=dict(type="data", array=plus, arrayminus=minus, visible=True),
        )
    fig.update_layout(
        **LAYOUT,
        title="Graders' mean ratings (95% t interval over images)",
        yaxis=dict(title="mean grade (1-5)", range=[0.8, 5.2], dtick=1),
        scattermode="group",
    )
    return fig


def generic_vs_specific(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Generic by text (median TF-IDF similarity of interpretations of different images) against
    generic by graders (mean specificity), one point per model and modality."""
    both = [r for r in rows if r["median_similarity"] is not None and r["specificity_mean"] is not None]
    fig = go.Figure(
        go.Scatter(
            x=[r["median_similarity"] for r in both],
            y=[r["specificity_mean"] for r in both],
            mode="markers+text",
            text=[plain(f"{r['model']} · {r['modality']}") for r in both],
            textposition=["top left" if r["median_similarity"] > 0.7 else "top right" for r in both],
            marker=dict(size=12),
            error_y=dict(
                type="data",
                visible=True,
                array=[
                    None
                    if r["specificity_ci_high"] is None
                    else r["specificity_ci_high"] - r["specificity_mean"]
                    for r in both
                ],
                arrayminus=[
                    None
                    if r["specificity_ci_low"] is None
                    else r["specificity_mean"] - r["specificity_ci_low"]
                    for r in both
                ],
            ),
        )
    )
    fig.update_layout(
        **LAYOUT,
        title="Generic by text vs. by graders (generic: right and low)",
        xaxis=dict(title="median TF-IDF similarity to other images' interpretations", range=[-0.02, 1.02]),
        yaxis=dict(title="graders' mean specificity (1-5)", range=[0.8, 5.2], dtick=1),
        showlegend=False,
    )
    return fig
