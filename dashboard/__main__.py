"""`python -m dashboard [--store DIR] [--port N]`: start the dashboard on 127.0.0.1, no telemetry."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"


def streamlit_command(store: str | None, port: int | None) -> list[str]:
    """The `streamlit run` command line (flags repeat dashboard/.streamlit/config.toml on purpose)."""
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", "127.0.0.1",
           "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    if port:
        cmd += ["--server.port", str(port)]
    if store:
        cmd += ["--", "--store", store]
    return cmd


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dashboard", description="Start the MedLens dashboard.")
    parser.add_argument("--store", help="store directory, bundle .zip or s3://bucket/prefix "
                        "(default: $MEDLENS_STORE or data/store)")
    parser.add_argument("--port", type=int, help="port (default 8501)")
    args = parser.parse_args(argv)
    cmd = streamlit_command(args.store, args.port)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
