"""Review labels: a queue of answers whose label needs a person, and parser-vs-judge agreement.

Each review is appended at once to ``<store>/readings/`` (authority ``reviewer``, cache.review); the
``results`` view ranks it above the judge's and the parser's readings, so the overview and the
confusion matrices change on the next run. The answer text is model output: it is shown escaped
(html.escape) with the span that decided the label marked, never as Markdown or HTML. The truth is not
shown: a reviewer labels what the answer says, not what the image is.
"""

from __future__ import annotations

import html
import numbers
import uuid
from typing import Any

import pandas as pd
import streamlit as st

from cache.review import REVIEW_LABELS, check_person_name, reviewer_reading
from cache.store import Store
from dashboard import filters as qf
from dashboard import queries, ui, writable
from dashboard.context import AppContext, get_context
from dashboard.tabs.gallery import PLACEHOLDER

NAME, SESSION, POSITION, NEXT, NOTE = (
    "review_name",
    "review_session",
    "review_position",
    "review_next",
    "review_note",
)
QUEUE_COLUMNS = (
    "model",
    "modality",
    "prompt_id",
    "image_path",
    "label",
    "label_source",
    "label_by",
    "parser_label",
    "judge_label",
    "judge_model",
    "reason",
)
AGREEMENT_CONFIG = {
    "agreement": st.column_config.NumberColumn("agreement", format="%.3f"),
    "kappa": st.column_config.NumberColumn("Cohen's kappa", format="%.3f"),
}


def marked_answer(text: str | None, start: Any, end: Any) -> str:
    """The answer as escaped HTML, the deciding span [start, end) in a <mark>; offsets outside the text
    (or missing) mark nothing. Pure, so the escaping is unit-tested."""
    text = text or ""
    ok = all(isinstance(v, numbers.Real) and _known(v) for v in (start, end))  # numpy ints too
    lo, hi = (int(start), int(end)) if ok else (0, 0)
    if not (0 <= lo < hi <= len(text)):
        body = html.escape(text)
    else:
        body = (
            f"{html.escape(text[:lo])}<mark data-testid='review-span'>{html.escape(text[lo:hi])}</mark>"
            f"{html.escape(text[hi:])}"
        )
    return (
        "<div data-testid='review-answer' style='white-space: pre-wrap; font-family: monospace; "
        f"padding: 0.5rem; border: 1px solid #ddd; border-radius: 0.3rem'>{body}</div>"
    )


def _known(value: Any) -> bool:
    return value is not None and not pd.isna(value)


def span_of(item: dict[str, Any]) -> tuple[Any, Any, str]:
    """(start, end, what the mark shows): the span that decided the current label, else (a judge or a
    reviewer decided, who quote no span) the span that decided the parser's label."""
    if _known(item.get("label_span_start")):
        return item["label_span_start"], item["label_span_end"], "the span that decided the label is marked"
    if _known(item.get("parser_span_start")):
        return (
            item["parser_span_start"],
            item["parser_span_end"],
            f"the span that decided the parser's label ({item['parser_label']}) is marked",
        )
    return None, None, "no span decided the label"


def provenance_line(item: dict[str, Any]) -> str:
    """'synthetic, set by the parser (labelled_line, parser-fixture-1)' and the judge's label."""
    line = f"Current label: {item['label']}, set by {item['label_source']}"
    by = item.get("label_by")
    rule = item.get("label_rule")
    details = ", ".join(str(v) for v in (rule, by) if v and v != item["label_source"])
    line += f" ({details})" if details else ""
    if item.get("judge_label"):
        line += f". Parser: {item['parser_label']}; judge {item['judge_model']}: {item['judge_label']}"
    return line + "."


def _name_form() -> str | None:
    """The reviewer's name, asked once per session; None until a valid one is given."""
    if st.session_state.get(NAME):
        left, right = st.columns([4, 1])
        left.caption(f"Reviewing as {ui.literal(st.session_state[NAME])}")
        right.button(
            "Change name", key="review_change_name", on_click=lambda: st.session_state.pop(NAME, None)
        )
        return st.session_state[NAME]
    typed = st.text_input(
        "Your name (stored with every label you set)", key="review_name_input", max_chars=64
    )
    if typed:
        try:
            st.session_state[NAME] = check_person_name(typed)
            st.session_state.setdefault(SESSION, f"review-{uuid.uuid4().hex[:12]}")
            st.rerun()
        except ValueError as exc:
            st.error(f"Name not accepted: {exc}")
    return None


def _save(root: str, item: dict[str, Any], label: str, next_key: str | None) -> None:
    """Button callback: append the reading, clear the note, move on to the next item."""
    try:
        row = reviewer_reading(
            key=item["key"],
            raw_text=item["raw_text"],
            label=label,
            reviewer=st.session_state.get(NAME, ""),
            note=st.session_state.get(NOTE, ""),
            session_id=st.session_state.get(SESSION),
        )
    except ValueError as exc:
        st.session_state["review_error"] = str(exc)
        return
    if queries.is_bundle(root):  # never write into an extracted bundle
        st.session_state["review_error"] = "this store is read-only"
        return
    Store(root).append([row], "readings")
    st.session_state.pop("review_error", None)
    st.session_state[NOTE] = ""
    st.session_state[NEXT] = next_key
    st.toast(f"Saved: {label}")


