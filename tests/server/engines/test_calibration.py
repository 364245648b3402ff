"""Calibration images: split into calibration and held-out, fingerprinted, refused when unusable."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from server.engines import calibration
from server.engines.errors import CalibrationError
from server.models.preprocess import PreprocessSpec

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow

SPEC = PreprocessSpec(256, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _copy_defaults(target: Path, count: int) -> list[Path]:
    files = sorted(p for p in calibration.DEFAULT_DIR.iterdir() if p.suffix != ".md")[:count]
    target.mkdir(exist_ok=True)
    return [Path(shutil.copy(f, target / f.name)) for f in files]


def test_the_shipped_photos_give_crops_to_calibrate_and_whole_photos_held_out() -> None:
    samples = calibration.load(None, SPEC)
    assert len(samples.held_out) == calibration.MIN_HELD_OUT
    per_photo = calibration.CROPS_PER_PHOTO + 1
    assert len(samples.calibration) == 4 * per_photo
    assert {tuple(t.shape) for t in (*samples.calibration, *samples.held_out)} == {(3, 224, 224)}
    assert samples.source == "the photos shipped with batchserve"


def test_held_out_photos_are_never_calibrated_on() -> None:
    files = [Path(f"{i}.jpg") for i in range(10)]
    calibrate, held = calibration.split(files)
    assert held == [files[0], files[3], files[6], files[9]]
    assert not set(calibrate) & set(held)


def test_the_same_images_give_the_same_samples_and_fingerprint(tmp_path: Path) -> None:
    _copy_defaults(tmp_path / "a", 7)
    first, second = calibration.load(tmp_path / "a", SPEC), calibration.load(tmp_path / "a", SPEC)
    assert first.fingerprint == second.fingerprint
    assert all((a == b).all() for a, b in zip(first.calibration, second.calibration, strict=True))


def test_a_changed_image_changes_the_fingerprint(tmp_path: Path) -> None:
    files = _copy_defaults(tmp_path / "a", 7)
    before = calibration.identify(tmp_path / "a")[1]
    files[-1].write_bytes(files[0].read_bytes())
    assert calibration.identify(tmp_path / "a")[1] != before


def test_a_missing_or_small_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="is not a directory"):
        calibration.load(tmp_path / "nowhere", SPEC)
    _copy_defaults(tmp_path / "few", 6)
    with pytest.raises(CalibrationError, match="has 6 images; int8 needs at least 7"):
        calibration.load(tmp_path / "few", SPEC)


def test_an_unreadable_image_names_the_file(tmp_path: Path) -> None:
    _copy_defaults(tmp_path / "a", 7)
    (tmp_path / "a" / "zz_broken.jpg").write_bytes(b"not an image")
    with pytest.raises(CalibrationError, match=r"zz_broken\.jpg cannot be used"):
        calibration.load(tmp_path / "a", SPEC)
