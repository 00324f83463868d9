"""Start the dashboard with `streamlit run` on a free loopback port, and drive it with Playwright.

Shared by tests/test_dashboard_browser.py and tests/benchmarks/bench_dashboard.py.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dashboard.pages import PAGES as APP_PAGES

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "dashboard" / "app.py"
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
#: the heading a page draws, where it is not its navigation title
HEADINGS = {"compare": "Compare two models"}
#: url path ("" for the default page) -> the page's heading, for every page of dashboard/pages.py
PAGES = {("" if index == 0 else url): HEADINGS.get(url, title) for index, (_, title, url, _) in enumerate(APP_PAGES)}


def browser_missing() -> str | None:
    """Why a browser test cannot run here, or None."""
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        return "Debian chromium not installed (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright (python) not installed (pip install playwright; never `playwright install`)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextmanager
def streamlit_server(store: Path, *, timeout: float = 60.0) -> Iterator[Server]:
    """`streamlit run dashboard/app.py -- --store STORE` on 127.0.0.1:<free port>, stopped on exit."""
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="medlens-streamlit-", suffix=".log")[1])
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", "127.0.0.1",
           "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none", "--", "--store", str(store)]
    env = {k: v for k, v in os.environ.items() if k != "MEDLENS_STORE"}
    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Server(url=f"http://127.0.0.1:{port}", process=process, log=log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"streamlit exited with {process.returncode}:\n{server.log_text()}")
            try:
                with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=2) as reply:
                    if reply.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"streamlit did not become healthy in {timeout} s:\n{server.log_text()}")
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def chromium(viewport: tuple[int, int] = (1400, 2400)) -> Iterator[Any]:
    """A headless Debian chromium page (Playwright)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
            yield context.new_page()
        finally:
            browser.close()


#: every visible dataframe has drawn (glide fills an accessibility <table> when it paints; one in a closed
#: expander never paints), every plotly chart has its SVG, every image has loaded, and nothing is stale
RENDERED = """() => {
  const all = (sel) => Array.from(document.querySelectorAll(sel));
  const frames = all('[data-testid="stDataFrame"]').filter((f) => f.checkVisibility());
  return all('[data-stale="true"]').length === 0
    && frames.every((f) => f.querySelector('table'))
    && frames.map((f) => f.querySelector('table')).every(
         (t) => t.querySelector('td[id^="glide-cell"]') || t.getAttribute('aria-rowcount') === '1')
    && all('[data-testid="stPlotlyChart"]').every((c) => c.querySelector('.main-svg'))
    && all('img').every((i) => i.complete);
}"""


def wait_idle(page: Any, text: str | None = None, timeout_ms: int = 60_000) -> None:
    """Wait until ``text`` is shown in the main area (if given), the script has finished and everything
    has drawn."""
    if text:  # in the main area: the sidebar's navigation shows every page title from the start
        page.locator('[data-testid="stMain"]').get_by_text(text, exact=True).first.wait_for(timeout=timeout_ms)
    page.wait_for_selector(IDLE, timeout=timeout_ms)
    page.wait_for_function(RENDERED, timeout=timeout_ms)
    page.wait_for_selector(IDLE, timeout=timeout_ms)
