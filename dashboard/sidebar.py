"""The sidebar: filters (kept in the URL query string), Refresh, and what store is shown."""

from __future__ import annotations

import streamlit as st

from cache.metrics import Filters
from dashboard import filters as qf
from dashboard import queries, ui

LABELS = {"model": "Model", "modality": "Modality", "prompt_id": "Prompt", "source": "Source / generator",
          "truth": "Truth", "outcome": "Outcome"}


def _key(name: str) -> str:
    return f"sidebar_{name}"


def _seed_from_url(options: dict[str, list[str]]) -> list[str]:
    """On a session's first run, start each filter from the URL; returns values that were dropped."""
    dropped = []
    for field, name in qf.PARAMS.items():
        if _key(name) in st.session_state:
            continue
        wanted = qf.filters_from_params({name: st.query_params.get_all(name)})
        values = list(getattr(wanted, field))
        allowed = options.get(field, list(qf.OUTCOMES) if field == "outcome" else [])
        st.session_state[_key(name)] = [v for v in values if v in allowed]
        dropped += [f"{name}={v}" for v in values if v not in allowed]
    return dropped


def _sync_url(filters: Filters) -> None:
    """Write the filters into the query string (page-specific parameters are left alone)."""
    wanted = qf.params_from_filters(filters)
    for name in qf.PARAMS.values():
        values = wanted.get(name, [])
        if st.query_params.get_all(name) != values:
            if values:
                st.query_params[name] = values
            elif name in st.query_params:
                del st.query_params[name]


def render(root: str, signature: str, options: dict[str, list[str]]) -> Filters:
    """Draw the filters and return them."""
    dropped = _seed_from_url(options)
    sb = st.sidebar
    sb.header("Filters")
    if dropped:
        sb.warning("Not in this store, ignored: " + ", ".join(ui.literal(d) for d in dropped))
    chosen = {}
    for field, name in qf.PARAMS.items():
        choices = list(qf.OUTCOMES) if field == "outcome" else options.get(field, [])
        chosen[field] = tuple(sb.multiselect(LABELS[field], choices, key=_key(name), placeholder="all",
                                             format_func=lambda v: v if v else "(none)"))
    filters = Filters(**chosen)
    _sync_url(filters)
    sb.button("Refresh", key="sidebar_refresh", icon=":material/refresh:", on_click=queries.refresh,
              args=(root,), help="Re-read the store: new responses written by a running ingest appear.")
    totals = queries.store_totals(root, signature)
    parts = signature.split(":", 1)[0]
    sb.caption(f"Store: {ui.literal(root)}")
    sb.caption(f"{totals['rows']:,} rows ({totals['ok']:,} ok, {totals['errors']:,} errors), "
               f"{totals['images']:,} images, {parts} part(s)")
    return filters
