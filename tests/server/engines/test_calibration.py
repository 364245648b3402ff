"""Calibration and held-out images: kept apart, fingerprinted, refused when unusable."""

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


def _copy(source: Path, target: Path, count: int) -> list[Path]:
    files = sorted(p for p in source.iterdir() if p.suffix != ".md")[:count]
    target.mkdir(exist_ok=True)
    return [Path(shutil.copy(f, target / f.name)) for f in files]


def _copy_defaults(target: Path, count: int) -> list[Path]:
    return _copy(calibration.DEFAULT_DIR, target, count)


def test_the_shipped_photos_give_crops_to_calibrate_and_other_whole_photos_held_out() -> None:
    samples = calibration.load(None, None, SPEC)
    shipped = len(calibration.image_files(calibration.DEFAULT_DIR, "CALIBRATION_DIR", 1))
    assert len(samples.calibration) == shipped * (calibration.CROPS_PER_PHOTO + 1)
    assert len(samples.held_out) >= calibration.MIN_HELD_OUT
    assert {tuple(t.shape) for t in (*samples.calibration, *samples.held_out)} == {(3, 224, 224)}
    assert samples.source == "the photos shipped with batchserve"


def test_no_shipped_held_out_photo_is_a_calibration_photo() -> None:
    calibrated, held, _ = calibration.identify(None, None)
    digests = {f.read_bytes() for f in calibrated}
    assert not [f for f in held if f.read_bytes() in digests]


def test_a_photo_in_both_sets_is_refused(tmp_path: Path) -> None:
    held = _copy(calibration.DEFAULT_HELD_OUT_DIR, tmp_path / "held", calibration.MIN_HELD_OUT)
    (tmp_path / "cal").mkdir()
    for path in [*_copy_defaults(tmp_path / "cal", 3), held[4]]:
        shutil.copy(path, tmp_path / "cal" / f"copy-{path.name}")
    with pytest.raises(CalibrationError, match=rf"{held[4].name} also among the calibration"):
        calibration.identify(tmp_path / "cal", tmp_path / "held")


def test_the_same_images_give_the_same_samples_and_fingerprint(tmp_path: Path) -> None:
    _copy_defaults(tmp_path / "a", 4)
    first = calibration.load(tmp_path / "a", None, SPEC)
    second = calibration.load(tmp_path / "a", None, SPEC)
    assert first.fingerprint == second.fingerprint
    assert all((a == b).all() for a, b in zip(first.calibration, second.calibration, strict=True))


def test_a_changed_image_in_either_set_changes_the_fingerprint(tmp_path: Path) -> None:
    files = _copy_defaults(tmp_path / "a", 4)
    held = _copy(calibration.DEFAULT_HELD_OUT_DIR, tmp_path / "held", calibration.MIN_HELD_OUT)
    before = calibration.identify(tmp_path / "a", tmp_path / "held")[2]
    files[-1].write_bytes(files[0].read_bytes())
    after_calibration = calibration.identify(tmp_path / "a", tmp_path / "held")[2]
    held[-1].write_bytes(held[0].read_bytes())
    after_held = calibration.identify(tmp_path / "a", tmp_path / "held")[2]
    assert len({before, after_calibration, after_held}) == 3


def test_a_missing_or_small_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match=r"CALIBRATION_DIR=.*nowhere is not a directory"):
        calibration.load(tmp_path / "nowhere", None, SPEC)
    _copy_defaults(tmp_path / "few", 2)
    with pytest.raises(CalibrationError, match="has 2 images; int8 needs at least 3"):
        calibration.load(tmp_path / "few", None, SPEC)
    _copy(calibration.DEFAULT_HELD_OUT_DIR, tmp_path / "held", 19)
    with pytest.raises(CalibrationError, match=r"HELD_OUT_DIR\) has 19 images; .* at least 20"):
        calibration.load(None, tmp_path / "held", SPEC)


def test_an_unreadable_image_names_the_file(tmp_path: Path) -> None:
    _copy_defaults(tmp_path / "a", 4)
    (tmp_path / "a" / "zz_broken.jpg").write_bytes(b"not an image")
    with pytest.raises(CalibrationError, match=r"zz_broken\.jpg cannot be used"):
        calibration.load(tmp_path / "a", None, SPEC)
