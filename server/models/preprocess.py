"""Decode an uploaded image and turn it into what the model's weights expect.

The decode pool stops at the 8-bit RGB crop (:func:`image_to_crop`): the
engines take ``crop x crop x 3`` uint8 arrays and scale, normalise and
reorder them inside their own graph, where that arithmetic is fused into the
first layer's work instead of costing a decode thread float passes over every
pixel. :func:`normalise` is the same arithmetic in NumPy, for callers that
need the model's float input itself (calibration, tools, tests).

Both equal torchvision's ``weights.transforms()`` applied to the RGB image
(resize the shorter side, center crop, scale to [0, 1], normalise), computed
faster: only the region that survives the crop is resampled, and large JPEGs
are decoded at a reduced scale (Pillow's draft mode).
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image, ImageOps

from server.models.image_errors import (
    ImageError,
    ImageTooLargeError,
    InvalidImageError,
    UnsupportedImageFormatError,
)

__all__ = [
    "ALLOWED_FORMATS",
    "ImageError",
    "ImageTooLargeError",
    "InvalidImageError",
    "PreprocessSpec",
    "UnsupportedImageFormatError",
    "image_to_crop",
    "image_to_tensor",
    "normalise",
]

#: Formats the server accepts, by Pillow's format name.
ALLOWED_FORMATS: Final = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
#: Transparent images are composited on this background (white, as a browser shows them).
BACKGROUND_RGB: Final = (255, 255, 255)
#: Draft mode decodes at a scale that keeps at least this factor over the resized size,
#: so the final antialiased resize still has pixels to average.
_DRAFT_MARGIN: Final = 2.0
#: Past this many crops' worth of resized pixels, only the crop's box is resampled.
_MAX_INTERMEDIATE_AREA_RATIO: Final = 8
_RESAMPLE: Final = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}

# One pixel limit, ours (BATCHSERVE_MAX_IMAGE_PIXELS), checked right after the header is read
# (see ``_open``). Pillow's own (about 179 Mpx) would override a higher setting of ours and
# quote its own number, so it is switched off for the process; its warning too.
Image.MAX_IMAGE_PIXELS = None
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


@dataclass(frozen=True, slots=True)
class PreprocessSpec:
    """How the weights expect their input: sizes, normalisation and interpolation."""

    resize_size: int
    crop_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.interpolation not in _RESAMPLE:
            raise ValueError(f"interpolation must be one of {sorted(_RESAMPLE)}")


def decode(data: bytes, spec: PreprocessSpec, max_pixels: int) -> Image.Image:
    """Decode ``data`` into an upright RGB image, at a reduced scale where that is exact enough."""
    image = _open(data, max_pixels)
    try:
        # Pillow raises many exception types on malformed data; all mean "not decodable".
        if image.format == "PNG":
            _verify_chunks(data)
        if image.format == "JPEG":
            _request_draft(image, spec.resize_size)
        image.load()
        # In place: the default returns a full-size copy even when nothing turns.
        ImageOps.exif_transpose(image, in_place=True)
    except Exception as exc:
        raise InvalidImageError(f"the image could not be decoded: {exc}") from exc
    return to_rgb(image)


def crop_pixels(image: Image.Image, spec: PreprocessSpec) -> npt.NDArray[np.uint8]:
    """Resize and center crop an RGB image: its ``crop x crop x 3`` uint8 pixels."""
    return np.asarray(resize_and_crop(image, spec), dtype=np.uint8)


def normalise(pixels: npt.NDArray[np.uint8], spec: PreprocessSpec) -> torch.Tensor:
    """A crop as the model's float input: ``3 x crop x crop``, scaled to [0, 1] and normalised.

    NumPy's float32 arithmetic in torchvision's order (scale, subtract the
    mean, divide by the std), so a thread calling it never enters torch's
    OpenMP pool, whose spinning threads would compete with the forward pass.
    """
    scaled = np.asarray(pixels, dtype=np.float32) / np.float32(255.0)
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    normalised = (scaled - mean) / std
    return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))


def to_tensor(image: Image.Image, spec: PreprocessSpec) -> torch.Tensor:
    """Resize, center crop and normalise an RGB image into a ``3 x crop x crop`` tensor."""
    return normalise(crop_pixels(image, spec), spec)


def image_to_crop(data: bytes, spec: PreprocessSpec, max_pixels: int) -> npt.NDArray[np.uint8]:
    """Bytes in, the engines' input out: decode, resize and crop to uint8 RGB pixels."""
    return crop_pixels(decode(data, spec, max_pixels), spec)


