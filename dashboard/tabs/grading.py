"""Grade interpretations (issue 12, part 2): one model interpretation at a time, blinded.

The page shows the image thumbnail and the interpretation as plain text, nothing else about the
answer: no model, provider, truth, source, file name, label or confidence reaches it (the query
returns the key, the image hash and the text only; the entry script draws no filters here). The
grader gives a name once (``?grader=`` keeps it in the link, so a reload resumes); the queue is the
grader's own random order (cache.grades). ``?image=<sha256>`` (the gallery detail's link) grades one
image's interpretations. Each grade is appended to the store's ``grades`` table at once.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import streamlit as st

from cache import grades
from cache.grades import GRADES, SCALES, Grade, new_session_id, valid_grader
from cache.store import Store
from dashboard import queries, ui
from dashboard.context import AppContext, get_context

PLACEHOLDER = np.full((96, 96, 3), 200, dtype=np.uint8)
SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_PAGES = 10_000  # a walk through the queue always ends
TITLES = {"correctness": "Correctness", "specificity": "Specificity"}
HELP = {
    "correctness": "Is what the interpretation states right for this image?",
    "specificity": "Could the same text describe any other image of this modality?",
}
#: widgets of one grade, cleared after each save or skip so the next interpretation starts blank
FIELDS = (
    "grading_correctness",
    "grading_specificity",
    "grading_hallucinated",
    "grading_count",
    "grading_note",
)


def _read_only_notice() -> None:
    st.warning(
        "This store was opened from a bundle (.zip): it is read-only, and grades cannot be saved in it. "
        "Continue in a writable copy (made on the Review labels page), then come back here."
    )
    if Path(__file__).with_name("review.py").is_file():  # the page that makes the copy
        st.page_link("tabs/review.py", label="Make a writable copy on the Review labels page")


def _start(name: str) -> None:
    try:
        st.session_state["grading_grader"] = valid_grader(name)
    except ValueError as exc:
        st.session_state["grading_error"] = str(exc)
        return
    st.session_state.pop("grading_error", None)
    st.session_state["grading_skipped"] = []


def _grader() -> str | None:
    """The grader's name: given once per session (or carried by ``?grader=``), validated."""
    if "grading_grader" not in st.session_state and st.query_params.get("grader"):
        _start(st.query_params["grader"])
    grader = st.session_state.get("grading_grader")
    if grader:
        ui.set_url_param("grader", grader)
        return grader
    with st.form("grading_name_form", border=False):
        name = st.text_input(
            "Your name (as a grader)",
            key="grading_name",
            max_chars=40,
            help="Letters, digits, spaces and . ' - _ (at most 40). Your grades are stored with it.",
        )
        if st.form_submit_button("Start grading", type="primary"):
            _start(name)
            st.rerun()
    if st.session_state.get("grading_error"):
        st.error(st.session_state["grading_error"])
    return None


def _clear_fields() -> None:
    for name in FIELDS:
        st.session_state.pop(name, None)


def _hallucinated_changed() -> None:
    st.session_state["grading_count"] = 1 if st.session_state.get("grading_hallucinated") == "yes" else 0


def _save(root: str, key: str, grader: str, session_id: str) -> None:
    """Write one grade (of the interpretation that was on screen: its key came with the button) at once."""
    state = st.session_state
    try:
        grade = Grade(
            key=key,
            grader=grader,
            correctness=state.get("grading_correctness"),
            specificity=state.get("grading_specificity"),
            hallucinated=_yes_no(state.get("grading_hallucinated")),
            hallucination_count=int(state.get("grading_count") or 0),
            session_id=session_id,
            note=state.get("grading_note"),
        )
        Store(root).append([grade.row()], "grades")
    except (ValueError, OSError) as exc:
        state["grading_error"] = f"Not saved: {exc}"
        return
    state.pop("grading_error", None)
    state["grading_notice"] = "Saved. Here is the next interpretation."
    _clear_fields()


def _yes_no(value: str | None) -> bool:
    if value not in ("yes", "no"):
        raise ValueError("answer yes or no for hallucinated findings")
    return value == "yes"


def _skip(key: str) -> None:
    st.session_state["grading_skipped"] = [*st.session_state.get("grading_skipped", []), key]
    st.session_state["grading_notice"] = "Skipped: it comes back after the others."
    _clear_fields()


def _image(ctx: AppContext, sha: str) -> None:
    thumb = queries.thumbnail(ctx.root, sha)
    if thumb is None:
        st.image(PLACEHOLDER, width=256, caption="no thumbnail")
    else:
        st.image(thumb, width="stretch")


