"""Dataset scanning, manifest writing and reading, and every validation message."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from ingest.manifest import (
    MANIFEST_COLUMNS,
    ManifestError,
    ManifestRow,
    count_table,
    read_manifest,
    scan_dataset,
    write_manifest,
)


def put_image(path: Path, format: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 3), (90, 20, 10)).save(path, format=format)
    return path


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A small tree with and without source folders, hidden entries, non-images and a DICOM."""
    root = tmp_path / "data"
    put_image(root / "fundus" / "real" / "r1.png")
    put_image(root / "fundus" / "real" / "R2.JPG", "JPEG")
    put_image(root / "fundus" / "synthetic" / "stylegan" / "s1.png")
    put_image(root / "fundus" / "synthetic" / "stylegan" / "batch 2" / "s2 ü.png")
    put_image(root / "fundus" / "synthetic" / "diffusion" / "s3.webp", "WEBP")
    put_image(root / "fundus" / "real" / ".hidden.png")
    put_image(root / "fundus" / "real" / ".thumbs" / "t.png")
    (root / "fundus" / "real" / "notes.txt").write_text("not an image")
    dicom = Path(get_testdata_file("CT_small.dcm", download=False)).read_bytes()
    (root / "chest_xray" / "Real").mkdir(parents=True)
    (root / "chest_xray" / "Real" / "scan0001").write_bytes(dicom)  # extensionless, found by DICM magic
    put_image(root / "chest_xray" / "synthetic" / "x.tif", "TIFF")
    (root / "LICENSES").mkdir()
    (root / "LICENSES" / "CC-BY.txt").write_text("licence text")
    (root / "README.md").write_text("about the data")
    return root


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ManifestError) as caught:
        read_manifest(path)
    return str(caught.value)


# --- scanning --------------------------------------------------------------------------------------------


def test_scan_reads_modality_truth_and_source(dataset: Path) -> None:
    rows = scan_dataset(dataset)
    assert [(r.image_path, r.modality, r.truth, r.source) for r in rows] == [
        ("chest_xray/Real/scan0001", "chest_xray", "real", ""),
        ("chest_xray/synthetic/x.tif", "chest_xray", "synthetic", ""),
        ("fundus/real/R2.JPG", "fundus", "real", ""),
        ("fundus/real/r1.png", "fundus", "real", ""),
        ("fundus/synthetic/diffusion/s3.webp", "fundus", "synthetic", "diffusion"),
        ("fundus/synthetic/stylegan/batch 2/s2 ü.png", "fundus", "synthetic", "stylegan"),
        ("fundus/synthetic/stylegan/s1.png", "fundus", "synthetic", "stylegan"),
    ]
    assert all(row.resolve(dataset).is_file() for row in rows)
    assert count_table(rows) == [
        ("chest_xray", "real", "", 1),
        ("chest_xray", "synthetic", "", 1),
        ("fundus", "real", "", 2),
        ("fundus", "synthetic", "diffusion", 1),
        ("fundus", "synthetic", "stylegan", 2),
    ]


def test_scan_follows_linked_folders_without_looping(dataset: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "oct_real"
    put_image(outside / "o1.png")
    (outside / "loop").symlink_to(outside)  # a link back to itself
    (dataset / "oct").mkdir()
    (dataset / "oct" / "real").symlink_to(outside)
    oct_rows = [row for row in scan_dataset(dataset) if row.modality == "oct"]
    assert [row.image_path for row in oct_rows] == ["oct/real/o1.png"]


def test_scan_is_deterministic(dataset: Path) -> None:
    assert scan_dataset(dataset) == scan_dataset(dataset)


def test_folder_that_is_not_a_truth_folder(dataset: Path) -> None:
    put_image(dataset / "fundus" / "fake" / "f.png")
    with pytest.raises(ManifestError) as caught:
        scan_dataset(dataset)
    message = str(caught.value)
    assert message.startswith(f"{dataset / 'fundus' / 'fake'}: folder 'fake' under modality 'fundus'")
    assert "rename it to one of: real, synthetic" in message


def test_image_directly_in_modality_folder(dataset: Path) -> None:
    put_image(dataset / "fundus" / "loose.png")
    with pytest.raises(ManifestError, match="loose.png: image is not inside a real/ or synthetic/ folder"):
        scan_dataset(dataset)


def test_scan_of_a_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "fundus" / "real").mkdir(parents=True)
    (tmp_path / "fundus" / "real" / "a.txt").write_text("x")
    with pytest.raises(ManifestError) as caught:
        scan_dataset(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path}: no images found; expected the layout "
        "DATASET_DIR/<modality>/<real|synthetic>/[<source>/]...<image>"
    )