def image_to_tensor(data: bytes, spec: PreprocessSpec, max_pixels: int) -> torch.Tensor:
    """Bytes in, the model's float input out: decode, then resize, crop and normalise."""
    return to_tensor(decode(data, spec, max_pixels), spec)


def resized_size(width: int, height: int, shorter: int) -> tuple[int, int]:
    """The size torchvision's ``resize(img, shorter)`` gives (longer side truncated)."""
    if width <= height:
        return shorter, int(shorter * height / width)
    return int(shorter * width / height), shorter


def resize_and_crop(image: Image.Image, spec: PreprocessSpec) -> Image.Image:
    """Resize the shorter side to ``resize_size``, then center crop, as torchvision does.

    An extreme aspect ratio (a 1x20000 strip would become a 232x4,640,000
    intermediate) resamples only the crop's box instead: Pillow then computes
    each output pixel from the same source window, equal up to 1/255 rounding.
    """
    width, height = image.size
    new_w, new_h = resized_size(width, height, spec.resize_size)
    crop = spec.crop_size
    resample = _RESAMPLE[spec.interpolation]
    box = _center_box(new_w, new_h, crop)
    if new_w * new_h <= _MAX_INTERMEDIATE_AREA_RATIO * crop * crop or new_w < crop or new_h < crop:
        # Beyond the image, PIL's crop pads with zeros, as torchvision's center_crop does.
        return image.resize((new_w, new_h), resample).crop(box)
    sx, sy = width / new_w, height / new_h
    source_box = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
    return image.resize((crop, crop), resample, box=source_box)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any supported mode to 8-bit RGB; transparency goes onto ``BACKGROUND_RGB``."""
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode.startswith("I") or image.mode == "F":
        return _high_depth_to_rgb(image)
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND_RGB, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise UnsupportedImageFormatError(f"image mode {image.mode} is not supported") from exc


def _verify_chunks(data: bytes) -> None:
    """Check every PNG chunk's CRC: Pillow checks them while opening but not while loading.

    A CRC mismatch means the file was damaged on the way; decoding it anyway
    would classify corrupted pixels. Reading the chunks costs far less than
    decoding them.
    """
    with Image.open(io.BytesIO(data), formats=("PNG",)) as image:
        image.verify()


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Exception as exc:
        raise _unopenable(data) from exc
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"the image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
        )
    if width < 1 or height < 1:
        raise InvalidImageError(f"the image has no pixels ({width}x{height})")
    return image


def _unopenable(data: bytes) -> ImageError:
    """Tell a decodable image of a refused format from bytes that are no image at all."""
    try:
        with Image.open(io.BytesIO(data)) as other:
            kind = other.format or "unknown"
    except Exception:
        return InvalidImageError("the file is not a decodable image")
    allowed = ", ".join(ALLOWED_FORMATS)
    return UnsupportedImageFormatError(f"image format {kind} is not supported; use {allowed}")


def _request_draft(image: Image.Image, shorter: int) -> None:
    width, height = image.size
    scale = _DRAFT_MARGIN * shorter / min(width, height)
    if scale < 0.5:
        image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))


def _center_box(width: int, height: int, crop: int) -> tuple[int, int, int, int]:
    left = round((width - crop) / 2.0)
    top = round((height - crop) / 2.0)
    return left, top, left + crop, top + crop


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in {"RGBA", "LA", "PA", "RGBa", "La"} or "transparency" in image.info


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer or float grey to 8 bits over the full range, not by clipping."""
    values = np.asarray(image)
    if image.mode == "F":
        eight_bit = np.clip(values, 0.0, 255.0).astype(np.uint8)
    else:
        wide = np.clip(values.astype(np.int64), 0, 65535)
        eight_bit = ((wide * 255 + 32767) // 65535).astype(np.uint8)
    return Image.fromarray(eight_bit).convert("RGB")
