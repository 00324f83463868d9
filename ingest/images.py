"""Decode medical images (PNG, JPEG, TIFF, BMP, WebP, DICOM) and prepare them for a model.

Every image sent to a model goes through `prepare_image`: decoded, converted to one colour mode,
resized to one longest side and re-encoded without metadata, so the original file's format, bit depth
and header fields cannot tell a model whether the image is real or synthetic.

Choices that change pixels:
- The file type is sniffed from the content; the extension is only used to try DICOM on
  preamble-less `.dcm` files. Only the formats above are decoded (no EPS, PDF, etc.).
- Transparent pixels (RGBA, LA, palette with transparency) are flattened onto black: fundus photographs
  and radiographs have black surroundings, so no new border colour appears.
- Greyscale deeper than 8 bits (16-bit PNG/TIFF, float TIFF) is stretched min..max to 0..255, as DICOM is
  after windowing, so a 12-bit image stored in 16 bits does not come out almost black.
- CMYK, YCbCr, LAB and HSV become RGB by Pillow's conversion (no ICC colour management).
- EXIF orientation is applied. Multi-frame files (TIFF, WebP, DICOM) give their first frame.
- JPEG DCT-domain downscaling (`draft`) is not used: every format is resized by the same LANCZOS filter.
- DICOM: modality LUT, then VOI LUT or window, then min..max to 8 bit; MONOCHROME1 inverted.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps, TiffTags, UnidentifiedImageError

from cache.untrusted import UnreadableFile, open_regular

PIL_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "WEBP")  # JPEG includes MPO (camera multi-picture)
DICOM_EXTENSIONS = frozenset({".dcm", ".dicom"})
_SIGNATURES = (
    (b"\x89PNG", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"), (b"RIFF", "WEBP"),
)  # fmt: skip
_DEEP_GREY_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_ALPHA_MODES = frozenset({"P", "PA", "RGBA", "RGBa", "LA", "La"})
# Pillow `info` keys that describe the encoding, not the picture's history or origin.
_STRUCTURAL_INFO = frozenset({
    "dpi", "gamma", "transparency", "aspect", "jfif", "jfif_version", "jfif_unit", "jfif_density",
    "adobe", "adobe_transform", "progressive", "progression", "compression", "interlace", "duration",
    "loop", "background", "resolution", "srgb", "chromaticity", "mp", "mpoffset", "mpentry",
})  # fmt: skip
_STRUCTURAL_TIFF_TAGS = frozenset({
    "ImageWidth", "ImageLength", "BitsPerSample", "Compression", "PhotometricInterpretation",
    "StripOffsets", "SamplesPerPixel", "RowsPerStrip", "StripByteCounts", "PlanarConfiguration",
    "XResolution", "YResolution", "ResolutionUnit", "TileWidth", "TileLength", "TileOffsets",
    "TileByteCounts", "SampleFormat", "ExtraSamples", "Predictor", "FillOrder", "Orientation",
})  # fmt: skip
_MAX_METADATA_KEYS = 12
#: the largest image file read at all (checked from its size before a byte is read)
MAX_FILE_BYTES = 2 << 30


class ImageError(Exception):
    """An image that cannot be used; `str()` names the file and the reason, `reason` classifies it.

    `reason` is one of: empty_file, truncated, not_an_image, not_a_file (a FIFO, socket or device
    named like an image: refused at once, never waited on), too_large (pixels or file size),
    no_pixel_data, missing_file, decode_error.
    """

    def __init__(self, path: Path | str, reason: str, text: str) -> None:
        # `text` says what is wrong; the file name is put in front unless the caller already did.
        super().__init__(text if text.startswith(f"{path}:") else f"{path}: {text}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class PrepOptions:
    """How every image is normalised before it is sent (part of the cache key via `as_params`)."""

    image_format: str = "png"  # png | jpeg
    max_side: int = 1024  # longest side in pixels after resizing; never upscaled
    color_mode: str = "RGB"  # RGB | L
    jpeg_quality: int = 90  # 1..100, used only for jpeg
    max_pixels: int = 80_000_000  # refuse images whose declared width*height exceeds this
    #: pad to a square on black, then resize to exactly max_side x max_side (up or down), so the
    #: pixel size sent can no longer tell real from synthetic (the audit's `sent_size` confound)
    square: bool = False

    def __post_init__(self) -> None:
        if self.image_format not in ("png", "jpeg"):
            raise ValueError(f"image_format {self.image_format!r} is not allowed; use png or jpeg")
        if self.color_mode not in ("RGB", "L"):
            raise ValueError(f"color_mode {self.color_mode!r} is not allowed; use RGB or L")
        if self.max_side < 1 or self.max_pixels < 1 or not 1 <= self.jpeg_quality <= 100:
            raise ValueError("max_side and max_pixels must be >= 1, jpeg_quality in 1..100")

    def as_params(self) -> dict[str, Any]:
        """The options that change the bytes sent (max_pixels only refuses, so it is left out)."""
        params: dict[str, Any] = {
            "format": self.image_format, "max_side": self.max_side, "color_mode": self.color_mode,
        }  # fmt: skip
        if self.image_format == "jpeg":
            params["quality"] = self.jpeg_quality
        if self.square:  # only when set: default keys and memo entries stay as they were
            params["square"] = True
        return params


@dataclass(frozen=True)
class PreparedImage:
    """The exact bytes sent to a model."""

    data: bytes  # encoded output, metadata-free
    mime: str  # image/png or image/jpeg
    sha256: str  # hex sha256 of `data`
    width: int
    height: int


def is_dicom(path: Path) -> bool:
    """True when the file is a regular file carrying the DICOM "DICM" magic at offset 128."""
    try:
        with open_regular(path) as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def load_image(path: Path, max_pixels: int = PrepOptions.max_pixels) -> Image.Image:
    """Decode any supported file into an 8-bit "L" or "RGB" image (see the module notes).

    Raises ImageError naming the file and the reason. Declared sizes over `max_pixels` are refused
    from the header, before any pixel is decoded.
    """
    path = Path(path)
    head = _check_file(path)
    if _looks_like_dicom(path, head):
        return _load_dicom(path, max_pixels)
    with _open_pil(path, head, max_pixels) as image:
        fmt = _format_name(image)
        try:
            image.load()
        except Exception as exc:  # decoders raise OSError, SyntaxError, ValueError, struct.error...
            raise _decode_error(path, fmt, exc) from None
        # in place: the copy exif_transpose makes otherwise costs ~7% of a 3000 px fundus; unreadable
        # EXIF: the orientation is unknown, the pixels stay as stored
        with contextlib.suppress(Exception):
            ImageOps.exif_transpose(image, in_place=True)
        return _normalise_mode(image)


def prepare_image(path: Path, options: PrepOptions = PrepOptions()) -> PreparedImage:
    """Decode, convert to `color_mode`, shrink to `max_side` (LANCZOS) and encode without metadata.

    The same input and options always give the same bytes.
    """
    image = load_image(path, max_pixels=options.max_pixels)
    image = image.convert(options.color_mode)
    image = _square(image, options.max_side) if options.square else _fit(image, options.max_side)
    data = _encode(image, options.image_format, options.jpeg_quality)
    mime = "image/png" if options.image_format == "png" else "image/jpeg"
    return PreparedImage(data, mime, hashlib.sha256(data).hexdigest(), image.width, image.height)


def prepare_with_thumbnail(path: Path, options: PrepOptions, has_thumb: Any = None) -> tuple[PreparedImage, bytes | None]:
    """`prepare_image` plus the thumbnail made from the same decoded pixels (no second decode), or
    None when ``has_thumb(sha256)`` says the store has it. The bytes are exactly `prepare_image`'s."""
    image = load_image(path, max_pixels=options.max_pixels)
    if image.mode != options.color_mode:  # convert() to the same mode is a full copy
        image = image.convert(options.color_mode)
    image = _square(image, options.max_side) if options.square else _fit(image, options.max_side)
    data = _encode(image, options.image_format, options.jpeg_quality)
    mime = "image/png" if options.image_format == "png" else "image/jpeg"
    prepared = PreparedImage(data, mime, hashlib.sha256(data).hexdigest(), image.width, image.height)
    if has_thumb is not None and has_thumb(prepared.sha256):
        return prepared, None
    if options.image_format == "png":  # lossless: the same pixels the thumbnail of the bytes would see
        return prepared, make_thumbnail(image)
    return prepared, make_thumbnail(prepared)


