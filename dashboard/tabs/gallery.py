"""Gallery: paged thumbnails with truth, source and each model's label; a detail view per image.

Selected by the query string: ``?image=<sha256>`` opens the detail view, ``gpage``, ``wrong`` and
``disagree`` restore the paging and the two toggles. Model text is shown with st.text / st.code only.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import filters as qf
from dashboard import queries, ui
from dashboard.context import AppContext, get_context

PAGE_SIZE = 12
COLUMNS = 4
PLACEHOLDER = np.full((96, 96, 3), 200, dtype=np.uint8)  # grey square when a thumbnail is missing
MARKS = {"correct": "✓", "wrong": "✗", "abstained": "✗", "error": "⚠"}
DETAIL_COLUMNS = ("model", "model_version", "prompt_id", "repeat", "status", "label", "outcome", "confidence",
                  "input_tokens", "output_tokens", "latency_ms", "cost_usd", "finish_reason", "attempts",
                  "error_type", "error_message", "run_id", "created_at")


def _open(sha: str) -> None:
    st.query_params["image"] = sha


def _close() -> None:
    if "image" in st.query_params:
        del st.query_params["image"]


def shorten(text: str, limit: int = 180) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def answer_line(row: pd.Series) -> str:
    if row["status"] == "error":
        return f"⚠ {row['model']} [{row['prompt_id']}]: error ({row['error_type']})"
    return f"{MARKS.get(row['outcome'], '?')} {row['model']} [{row['prompt_id']}]: {row['label']}"


def _image(ctx: AppContext, sha: str, width: int | str = "stretch") -> None:
    thumb = queries.thumbnail(ctx.root, sha)
    if thumb is None:
        st.image(PLACEHOLDER, width=width, caption="no thumbnail")
    else:
        st.image(thumb, width=width)


def _card(ctx: AppContext, image: pd.Series, answers: pd.DataFrame) -> None:
    with st.container(border=True):
        _image(ctx, image["image_sha256"])
        st.text(f"{image['truth']} · {image['source'] or '(no source)'}")
        for _, row in answers.iterrows():
            st.text(answer_line(row))
            if isinstance(row["interpretation"], str) and row["interpretation"].strip():
                st.text(shorten(row["interpretation"]))
        st.button("Details", key=f"gallery_open_{image['image_sha256']}", on_click=_open,
                  args=(image["image_sha256"],), width="stretch")


def _grid(ctx: AppContext) -> None:
    st.title("Gallery")
    ui.url_state("gallery_wrong", "wrong", False, ui.flag)
    ui.url_state("gallery_disagree", "disagree", False, ui.flag)
    ui.url_state("gallery_page", "gpage", 1, int)
    left, middle, right = st.columns([2, 2, 1])
    wrong = left.toggle("Only images with a wrong answer", key="gallery_wrong",
                        help="At least one answer is wrong or abstained (uncertain, refused, unparseable).")
    disagree = middle.toggle("Only images where models disagree", key="gallery_disagree",
                             help="At least two different labels among the matching answers.")
    page = max(1, int(st.session_state["gallery_page"]))
    total, images = queries.gallery_page(ctx.root, ctx.signature, ctx.filters, wrong, disagree,
                                         (page - 1) * PAGE_SIZE, PAGE_SIZE)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    if page > pages:
        page = pages
        total, images = queries.gallery_page(ctx.root, ctx.signature, ctx.filters, wrong, disagree,
                                             (page - 1) * PAGE_SIZE, PAGE_SIZE)
    st.session_state["gallery_page"] = page
    right.number_input("Page", min_value=1, max_value=pages, step=1, key="gallery_page")
    for param, value, default in (("wrong", wrong, False), ("disagree", disagree, False), ("gpage", page, 1)):
        ui.set_url_param(param, value, default)
    first = (page - 1) * PAGE_SIZE + 1
    ui.filters_note(qf.describe(ctx.filters), ". " + (f"Showing {first}–{first + len(images) - 1} of {total} images."
                                                      if total else "No images match."))
    if images.empty:
        return
    answers = queries.gallery_answers(ctx.root, ctx.signature, ctx.filters, tuple(images["image_sha256"]))
    by_image = dict(tuple(answers.groupby("image_sha256", sort=False)))
    for start in range(0, len(images), COLUMNS):
        for column, (_, image) in zip(st.columns(COLUMNS), images.iloc[start:start + COLUMNS].iterrows(),
                                      strict=False):
            with column:
                _card(ctx, image, by_image.get(image["image_sha256"], answers.iloc[0:0]))


def _detail(ctx: AppContext, sha: str) -> None:
    st.button("Back to the gallery", key="gallery_back", on_click=_close, icon=":material/arrow_back:")
    rows = queries.image_detail(ctx.root, ctx.signature, sha)
    if rows.empty:
        st.warning("No answers for this image in the store.")
        st.text(f"image {sha}")
        return
    first = rows.iloc[0]
    st.title("Image detail")
    st.page_link("tabs/grading.py", label="Grade this image's interpretations (blinded: the answers and the truth "
                 "are hidden while you grade)", query_params={"image": sha}, icon="✍️")
    left, right = st.columns([1, 3])
    with left:
        _image(ctx, sha, width=256)
    with right:
        st.text(f"image sha256: {sha}\npath: {first['image_path']}\nmodality: {first['modality']}\n"
                f"truth: {first['truth']}\nsource: {first['source'] or '(none)'}")
    ui.table(rows[[c for c in DETAIL_COLUMNS if c in rows.columns]], f"medlens-image-{sha[:12]}",
             key="gallery_detail_table")
    for index, (_, row) in enumerate(rows.iterrows()):
        with st.container(border=True):
            st.text(f"{answer_line(row)}  ·  version {row['model_version'] or '?'}  ·  "
                    f"tokens {row['input_tokens']}/{row['output_tokens']}  ·  latency {row['latency_ms']} ms")
            if row["status"] == "error":
                st.text(f"{row['error_type']}: {row['error_message']}")
            st.caption("Answer (verbatim)")
            st.code(row["raw_text"] or "", language=None, wrap_lines=True)
            st.caption("Interpretation")
            st.text(row["interpretation"] or "(none)")
            with st.expander("Prompt", expanded=False):
                st.text(f"prompt id: {row['prompt_id']}")
                st.code(row["prompt_text"] or "", language=None, wrap_lines=True)
            st.caption(f"answer {index + 1} of {len(rows)}")


def render() -> None:
    ctx = get_context()
    sha = st.query_params.get("image")
    if sha:
        _detail(ctx, sha)
    else:
        _grid(ctx)


if __name__ == "__main__":
    render()
