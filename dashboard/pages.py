"""The dashboard's pages, declared once: the entry script navigates them, the tests and the
dashboard benchmark visit them (pure data: importing this runs no Streamlit code)."""

from __future__ import annotations

#: (script, title, url path, icon); the first is the default page. Icons are emoji, never
#: ":material/...:" names: a page's icon becomes the browser tab's favicon, and a Material icon
#: favicon is fetched from a Google font host (an offline clinic sees errors); an emoji is a data: URL.
PAGES = (
    ("tabs/overview.py", "Overview", "overview", "📊"),
    ("tabs/confusion.py", "Confusion matrices", "confusion", "🔢"),
    ("tabs/gallery.py", "Gallery", "gallery", "🖼️"),
    ("tabs/compare.py", "Compare", "compare", "⚖️"),
    ("tabs/runs.py", "Runs & errors", "runs", "⚠️"),
    ("tabs/quality.py", "Interpretation quality", "quality", "📝"),
    ("tabs/readers.py", "Readers & ROC", "readers", "📈"),
    ("tabs/review.py", "Review labels", "review", "🏷️"),
    ("tabs/grading.py", "Grade interpretations", "grading", "✍️"),
    ("tabs/reader.py", "Reader study", "reader", "👁️"),
)
PAGE_ICON = "🔬"

#: query parameters owned by one page (dropped on the others, so a copied link stays minimal)
PAGE_PARAMS = {
    "overview": ("metric",),
    "gallery": ("image", "gpage", "wrong", "disagree"),
    "compare": ("a", "b"),
    "reader": ("study",),
    "grading": ("image", "grader"),
}
#: pages that must not show who answered or the truth: no sidebar filters (their options name models,
#: sources and truths), no demo notice, and no filter in the URL
BLINDED = ("reader", "grading")
