"""What the entry script hands each page for one run: the store, its signature and the filters."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

import streamlit as st

from cache.metrics import Filters

_KEY = "_medlens_context"


@dataclass(frozen=True)
class AppContext:
    root: str  #: store directory (resolved from --store, MEDLENS_STORE or data/store)
    signature: str  #: queries.store_signature(root) at the start of this run
    filters: Filters  #: the sidebar filters (mirrored in the URL query string)
    options: dict[str, list[str]] = field(default_factory=dict)  #: distinct values per filter field


def set_context(ctx: AppContext) -> None:
    st.session_state[_KEY] = ctx


def get_context() -> AppContext:
    """The context of the current run (set by dashboard/app.py before the page runs)."""
    try:
        return st.session_state[_KEY]
    except KeyError:
        raise RuntimeError("dashboard pages run through dashboard/app.py (st.navigation)") from None


def store_argument(argv: list[str]) -> str | None:
    """`--store DIR` from the script arguments (those after `--`); anything else is ignored."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--store")
    args, _unknown = parser.parse_known_args(argv)
    return args.store


_STORE_OVERRIDE = "_medlens_store_override"


def session_store() -> str | None:
    """The store this session switched to (a writable copy of a bundle, see dashboard/writable.py), or
    None: then the store is --store, $MEDLENS_STORE or data/store."""
    return st.session_state.get(_STORE_OVERRIDE)


def switch_store(root: str) -> None:
    """Use ``root`` for the rest of this session (every page, every later run)."""
    st.session_state[_STORE_OVERRIDE] = root


def reader_only() -> bool:
    """MEDLENS_READER_ONLY=1: a deployment for readers (the reader page alone; no study is made there)."""
    return os.environ.get("MEDLENS_READER_ONLY", "") not in ("", "0")
