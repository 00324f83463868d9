"""MedLens dashboard entry: configure the page, resolve the store, draw the sidebar, navigate.

    streamlit run dashboard/app.py -- [--store DIR]      (or: python -m dashboard [--store DIR])

The store is `--store`, else $MEDLENS_STORE, else data/store: a store folder, a bundle .zip
(`python -m cache export`, opened read-only) or s3://bucket/prefix (AWS_ENDPOINT_URL and the AWS
credentials from the environment). dashboard/.streamlit/config.toml binds the
server to 127.0.0.1 and turns usage statistics off, whatever the working directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `streamlit run` puts only dashboard/ on sys.path
    sys.path.insert(0, str(REPO))

import streamlit as st  # noqa: E402
from streamlit.delta_generator import DeltaGenerator  # noqa: E402

from cache.bundle import BundleError  # noqa: E402
from cache.filters import Filters  # noqa: E402
from cache.location import StoreLocationError  # noqa: E402
from cache.store import resolve_store  # noqa: E402
from dashboard import filters as qf  # noqa: E402
from dashboard import queries, sidebar, ui  # noqa: E402
from dashboard.context import AppContext, reader_only, session_store, set_context, store_argument  # noqa: E402
from dashboard.pages import BLINDED, PAGE_ICON, PAGE_PARAMS, PAGES  # noqa: E402

#: MEDLENS_READER_ONLY=1: a deployment for readers serves the reader page alone (no way to the answers)
READER_ONLY = reader_only()


def drop_other_pages_params(url_path: str) -> None:
    current = url_path or PAGES[0][2]
    for page, names in PAGE_PARAMS.items():
        for name in names:
            if page != current and name in st.query_params and name not in PAGE_PARAMS.get(current, ()):
                del st.query_params[name]


def main() -> None:
    st.set_page_config(page_title="MedLens", page_icon=PAGE_ICON, layout="wide")
    try:
        root = session_store() or queries.store_root(str(resolve_store(store_argument(sys.argv[1:]))))
    except (BundleError, StoreLocationError, OSError) as exc:  # a damaged bundle, a malformed location: one line
        st.error(f"Cannot open the store: {ui.literal(exc)}")
        st.stop()
    notice = st.container()  # on top of the page: what is wrong with the store, in one line
    try:
        show(root, notice)
    except Exception as exc:  # noqa: BLE001  (the page's error boundary; st.stop/rerun are BaseException)
        with notice:
            ui.store_failure(root, exc)


def show(root: str, notice: DeltaGenerator) -> None:
    """Sidebar, context and the chosen page for the store folder ``root``; foreign files under
    responses/ are named in ``notice`` once the page has run (if it fails, the failure names them)."""
    pages = [page for page in PAGES if not READER_ONLY or page[2] == "reader"]
    navigation = st.navigation([st.Page(script, title=title, url_path=url, icon=icon, default=index == 0)
                                for index, (script, title, url, icon) in enumerate(pages)],
                               position="hidden" if READER_ONLY else "sidebar")
    signature = queries.store_signature(root)
    options = queries.filter_options(root, signature)
    drop_other_pages_params(navigation.url_path)
    blinded = READER_ONLY or navigation.url_path in BLINDED
    if blinded:
        for name in qf.PARAMS.values():
            if name in st.query_params:
                del st.query_params[name]
    filters = Filters() if blinded else sidebar.render(root, signature, options)
    set_context(AppContext(root=root, signature=signature, filters=filters, options=options))
    if not queries.has_parts(signature):
        ui.empty_store(root)
        return
    demo = None if blinded else queries.demo_info(root, signature)
    if demo:  # say plainly what the demo holds: no cloud model answered anything here
        st.info(f"**Demo store.** {demo.get('contents', '')}", icon=":material/info:")
    navigation.run()
    with notice:
        for path, reason in queries.foreign_parts(root, signature):
            st.warning(f"{ui.literal(path)} is {reason}; move it out of the store's responses/ folder.", icon="⚠️")


main()
