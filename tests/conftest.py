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


#: A distinctive fake AWS secret: tests search stores, logs and exports for it (and its fragments).
S3_TEST_SECRET = "mlS3secretQ7vX2pL9kR4tW8zN1bH6cJ3fD5gA0eY"


@pytest.fixture(scope="session")
def moto_endpoint():
    """An S3 endpoint on 127.0.0.1 (moto's ThreadedMotoServer, in this process), for the session.

    moto checks ``If-None-Match: *`` and stores the object in separate steps with no lock between;
    real S3 is atomic there, so the server's PutObject handler is serialised (claims and journal
    folding rely on exactly one winner)."""
    import logging
    import threading

    from moto.s3.responses import S3Response
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    lock, put_object = threading.Lock(), S3Response.put_object

    def atomic_put_object(self):
        with lock:
            return put_object(self)

    S3Response.put_object = atomic_put_object
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        S3Response.put_object = put_object


@pytest.fixture
def s3_store(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """``s3://<fresh bucket>/study`` on the moto endpoint, with dummy credentials in this test's
    environment only (no profile, config file or instance metadata is read)."""
    import uuid

    import boto3

    env = {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "AKIAMEDLENSTEST00001",
        "AWS_SECRET_ACCESS_KEY": S3_TEST_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "MEDLENS_S3_CACHE": str(tmp_path / "s3-local-cache"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "MEDLENS_STORE"):
        monkeypatch.delenv(name, raising=False)
    bucket = f"medlens-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/study"


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where a browser test saves its screenshots: $MEDLENS_SCREENSHOTS, or a temporary folder (printed)."""
    folder = Path(os.environ.get("MEDLENS_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {folder}")
    return folder
