"""MedLens data: prompt templates, the price table, the public sample-image registry and the demo.

- ``data/samples.csv``: the registry of public sample images (licence, attribution, origin URL pinned
  to a commit, sha256), plus two real images that installed packages ship (scikit-image, pydicom-data).
- ``python -m data fetch-samples``: download or copy the samples into ``data/samples/`` (see
  ``data.samples``).
- ``python -m data demo``: lay out ``data/demo/``, scan it and answer it with the offline baseline
  into ``data/demo_store/`` (see ``data.demo``).

``data/`` may drive ``ingest/`` (the demo runs ``ingest scan`` and ``ingest run``); nothing imports
``data/`` but its own CLI.
"""

from pathlib import Path

#: The folder of this package: defaults below are relative to it, not to the working directory.
DATA_DIR = Path(__file__).resolve().parent
