"""The confound audit: which file-level cues separate real from synthetic images."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from ingest.audit import confound_audit, format_audit
from ingest.manifest import ManifestRow, scan_dataset


def make_cell(root: Path, modality: str, truth: str, specs: list[tuple[str, tuple[int, int]]]) -> None:
    """Write one image per (format, size) spec under root/modality/truth/."""
    folder = root / modality / truth
    folder.mkdir(parents=True, exist_ok=True)
    for index, (fmt, size) in enumerate(specs):
        suffix = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif"}[fmt]
        Image.new("RGB", size, (index * 10, 50, 90)).save(folder / f"{truth}_{index}{suffix}", format=fmt)


def audit_of(root: Path, **options: object) -> dict:
    audit = confound_audit(scan_dataset(root), root, **options)
    json.dumps(audit)  # JSON-serialisable as promised
    return audit


def findings(audit: dict, modality: str) -> dict[str, dict]:
    return {finding["attribute"]: finding for finding in audit["modalities"][modality]["findings"]}


def test_png_versus_jpeg_is_a_high_confound(tmp_path: Path) -> None:
    make_cell(tmp_path, "fundus", "real", [("JPEG", (40, 30))] * 3)
    make_cell(tmp_path, "fundus", "synthetic", [("PNG", (40, 30))] * 4)
    audit = audit_of(tmp_path)
    found = findings(audit, "fundus")
    assert set(found) == {"format"}  # same size, mode, depth and metadata on both sides
    assert found["format"]["severity"] == "high"
    assert found["format"]["message"] == (
        "all 4 synthetic fundus images are PNG and all 3 real ones JPEG: "
        "a model could score well by reading the file type"
    )
    summary = audit["modalities"]["fundus"]
    assert summary["real"]["format"] == {"JPEG": 3} and summary["synthetic"]["format"] == {"PNG": 4}
    assert summary["real"]["n_rows"] == 3 and summary["synthetic"]["n_described"] == 4
    text = format_audit(audit)
    assert "  WARNING CONFOUND: all 4 synthetic fundus images are PNG and all 3 real ones JPEG" in text


def test_same_format_both_sides_gives_no_format_finding(tmp_path: Path) -> None:
    make_cell(tmp_path, "chest_xray", "real", [("PNG", (40, 30))] * 3)
    make_cell(tmp_path, "chest_xray", "synthetic", [("PNG", (40, 30))] * 3)
    audit = audit_of(tmp_path)
    assert findings(audit, "chest_xray") == {}
    text = format_audit(audit)
    assert "WARNING CONFOUND" not in text
    assert "No difference found between real and synthetic" in text


def test_strong_but_overlapping_difference_is_medium(tmp_path: Path) -> None:
    make_cell(tmp_path, "fundus", "real", [("JPEG", (40, 30))] * 4 + [("PNG", (40, 30))])
    make_cell(tmp_path, "fundus", "synthetic", [("JPEG", (40, 30))] + [("PNG", (40, 30))] * 4)
    finding = findings(audit_of(tmp_path), "fundus")["format"]
    assert finding["severity"] == "medium"
    assert finding["message"] == (
        "20% of synthetic fundus images are JPEG against 80% of real ones: "
        "the file type differs strongly between the groups"
    )
    assert "Warning: " in format_audit(audit_of(tmp_path))


def test_size_confound_survives_resizing_only_below_the_cap(tmp_path: Path) -> None:
    make_cell(tmp_path, "fundus", "real", [("PNG", (2000, 1000)), ("PNG", (3000, 1500))])
    make_cell(tmp_path, "fundus", "synthetic", [("PNG", (1000, 500))] * 2)
    found = findings(audit_of(tmp_path, max_side=1024), "fundus")
    assert found["size"]["severity"] == "high" and found["sent_size"]["severity"] == "high"
    assert found["sent_size"]["message"] == (
        "all 2 synthetic fundus images are 1000x500 and all 2 real ones 1024x512: a model could score "
        "well by reading the pixel size that MedLens still sends after resizing"
    )
    # With a cap every image reaches, the size sent is the same for both groups.
    found = findings(audit_of(tmp_path, max_side=256), "fundus")
    assert found["size"]["severity"] == "high" and "sent_size" not in found
    # With a cap no image reaches, the file size is what is sent: one finding that says so.
    found = findings(audit_of(tmp_path, max_side=4096), "fundus")
    assert "sent_size" not in found
    assert found["size"]["message"].endswith(
        "(no image is over the size cap, so the model sees these sizes too)"
    )


def test_metadata_confound(tmp_path: Path) -> None:
    make_cell(tmp_path, "fundus", "synthetic", [("PNG", (20, 20))] * 2)
    real = tmp_path / "fundus" / "real"
    real.mkdir(parents=True)
    exif = Image.Exif()
    exif[0x010F] = "FundusCam"
    for index in range(2):
        Image.new("RGB", (20, 20)).save(real / f"r{index}.png", exif=exif)
    audit = audit_of(tmp_path)
    assert findings(audit, "fundus")["has_metadata"]["message"].startswith(
        "all 2 synthetic fundus images are without metadata and all 2 real ones with metadata"
    )
    assert audit["modalities"]["fundus"]["real"]["metadata_keys"] == {"exif": 2}


def test_unreadable_files_are_listed_not_fatal(tmp_path: Path) -> None:
    make_cell(tmp_path, "fundus", "real", [("PNG", (20, 20))] * 2)
    make_cell(tmp_path, "fundus", "synthetic", [("PNG", (20, 20))] * 2)
    (tmp_path / "fundus" / "real" / "broken.png").write_bytes(b"")
    rows = scan_dataset(tmp_path) + [ManifestRow("fundus/real/gone.png", "fundus", "real")]
    audit = confound_audit(rows, tmp_path)
    assert audit["unreadable"] == ["fundus/real/broken.png", "fundus/real/gone.png"]
    assert audit["unreadable_errors"]["fundus/real/gone.png"].endswith("gone.png: file not found")
    assert audit["modalities"]["fundus"]["real"]["n_rows"] == 4
    assert audit["modalities"]["fundus"]["real"]["n_described"] == 2
    text = format_audit(audit)
    assert "Unreadable files (2), left out of the audit:" in text
    assert "broken.png: empty file (0 bytes)" in text


def test_sampling_caps_files_per_cell(tmp_path: Path) -> None:
    make_cell(tmp_path, "fundus", "real", [("PNG", (20, 20))] * 6)
    make_cell(tmp_path, "fundus", "synthetic", [("PNG", (20, 20))] * 3)
    summary = audit_of(tmp_path, max_files_per_cell=2)["modalities"]["fundus"]
    assert (summary["real"]["n_rows"], summary["real"]["n_described"]) == (6, 2)
    assert summary["synthetic"]["n_described"] == 2


def test_one_sided_modality_is_noted(tmp_path: Path) -> None:
    make_cell(tmp_path, "oct", "real", [("PNG", (20, 20))])
    audit = audit_of(tmp_path)
    assert audit["modalities"]["oct"]["findings"] == [
        {
            "attribute": "all",
            "severity": "info",
            "message": "no readable synthetic oct images: nothing to compare",
        }
    ]


def test_report_ends_with_what_medlens_does_about_it(tmp_path: Path) -> None:
    make_cell(tmp_path, "fundus", "real", [("PNG", (20, 20))])
    make_cell(tmp_path, "fundus", "synthetic", [("PNG", (20, 20))])
    last = format_audit(audit_of(tmp_path, max_side=768)).splitlines()[-1]
    assert last.startswith("MedLens re-encodes every image to one format and colour mode, without metadata")
    assert "capped at 768 px" in last and "pixel content can still leak" in last


def test_samples_fundus_format_confound(samples_dir: Path) -> None:
    audit = confound_audit(scan_dataset(samples_dir), samples_dir)
    fundus = findings(audit, "fundus")
    assert fundus["format"]["severity"] == "high"
    assert fundus["format"]["message"].startswith(
        "all 20 synthetic fundus images are PNG and all 16 real ones JPEG"
    )
    assert fundus["sent_size"]["severity"] == "high"  # 512 px synthetic vs 1024 px real even after resizing
    assert findings(audit, "chest_xray").get("format", {}).get("severity") != "high"
    assert audit["unreadable"] == []
    assert "WARNING CONFOUND: all 20 synthetic fundus images are PNG" in format_audit(audit)


def test_square_removes_the_sent_size_confound(tmp_path: Path) -> None:
    for truth, size in (("real", (900, 700)), ("synthetic", (256, 256))):
        for i in range(3):
            folder = tmp_path / "fundus" / truth
            folder.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", size, (i, 0, 0)).save(folder / f"{i}.png")
    rows = scan_dataset(tmp_path)
    plain = confound_audit(rows, tmp_path, max_side=512)
    squared = confound_audit(rows, tmp_path, max_side=512, square=True)
    attrs = lambda audit: {f["attribute"] for f in audit["modalities"]["fundus"]["findings"]}  # noqa: E731
    assert "sent_size" in attrs(plain) and "sent_size" not in attrs(squared)
    assert "size" in attrs(squared), "the files still differ; only what is sent is equalised"
    assert "--square" in format_audit(plain) and "exactly 512x512" in format_audit(squared)
