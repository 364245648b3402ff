"""The torch engine: batched forward passes that give per-item rows, eager or compiled."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from server.engines import MAX_TOP_K, TorchEngine
from server.models.loading import IMAGENET_SPEC
from server.models.preprocess import normalise
from server.models.torchvision_models import LoadedModel, load_torchvision_model, resolve_weights

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def engine() -> TorchEngine:
    return TorchEngine(
        load_torchvision_model(resolve_weights("mobilenet_v2", "random")), CPU, "fp32"
    )


def test_a_batch_gives_one_sorted_row_per_item_in_order(engine: TorchEngine) -> None:
    torch.manual_seed(1)
    items = [torch.randn(3, 224, 224) for _ in range(3)]
    rows = engine.run(items)
    assert len(rows) == 3
    for row in rows:
        assert row.batch_size == 3
        assert row.inference_s > 0
        assert len(row.top) == MAX_TOP_K
        probabilities = [p for _, p in row.top]
        assert probabilities == sorted(probabilities, reverse=True)
    for item, row in zip(items, rows, strict=True):
        alone = engine.run([item])[0]
        assert [i for i, _ in alone.top[:5]] == [i for i, _ in row.top[:5]]
        for (_, p_alone), (_, p_batch) in zip(alone.top, row.top, strict=True):
            assert p_alone == pytest.approx(p_batch, abs=1e-4)


def _crops(n: int, seed: int = 0) -> list[np.ndarray]:
    return list(np.random.default_rng(seed).integers(0, 256, (n, 224, 224, 3), dtype=np.uint8))


def test_crops_answer_as_their_normalised_tensors_do(engine: TorchEngine) -> None:
    crops = _crops(3)
    spec = engine.model.preprocessing
    expected = engine.run([normalise(crop, spec) for crop in crops])
    mixed = engine.run([crops[0], normalise(crops[1], spec), crops[2]])
    for rows in (engine.run(crops), mixed):
        assert [row.batch_size for row in rows] == [3, 3, 3]
        for row, reference in zip(rows, expected, strict=True):
            assert np.allclose(row.probabilities, reference.probabilities, atol=1e-6)


def test_a_bf16_engine_answers_in_fp32_rows_close_to_fp32() -> None:
    torch.manual_seed(0)
    model = load_torchvision_model(resolve_weights("mobilenet_v2", "random"))
    items = [torch.randn(3, 224, 224) for _ in range(2)]
    fp32 = TorchEngine(model, CPU, "fp32").run(items)
    bf16 = TorchEngine(model, CPU, "bf16").run(items)
    for reference, row in zip(fp32, bf16, strict=True):
        assert row.batch_size == 2
        assert all(isinstance(p, float) for _, p in row.top)
        bf16_probability = dict(row.top).get(reference.top[0][0], 0.0)
        # The tolerance documented in docs/performance.md (tests/server/models/test_fidelity.py).
        assert abs(bf16_probability - reference.top[0][1]) < 0.08


def test_warm_up_runs_every_batch_size(engine: TorchEngine, monkeypatch) -> None:
    batches: list[list] = []
    real_run = engine.run
    monkeypatch.setattr(engine, "run", lambda batch: batches.append(batch) or real_run(batch))
    engine.warm_up(3)
    assert [len(batch) for batch in batches] == [1, 2, 3]
    # The path uploads take: uint8 crops, normalised inside the module.
    assert all(item.dtype == np.uint8 and item.shape == (224, 224, 3) for item in batches[0])


def _small_convnet(classes: int = 32) -> LoadedModel:
    """A two-layer network: inductor compiles it in seconds (a torchvision one takes a minute)."""
    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(8, classes),
    )  # fmt: skip
    labels = tuple(f"class {i}" for i in range(classes))
    return LoadedModel(module.eval(), "small", labels, IMAGENET_SPEC)


def test_the_compiled_path_pads_to_buckets_and_matches_eager(tmp_path) -> None:
    model = _small_convnet()
    eager = TorchEngine(model, CPU, "fp32")
    crops = _crops(3)
    expected = eager.run([normalise(crop, model.preprocessing) for crop in crops])
    compiled = TorchEngine(model, CPU, "fp32", compiled=True, max_batch_size=4, cache_dir=tmp_path)
    assert compiled.buckets == (1, 2, 4)
    rows = compiled.run(crops)  # three real crops, padded to a batch of four
    assert [row.batch_size for row in rows] == [3, 3, 3]
    for row, reference in zip(rows, expected, strict=True):
        assert [i for i, _ in row.top[:5]] == [i for i, _ in reference.top[:5]]
        for (_, p), (_, q) in zip(row.top, reference.top, strict=True):
            assert p == pytest.approx(q, abs=1e-4)
    assert any((tmp_path / "inductor").iterdir())
