"""Reader study: a person reads a study's images one at a time, blinded, and answers like a model.

Shown: the instructions, the reader's name, an opaque case number ("Case 3 of 20"), the prepared image
(the exact bytes the models got, from ``<store>/prepared/``, checked against their sha256) and the answer
controls. Never shown while reading: truth, source, file name, model answers or any score (the sidebar
filters and the demo notice are left out on this page by dashboard/app.py). Study files, the per-reader
order and the answer rows are defined in cache.reader_study; this page only draws and records.

Who reads: a name, or an invite code when the study has codes; on a shared deployment, the OIDC login
of Streamlit (``st.login``) with the allow-list ``[medlens_reader] allowed_emails`` in secrets.toml.
"""

from __future__ import annotations

import base64
from typing import Any

import streamlit as st

from cache import prepared
from cache import reader_study as rs
from cache.store import Store
from dashboard import queries, ui, writable
from dashboard.context import AppContext, get_context, reader_only

READER, RATING, CUE, FEEDBACK, ERROR = (
    "reader_who",
    "reader_rating",
    "reader_cue",
    "reader_feedback",
    "reader_error",
)


def allowed_emails() -> list[str] | None:
    """The OIDC allow-list from secrets.toml ([medlens_reader] allowed_emails), or None (no login)."""
    try:
        section = st.secrets.get("medlens_reader")
    except Exception:  # no secrets.toml at all: a local study, readers give a name
        return None
    emails = section.get("allowed_emails") if section else None
    return [str(e).strip().lower() for e in emails] if emails else None


def image_html(data: bytes, mime: str) -> str:
    """The prepared bytes as they are (a data: URL; st.image would re-encode an RGB PNG as JPEG), drawn
    at one width whatever their pixel size (so the size on screen says nothing about the source)."""
    return (
        f"<img data-testid='reader-case-image' alt='case image' src='data:{mime};base64,"
        f"{base64.b64encode(data).decode('ascii')}' style='width: min(100%, 720px); height: auto'>"
    )


def _study(ctx: AppContext, store: Store, images: Any, may_create: bool) -> rs.Study | None:
    studies = rs.studies(store)
    usable = images[images["prepared"]]
    if may_create:
        with st.expander("New study", expanded=not studies):
            _new_study_form(store, usable)
    if not studies:
        st.info("No reader study in this store yet." + ("" if may_create else " Ask the study's organiser."))
        return None
    ids = [s.study_id for s in studies]
    ui.url_state("reader_study", "study", ids[0])
    if st.session_state["reader_study"] not in ids:
        st.session_state["reader_study"] = ids[0]
    chosen = st.selectbox("Study", ids, key="reader_study", disabled=len(ids) == 1)
    ui.set_url_param("study", chosen, ids[0])
    return next(s for s in studies if s.study_id == chosen)


def _new_study_form(store: Store, usable: Any) -> None:
    if usable.empty:
        st.warning(
            "This store keeps no prepared images (prepared/<sha256>.png): a reader must see the bytes the "
            "models got, and thumbnails are not those. `python -m ingest run` keeps the bytes of every image it "
            "prepares (stores written before MedLens 0.2 lack them: run the manifest into a new store, or "
            "remove its `prep_memo.parquet` so the images are prepared again; nothing is paid twice)."
        )
        return
    cells = usable.groupby(["modality", "truth"]).size()
    st.caption(
        f"{len(usable):,} images with their prepared bytes: "
        + ", ".join(f"{m} {t} {n}" for (m, t), n in cells.items())
        + ". Cases are drawn in turn from each modality x truth cell."
    )
    left, middle, right = st.columns(3)
    size = left.number_input(
        "Scored cases", 1, len(usable), min(rs.DEFAULT_SIZE, len(usable)), key="reader_size"
    )
    training = middle.number_input(
        "Training cases (truth shown after each)",
        0,
        len(usable),
        0,
        key="reader_training",
        help="other images than the scored ones; fewer when the scored cases leave too few",
    )
    invites = right.number_input("Invite codes (0: readers give a name)", 0, 99, 0, key="reader_invites")
    if st.button("Create study", key="reader_create"):
        study = rs.new_study(store, usable.to_dict("records"), int(size), int(training), int(invites))
        st.session_state["reader_study"] = study.study_id
        st.session_state["reader_new_codes"] = list(study.invites)
        st.rerun()
    codes = st.session_state.pop("reader_new_codes", None)
    if codes:  # shown once, to whoever created the study
        st.success("Study created. Give each reader one invite code: " + ", ".join(codes))


def _who(study: rs.Study, emails: list[str] | None) -> str | None:
    """The reader's stored name: a logged-in e-mail on the allow-list, or a name / invite code."""
    if emails is not None:
        if not st.user.is_logged_in:
            st.button("Log in to read", key="reader_login", on_click=st.login)
            return None
        email = str(st.user.get("email") or "").strip().lower()
        if email not in emails:
            st.error(f"{ui.literal(email or 'this account')} is not on this study's list of readers.")
            return None
        return email
    if st.session_state.get(READER):
        return st.session_state[READER]
    typed = st.text_input(
        "Invite code" if study.invites else "Your name (stored with your answers)",
        key="reader_name_input",
        max_chars=64,
    )
    if typed:
        try:
            st.session_state[READER] = rs.reader_name(study, typed)
            st.rerun()
        except ValueError as exc:
            st.error(f"Not accepted: {exc}")
    return None


