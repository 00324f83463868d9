"""Image decoding and preparation: broken files, odd-but-valid files, DICOM, metadata stripping."""

from __future__ import annotations

import hashlib
import io
import resource
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageCms, PngImagePlugin
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from ingest.images import (
    ImageError,
    PreparedImage,
    PrepOptions,
    describe_file,
    fitted_size,
    load_image,
    make_thumbnail,
    prepare_image,
)

# --- helpers --------------------------------------------------------------------------------------------


def save(image: Image.Image, path: Path, format: str | None = None, **params: object) -> Path:
    image.save(path, format=format, **params)
    return path


def noise_rgb(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def png_chunk_types(data: bytes) -> list[bytes]:
    """Chunk types of a PNG, in order."""
    types, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        types.append(data[offset + 4 : offset + 8])
        offset += 12 + length
    return types


def assert_metadata_free(prepared: PreparedImage) -> Image.Image:
    """The prepared bytes reopen cleanly and carry no EXIF, ICC profile, XMP, comment or text."""
    image = Image.open(io.BytesIO(prepared.data))
    image.load()
    assert not image.getexif()
    for key in ("exif", "icc_profile", "xmp", "XML:com.adobe.xmp", "comment", "photoshop"):
        assert key not in image.info
    if prepared.mime == "image/png":
        assert image.info == {}
        assert set(png_chunk_types(prepared.data)) == {b"IHDR", b"IDAT", b"IEND"}  # no tEXt, iCCP, eXIf
    else:
        assert set(image.info) <= {"jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi"}
    assert hashlib.sha256(prepared.data).hexdigest() == prepared.sha256
    assert image.size == (prepared.width, prepared.height)
    return image


def png_with_declared_size(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose IHDR claims width x height (valid CRCs), with only a few bytes of IDAT."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    path.write_bytes(data + chunk(b"IEND", b""))
    return path


def write_dicom(path: Path, pixels: np.ndarray | None, **elements: object) -> Path:
    """A small single-frame greyscale DICOM (Secondary Capture, explicit VR little endian)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = SecondaryCaptureImageStorage
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Modality = "OT"
    dataset.PatientName = "Test^Patient"
    if pixels is not None:
        dataset.Rows, dataset.Columns = pixels.shape
        dataset.SamplesPerPixel = 1
        dataset.PhotometricInterpretation = "MONOCHROME2"
        dataset.BitsAllocated = dataset.BitsStored = 16
        dataset.HighBit = 15
        dataset.PixelRepresentation = 0
        dataset.PixelData = pixels.astype("<u2").tobytes()
    for keyword, value in elements.items():
        setattr(dataset, keyword, value)
    dataset.save_as(path, enforce_file_format=True)
    return path


def pydicom_file(name: str) -> Path:
    found = get_testdata_file(name, download=False)
    if found is None:
        pytest.skip(f"pydicom test file {name} is not installed (pydicom-data)")
    return Path(found)


# --- unusable files: each gives ImageError naming the file and a reason ---------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.png"
    with pytest.raises(ImageError) as caught:
        prepare_image(path)
    assert caught.value.reason == "missing_file"
    assert str(caught.value) == f"{path}: file not found"


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageError) as caught:
        prepare_image(path)
    assert caught.value.reason == "empty_file"
    assert str(caught.value) == f"{path}: empty file (0 bytes)"


def test_truncated_png(tmp_path: Path) -> None:
    whole = save(noise_rgb(200, 150), tmp_path / "whole.png").read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ImageError) as caught:
        prepare_image(path)
    assert caught.value.reason == "truncated"
    assert str(caught.value).startswith(f"{path}: truncated PNG (image file is truncated")


def test_png_cut_inside_its_header(tmp_path: Path) -> None:
    path = tmp_path / "stub.png"
    path.write_bytes(save(noise_rgb(), tmp_path / "a.png").read_bytes()[:20])
    with pytest.raises(ImageError) as caught:
        load_image(path)
    assert caught.value.reason == "truncated"
    assert str(caught.value).startswith(f"{path}: truncated PNG")


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("these are my notes, not a picture\n")
    with pytest.raises(ImageError) as caught:
        prepare_image(path)
    assert caught.value.reason == "not_an_image"
    assert str(caught.value).startswith(f"{path}: not an image")
    assert "PNG, JPEG, TIFF, BMP, WebP, DICOM" in str(caught.value)


def test_text_file_named_dcm_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "report.dcm"
    path.write_text("hello, this is a text file\n")
    with pytest.raises(ImageError) as caught:
        load_image(path)
    assert caught.value.reason == "not_an_image"


def test_folder_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as caught:
        load_image(tmp_path)
    assert caught.value.reason == "not_an_image"
    assert str(tmp_path) in str(caught.value)


def test_declared_30000_square_png_is_refused_before_decoding(tmp_path: Path) -> None:
    path = png_with_declared_size(tmp_path / "bomb.png", 30000, 30000)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(ImageError) as caught:
        prepare_image(path)
    elapsed = time.perf_counter() - started
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert caught.value.reason == "too_large"
    assert str(caught.value).startswith(f"{path}: image too large: declares 900,000,000 pixels")
    assert elapsed < 1.0
    assert grown_kb < 100_000  # 30000x30000 RGB would need 2.7 GB


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_declared_size_over_our_limit_names_width_and_height(tmp_path: Path) -> None:
    path = png_with_declared_size(tmp_path / "big.png", 12000, 9000)  # 108 MP: Pillow only warns
    with pytest.raises(ImageError) as caught:
        prepare_image(path)
    assert caught.value.reason == "too_large"
    assert "declares 12000x9000 = 108,000,000 pixels, more than the limit of 80,000,000" in str(caught.value)


def test_max_pixels_option_applies(tmp_path: Path) -> None:
    path = save(noise_rgb(100, 100), tmp_path / "a.png")
    with pytest.raises(ImageError) as caught:
        prepare_image(path, PrepOptions(max_pixels=5000))
    assert caught.value.reason == "too_large"
    assert "100x100 = 10,000 pixels" in str(caught.value)


def test_dicom_without_pixel_data(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "header_only.dcm", None)
    with pytest.raises(ImageError) as caught:
        prepare_image(path)
    assert caught.value.reason == "no_pixel_data"
    assert str(caught.value).startswith(f"{path}: DICOM file has no pixel data")


def test_truncated_dicom(tmp_path: Path) -> None:
    whole = write_dicom(tmp_path / "whole.dcm", np.zeros((10, 10))).read_bytes()
    cut_in_pixels = tmp_path / "cut_in_pixels.dcm"
    cut_in_pixels.write_bytes(whole[:-50])
    with pytest.raises(ImageError) as caught:
        load_image(cut_in_pixels)
    assert caught.value.reason == "truncated"
    assert str(caught.value).startswith(
        f"{cut_in_pixels}: truncated DICOM (The number of bytes of pixel data"
    )
    cut_in_header = tmp_path / "cut_in_header.dcm"
    cut_in_header.write_bytes(whole[: whole.index(b"\xe0\x7f\x10\x00")])  # just before (7FE0,0010)
    with pytest.raises(ImageError) as caught:
        load_image(cut_in_header)
    assert caught.value.reason == "no_pixel_data"
    assert "its header describes a 10x10 image: cut short?" in str(caught.value)


def test_dicom_too_large_is_refused_from_its_header(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "small.dcm", np.zeros((4, 4)), Rows=20000, Columns=20000)
    with pytest.raises(ImageError) as caught:
        load_image(path)
    assert caught.value.reason == "too_large"
    assert "20000x20000" in str(caught.value)


# --- odd but valid files ---------------------------------------------------------------------------------


def test_16_bit_greyscale_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (8, 1))
    path = save(Image.fromarray(ramp), tmp_path / "deep.png")
    assert describe_file(path)["bit_depth"] == 16
    out = np.asarray(Image.open(io.BytesIO(prepare_image(path, PrepOptions(color_mode="L")).data)))
    assert out.min() == 0 and out.max() == 255
    assert len(np.unique(out)) > 200  # clipping at 255 would leave a few values
    assert abs(int(out[0, 128]) - 128) <= 1
    assert np.all(np.diff(out[0].astype(int)) >= 0)


def test_12_bit_values_in_16_bit_png_fill_the_range(tmp_path: Path) -> None:
    ramp = np.tile(np.arange(0, 4096, 16, dtype=np.uint16), (4, 1))
    out = np.asarray(load_image(save(Image.fromarray(ramp), tmp_path / "cr.png")))
    assert out.min() == 0 and out.max() == 255


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (40, 30), (0, 255, 255, 0))  # pure red in CMYK
    path = save(cmyk, tmp_path / "print.jpg", quality=95)
    with Image.open(path) as opened:
        assert opened.mode == "CMYK"
    image = assert_metadata_free(prepare_image(path))
    red, green, blue = image.convert("RGB").getpixel((20, 15))
    assert red > 230 and green < 30 and blue < 30


def test_png_saved_as_jpg_is_read_by_content(tmp_path: Path) -> None:
    original = noise_rgb()
    path = save(original, tmp_path / "mislabelled.jpg", format="PNG")
    prepared = prepare_image(path)
    assert describe_file(path)["format"] == "PNG"
    assert np.array_equal(np.asarray(assert_metadata_free(prepared)), np.asarray(original))


def test_one_pixel_image(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (1, 1), (10, 20, 30)), tmp_path / "dot.png")
    prepared = prepare_image(path)
    assert (prepared.width, prepared.height) == (1, 1)
    assert assert_metadata_free(prepared).getpixel((0, 0)) == (10, 20, 30)


def test_file_name_with_spaces_and_non_ascii(tmp_path: Path) -> None:
    path = save(noise_rgb(), tmp_path / "fundus ü 1.png")
    prepared = prepare_image(path)
    assert (prepared.width, prepared.height) == (64, 48)
    assert_metadata_free(prepared)
    with pytest.raises(ImageError) as caught:
        load_image(tmp_path / "fundus ü 2.png")
    assert "fundus ü 2.png" in str(caught.value)


def test_png_with_one_megabyte_text_chunk(tmp_path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "x" * 1_000_000)
    info.add_text("Software", "StyleGAN2 sampler")
    path = save(noise_rgb(), tmp_path / "chatty.png", pnginfo=info)
    assert path.stat().st_size > 1_000_000
    described = describe_file(path)
    assert described["has_metadata"] and {"Comment", "Software"} <= set(described["metadata_keys"])
    prepared = prepare_image(path)
    assert len(prepared.data) < 20_000
    assert b"StyleGAN2" not in prepared.data
    assert_metadata_free(prepared)


def test_jpeg_exif_and_icc_are_stripped_and_orientation_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    exif[0x010F] = "FundusCam Inc."
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = save(noise_rgb(60, 20), tmp_path / "camera.jpg", exif=exif, icc_profile=icc)
    described = describe_file(path)
    assert described["has_metadata"] and {"exif", "icc_profile"} <= set(described["metadata_keys"])
    for options in (PrepOptions(), PrepOptions(image_format="jpeg")):
        prepared = prepare_image(path, options)
        assert (prepared.width, prepared.height) == (20, 60)  # rotated upright
        assert b"FundusCam" not in prepared.data
        assert_metadata_free(prepared)


def test_rgba_is_flattened_on_black(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (4, 4), (200, 100, 50, 0))
    rgba.putpixel((0, 0), (200, 100, 50, 255))
    image = load_image(save(rgba, tmp_path / "alpha.png"))
    assert image.mode == "RGB"
    assert image.getpixel((1, 1)) == (0, 0, 0)
    assert image.getpixel((0, 0)) == (200, 100, 50)


def test_la_and_palette_with_transparency(tmp_path: Path) -> None:
    grey_alpha = Image.new("LA", (3, 3), (180, 0))
    assert load_image(save(grey_alpha, tmp_path / "la.png")).getpixel((0, 0)) == 0
    palette = Image.new("P", (3, 3), 1)
    palette.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    image = load_image(save(palette, tmp_path / "p.png", transparency=1))
    assert image.mode == "RGB" and image.getpixel((1, 1)) == (0, 0, 0)


@pytest.mark.parametrize("fmt,suffix", [("TIFF", ".tif"), ("BMP", ".bmp"), ("WEBP", ".webp")])
def test_other_formats(tmp_path: Path, fmt: str, suffix: str) -> None:
    params = {"lossless": True} if fmt == "WEBP" else {}
    original = noise_rgb()
    path = save(original, tmp_path / f"image{suffix}", format=fmt, **params)
    assert np.array_equal(np.asarray(load_image(path)), np.asarray(original))
    assert describe_file(path)["format"] == fmt


# --- preparation: size, determinism, options, thumbnails -------------------------------------------------


def test_resize_keeps_aspect_and_never_upscales(tmp_path: Path) -> None:
    wide = save(noise_rgb(3000, 1500), tmp_path / "wide.png", compress_level=0)
    prepared = prepare_image(wide, PrepOptions(max_side=1024))
    assert (prepared.width, prepared.height) == (1024, 512)
    tall = prepare_image(save(noise_rgb(300, 1001), tmp_path / "tall.png"), PrepOptions(max_side=100))
    assert (tall.width, tall.height) == (30, 100)
    small = prepare_image(save(noise_rgb(100, 50), tmp_path / "small.png"), PrepOptions(max_side=1024))
    assert (small.width, small.height) == (100, 50)
    assert fitted_size(2997, 2880, 1024) == (1024, 984)


def test_same_input_twice_gives_same_bytes(tmp_path: Path) -> None:
    path = save(noise_rgb(500, 400), tmp_path / "a.jpg", quality=85)
    for options in (PrepOptions(max_side=256), PrepOptions(image_format="jpeg", color_mode="L")):
        first, second = prepare_image(path, options), prepare_image(path, options)
        assert first.sha256 == second.sha256 and first.data == second.data
    assert prepare_image(path).sha256 != prepare_image(path, PrepOptions(max_side=256)).sha256


def test_jpeg_greyscale_output(tmp_path: Path) -> None:
    prepared = prepare_image(save(noise_rgb(), tmp_path / "a.png"), PrepOptions("jpeg", color_mode="L"))
    assert prepared.mime == "image/jpeg"
    image = assert_metadata_free(prepared)
    assert image.format == "JPEG" and image.mode == "L"


def test_options_validate_and_give_cache_params() -> None:
    assert PrepOptions().as_params() == {"format": "png", "max_side": 1024, "color_mode": "RGB"}
    jpeg = PrepOptions(image_format="jpeg", jpeg_quality=80, max_side=512, color_mode="L")
    assert jpeg.as_params() == {"format": "jpeg", "max_side": 512, "color_mode": "L", "quality": 80}
    with pytest.raises(ValueError, match="use png or jpeg"):
        PrepOptions(image_format="gif")
    with pytest.raises(ValueError, match="use RGB or L"):
        PrepOptions(color_mode="CMYK")
    with pytest.raises(ValueError):
        PrepOptions(max_side=0)


def test_thumbnail_from_prepared_image_and_file(tmp_path: Path) -> None:
    path = save(noise_rgb(1000, 500), tmp_path / "a.png")
    for source in (prepare_image(path), path, load_image(path)):
        thumb = Image.open(io.BytesIO(make_thumbnail(source)))
        assert thumb.format == "JPEG" and thumb.size == (256, 128)
        assert "exif" not in thumb.info and "icc_profile" not in thumb.info


# --- DICOM -----------------------------------------------------------------------------------------------


def window_ramp() -> np.ndarray:
    return np.tile(np.arange(0, 4000, 10, dtype=np.uint16), (5, 1))  # 0..3990 across 400 columns


def test_dicom_window_is_applied(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "w.dcm", window_ramp(), WindowCenter=1000, WindowWidth=200)
    out = np.asarray(load_image(path))
    assert out.shape == (5, 400)
    assert out[0, 0] == 0 and out[0, 80] == 0  # 800: below the window
    assert out[0, 120] == 255 and out[0, 399] == 255  # 1200 and above: over it
    assert 120 <= out[0, 100] <= 135  # 1000: the centre


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    window = {"WindowCenter": 1000, "WindowWidth": 200}
    normal = write_dicom(tmp_path / "m2.dcm", window_ramp(), **window)
    inverted = write_dicom(
        tmp_path / "m1.dcm", window_ramp(), PhotometricInterpretation="MONOCHROME1", **window
    )
    plain, flipped = np.asarray(load_image(normal)), np.asarray(load_image(inverted))
    assert flipped[0, 0] == 255 and flipped[0, 399] == 0  # low values are white in MONOCHROME1
    assert np.array_equal(flipped, 255 - plain)


def test_modality_lut_is_applied_before_window(tmp_path: Path) -> None:
    # stored 0..3990 with slope 1, intercept -1000 gives -1000..2990; window 0 +- 100 around stored 1000
    path = write_dicom(
        tmp_path / "ct.dcm",
        window_ramp(),
        RescaleSlope=1,
        RescaleIntercept=-1000,
        WindowCenter=0,
        WindowWidth=200,
    )
    out = np.asarray(load_image(path))
    assert out[0, 80] == 0 and out[0, 120] == 255 and 120 <= out[0, 100] <= 135


def test_dicom_found_by_magic_whatever_the_name(tmp_path: Path) -> None:
    data = pydicom_file("CT_small.dcm").read_bytes()
    for name in ("scan.png", "scan"):
        (tmp_path / name).write_bytes(data)
        assert load_image(tmp_path / name).size == (128, 128)
        assert describe_file(tmp_path / name)["format"] == "DICOM"


@pytest.mark.parametrize("name,size", [("CT_small.dcm", (128, 128)), ("MR_small.dcm", (64, 64))])
def test_bundled_dicom_files(name: str, size: tuple[int, int]) -> None:
    prepared = prepare_image(pydicom_file(name))
    image = assert_metadata_free(prepared)
    assert image.size == size
    grey = np.asarray(image.convert("L"))
    assert grey.min() == 0 and grey.max() == 255
    assert b"DICM" not in prepared.data


def test_multiframe_dicom_gives_first_frame() -> None:
    path = pydicom_file("emri_small.dcm")
    assert int(pydicom.dcmread(path).NumberOfFrames) == 10
    assert load_image(path).size == (64, 64)


def test_real_monochrome1_radiograph() -> None:
    path = pydicom_file("RG1_UNCR.dcm")
    described = describe_file(path)
    assert (described["format"], described["width"], described["height"]) == ("DICOM", 1841, 1955)
    assert described["has_metadata"] and described["bit_depth"] == 15
    prepared = prepare_image(path, PrepOptions(color_mode="L"))
    assert (prepared.width, prepared.height) == (964, 1024)
    out = np.asarray(assert_metadata_free(prepared))
    # Shown the right way round (MONOCHROME1 inverted), air-filled lungs are dark and the mediastinum
    # over the spine is bright; without the inversion it would be the other way about.
    left_lung, right_lung = out[250:450, 180:330].mean(), out[250:450, 640:790].mean()
    mediastinum = out[250:600, 450:510].mean()
    assert mediastinum > left_lung + 60 and mediastinum > right_lung + 60


def test_describe_dicom_header(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "d.dcm", window_ramp())
    described = describe_file(path)
    assert described["format"] == "DICOM" and described["mode"] == "I;16" and described["bit_depth"] == 16
    assert "dicom:PatientName" in described["metadata_keys"]
    assert described["file_size"] == path.stat().st_size


# --- the shared sample set --------------------------------------------------------------------------------


@pytest.mark.slow
def test_all_samples_prepare(samples_dir: Path) -> None:
    files = sorted(p for p in samples_dir.rglob("*") if p.suffix.lower() in {".png", ".jpg", ".dcm"})
    assert len(files) == 69
    sizes = {}
    for path in files:
        prepared = prepare_image(path)
        assert max(prepared.width, prepared.height) <= 1024
        sizes[path.name] = (prepared.width, prepared.height)
    assert sizes["nih_siim_cxr_1517875201.dcm"] == (1024, 1024)
    assert sizes["chasedb1_image_01l.jpg"] == (1024, 984)


def test_square_sends_every_image_at_one_size(tmp_path: Path) -> None:
    """--square pads on black and resizes to exactly max_side x max_side, up or down."""
    wide, small = tmp_path / "wide.png", tmp_path / "small.png"
    Image.new("RGB", (300, 100), (200, 200, 200)).save(wide)
    Image.new("RGB", (40, 40), (90, 90, 90)).save(small)
    options = PrepOptions(max_side=128, square=True)
    for path in (wide, small):
        prepared = prepare_image(path, options)
        assert (prepared.width, prepared.height) == (128, 128)
    out = Image.open(io.BytesIO(prepare_image(wide, options).data)).convert("RGB")
    assert out.getpixel((64, 2)) == (0, 0, 0) and out.getpixel((64, 64)) == (200, 200, 200)
    assert options.as_params()["square"] is True and "square" not in PrepOptions().as_params()
    plain = prepare_image(wide, PrepOptions(max_side=128))
    assert (plain.width, plain.height) == (128, 43)
