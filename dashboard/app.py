"""MedLens dashboard entry: configure the page, resolve the store, draw the sidebar, navigate.

    streamlit run dashboard/app.py -- [--store DIR]      (or: python -m dashboard [--store DIR])

The store is `--store`, else $MEDLENS_STORE, else data/store: a store folder or a bundle .zip
(`python -m cache export`), opened read-only. dashboard/.streamlit/config.toml binds the
server to 127.0.0.1 and turns usage statistics off, whatever the working directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `streamlit run` puts only dashboard/ on sys.path
    sys.path.insert(0, str(REPO))

import streamlit as st  # noqa: E402

from cache.bundle import BundleError  # noqa: E402
from cache.store import resolve_store  # noqa: E402
from dashboard import filters as qf  # noqa: E402
from dashboard import queries, sidebar, ui  # noqa: E402
from dashboard.context import AppContext, set_context, store_argument  # noqa: E402

#: (script, title, url path, icon); the first is the default page
PAGES = (
    ("tabs/overview.py", "Overview", "overview", ":material/leaderboard:"),
    ("tabs/confusion.py", "Confusion matrices", "confusion", ":material/grid_on:"),
    ("tabs/gallery.py", "Gallery", "gallery", ":material/photo_library:"),
    ("tabs/compare.py", "Compare", "compare", ":material/compare_arrows:"),
    ("tabs/runs.py", "Runs & errors", "runs", ":material/error:"),
    ("tabs/quality.py", "Interpretation quality", "quality", ":material/description:"),
    ("tabs/readers.py", "Readers & ROC", "readers", "📈"),
    ("tabs/grading.py", "Grade interpretations", "grading", "✍️"),
)
#: pages that must not show who answered or the truth: no sidebar filters (their options name models,
#: sources and truths), no demo notice, and no filter in the URL
BLINDED_PAGES = ("grading", "reader")

#: query parameters owned by one page (dropped on the others, so a copied link stays minimal)
PAGE_PARAMS = {"overview": ("metric",), "gallery": ("image", "gpage", "wrong", "disagree"), "compare": ("a", "b"),
               "grading": ("image", "grader")}


def drop_other_pages_params(url_path: str) -> None:
    current = url_path or PAGES[0][2]
    for page, names in PAGE_PARAMS.items():
        for name in names:
            if page != current and name in st.query_params and name not in PAGE_PARAMS.get(current, ()):
                del st.query_params[name]


def main() -> None:
    st.set_page_config(page_title="MedLens", page_icon=":material/visibility:", layout="wide")
    try:
        root = queries.store_root(str(resolve_store(store_argument(sys.argv[1:]))))
    except BundleError as exc:
        st.error(f"Cannot open the store: {ui.literal(exc)}")
        st.stop()
    signature = queries.store_signature(root)
    options = queries.filter_options(root, signature)
    navigation = st.navigation([st.Page(script, title=title, url_path=url, icon=icon, default=index == 0)
                                for index, (script, title, url, icon) in enumerate(PAGES)])
    drop_other_pages_params(navigation.url_path)
    blinded = navigation.url_path in BLINDED_PAGES
    if blinded:
        for name in qf.PARAMS.values():
            if name in st.query_params:
                del st.query_params[name]
    filters = qf.Filters() if blinded else sidebar.render(root, signature, options)
    set_context(AppContext(root=root, signature=signature, filters=filters, options=options))
    if not queries.has_parts(signature):
        ui.empty_store(root)
        return
    demo = None if blinded else queries.demo_info(root, signature)
    if demo:  # say plainly what the demo holds: no cloud model answered anything here
        st.info(f"**Demo store.** {demo.get('contents', '')}", icon=":material/info:")
    navigation.run()


main()
