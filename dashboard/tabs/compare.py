"""Compare: two models on the same images (McNemar's exact test, Cohen's kappa, disagreements)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from dashboard import filters as qf
from dashboard import queries, ui
from dashboard.context import get_context

SUMMARY_COLUMNS = ("scope", "n_pairs", "both_correct", "a_only_correct", "b_only_correct", "both_wrong",
                   "mcnemar_p", "kappa", "n_disagreements")


def summary_frame(result: dict[str, Any]) -> pd.DataFrame:
    rows = [{"scope": "all"} | result] + [{"scope": m} | s for m, s in result["by_modality"].items()]
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}g}" if value < 0.001 else f"{value:.{digits}f}"


def _pick_models(models: list[str]) -> tuple[str, str]:
    ui.url_state("compare_a", "a", models[0])
    ui.url_state("compare_b", "b", models[1])
    for key, fallback in (("compare_a", models[0]), ("compare_b", models[1])):
        if st.session_state[key] not in models:
            st.session_state[key] = fallback
    left, right = st.columns(2)
    model_a = left.selectbox("Model A", models, key="compare_a")
    model_b = right.selectbox("Model B", models, key="compare_b")
    ui.set_url_param("a", model_a)
    ui.set_url_param("b", model_b)
    return model_a, model_b


def _cross_prompts(by_model: dict[str, list[str]], model_a: str, model_b: str) -> tuple[str, str] | None:
    """None when the two models share a prompt (pairs keep the prompt); else the prompt of each side to
    pair (picked on the page when a side has more than one)."""
    mine, theirs = by_model.get(model_a, []), by_model.get(model_b, [])
    if set(mine) & set(theirs) or not mine or not theirs:
        return None
    left, right = st.columns(2)
    prompt_a = left.selectbox("Prompt of A", mine, key="compare_prompt_a") if len(mine) > 1 else mine[0]
    prompt_b = right.selectbox("Prompt of B", theirs, key="compare_prompt_b") if len(theirs) > 1 else theirs[0]
    return prompt_a, prompt_b


def render() -> None:
    ctx = get_context()
    st.title("Compare two models")
    models = list(ctx.filters.model) if len(ctx.filters.model) >= 2 else ctx.options.get("model", [])
    if len(models) < 2:
        st.info("Comparing needs answers from at least two models.")
        return
    model_a, model_b = _pick_models(models)
    if model_a == model_b:
        st.warning("Pick two different models.")
        return
    filters = qf.without(ctx.filters, "model", "outcome")
    prompts = _cross_prompts(queries.model_prompts(ctx.root, ctx.signature), model_a, model_b)
    if prompts is None:
        ui.filters_note(qf.describe(filters), " (the model and outcome filters do not apply here). Pairs: the "
                        "same image, prompt and repeat answered by both models (latest ok answers). McNemar's exact "
                        "test uses the images exactly one model got right; kappa compares the five labels.")
    else:
        filters = qf.without(filters, "prompt_id")
        ui.filters_note(qf.describe(filters), " (the model, prompt and outcome filters do not apply here). The two "
                        "answered different prompts (a reader's instructions are not a model's prompt): pairs are "
                        f"the same image and repeat, A under {ui.literal(prompts[0])} and B under "
                        f"{ui.literal(prompts[1])}. McNemar's exact test uses the images exactly one got right; "
                        "kappa compares the five labels.")
    result = queries.compare(ctx.root, ctx.signature, model_a, model_b, filters, prompts=prompts)
    if result["n_pairs"] == 0:
        st.warning("The two models have no images in common under these filters.")
        return
    cells = st.columns(4)
    cells[0].metric("Paired images", result["n_pairs"])
    cells[1].metric("McNemar exact p", _fmt(result["mcnemar_p"]))
    cells[2].metric("Cohen's kappa", _fmt(result["kappa"]))
    cells[3].metric("Disagreements", result["n_disagreements"])
    table = pd.DataFrame({"B correct": [result["both_correct"], result["b_only_correct"]],
                          "B wrong": [result["a_only_correct"], result["both_wrong"]]},
                         index=["A correct", "A wrong"]).reset_index(names="")
    st.caption(f"A = {ui.literal(model_a)}; B = {ui.literal(model_b)}")
    ui.table(table, "medlens-compare-2x2", key="compare_table")
    st.subheader("Per modality")
    ui.table(summary_frame(result), "medlens-compare-summary", key="compare_summary",
             column_config={"mcnemar_p": st.column_config.NumberColumn(format="%.4g"),
                            "kappa": st.column_config.NumberColumn(format="%.3f")})
    st.subheader("Disagreements")
    shown = result["disagreements"].copy()
    st.caption(f"{result['n_disagreements']} image(s) where the labels differ"
               + (f"; the first {len(shown)} are listed." if len(shown) < result["n_disagreements"] else "."))
    shown.insert(0, "open", [qf.page_link("gallery", ctx.filters, image=sha) for sha in shown["image_sha256"]])
    shown = shown.rename(columns={"label_a": f"A: {model_a}", "label_b": f"B: {model_b}"})
    ui.table(shown, "medlens-disagreements", key="compare_disagreements",
             column_config={"open": st.column_config.LinkColumn("gallery", display_text="open")})


if __name__ == "__main__":
    render()
