"""Runs & errors: what failed and why, cost and tokens per run, latency, run provenance."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import figures, queries, ui
from dashboard import filters as qf
from dashboard.context import get_context

PROVENANCE_FIELDS = ("run_id", "started_at", "finished_at", "models", "prompt_id")


def provenance_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Top-level provenance fields; lists joined, nested objects (summary, audit) as compact JSON."""
    rows = []
    for record in records:
        row = {}
        for key in (*PROVENANCE_FIELDS, "summary", "audit"):
            value = record.get(key)
            if isinstance(value, list):
                value = ", ".join(map(str, value))
            elif isinstance(value, dict):
                value = json.dumps(value, sort_keys=True, default=str)
            row[key] = value
        rows.append(row)
    df = pd.DataFrame(rows, columns=[*PROVENANCE_FIELDS, "summary", "audit"])
    return df.dropna(axis=1, how="all")


def priced(costs: pd.DataFrame) -> bool:
    """Whether any run cost something (a chart of zeros or NULLs is an empty axis from -1 to 1)."""
    return bool(costs["cost_usd"].fillna(0).gt(0).any()) if "cost_usd" in costs else False


def render() -> None:
    ctx = get_context()
    filters = qf.without(ctx.filters, "outcome")
    st.title("Runs & errors")
    ui.filters_note(qf.describe(filters), " (outcome does not apply here).")

    st.subheader("Errors by model and type")
    st.caption("error rows: every failed call written; still open: keys with no ok answer yet (retried by the next run).")
    errors = queries.error_types(ctx.root, ctx.signature, filters)
    if errors.empty:
        st.success("No error rows.")
    else:
        ui.table(errors, "medlens-error-types", key="runs_error_types")
        st.caption("Latest error messages")
        ui.table(queries.latest_errors(ctx.root, ctx.signature, filters), "medlens-latest-errors",
                 key="runs_latest_errors")

    st.subheader("Cost and tokens per run")
    costs = queries.run_costs(ctx.root, ctx.signature, filters)
    ui.table(costs, "medlens-run-costs", key="runs_costs",
             column_config={"cost_usd": st.column_config.NumberColumn("cost (USD)", format="%.4f")})
    if priced(costs):
        ui.figure(figures.cost_by_run(costs.to_dict("records")), "medlens-cost-by-run", key="runs_cost_chart")
    elif not costs.empty:
        st.info("No cost chart: nothing in these runs was priced (a local detector, or models missing from the "
                "price table, data/prices.csv).")

    st.subheader("Latency")
    stats = queries.latency_stats(ctx.root, ctx.signature, filters)
    if stats.empty:
        st.info("No latencies recorded.")
    else:
        ui.figure(figures.latency_box(stats.to_dict("records")), "medlens-latency-box", key="runs_latency_box")
        hist = queries.latency_histogram(ctx.root, ctx.signature, filters)
        ui.figure(figures.latency_histogram(hist.to_dict("records")), "medlens-latency-hist",
                  key="runs_latency_hist")
        ui.table(stats, "medlens-latency", key="runs_latency_table",
                 column_config={c: st.column_config.NumberColumn(format="%.0f")
                                for c in ("mean", "p05", "q1", "median", "q3", "p95")})

    st.subheader("Run provenance")
    records = queries.run_records(ctx.root, ctx.signature)
    if not records:
        st.info("No run records (runs/<run_id>.json) in this store.")
        return
    ui.table(provenance_frame(records), "medlens-runs", key="runs_provenance")
    with st.expander("Full run records (JSON)"):
        for record in records:
            st.json(record, expanded=False)


if __name__ == "__main__":
    render()
