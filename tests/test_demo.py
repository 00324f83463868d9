"""`python -m data demo`: the README's first command's store, built from the mirror or from nothing."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from cache.bundle import export_bundle, open_store
from cache.metrics import Filters
from cache.store import Store
from tests.pipeline_helpers import cli, store_rows


def _demo(tmp_path: Path, *extra: str, check: bool = True):
    return cli("data", "demo", "--store", str(tmp_path / "store"), "--samples-dir", str(tmp_path / "samples"),
               "--demo-dir", str(tmp_path / "demo"), "--no-progress", *extra, check=check)


@pytest.mark.slow
def test_demo_from_the_committed_samples_offline(samples_dir: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    out = cli("data", "demo", "--store", str(tmp_path / "store"), "--demo-dir", str(tmp_path / "demo"),
              "--offline", "--no-progress").stdout
    seconds = time.monotonic() - started
    assert seconds < 120, f"the demo took {seconds:.0f} s"
    rows = store_rows(tmp_path / "store")
    assert len(rows) == 71 and {r["status"] for r in rows} == {"ok"}
    assert {r["model"] for r in rows} == {"baseline:forensic"} and {r["provider"] for r in rows} == {"baseline"}
    cells = Counter((r["modality"], r["truth"]) for r in rows)
    assert cells == {("fundus", "real"): 17, ("fundus", "synthetic"): 20,
                     ("chest_xray", "real"): 17, ("chest_xray", "synthetic"): 17}
    sources = Counter(r["source"] for r in rows)
    assert sources["scikit-image"] == 1 and sources["pydicom-data"] == 1 and sources["RetinaGAN"] == 20
    assert all(not r["image_path"].startswith("/") for r in rows), "image paths stay relative to the demo"
    answered = sum(r["label"] in ("real", "synthetic") for r in rows)
    assert answered >= 60, "with 17+ images per class the baseline trains and commits to labels"

    marker = json.loads((tmp_path / "store" / "demo.json").read_text())
    assert marker["demo"] is True and marker["images"] == 71 and marker["models"] == ["baseline:forensic"]
    assert marker["cloud_model_answers"] == 0 and "No cloud model" in marker["contents"]
    assert marker["samples"]["already_present"] == 69 and marker["samples"]["package_images"] == 2
    assert marker["network"] == "offline"
    assert sum(c["images"] for c in marker["cells"]) == 71
    assert "/" + "tmp" not in json.dumps(marker), "demo.json holds no local path"

    demo = tmp_path / "demo"
    assert (demo / "fundus/real/scikit-image/skimage_retina.png").is_file()
    assert (demo / "chest_xray/real/pydicom-data/pydicom_data_RG1_UNCR.dcm").is_file()
    assert (demo / "LICENSES" / "HRF-CC-BY-4.0.txt").is_file()
    assert "`fundus/real/scikit-image/skimage_retina.png`" in (demo / "ATTRIBUTION.md").read_text()
    assert "demo store" in out and "71 image(s) answered by baseline:forensic" in out
    assert len(list((tmp_path / "store" / "thumbs").glob("*.jpg"))) == 71


def test_demo_offline_without_samples_is_honestly_untrained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _demo(tmp_path, "--offline").stdout
    assert "offline: 61 sample(s) not downloaded" in out
    assert "8 derived file(s) have no download URL: they can only come from a mirror" in out
    rows = store_rows(tmp_path / "store")
    assert sorted(r["source"] for r in rows) == ["pydicom-data", "scikit-image"]
    assert {(r["status"], r["error_type"]) for r in rows} == {("error", "baseline_untrained")}
    assert {r["truth"] for r in rows} == {"real"}
    marker = json.loads((tmp_path / "store" / "demo.json").read_text())
    assert marker["images"] == 2 and marker["network"] == "offline"
    assert "every image is an error row 'baseline_untrained'" in marker["contents"]

    # a rebuild replaces the demo store rather than adding to it; a missing mirror is a notice, not an error
    again = _demo(tmp_path, "--offline", "--mirror", str(tmp_path / "nowhere")).stdout
    assert f"notice: sample mirror {tmp_path / 'nowhere'} not found; using the origin URLs instead" in again
    assert len(store_rows(tmp_path / "store")) == 2
    assert len(list((tmp_path / "store" / "runs").glob("*.json"))) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".store")], "no staging folder is left"

    # a bundle exported from the demo store still says it is the demo, with the exported counts
    monkeypatch.setenv("MEDLENS_BUNDLE_CACHE", str(tmp_path / "cache"))
    export_bundle(Store(tmp_path / "store"), tmp_path / "demo.zip", Filters(modality=["fundus"]))
    marker = json.loads((open_store(tmp_path / "demo.zip").root / "demo.json").read_text())
    assert marker["demo"] is True and marker["images"] == 1 and marker["selection"] == {"modality": ["fundus"]}


def test_demo_never_replaces_a_store_it_did_not_build(tmp_path: Path) -> None:
    precious = tmp_path / "store" / "responses" / "part-1.parquet"
    precious.parent.mkdir(parents=True)
    precious.write_bytes(b"somebody's results")
    proc = _demo(tmp_path, "--offline", check=False)
    assert proc.returncode == 2 and "refusing to replace it" in proc.stderr
    assert precious.read_bytes() == b"somebody's results"


def test_demo_never_clears_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "thesis.tex").write_text("x")
    proc = _demo(tmp_path, "--offline", check=False)
    assert proc.returncode == 2 and "refusing to clear it" in proc.stderr
    assert (tmp_path / "demo" / "thesis.tex").read_text() == "x"


