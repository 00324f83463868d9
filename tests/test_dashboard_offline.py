"""The dashboard works offline: no request of any page leaves 127.0.0.1 (a real browser records them all).

Streamlit turns a ``:material/...:`` page icon into a favicon fetched from a Google font host (see
STACK_NOTES "Streamlit sharing"); an offline or firewalled clinic machine would see failed requests.
Besides the network log, the favicon links in the DOM are checked, since a headless browser may
skip fetching them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.dashboard_fixture import build_fixture_store
from tests.dashboard_server import PAGES, browser_missing, chromium, streamlit_server, wait_idle

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or ""),
]
ICON_LINKS = '() => Array.from(document.querySelectorAll(\'link[rel~="icon"], link[rel="shortcut icon"]\')).map((l) => l.href)'


def _local(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in ("data", "blob", "about") or parsed.hostname == "127.0.0.1"


def test_no_request_leaves_loopback_on_any_page(tmp_path: Path) -> None:
    fx = build_fixture_store(tmp_path / "fixture")
    store = tmp_path / "store"
    shutil.copytree(fx.root, store)
    (store / "demo.json").write_text(
        json.dumps({"demo": True, "contents": "Demo contents."})
    )  # the info box too
    requests: list[str] = []
    icons: list[str] = []
    with streamlit_server(store) as server, chromium() as page:
        page.on("request", lambda request: requests.append(request.url))
        image = fx.sha("chest_xray", "r1")
        for url in [*PAGES, f"gallery?image={image}"]:
            page.goto(f"{server.url}/{url}")
            wait_idle(page, PAGES.get(url, "Image detail"))
            page.wait_for_timeout(500)  # favicon and late font requests
            icons += page.evaluate(ICON_LINKS)
    assert len(requests) > 20 and icons
    outside = sorted({u for u in requests + icons if not _local(u)})
    assert outside == [], outside
