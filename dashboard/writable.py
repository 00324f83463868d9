"""A store opened from a bundle (.zip) is read-only: say so, and offer to continue in a writable copy.

The copy is a new store folder under one base folder: ``$MEDLENS_COPY_DIR``, else ``data/copies``
(relative to where the dashboard was started). The user names only the folder (letters, digits,
``.``, ``_``, ``-``), never a path: on a shared deployment a visitor cannot make the server write
anywhere else. The bundle's rows are merged in with ``cache.bundle.import_bundle`` (thumbnails and run
records too), then this session switches to the copy (dashboard.context.switch_store); other sessions
and the bundle itself are unchanged.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pyarrow.parquet as pq
import streamlit as st

from cache.bundle import BundleError, import_bundle
from cache.schema import TABLES
from cache.store import Store
from dashboard import queries, ui
from dashboard.context import switch_store

FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def copy_base() -> Path:
    """Where writable copies are made: $MEDLENS_COPY_DIR, else data/copies."""
    return Path(os.environ.get("MEDLENS_COPY_DIR") or Path("data") / "copies")


def copy_target(name: str) -> Path:
    """The folder for a copy named ``name``; ValueError when the name is not a plain folder name or
    the folder already holds something."""
    name = name.strip()
    if not FOLDER_NAME.fullmatch(name) or name in (".", ".."):
        raise ValueError("use a plain folder name: letters, digits, '.', '_' or '-' (at most 64), no '/'")
    target = copy_base() / name
    if target.exists() and any(target.iterdir()):
        raise ValueError(f"{target} already exists and is not empty; pick another name")
    return target


def make_copy(root: str, name: str) -> Path:
    """Import the bundle extracted at ``root`` into a new store ``copy_base()/name``; returns it.
    Readings and grades parts are carried too (import_bundle merges responses only)."""
    target = copy_target(name)
    store = Store(target)
    import_bundle(Path(root), store)
    source = Store(root)
    for table in TABLES:
        if table != "responses":
            for part in source.part_paths(table):
                store.write_part(pq.read_table(part), table)
    return target


def _copy(root: str, key: str) -> None:
    try:
        target = make_copy(root, st.session_state.get(f"{key}_copy_name", ""))
    except (ValueError, BundleError, OSError) as exc:
        st.session_state[f"{key}_error"] = str(exc)
        return
    st.session_state.pop(f"{key}_error", None)
    switch_store(str(target.resolve()))


def read_only_notice(root: str, key: str) -> bool:
    """When ``root`` is an extracted bundle: the notice and the copy form; returns True (read-only)."""
    if not queries.is_bundle(root):
        return False
    st.warning(
        "This store was opened from a bundle (.zip): it is read-only, so nothing can be written here. "
        "Continue in a writable copy: the bundle's answers are imported into a new store folder, and "
        "this session switches to it (the bundle itself is not changed)."
    )
    with st.container(horizontal=True, vertical_alignment="bottom"):
        st.text_input(
            f"Folder name for the copy (created in {copy_base()})",
            key=f"{key}_copy_name",
            placeholder="my-review",
            max_chars=64,
        )
        st.button("Continue in a writable copy", key=f"{key}_copy", on_click=_copy, args=(root, key))
    if st.session_state.get(f"{key}_error"):
        st.error(f"No copy made: {ui.literal(st.session_state[f'{key}_error'])}")
    return True