def make_thumbnail(image_or_prepared: Image.Image | PreparedImage | Path, max_side: int = 256) -> bytes:
    """A small metadata-free JPEG (quality 80) of a decoded image, a prepared image or a file."""
    if isinstance(image_or_prepared, PreparedImage):
        image = Image.open(io.BytesIO(image_or_prepared.data))
        image.load()
    elif isinstance(image_or_prepared, Image.Image):
        image = image_or_prepared
    else:
        image = load_image(Path(image_or_prepared))
    return _encode(_fit(_normalise_mode(image), max_side), "jpeg", 80)


def describe_file(path: Path) -> dict[str, Any]:
    """Header facts for the confound audit, read without decoding pixels.

    Keys: format, width, height, mode, bit_depth, has_metadata, metadata_keys, file_size.
    PNG text chunks placed after the image data are not seen (they are rare).
    """
    path = Path(path)
    head = _check_file(path)
    if _looks_like_dicom(path, head):
        facts = _describe_dicom(path)
    else:
        with _open_pil(path, head, max_pixels=None) as image:
            keys = _metadata_keys(image)
            facts = {
                "format": _format_name(image), "width": image.width, "height": image.height,
                "mode": image.mode, "bit_depth": _bit_depth(image, head),
                "has_metadata": bool(keys), "metadata_keys": keys[:_MAX_METADATA_KEYS],
            }  # fmt: skip
    return {**facts, "file_size": path.stat().st_size}


