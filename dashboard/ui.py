"""Small Streamlit helpers shared by the pages: tables and figures with their downloads, plain text.

Model text is shown only through st.text / st.code (no Markdown, no HTML), never unsafe_allow_html.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import exports


def literal(text: object) -> str:
    """``text`` as a Markdown code span, for user data (model names, sources, paths, URL values) in
    captions and notices: shown verbatim, never a link, emphasis, emoji, LaTeX or HTML."""
    body = " ".join(str(text).split())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", body)), default=0) + 1)
    return f"{fence} {body} {fence}"


def store_failure(root: str, exc: BaseException) -> None:
    """A store or bundle that cannot be read: one line naming the file, never a traceback."""
    from cache.store import Store
    from cache.untrusted import describe_read_failure

    try:
        store = Store(root)
        parts = [] if store.remote else store.part_paths()  # an S3 store: the message names the object
    except (OSError, ValueError):
        parts = []
    st.error(f"Cannot read the store {literal(root)}: {literal(describe_read_failure(exc, parts))}")


def filters_note(described: str, extra: str = "") -> None:
    """The caption that opens a page: the filters in force, then what the page shows."""
    st.caption(f"Filters: {literal(described)}{extra}")


def table(df: pd.DataFrame, name: str, key: str, *, column_config: Mapping[str, Any] | None = None,
          height: int | str = "auto") -> None:
    """A dataframe and its CSV download (computed when clicked)."""
    st.dataframe(df, width="stretch", hide_index=True, column_config=column_config, height=height, key=key)
    st.download_button("CSV", data=lambda: exports.to_csv(df), file_name=f"{exports.safe_filename(name)}.csv",
                       mime="text/csv", key=f"{key}_csv", on_click="ignore", icon=":material/download:")


def figure(fig: go.Figure, name: str, key: str) -> None:
    """A plotly chart with PNG and SVG downloads (rendered by kaleido when clicked), or a note on
    what is missing for static export."""
    st.plotly_chart(fig, width="stretch", key=key)
    if exports.chromium_path() is None:
        st.caption(exports.INSTALL_HINT)
        return
    left, right, _ = st.columns([1, 1, 3])  # wide enough for "PNG"/"SVG" in a half-width column too
    filename = exports.safe_filename(name)
    with left:
        st.download_button("PNG", data=lambda: exports.figure_bytes(fig, "png"), file_name=f"{filename}.png",
                           mime="image/png", key=f"{key}_png", on_click="ignore", icon=":material/image:")
    with right:
        st.download_button("SVG", data=lambda: exports.figure_bytes(fig, "svg"), file_name=f"{filename}.svg",
                           mime="image/svg+xml", key=f"{key}_svg", on_click="ignore", icon=":material/image:")


def empty_store(root: str) -> None:
    """What to do when the store has no responses yet."""
    st.title("MedLens")
    st.info(f"The store {literal(root)} has no responses yet. Build the demo store, or run an ingest, then press "
            "Refresh in the sidebar.")
    st.markdown("**Demo** (offline baseline detector over bundled sample images):")
    st.code("python -m data demo\nstreamlit run dashboard/app.py -- --store data/demo_store", language="bash")
    st.markdown("**Your own images** (layout `DATASET/<modality>/<real|synthetic>/[<source>/]...`):")
    st.code(f"python -m ingest scan DATASET --out manifest.csv\n"
            f"python -m ingest run --manifest manifest.csv --model openai:gpt-4o --store {root}",
            language="bash")
    st.caption("The store is chosen by `--store DIR`, else `$MEDLENS_STORE`, else `data/store`.")


def url_state(key: str, param: str, default: Any, parse: Any = str) -> None:
    """Seed a page widget's state from the URL on its first run (a shared link restores it)."""
    if key in st.session_state:
        return
    raw = st.query_params.get(param)
    try:
        st.session_state[key] = default if raw is None else parse(raw)
    except (TypeError, ValueError):
        st.session_state[key] = default


def set_url_param(param: str, value: Any, default: Any = None) -> None:
    """Mirror a page setting in the URL; the default value is left out of the link."""
    if value is None or value == default:
        if param in st.query_params:
            del st.query_params[param]
        return
    text = "1" if value is True else str(value)
    if st.query_params.get(param) != text:
        st.query_params[param] = text


def flag(raw: str) -> bool:
    return raw.lower() in ("1", "true", "yes", "on")
