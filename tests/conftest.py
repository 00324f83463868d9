"""Shared test configuration: markers, the opt-in --live flag, and paths to shared sample data."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: The sample images committed with the project (data/samples), or $MEDLENS_SAMPLES.
SAMPLES = Path(os.environ.get("MEDLENS_SAMPLES", ROOT / "data" / "samples"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--live", action="store_true", help="run tests that call real, paid APIs")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "live: calls a real API; needs --live and a key")
    config.addinivalue_line("markers", "browser: drives headless Debian chromium through Playwright")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--live"):
        return
    skip = pytest.mark.skip(reason="live API test: run with --live and the provider's key set")
    for item in items:
        if "live" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def samples_dir() -> Path:
    if not (SAMPLES / "LICENSES").is_dir():
        pytest.skip(f"sample images not found at {SAMPLES} (set MEDLENS_SAMPLES to their folder)")
    return SAMPLES