# --- helpers -----------------------------------------------------------------------------------------


def _check_file(path: Path) -> bytes:
    """Refuse missing, unreadable, folder, special (FIFO...), oversized and empty paths; return the
    first 132 bytes."""
    if path.is_dir():
        raise ImageError(path, "not_an_image", "is a folder, not an image file")
    try:
        with _open(path) as handle:
            head = handle.read(132)
    except FileNotFoundError:
        raise ImageError(path, "missing_file", "file not found") from None
    except OSError as exc:
        raise ImageError(path, "missing_file", f"cannot be read ({exc.strerror})") from None
    if not head:
        raise ImageError(path, "empty_file", "empty file (0 bytes)")
    return head


def _signature_format(head: bytes) -> str | None:
    return next((fmt for magic, fmt in _SIGNATURES if head.startswith(magic)), None)


def _looks_like_dicom(path: Path, head: bytes) -> bool:
    if head[128:132] == b"DICM":
        return True
    # A .dcm without preamble must at least start with a group 0002 or 0008 element.
    return path.suffix.lower() in DICOM_EXTENSIONS and head[:2] in (b"\x02\x00", b"\x08\x00")


def _format_name(image: Image.Image) -> str:
    return "JPEG" if image.format == "MPO" else str(image.format)


def _open(path: Path) -> BinaryIO:
    """A regular file of at most MAX_FILE_BYTES, opened without ever blocking (see cache.untrusted)."""
    try:
        return open_regular(path, MAX_FILE_BYTES)
    except UnreadableFile as exc:
        raise ImageError(path, exc.kind, str(exc)) from None


