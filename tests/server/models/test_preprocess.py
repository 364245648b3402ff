"""Preprocessing equals torchvision's transforms; every mode, orientation and size is handled."""

from __future__ import annotations

import io
import time
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models import get_model, get_model_weights

from server.models.preprocess import (
    BACKGROUND_RGB,
    ImageTooLargeError,
    InvalidImageError,
    PreprocessSpec,
    UnsupportedImageFormatError,
    decode,
    image_to_crop,
    image_to_tensor,
    normalise,
    resize_and_crop,
    resized_size,
    to_rgb,
)
from server.models.torchvision_models import weights_preprocessing
from tests.conftest import DATA, PHOTOS, photo

WEIGHTS = get_model_weights("resnet50").DEFAULT
SPEC = weights_preprocessing(WEIGHTS)
LIMIT = 50_000_000
# One step of 8-bit rounding, in normalised units.
ONE_LEVEL = 1 / 255 / min(SPEC.std)


def _reference(image: Image.Image) -> torch.Tensor:
    return WEIGHTS.transforms()(image)


def _encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _gradient(width: int = 300, height: int = 200) -> Image.Image:
    """An asymmetric RGB picture, so every flip and rotation shows."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    rgb = np.stack([x + 0 * y, y + 0 * x, (x * y) / 255], axis=2).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


@pytest.mark.parametrize("name", [p for p in PHOTOS if p != "horse_rgba.png"])
def test_equals_torchvision_transforms_on_real_photos(name: str) -> None:
    ours = image_to_tensor(photo(name), SPEC, LIMIT)
    reference = _reference(Image.open(DATA / name).convert("RGB"))
    assert ours.shape == reference.shape == (3, 224, 224)
    assert (ours - reference).abs().max().item() < 1e-5


@pytest.mark.parametrize("name", PHOTOS)
def test_the_decode_pool_hands_over_the_uint8_crop_the_tensor_is_made_of(name: str) -> None:
    crop = image_to_crop(photo(name), SPEC, LIMIT)
    assert crop.dtype == np.uint8
    assert crop.shape == (224, 224, 3)
    assert torch.equal(normalise(crop, SPEC), image_to_tensor(photo(name), SPEC, LIMIT))


def test_transparent_photo_equals_torchvision_on_the_documented_background() -> None:
    rgba = Image.open(DATA / "horse_rgba.png").convert("RGBA")
    background = Image.new("RGBA", rgba.size, (*BACKGROUND_RGB, 255))
    reference = _reference(Image.alpha_composite(background, rgba).convert("RGB"))
    ours = image_to_tensor(photo("horse_rgba.png"), SPEC, LIMIT)
    assert (ours - reference).abs().max().item() < 1e-5


def test_a_large_jpeg_is_decoded_in_draft_mode_close_to_the_full_decode() -> None:
    data = photo("rocket_12mp.jpg")
    drafted = decode(data, SPEC, LIMIT)
    assert max(drafted.size) < 4000  # decoded at a reduced scale
    assert min(drafted.size) >= 2 * SPEC.resize_size
    ours = image_to_tensor(data, SPEC, LIMIT)
    reference = _reference(Image.open(DATA / "rocket_12mp.jpg").convert("RGB"))
    assert (ours - reference).abs().mean().item() < 0.01
    torch.manual_seed(0)
    model = get_model("mobilenet_v2", weights=None).eval()
    with torch.inference_mode():
        logits = model(torch.stack([ours, reference]))
    assert logits[0].argmax() == logits[1].argmax()


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_orientation_gives_the_upright_answer(orientation: int) -> None:
    upright = _gradient()
    # Store the picture as a camera would: pixels turned, the tag saying how to undo it.
    # Each transpose below is the inverse of the one the tag asks for.
    undo = {
        2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_270,
    }  # fmt: skip
    stored = upright.transpose(undo[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(stored, "PNG", exif=exif.tobytes())
    expected = image_to_tensor(_encode(upright), SPEC, LIMIT)
    assert (image_to_tensor(data, SPEC, LIMIT) - expected).abs().max().item() < 1e-5


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (64, 48), 128),
        Image.new("LA", (64, 48), (128, 255)),
        Image.new("1", (64, 48), 1),
        Image.new("CMYK", (64, 48), (0, 0, 0, 0)),
        Image.new("P", (64, 48), 3),
        Image.new("RGBA", (64, 48), (10, 20, 30, 255)),
    ],
    ids=lambda image: image.mode,
)
def test_every_mode_becomes_rgb(image: Image.Image) -> None:
    fmt = "TIFF" if image.mode == "CMYK" else "PNG"
    rgb = decode(_encode(image, fmt), SPEC, LIMIT)
    assert rgb.mode == "RGB"
    assert image_to_tensor(_encode(image, fmt), SPEC, LIMIT).shape == (3, 224, 224)


def test_cmyk_white_is_rgb_white() -> None:
    rgb = decode(_encode(Image.new("CMYK", (8, 8), (0, 0, 0, 0)), "TIFF"), SPEC, LIMIT)
    assert rgb.getpixel((0, 0)) == (255, 255, 255)


def test_transparency_is_composited_on_the_documented_background() -> None:
    rgba = Image.new("RGBA", (16, 16), (200, 0, 0, 0))
    assert to_rgb(rgba).getpixel((0, 0)) == BACKGROUND_RGB
    half = Image.new("RGBA", (16, 16), (0, 0, 0, 128))
    assert to_rgb(half).getpixel((0, 0)) == (127, 127, 127)


def test_palette_transparency_is_composited() -> None:
    palette = Image.new("P", (16, 16), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    data = _encode(palette, "PNG", transparency=1)
    assert decode(data, SPEC, LIMIT).getpixel((0, 0)) == BACKGROUND_RGB


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    rgb = decode(_encode(image, "PNG"), SPEC, LIMIT)
    assert [rgb.getpixel((x, 0))[0] for x in range(4)] == [0, 1, 128, 255]


def test_float_grey_is_clipped_to_the_byte_range() -> None:
    image = Image.fromarray(np.array([[-5.0, 100.0, 300.0]], dtype=np.float32))
    assert [to_rgb(image).getpixel((x, 0))[0] for x in range(3)] == [0, 100, 255]


def test_an_animated_gif_uses_its_first_frame() -> None:
    with Image.open(DATA / "animated.gif") as gif:
        assert getattr(gif, "n_frames", 1) > 1
        first = gif.convert("RGB")
    expected = _reference(first)
    assert (image_to_tensor(photo("animated.gif"), SPEC, LIMIT) - expected).abs().max() < 1e-5


def test_a_one_pixel_image_is_served() -> None:
    assert image_to_tensor(_encode(Image.new("RGB", (1, 1), "blue")), SPEC, LIMIT).shape == (
        3,
        224,
        224,
    )


def test_an_extreme_aspect_ratio_stays_cheap_and_close_to_torchvision() -> None:
    strip = _gradient(2000, 40)
    started = time.perf_counter()
    ours = image_to_tensor(_encode(strip), SPEC, LIMIT)
    assert time.perf_counter() - started < 5
    reference = _reference(strip)
    assert (ours - reference).abs().max().item() <= ONE_LEVEL + 1e-5
    assert image_to_tensor(_encode(Image.new("L", (1, 20000))), SPEC, LIMIT).shape == (3, 224, 224)


def test_resized_size_matches_torchvision_truncation() -> None:
    assert resized_size(451, 300, 232) == (348, 232)
    assert resized_size(300, 451, 232) == (232, 348)
    assert resized_size(10, 10, 232) == (232, 232)


def test_a_resize_smaller_than_the_crop_is_padded_like_torchvision() -> None:
    spec = PreprocessSpec(16, 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    out = resize_and_crop(Image.new("RGB", (20, 20), "white"), spec)
    assert out.size == (32, 32)
    assert out.getpixel((0, 0)) == (0, 0, 0)


def test_a_pixel_bomb_is_refused_from_the_header_before_decoding() -> None:
    bomb = _encode(Image.new("1", (10_000, 10_000)), "PNG")
    with pytest.raises(ImageTooLargeError, match=r"10000x10000 = 100000000 pixels"):
        decode(bomb, SPEC, LIMIT)
    with pytest.raises(ImageTooLargeError):
        decode(_encode(Image.new("L", (100, 100))), SPEC, max_pixels=9_999)


@pytest.mark.parametrize(
    "data", [b"", b"plain text", bytes(range(256)), b"\x89PNG\r\n\x1a\n" + b"\0" * 40]
)
def test_bytes_that_are_no_image_are_invalid(data: bytes) -> None:
    with pytest.raises(InvalidImageError):
        image_to_tensor(data, SPEC, LIMIT)


def test_a_truncated_jpeg_is_invalid() -> None:
    data = photo("cat.jpg")
    with pytest.raises(InvalidImageError, match="could not be decoded"):
        image_to_tensor(data[: len(data) // 3], SPEC, LIMIT)


def test_a_decodable_format_outside_the_allow_list_is_unsupported() -> None:
    with pytest.raises(UnsupportedImageFormatError, match=r"^image format PPM is not supported"):
        image_to_tensor(_encode(Image.new("RGB", (8, 8)), "PPM"), SPEC, LIMIT)


def test_a_spec_refuses_an_unknown_interpolation() -> None:
    with pytest.raises(ValueError, match="interpolation must be one of"):
        PreprocessSpec(256, 224, (0, 0, 0), (1, 1, 1), interpolation="lanczos")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_every_allowed_format_is_decoded(fmt: str) -> None:
    image = _gradient(80, 60)
    data = _encode(image.convert("P") if fmt == "GIF" else image, fmt)
    assert image_to_tensor(data, SPEC, LIMIT).shape == (3, 224, 224)


def test_a_png_with_corrupted_compressed_data_is_invalid() -> None:
    data = bytearray(_encode(_gradient(64, 64), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 20 : idat + 40] = bytes(20)
    with pytest.raises(InvalidImageError):
        image_to_tensor(bytes(data), SPEC, LIMIT)


def test_a_png_whose_chunk_crc_does_not_match_is_invalid() -> None:
    """Pixels intact, only the IDAT's CRC changed: Pillow alone would decode it."""
    data = bytearray(_encode(_gradient(64, 64), "PNG"))
    length_at = data.index(b"IDAT") - 4
    crc_at = length_at + 8 + int.from_bytes(data[length_at : length_at + 4], "big")
    data[crc_at : crc_at + 4] = bytes(b ^ 0xFF for b in data[crc_at : crc_at + 4])
    with Image.open(io.BytesIO(bytes(data))) as unchecked:
        unchecked.load()  # proof that loading alone does not notice
    with pytest.raises(InvalidImageError, match="could not be decoded"):
        image_to_tensor(bytes(data), SPEC, LIMIT)


def chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body).to_bytes(4, "big")
    return len(body).to_bytes(4, "big") + kind + body + crc


def _header_only_png(width: int, height: int) -> bytes:
    """A well-formed 8-bit grey IHDR, then the start of an IDAT and nothing more."""
    size = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    ihdr = chunk(b"IHDR", size + bytes([8, 0, 0, 0, 0]))
    return b"\x89PNG\r\n\x1a\n" + ihdr + chunk(b"IDAT", zlib.compress(bytes(64)))


def test_a_header_only_pixel_bomb_is_too_large_not_invalid() -> None:
    bomb = _header_only_png(100_000, 100_000)
    ihdr = bomb[8:33]
    with pytest.raises(ImageTooLargeError, match=rf"= 10000000000 pixels; the limit is {LIMIT}$"):
        decode(bomb, SPEC, LIMIT)
    smaller = bomb.replace(ihdr, chunk(b"IHDR", (9_000).to_bytes(4, "big") * 2 + ihdr[16:21]))
    with pytest.raises(ImageTooLargeError, match="9000x9000"):
        decode(smaller, SPEC, LIMIT)


def test_a_pixel_limit_above_pillows_own_is_honoured() -> None:
    """Pillow refuses over ~179 Mpx by itself; with a higher limit of ours, ours decides."""
    ours = 300_000_000
    bomb = _header_only_png(15_000, 15_000)  # 225 Mpx: over Pillow's limit, under ours
    with pytest.raises(InvalidImageError, match="could not be decoded"):
        decode(bomb, SPEC, ours)  # opened and measured; only the missing data stops it
    with pytest.raises(ImageTooLargeError, match=r"the limit is 200000000$"):
        decode(bomb, SPEC, 200_000_000)


def test_an_image_of_exactly_the_pixel_limit_is_decoded() -> None:
    data = _encode(Image.new("L", (100, 100)))
    assert decode(data, SPEC, max_pixels=100 * 100).size == (100, 100)
    with pytest.raises(ImageTooLargeError, match="the limit is 9999"):
        decode(data, SPEC, max_pixels=100 * 100 - 1)