def _widget_keys(block: str, number: int) -> tuple[str, str]:
    """The rating and cue widgets of one case: new keys per case, so each case starts blank (the case
    number is opaque; a key shows in the page as a CSS class, so it never holds an image id)."""
    return f"{RATING}_{block}_{number}", f"{CUE}_{block}_{number}"


def _answer(root: str, study_id: str, name: str, block: str, sha: str, number: int, label: str) -> None:
    """Button callback: write the answer row at once (once per key), then the session."""
    store = Store(root)
    study = rs.load_study(store, study_id)
    session = rs.start_session(store, study, name)
    if sha in session.answered.get(block, []):
        return  # answered in another tab meanwhile
    images = queries.study_images(root, queries.store_signature(root)).set_index("image_sha256")
    try:
        image = images.loc[sha].to_dict() | {"image_sha256": sha}
        rating_key, cue_key = _widget_keys(block, number)
        rating, cue = st.session_state.get(rating_key), st.session_state.get(cue_key)
        row = rs.answer_row(study, session, block, image, label, rating, cue)
    except (KeyError, ValueError) as exc:
        st.session_state[ERROR] = str(exc) if not isinstance(exc, KeyError) else "this image left the store"
        return
    done = queries.reader_done(root, row["model"], row["prompt_sha256"]).get(row["task"], set())
    if sha not in done:
        store.append([row])
    session.answered.setdefault(block, []).append(sha)
    rs.save_session(store, session)
    st.session_state.pop(ERROR, None)
    if block == "training":  # feedback is kept in this browser session only, never in the scored block
        st.session_state[FEEDBACK] = {"truth": image["truth"], "label": label}


def _case(
    ctx: AppContext, store: Store, study: rs.Study, session: rs.Session, case: tuple[str, str, int, int]
) -> None:
    block, sha, number, total = case
    found = prepared.read_prepared(store, sha)
    if found is None:
        st.error("The prepared image of this case is missing or damaged in the store; tell the organiser.")
        return
    rs.shown(store, session, block, sha)  # the clock starts the first time the case is drawn
    st.subheader(f"{'Training case' if block == 'training' else 'Case'} {number} of {total}")
    if block == "training":
        st.caption("Training: not scored. The right answer is shown after each training case.")
    st.html(image_html(*found))
    rating_key, cue_key = _widget_keys(block, number)
    st.segmented_control(
        "How sure are you?", list(rs.RATINGS), key=rating_key, format_func=lambda r: f"{r} · {rs.RATINGS[r]}"
    )
    st.text_input("What made you decide? (optional)", key=cue_key, max_chars=500)
    with st.container(horizontal=True, key="reader_buttons"):
        for label in ("real", "synthetic"):
            st.button(
                label.capitalize(),
                key=f"reader_{label}",
                type="primary",
                on_click=_answer,
                args=(ctx.root, study.study_id, session.reader, block, sha, number, label),
            )
    if st.session_state.get(ERROR):
        st.error(f"Not saved: {st.session_state[ERROR]}")


def _feedback() -> bool:
    """After a training answer: the truth of that image, and Continue. True while it is shown."""
    shown = st.session_state.get(FEEDBACK)
    if not shown:
        return False
    verdict = "right" if shown["label"] == shown["truth"] else "not right"
    st.info(f"This training image is {shown['truth']}. You answered {shown['label']}: {verdict}.")
    st.button("Continue", key="reader_continue", on_click=lambda: st.session_state.pop(FEEDBACK, None))
    return True


def render() -> None:
    ctx = get_context()
    st.title("Reader study")
    if writable.read_only_notice(ctx.root, "reader"):
        return
    store, emails = Store(ctx.root), allowed_emails()
    images = queries.study_images(ctx.root, ctx.signature)
    # a study is made before anyone reads: once a reader is signed in, no counts of the images are shown
    may_create = emails is None and not reader_only() and not st.session_state.get(READER)
    study = _study(ctx, store, images, may_create=may_create)
    if study is None:
        return
    st.caption(study.instructions)
    name = _who(study, emails)
    if name is None:
        return
    st.caption(f"Reading as {ui.literal(name)}")
    session = rs.start_session(store, study, name)
    done = queries.reader_done(ctx.root, rs.reader_model(name), rs.instructions_sha256(study))
    for block, task in rs.BLOCKS.items():  # the store is the fact: an answer saved elsewhere counts
        session.answered[block] = list(
            dict.fromkeys(
                [
                    *session.answered.get(block, []),
                    *sorted(done.get(task, set()) & set(session.order.get(block, []))),
                ]
            )
        )
    if _feedback():
        return
    case = rs.next_case(session)
    if case is None:
        st.success(
            f"Thank you: you have read all {len(study.cases)} cases of this study. Your answers are in the "
            "store, beside the models' (Overview, Compare)."
        )
        return
    _case(ctx, store, study, session, case)


if __name__ == "__main__":
    render()