@contextmanager
def _open_pil(path: Path, head: bytes, max_pixels: int | None) -> Iterator[Image.Image]:
    """Open with Pillow (header only) and refuse declared sizes over `max_pixels` before decoding."""
    with _open(path) as handle:
        try:
            image = Image.open(handle, formats=PIL_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            # Pillow's own guard (warns over ~89 MP, fails over ~179 MP) fired on the header alone.
            numbers = [f"{int(n):,}" for n in re.findall(r"(\d+) pixels", str(exc))] or ["too many", "?"]
            text = f"image too large: declares {numbers[0]} pixels, Pillow refuses more than {numbers[-1]}"
            raise ImageError(path, "too_large", text) from None
        except UnidentifiedImageError:
            raise _unidentified(path, head) from None
        except Exception as exc:  # a recognised signature with a broken header
            raise _decode_error(path, _signature_format(head) or "image", exc) from None
        _check_size(path, image.size, max_pixels)
        yield image


def _check_size(path: Path, size: tuple[int, int], max_pixels: int | None) -> None:
    width, height = size
    if max_pixels is not None and width * height > max_pixels:
        text = (
            f"image too large: declares {width}x{height} = {width * height:,} pixels, "
            f"more than the limit of {max_pixels:,} (PrepOptions.max_pixels)"
        )
        raise ImageError(path, "too_large", text)


def _unidentified(path: Path, head: bytes) -> ImageError:
    fmt = _signature_format(head)
    if fmt:  # a known signature that Pillow cannot parse: the header is cut short (or corrupt)
        return ImageError(path, "truncated", f"truncated {fmt} (its header is cut short or corrupt)")
    return ImageError(path, "not_an_image", "not an image (MedLens reads PNG, JPEG, TIFF, BMP, WebP, DICOM)")


def _decode_error(path: Path, fmt: str, exc: BaseException) -> ImageError:
    detail = " ".join(str(exc).split()) or type(exc).__name__  # pydicom messages span lines
    if "truncat" in detail.lower() or "less than expected" in detail:
        return ImageError(path, "truncated", f"truncated {fmt} ({detail})")
    return ImageError(path, "decode_error", f"cannot decode {fmt} ({detail})")


def _stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map min..max linearly onto 0..255 (a constant image becomes black)."""
    values = np.asarray(values, dtype=np.float32)
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    if not high > low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = np.rint((values - low) * np.float32(255.0 / (high - low)))
    return np.nan_to_num(scaled).clip(0, 255).astype(np.uint8)


def _normalise_mode(image: Image.Image) -> Image.Image:
    """Return an 8-bit "L" or "RGB" image; alpha is flattened onto black."""
    mode = image.mode
    if mode in ("L", "RGB"):
        return image
    if mode in _DEEP_GREY_MODES:
        return Image.fromarray(_stretch_to_uint8(np.asarray(image)), "L")
    if mode in _ALPHA_MODES:
        black = Image.new("RGBA", image.size, (0, 0, 0, 255))
        flat = Image.alpha_composite(black, image.convert("RGBA")).convert("RGB")
        return flat.convert("L") if mode in ("LA", "La") else flat
    return image.convert("L" if mode == "1" else "RGB")


def fitted_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size `prepare_image` gives a width x height image: longest side capped, aspect kept."""
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    scale = max_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def _fit(image: Image.Image, max_side: int) -> Image.Image:
    """Shrink so the longest side is `max_side` (LANCZOS), keeping the aspect ratio; never upscale."""
    size = fitted_size(image.width, image.height, max_side)
    return image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)