def _item(
    ctx: AppContext,
    item: dict[str, Any],
    reason: str,
    next_key: str | None,
    writable_store: bool,
    name: str | None,
) -> None:
    with st.container(border=True):
        left, right = st.columns([1, 3])
        with left:
            thumb = queries.thumbnail(ctx.root, item["image_sha256"])
            st.image(
                PLACEHOLDER if thumb is None else thumb,
                width="stretch",
                caption=None if thumb is not None else "no thumbnail",
            )
        with right:
            st.text(
                f"{item['model']} · prompt {item['prompt_id']} · {item['modality']} · repeat {item['repeat']}"
            )
            st.text(provenance_line(item))
            st.text(
                f"In the queue because {reason}."
                if reason and reason != "reviewed"
                else "Reviewed before."
                if reason == "reviewed"
                else "Picked by the filters."
            )
            start, end, whose = span_of(item)
            st.caption(f"Answer (verbatim; {whose})")
            st.html(marked_answer(item["raw_text"], start, end))
        ready = writable_store and name is not None
        st.text_input("Note (optional)", key=NOTE, max_chars=2000, disabled=not ready)
        with st.container(horizontal=True, key="review_buttons"):
            for label in REVIEW_LABELS:
                st.button(
                    label.capitalize(),
                    key=f"review_label_{label}",
                    on_click=_save,
                    disabled=not ready,
                    args=(ctx.root, item, label, next_key),
                    type="primary" if label in ("real", "synthetic") else "secondary",
                )
    if st.session_state.get("review_error"):
        st.error(f"Not saved: {st.session_state['review_error']}")


def _position(keys: list[str]) -> int:
    """The item to show: the one after the last review if it is still queued, else the same place."""
    wanted = st.session_state.pop(NEXT, None)
    position = keys.index(wanted) + 1 if wanted in keys else int(st.session_state.get(POSITION, 1))
    position = min(max(position, 1), len(keys))
    st.session_state[POSITION] = position
    return position


def _queue(ctx: AppContext, writable_store: bool, name: str | None) -> None:
    mode = (
        st.segmented_control("Queue", queries.REVIEW_MODES, key="review_mode", default="needs review")
        or "needs review"
    )
    labels: tuple[str, ...] = ()
    if mode == "by filter":
        labels = tuple(
            st.multiselect(
                "Current label",
                ("real", "synthetic", "uncertain", "refused", "unparseable"),
                key="review_labels",
                placeholder="any",
            )
        )
    total, queue = queries.review_queue(ctx.root, ctx.signature, ctx.filters, mode, labels)
    ui.filters_note(
        qf.describe(ctx.filters),
        f". {total:,} answer(s) in this queue"
        + (f"; the first {len(queue):,} are listed." if len(queue) < total else "."),
    )
    if queue.empty:
        st.success("Nothing to review here.")
        return
    keys = list(queue["key"])
    position = _position(keys)
    st.number_input("Item", min_value=1, max_value=len(keys), step=1, key=POSITION)
    item = queries.review_item(ctx.root, ctx.signature, keys[position - 1])
    if item is None:
        st.warning("This answer is no longer in the store.")
        return
    next_key = keys[position] if position < len(keys) else None
    _item(ctx, item, str(queue.iloc[position - 1]["reason"]), next_key, writable_store, name)
    with st.expander(f"The queue ({len(queue):,})", expanded=False):
        ui.table(queue[list(QUEUE_COLUMNS)], "medlens-review-queue", key="review_queue_table")


def _agreement(ctx: AppContext) -> None:
    st.subheader("Parser vs judge")
    rows = queries.judge_agreement(ctx.root, ctx.signature, ctx.filters)
    if not rows:
        st.info("No judge readings here: `python -m ingest judge --model ...` has a model read the answers.")
        return
    st.caption(
        "Per model: the current answers a judge model read, how often its label equals the parser's, and "
        "Cohen's kappa over the five labels. Disagreements are in the review queue ('parser ≠ judge')."
    )
    ui.table(
        pd.DataFrame(rows), "medlens-parser-vs-judge", key="review_agreement", column_config=AGREEMENT_CONFIG
    )


def render() -> None:
    ctx = get_context()
    st.title("Review labels")
    st.caption(
        "Label what each answer says (not what the image is: the truth is not shown here). A reviewer's "
        "label outranks the judge's, which outranks the parser's; each is saved at once, next to the "
        "answer, which is never changed."
    )
    read_only = writable.read_only_notice(ctx.root, "review")
    name = None if read_only else _name_form()
    _queue(ctx, not read_only, name)
    _agreement(ctx)


if __name__ == "__main__":
    render()
