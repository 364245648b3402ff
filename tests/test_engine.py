"""The test engine keeps the engine contract, and its answers follow the input."""

from __future__ import annotations

import numpy as np

from server.models.preprocess import image_to_tensor
from tests.conftest import make_settings, photo
from tests.engine import MeanPixelEngine, describe_without_weights


def _engine() -> MeanPixelEngine:
    return MeanPixelEngine(describe_without_weights(make_settings()))


def _tensors(engine: MeanPixelEngine, *names: str) -> list:
    spec = engine.model.preprocessing
    return [image_to_tensor(photo(name), spec, 10**8) for name in names]


def test_it_describes_the_model_as_torchvision_does_without_building_it() -> None:
    model = _engine().model
    assert model.module is None
    assert (model.name, model.num_classes, model.preprocessing.crop_size) == ("resnet50", 1000, 224)


def test_rows_are_ranked_probabilities_one_per_item_in_order() -> None:
    engine = _engine()
    batch = _tensors(engine, "cat.jpg", "coffee.webp", "camera_gray.png")
    rows = engine.run(batch)
    assert [row.batch_size for row in rows] == [3, 3, 3]
    for row, alone in zip(rows, (engine.run([item])[0] for item in batch), strict=True):
        assert row.top[0][0] == alone.top[0][0]
        probabilities = [p for _, p in row.top]
        assert probabilities == sorted(probabilities, reverse=True)
        assert row.probabilities.dtype == np.float32
        assert abs(float(row.probabilities.sum()) - 1) < 1e-4
    assert engine.batch_sizes == [3, 1, 1, 1]


def test_different_photos_get_different_answers_and_the_same_photo_the_same() -> None:
    engine = _engine()
    names = ("cat.jpg", "coffee.webp", "camera_gray.png", "astronaut.jpg")
    tops = [engine.run(_tensors(engine, name))[0].top[0][0] for name in names]
    assert len(set(tops)) == len(names)
    assert (
        engine.run(_tensors(engine, "cat.jpg"))[0].top
        == engine.run(_tensors(engine, "cat.jpg"))[0].top
    )
