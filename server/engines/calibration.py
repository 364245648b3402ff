"""Calibration images for int8: representative photos, split into calibration and held-out.

The held-out photos are never seen by the quantizer: the int8 model is compared
with fp32 on them, whole, so that the agreement measures generalisation rather
than memory of the calibration crops. The calibration photos are used whole
and as seeded random crops (scale and aspect jitter, mirror), as training-time
augmentation would show them.
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
#: Every third photo is held out for the fidelity check; at least this many are needed.
MIN_HELD_OUT: Final = 3
HOLD_OUT_EVERY: Final = 3
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


def image_files(directory: Path) -> list[Path]:
    """The image files in ``directory`` and below, in a stable order."""
    if not directory.is_dir():
        raise CalibrationError(
            f"BATCHSERVE_CALIBRATION_DIR={directory} is not a directory: point it at a folder "
            "of representative images, or unset it to use the photos shipped with batchserve"
        )
    files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in _SUFFIXES)
    # Held out: files 0, 3, 6, ...; MIN_HELD_OUT of them need this many files.
    needed = (MIN_HELD_OUT - 1) * HOLD_OUT_EVERY + 1
    if len(files) < needed:
        raise CalibrationError(
            f"{directory} has {len(files)} images; int8 needs at least {needed} "
            f"(every {HOLD_OUT_EVERY}rd is held out to check int8 against fp32)"
        )
    return files


def split(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """(calibration, held out): every ``HOLD_OUT_EVERY``-th file is held out."""
    held = [f for i, f in enumerate(files) if i % HOLD_OUT_EVERY == 0]
    return [f for f in files if f not in held], held


def fingerprint(files: list[Path]) -> str:
    """A hash of the images' bytes and of how they are used (split, crops, seed)."""
    digest = hashlib.sha256(f"{HOLD_OUT_EVERY}/{CROPS_PER_PHOTO}/{_SEED}".encode())
    for path in files:
        digest.update(hashlib.sha256(path.read_bytes()).digest())
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


def identify(directory: Path | None) -> tuple[list[Path], str]:
    """The images to use and their fingerprint, without decoding them (cache lookups)."""
    files = image_files(directory or DEFAULT_DIR)
    return files, fingerprint(files)


def load(directory: Path | None, spec: PreprocessSpec) -> CalibrationSet:
    """Read, split and preprocess the calibration images for a model's ``spec``."""
    files, digest = identify(directory)
    calibration_files, held_out_files = split(files)
    source = str(directory) if directory else "the photos shipped with batchserve"
    return from_files(calibration_files, held_out_files, spec, digest, source)


def from_files(
    calibration_files: list[Path],
    held_out_files: list[Path],
    spec: PreprocessSpec,
    digest: str = "",
    source: str = "",
) -> CalibrationSet:
    """Preprocess a given split: the calibration photos whole and cropped, the others whole."""
    rng = random.Random(_SEED)
    calibration = [t for path in calibration_files for t in _augmented(path, spec, rng)]
    held_out = [preprocess.to_tensor(_decode(path, spec), spec) for path in held_out_files]
    return CalibrationSet(tuple(calibration), tuple(held_out), digest, source)
