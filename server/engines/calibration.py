"""Images for int8: calibration photos for the quantizer, held-out photos for the check.

Two folders: the calibration photos are used whole and as seeded random crops
(scale and aspect jitter, mirror), as training-time augmentation would show
them; the held-out photos are never seen by the quantizer: the int8 model is
compared with fp32 on them, whole, so that the agreement measures
generalisation rather than memory of the calibration crops. A photo in both
folders (same bytes) is refused.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import torch
from PIL import Image, ImageOps

from server.engines.errors import CalibrationError
from server.models import preprocess
from server.models.preprocess import PreprocessSpec

#: The photos shipped with batchserve, used when BATCHSERVE_CALIBRATION_DIR is not set.
DEFAULT_DIR: Final = Path(__file__).parent / "calibration"
#: The shipped held-out photos, used when BATCHSERVE_HELD_OUT_DIR is not set.
DEFAULT_HELD_OUT_DIR: Final = Path(__file__).parent / "held_out"
#: The fewest photos to calibrate on, and to check on: below 20 an agreement
#: measured on them is too uncertain to gate anything (see int8.wilson_interval).
MIN_CALIBRATION: Final = 3
MIN_HELD_OUT: Final = 20
#: Random crops per calibration photo, besides the whole photo.
CROPS_PER_PHOTO: Final = 12
_SEED: Final = 20261127
_SUFFIXES: Final = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
_MAX_PIXELS: Final = 100_000_000


@dataclass(frozen=True, slots=True)
class CalibrationSet:
    """Preprocessed model inputs: what the quantizer sees, and what it never sees."""

    calibration: tuple[torch.Tensor, ...]
    held_out: tuple[torch.Tensor, ...]
    fingerprint: str
    source: str


def image_files(directory: Path, setting: str, minimum: int) -> list[Path]:
    """The image files in ``directory`` and below, in a stable order; at least ``minimum``."""
    if not directory.is_dir():
        raise CalibrationError(
            f"BATCHSERVE_{setting}={directory} is not a directory: point it at a folder "
            "of representative images, or unset it to use the photos shipped with batchserve"
        )
    files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in _SUFFIXES)
    if len(files) < minimum:
        raise CalibrationError(
            f"{directory} (BATCHSERVE_{setting}) has {len(files)} images; int8 needs at "
            f"least {minimum}"
        )
    return files


def _digests(files: list[Path]) -> list[bytes]:
    return [hashlib.sha256(path.read_bytes()).digest() for path in files]


def fingerprint(calibration_files: list[Path], held_out_files: list[Path]) -> str:
    """A hash of both sets' bytes and of how they are used (crops, seed).

    Raises :class:`CalibrationError` when a photo is in both sets: the check
    would then measure memory, not generalisation.
    """
    calibrated, held = _digests(calibration_files), _digests(held_out_files)
    if shared := set(calibrated) & set(held):
        names = [str(f) for f, d in zip(held_out_files, held, strict=True) if d in shared]
        raise CalibrationError(
            f"{', '.join(names)} also among the calibration images: a held-out photo must "
            "be one the quantizer never saw"
        )
    digest = hashlib.sha256(f"{CROPS_PER_PHOTO}/{_SEED}/{len(calibrated)}".encode())
    for item in (*calibrated, *held):
        digest.update(item)
    return digest.hexdigest()


def _decode(path: Path, spec: PreprocessSpec) -> Image.Image:
    try:
        return preprocess.decode(path.read_bytes(), spec, _MAX_PIXELS)
    except preprocess.ImageError as exc:
        raise CalibrationError(f"calibration image {path} cannot be used: {exc}") from exc


def _random_crop(image: Image.Image, rng: random.Random) -> Image.Image:
    width, height = image.size
    area = width * height * rng.uniform(0.35, 1.0)
    aspect = rng.uniform(3 / 4, 4 / 3)
    w = min(width, max(1, round((area * aspect) ** 0.5)))
    h = min(height, max(1, round((area / aspect) ** 0.5)))
    left, top = rng.randint(0, width - w), rng.randint(0, height - h)
    crop = image.crop((left, top, left + w, top + h))
    return ImageOps.mirror(crop) if rng.random() < 0.5 else crop


def _augmented(path: Path, spec: PreprocessSpec, rng: random.Random) -> list[torch.Tensor]:
    image = _decode(path, spec)
    crops = [_random_crop(image, rng) for _ in range(CROPS_PER_PHOTO)]
    return [preprocess.to_tensor(view, spec) for view in (image, *crops)]


def identify(
    calibration_dir: Path | None, held_out_dir: Path | None
) -> tuple[list[Path], list[Path], str]:
    """Both sets' files and their fingerprint, without decoding them (cache lookups)."""
    calibration_files = image_files(
        calibration_dir or DEFAULT_DIR, "CALIBRATION_DIR", MIN_CALIBRATION
    )
    held_out_files = image_files(held_out_dir or DEFAULT_HELD_OUT_DIR, "HELD_OUT_DIR", MIN_HELD_OUT)
    return calibration_files, held_out_files, fingerprint(calibration_files, held_out_files)


def load(
    calibration_dir: Path | None, held_out_dir: Path | None, spec: PreprocessSpec
) -> CalibrationSet:
    """Read and preprocess both sets of images for a model's ``spec``."""
    calibration_files, held_out_files, digest = identify(calibration_dir, held_out_dir)
    source = str(calibration_dir) if calibration_dir else "the photos shipped with batchserve"
    return from_files(calibration_files, held_out_files, spec, digest, source)


def from_files(
    calibration_files: list[Path],
    held_out_files: list[Path],
    spec: PreprocessSpec,
    digest: str = "",
    source: str = "",
) -> CalibrationSet:
    """Preprocess given sets: the calibration photos whole and cropped, the others whole."""
    rng = random.Random(_SEED)
    calibration = [t for path in calibration_files for t in _augmented(path, spec, rng)]
    held_out = [preprocess.to_tensor(_decode(path, spec), spec) for path in held_out_files]
    return CalibrationSet(tuple(calibration), tuple(held_out), digest, source)