def _scale(scale: str) -> None:
    anchors = SCALES[scale]
    st.radio(
        TITLES[scale],
        GRADES,
        index=None,
        key=f"grading_{scale}",
        help=HELP[scale],
        captions=[anchors.get(g, "") for g in GRADES],
    )


def _form(ctx: AppContext, item: dict[str, str], grader: str, session_id: str) -> None:
    for column, scale in zip(st.columns(len(SCALES)), SCALES, strict=True):
        with column:
            _scale(scale)
    left, right = st.columns([2, 1])
    left.radio(
        "Hallucinated findings (named, but not in the image)",
        ("no", "yes"),
        index=None,
        horizontal=True,
        key="grading_hallucinated",
        on_change=_hallucinated_changed,
    )
    right.number_input(
        "How many",
        min_value=0,
        max_value=99,
        step=1,
        key="grading_count",
        disabled=st.session_state.get("grading_hallucinated") != "yes",
    )
    st.text_area("Note (optional)", key="grading_note", max_chars=1000, height=80)
    with st.container(horizontal=True):
        st.button(
            "Save grade",
            key="grading_save",
            type="primary",
            on_click=_save,
            args=(ctx.root, item["key"], grader, session_id),
        )
        st.button("Skip for now", key="grading_skip", on_click=_skip, args=(item["key"],))


def next_item(
    root: str, grader: str, image: str | None, done: frozenset[str]
) -> tuple[int, dict[str, str] | None]:
    """(how many are left, the grader's next interpretation), walking the queue a page at a time:
    a page (cache.grades.queue_page, cached) serves many grades, so a grade costs no pass over the
    store. ``done`` is read fresh on every run; skipped items come back after all the others."""
    state = st.session_state
    signature = queries.parts_signature(root, "responses")
    if state.get("grading_scope") != (grader, image):  # another grader or image: from the top
        state["grading_scope"], state["grading_exclude"] = (grader, image), ()
    skipped = set(state.get("grading_skipped", []))
    for _page in range(MAX_PAGES):
        exclude = state["grading_exclude"]
        page = queries.queue_page(root, signature, grader, image, exclude)
        item = grades.pick_next(page.items, done, skipped)
        if item is not None:
            return page.left(done), item
        if len(page.items) == grades.QUEUE_PAGE:  # all graded or skipped here: the next page
            state["grading_exclude"] = tuple(sorted({*exclude, *(i["key"] for i in page.items)}))
        elif skipped - done:  # only skipped ones are left: they come back, in order
            state["grading_skipped"], state["grading_exclude"], skipped = [], (), set()
        else:
            return 0, None
    return 0, None


def render() -> None:
    ctx = get_context()
    st.title("Grade interpretations")
    image = st.query_params.get("image")
    image = image if image and SHA256.fullmatch(image) else None
    st.caption(
        "One interpretation at a time, in an order of your own. You see the image and the text only. "
        + ("Only this image's interpretations are in the queue." if image else "")
    )
    if queries.is_bundle(ctx.root):
        _read_only_notice()
        return
    grader = _grader()
    if grader is None:
        return
    origin = "image" if image else "queue"  # grades from one image's queue may follow a look at its answers
    session_id = st.session_state.setdefault(f"grading_session_{origin}", new_session_id(origin))
    done = queries.graded_keys(ctx.root, grader)
    left, item = next_item(ctx.root, grader, image, done)
    with st.container(horizontal=True, vertical_alignment="center"):
        st.text(f"Grader: {grader} · graded {len(done)} · left {left}")
        st.button("Change grader", key="grading_change", on_click=_change_grader)
    if st.session_state.get("grading_error"):
        st.error(st.session_state["grading_error"])
    elif st.session_state.get("grading_notice"):
        st.success(st.session_state.pop("grading_notice"))
    if item is None:
        st.info("Nothing left to grade here: you have graded every interpretation in this queue.")
        return
    picture, text = st.columns([1, 2])
    with picture:
        _image(ctx, item["image_sha256"])
    with text:
        st.caption(f"Interpretation {len(done) + 1}")
        st.text(item["interpretation"])
    _form(ctx, item, grader, session_id)


def _change_grader() -> None:
    for name in (
        "grading_grader",
        "grading_skipped",
        "grading_session_queue",
        "grading_session_image",
        "grading_name",
    ):
        st.session_state.pop(name, None)
    if "grader" in st.query_params:
        del st.query_params["grader"]
    _clear_fields()


if __name__ == "__main__":
    render()
