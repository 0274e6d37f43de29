"""Pixel-level helpers shared by sources, augmentation and writers.

Images travel through the pipeline as ``uint8`` numpy arrays: ``(H, W)`` for mode ``L``
and ``(H, W, 3)`` for ``RGB``. Every dataset is normalised to one of those two modes.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import IO, Literal

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.core.errors import SourceError

Mode = Literal["L", "RGB"]

# Pillow modes that carry colour; everything else is reduced to grayscale.
_COLOUR_MODES = {"RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "P", "PA", "La"}


def dataset_mode(pil_modes: set[str]) -> Mode:
    """The one mode a dataset is normalised to: RGB if any image has colour, else L."""
    return "RGB" if pil_modes & _COLOUR_MODES else "L"


def to_array(image: Image.Image, mode: Mode) -> np.ndarray:
    """Convert a Pillow image to a uint8 array in ``mode``, honouring EXIF orientation.

    Transparent pixels are composited on black so that the result does not depend on
    whatever colour the encoder left under alpha.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(image, dtype=np.uint32)
        image = Image.fromarray((wide >> 8).clip(0, 255).astype(np.uint8), mode="L")
    if image.mode == "P" or image.mode.endswith("A") or image.mode == "La":
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert(mode), dtype=np.uint8)


def array_mode(pixels: np.ndarray) -> Mode:
    """The mode of a pipeline array (see module docstring)."""
    return "L" if pixels.ndim == 2 else "RGB"


def shape_text(shape: tuple[int, ...]) -> str:
    """A pipeline array's size as text, width first: ``32x24``, ``32x24x3`` for colour."""
    return f"{shape[1]}x{shape[0]}" + (f"x{shape[2]}" if len(shape) > 2 else "")


def content_sha256(pixels: np.ndarray) -> str:
    """sha256 of decoded content: shape header plus raw pixel bytes.

    Two files that decode to the same pixels have the same hash, whatever the encoding.
    """
    header = f"{array_mode(pixels)}:{pixels.shape[0]}x{pixels.shape[1]}:".encode()
    return hashlib.sha256(header + np.ascontiguousarray(pixels).tobytes()).hexdigest()


ImageFormat = Literal["png", "webp", "jpeg"]
EXTENSIONS: dict[str, str] = {"png": ".png", "webp": ".webp", "jpeg": ".jpg"}
MIME_TYPES: dict[str, str] = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg"}


def encode_image(
    pixels: np.ndarray,
    image_format: ImageFormat = "png",
    compress_level: int = 6,
    quality: int | None = None,
) -> bytes:
    """The bytes of a pipeline array: PNG (zlib ``compress_level``), WebP (lossless, or lossy
    at ``quality``) or JPEG (at ``quality``, which it needs; 4:2:0 chroma for colour,
    OpenCV's default).

    OpenCV's encoders: for 28x28 and 32x32 images its PNG encoder is 1.4-2.4x faster than
    Pillow's at the same level and size. WebP has no grayscale, so an ``L`` image is
    stored as three equal channels (readers convert back). Deterministic for equal input
    on the same OpenCV build (:func:`encoder_versions` names its codecs).
    """
    bgr = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    if image_format == "png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, compress_level]
    elif image_format == "jpeg":
        if quality is None:
            raise ValueError("JPEG has no lossless mode: encode_image needs a quality (1-100)")
        params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    else:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR) if bgr.ndim == 2 else bgr
        params = [cv2.IMWRITE_WEBP_QUALITY, 101 if quality is None else quality]  # above 100: lossless
    ok, encoded = cv2.imencode(EXTENSIONS[image_format], np.ascontiguousarray(bgr), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {pixels.shape} image as {image_format}")
    return encoded.tobytes()


def encoder_versions(image_format: ImageFormat) -> dict[str, str]:
    """The encoder behind ``image_format``: OpenCV's version and, from its build information,
    the codec library it was built with (libjpeg-turbo, libwebp). A lossy encoder's bytes
    change with these, so they enter the version id of a lossy version."""
    codec = {"png": "PNG", "webp": "WEBP", "jpeg": "JPEG"}[image_format]
    line = next(
        (
            text.split(":", 1)[1].strip()
            for text in cv2.getBuildInformation().splitlines()
            if text.strip().startswith(f"{codec}:")
        ),
        "unknown",
    )
    return {"opencv": cv2.__version__, "codec": line}


def header_mode(source: str | Path | IO[bytes], where: str) -> str:
    """The Pillow mode of an encoded image, reading only its header.

    Raises:
        SourceError: not an image, or a size over Pillow's decompression-bomb limit.
    """
    try:
        with Image.open(source) as image:
            return image.mode
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise SourceError(f"{where}: cannot read image: {exc}") from None


def header_modes(paths: list[str] | list[Path], skip_bad: bool = False) -> set[str]:
    """The Pillow modes of image files (see :func:`header_mode`); with ``skip_bad``, of
    the readable ones (the others are quarantined when decoded)."""
    modes = set()
    for path in paths:
        try:
            modes.add(header_mode(path, str(path)))
        except SourceError:
            if not skip_bad:
                raise
    return modes


def decode_image(
    source: str | Path | IO[bytes], mode: Mode, where: str, draft: tuple[int, int] | None = None
) -> np.ndarray:
    """Decode an encoded image into a pipeline array in ``mode``.

    Images over Pillow's pixel limit are refused before decoding (decompression bombs).
    With ``draft`` (height, width), a JPEG may be decoded at a reduced scale (1/2, 1/4 or
    1/8) that still covers twice that size on each side, as Pillow's ``thumbnail`` does: a
    large photo that is resized anyway decodes several times faster.

    Raises:
        SourceError: the file is not a decodable image; the message names ``where``.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                if draft is not None:
                    side = 2 * max(draft)  # either orientation: EXIF may turn the image
                    image.draft(None, (side, side))
                image.load()
                return to_array(image, mode)
    except (
        OSError,
        ValueError,
        UnidentifiedImageError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        raise SourceError(f"{where}: cannot decode image: {exc}") from None


Fit = Literal["crop", "pad", "stretch"]


def resize_to(pixels: np.ndarray, size: tuple[int, int], fit: Fit) -> np.ndarray:
    """``pixels`` at ``size`` (height, width), bicubic with antialiasing (Pillow); unchanged
    when already that size.

    ``crop`` scales the image to cover the size and cuts out the centre (torchvision's
    Resize then CenterCrop), ``pad`` scales it to fit inside and centres it on black,
    ``stretch`` scales each side on its own.
    """
    height, width = size
    if pixels.shape[:2] == (height, width):
        return pixels
    image = Image.fromarray(pixels)
    if fit == "crop":
        image = ImageOps.fit(image, (width, height), Image.Resampling.BICUBIC)
    elif fit == "pad":
        image = ImageOps.pad(image, (width, height), Image.Resampling.BICUBIC, color=0)
    else:
        image = image.resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8)