def test_scan_of_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not a folder"):
        scan_dataset(tmp_path / "nope")


# --- writing and reading ---------------------------------------------------------------------------------


def test_round_trip_next_to_the_data(dataset: Path) -> None:
    rows = scan_dataset(dataset)
    write_manifest(rows, dataset / "manifest.csv")
    text = (dataset / "manifest.csv").read_text(encoding="utf-8")
    assert text.splitlines()[0] == "image_path,modality,truth,source"
    assert "fundus/synthetic/stylegan/batch 2/s2 ü.png,fundus,synthetic,stylegan" in text
    back = read_manifest(dataset / "manifest.csv")
    assert back == [
        ManifestRow(r.image_path, r.modality, r.truth, r.source, {}, i + 2) for i, r in enumerate(rows)
    ]
    assert all(row.resolve(dataset).is_file() for row in back)
    assert scan_dataset(dataset) == rows  # the manifest itself is not taken for an image


def test_manifest_written_elsewhere_gets_paths_relative_to_itself(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs" / "study1" / "manifest.csv"
    write_manifest(scan_dataset(dataset), out)
    back = read_manifest(out)
    assert back[0].image_path == "../../data/chest_xray/Real/scan0001"
    assert all(row.resolve(out.parent).is_file() for row in back)
    # rows read from one manifest and written to another folder are rebased again
    moved = tmp_path / "elsewhere" / "copy.csv"
    write_manifest(back, moved)
    assert read_manifest(moved)[0].image_path == "../data/chest_xray/Real/scan0001"
    assert all(row.resolve(moved.parent).is_file() for row in read_manifest(moved))


def test_absolute_paths_and_extra_columns_are_kept(tmp_path: Path) -> None:
    image = put_image(tmp_path / "img" / "a.png")
    rows = [
        ManifestRow(str(image), "fundus", "real", "DRIVE", {"license": "CC-BY", "grade": "2"}),
        ManifestRow("b.png", "fundus", "synthetic", "", {"grade": "0", "note": "a, quoted"}),
    ]
    write_manifest(rows, tmp_path / "m.csv")
    lines = (tmp_path / "m.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "image_path,modality,truth,source,license,grade,note"
    assert lines[2] == 'b.png,fundus,synthetic,,,0,"a, quoted"'
    back = read_manifest(tmp_path / "m.csv")
    assert back[0].image_path == str(image) and back[0].resolve(Path("/unrelated")) == image
    assert back[0].extra == {"license": "CC-BY", "grade": "2", "note": ""}
    assert back[1].extra == {"license": "", "grade": "0", "note": "a, quoted"}


def test_far_away_paths_are_written_absolute(tmp_path: Path) -> None:
    far = ManifestRow("x.png", "fundus", "real", base_dir=Path("/opt/medlens-data"))
    write_manifest([far], tmp_path / "m.csv")
    assert read_manifest(tmp_path / "m.csv")[0].image_path == "/opt/medlens-data/x.png"


def test_reading_tolerates_bom_case_blank_lines_and_missing_source(tmp_path: Path) -> None:
    text = (
        "\ufeffimage_path, modality ,truth,site\n\na.png,fundus, Real ,Leeds\n\n b.png ,fundus,SYNTHETIC,\n"
    )
    rows = read_manifest(write_text(tmp_path / "m.csv", text))
    assert [(r.image_path, r.truth, r.source, r.extra, r.line) for r in rows] == [
        ("a.png", "real", "", {"site": "Leeds"}, 3),
        ("b.png", "synthetic", "", {"site": ""}, 5),
    ]


def test_line_numbers_count_quoted_newlines(tmp_path: Path) -> None:
    text = 'image_path,modality,truth,note\na.png,fundus,real,"two\nlines"\nb.png,fundus,fake,\n'
    assert error_of(write_text(tmp_path / "m.csv", text)).startswith(
        f"{tmp_path / 'm.csv'}, line 4, column 'truth'"
    )


# --- validation messages ---------------------------------------------------------------------------------


def test_bad_truth_value(tmp_path: Path) -> None:
    path = write_text(
        tmp_path / "manifest.csv",
        "image_path,modality,truth,source\na.png,fundus,real,\nb.png,fundus,fake,\n",
    )
    assert (
        error_of(path)
        == f"{path}, line 3, column 'truth': 'fake' is not allowed; use one of: real, synthetic"
    )


def test_missing_columns(tmp_path: Path) -> None:
    path = write_text(tmp_path / "m.csv", "path,modality\na.png,fundus\n")
    assert error_of(path) == (
        f"{path}, line 1: missing required column(s): image_path, truth; the header must include "
        "image_path, modality, truth (and optionally source), found: path, modality"
    )


def test_empty_modality_and_image_path(tmp_path: Path) -> None:
    path = write_text(tmp_path / "m.csv", "image_path,modality,truth\na.png, ,real\n")
    assert error_of(path).startswith(f"{path}, line 2, column 'modality': empty; give the modality")
    path = write_text(tmp_path / "n.csv", "image_path,modality,truth\na.png,fundus,real\n,fundus,real\n")
    assert error_of(path).startswith(f"{path}, line 3, column 'image_path': empty; give the image's path")


def test_duplicate_image_path_names_both_lines(tmp_path: Path) -> None:
    text = "image_path,modality,truth\na.png,fundus,real\nb.png,fundus,real\n./a.png,fundus,synthetic\n"
    path = write_text(tmp_path / "m.csv", text)
    assert error_of(path) == (
        f"{path}, line 4, column 'image_path': './a.png' is already listed on line 2; "
        "each image may appear once (remove one of lines 2 and 4)"
    )


def test_wrong_number_of_fields(tmp_path: Path) -> None:
    path = write_text(tmp_path / "m.csv", "image_path,modality,truth\na.png,fundus,real,extra\n")
    assert (
        error_of(path) == f"{path}, line 2: 4 fields but the header has 3; quote values that contain commas"
    )


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes("image_path,modality,truth\nfundus_ü.png,fundus,real\n".encode("latin-1"))
    assert error_of(path) == f"{path}, line 2: not UTF-8 text (byte 0xfc); save the file as UTF-8 CSV"


def test_missing_empty_and_header_only_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    assert error_of(missing).startswith(f"{missing}: file not found; create it with: python -m ingest scan")
    empty = write_text(tmp_path / "empty.csv", "")
    assert (
        error_of(empty)
        == f"{empty}: the file is empty; line 1 must be the header {','.join(MANIFEST_COLUMNS)}"
    )
    header_only = write_text(tmp_path / "h.csv", "image_path,modality,truth,source\n")
    assert error_of(header_only) == f"{header_only}: the header is there but no image rows follow"


def test_duplicate_header_column(tmp_path: Path) -> None:
    path = write_text(tmp_path / "m.csv", "image_path,modality,truth,truth\na.png,fundus,real,real\n")
    assert error_of(path) == f"{path}, line 1: column(s) truth appear more than once in the header"


# --- the shared sample set --------------------------------------------------------------------------------


def test_scan_of_the_samples(samples_dir: Path) -> None:
    rows = scan_dataset(samples_dir)
    assert len(rows) == 69
    counts = {(modality, truth): n for modality, truth, _source, n in count_table(rows)}
    assert counts == {
        ("fundus", "real"): 16,
        ("fundus", "synthetic"): 20,
        ("chest_xray", "real"): 16,
        ("chest_xray", "synthetic"): 17,
    }
    assert "chest_xray/real/nih_siim_cxr_1517875201.dcm" in {row.image_path for row in rows}