def _square(image: Image.Image, side: int) -> Image.Image:
    """Pad to a square on black (centred; fundus and X-ray surrounds are black), then resize to
    exactly side x side with LANCZOS: every image of the run is sent at the same size."""
    longest = max(image.size)
    canvas = Image.new(image.mode, (longest, longest))  # zeros: black in L and RGB
    canvas.paste(image, ((longest - image.width) // 2, (longest - image.height) // 2))
    return canvas if longest == side else canvas.resize((side, side), Image.Resampling.LANCZOS)


def _encode(image: Image.Image, image_format: str, quality: int) -> bytes:
    """Encode a fresh copy of the pixels, so no info, EXIF or ICC profile can ride along."""
    clean = Image.frombytes(image.mode, image.size, image.tobytes())
    buffer = io.BytesIO()
    if image_format == "png":
        clean.save(buffer, format="PNG", compress_level=3)  # 3-4x faster than 6, ~same size
    else:
        clean.save(buffer, format="JPEG", quality=quality, subsampling=0, optimize=False)
    return buffer.getvalue()


def _bit_depth(image: Image.Image, head: bytes) -> int:
    if image.format == "PNG" and head[12:16] == b"IHDR":
        return head[24]  # IHDR bit depth: Pillow reads 16-bit RGB as 8-bit RGB
    if image.format == "TIFF" and 258 in getattr(image, "tag_v2", {}):
        bits = image.tag_v2[258]
        return int(bits[0] if isinstance(bits, tuple) else bits)
    return {"1": 1, "I": 32, "F": 32}.get(image.mode, 16 if image.mode.startswith("I;16") else 8)


def _metadata_keys(image: Image.Image) -> list[str]:
    """Names of metadata blocks: EXIF, ICC, XMP, comments, PNG text chunks, non-structural TIFF tags."""
    keys = {str(key)[:40] for key in image.info if key not in _STRUCTURAL_INFO}
    if image.format == "TIFF":
        names = {TiffTags.lookup(tag).name for tag in image.tag_v2}
        keys |= {f"tiff:{name}" for name in names - _STRUCTURAL_TIFF_TAGS}
    return sorted(keys)


def _load_dicom(path: Path, max_pixels: int) -> Image.Image:
    """Decode the first frame of a DICOM file to 8 bit as a viewer would show it."""
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array

    dataset = _read_dicom(path, stop_before_pixels=False)
    size = (int(dataset.get("Columns", 0)), int(dataset.get("Rows", 0)))
    if not any(tag in dataset for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        hint = f"; its header describes a {size[0]}x{size[1]} image: cut short?" if all(size) else ""
        raise ImageError(path, "no_pixel_data", f"DICOM file has no pixel data (not an image object{hint})")
    _check_size(path, size, max_pixels)
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    try:
        pixels = pixel_array(dataset, index=0)
        if photometric.startswith("MONOCHROME"):
            grey = _stretch_to_uint8(apply_voi_lut(apply_modality_lut(pixels, dataset), dataset))
            return Image.fromarray(255 - grey if photometric == "MONOCHROME1" else grey, "L")
        if photometric == "PALETTE COLOR":
            pixels = apply_color_lut(pixels, dataset)
    except Exception as exc:  # pydicom raises ValueError, RuntimeError, NotImplementedError...
        raise _decode_error(path, "DICOM", exc) from None
    rgb = pixels if pixels.dtype == np.uint8 else _stretch_to_uint8(pixels)
    return Image.fromarray(np.ascontiguousarray(rgb), "RGB")


def _read_dicom(path: Path, stop_before_pixels: bool) -> Any:
    import pydicom

    try:
        with _open(path) as handle:
            return pydicom.dcmread(handle, force=True, stop_before_pixels=stop_before_pixels)
    except ImageError:
        raise
    except Exception as exc:  # InvalidDicomError, EOFError, struct errors...
        raise _decode_error(path, "DICOM", exc) from None


def _describe_dicom(path: Path) -> dict[str, Any]:
    dataset = _read_dicom(path, stop_before_pixels=True)
    photometric = str(dataset.get("PhotometricInterpretation", "")).upper()
    bits_allocated = int(dataset.get("BitsAllocated", 8) or 8)
    if photometric.startswith("MONOCHROME"):
        mode = "L" if bits_allocated <= 8 else "I;16"
    else:
        mode = "P" if photometric == "PALETTE COLOR" else "RGB"
    keywords = sorted(e.keyword for e in dataset if e.keyword and e.tag.group not in (0x0002, 0x0028))
    return {
        "format": "DICOM", "width": int(dataset.get("Columns", 0)), "height": int(dataset.get("Rows", 0)),
        "mode": mode, "bit_depth": int(dataset.get("BitsStored", bits_allocated) or bits_allocated),
        "has_metadata": bool(keywords), "metadata_keys": [f"dicom:{k}" for k in keywords[:_MAX_METADATA_KEYS]],
    }  # fmt: skip
