"""The OpenVINO engine: the same answers as torch, the plan's precision, streams and threads."""

from __future__ import annotations

import multiprocessing
import sys
import threading

import numpy as np
import openvino as ov
import pytest
import torch
from torch.overrides import TorchFunctionMode

from server.engines import MAX_TOP_K, TorchEngine
from server.engines.openvino_engine import OpenVinoEngine, compile_for_cpu, convert
from server.models.preprocess import normalise
from server.models.torchvision_models import LoadedModel, load_torchvision_model, resolve_weights

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return load_torchvision_model(resolve_weights("mobilenet_v2", "random"))


@pytest.fixture(scope="module")
def converted(model: LoadedModel):
    return convert(model)


@pytest.fixture(scope="module")
def engine(model: LoadedModel, converted) -> OpenVinoEngine:
    return OpenVinoEngine(model, converted, "fp32", 1, 2)


def _items(n: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(n)
    return [torch.randn(3, 224, 224, generator=generator) for _ in range(n)]


def test_fp32_logits_equal_torchs(model: LoadedModel, engine: OpenVinoEngine) -> None:
    items = _items(3)
    reference = TorchEngine(model, CPU, "fp32")
    with torch.inference_mode():
        expected = model.module(torch.stack(items))
    assert np.allclose(engine.logits(items), expected.numpy(), atol=1e-4)
    rows, torch_rows = engine.run(items), reference.run(items)
    assert [r.batch_size for r in rows] == [3, 3, 3]
    for row, torch_row in zip(rows, torch_rows, strict=True):
        assert len(row.top) == MAX_TOP_K
        assert [i for i, _ in row.top[:5]] == [i for i, _ in torch_row.top[:5]]


def _crops(n: int) -> list[np.ndarray]:
    return list(np.random.default_rng(n).integers(0, 256, (n, 224, 224, 3), dtype=np.uint8))


def test_crops_answer_as_their_normalised_tensors_do(engine: OpenVinoEngine) -> None:
    # The graph's own normalisation (OpenVINO's preprocessing steps) against NumPy's.
    crops = _crops(3)
    tensors = [normalise(crop, engine.model.preprocessing) for crop in crops]
    expected = engine.logits(tensors)
    assert np.allclose(engine.logits(crops), expected, atol=1e-4)
    mixed = engine.logits([tensors[0], crops[1], tensors[2]])
    assert np.allclose(mixed, expected, atol=1e-4)


class _TorchCalls(TorchFunctionMode):
    """Records every torch function and tensor method called while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.names.append(getattr(func, "__name__", repr(func)))
        return func(*args, **(kwargs or {}))


def test_a_batch_runs_without_a_torch_operation(engine: OpenVinoEngine) -> None:
    # A torch operation would enter torch's OpenMP team beside OpenVINO's threads; reading a
    # tensor's memory as a NumPy array (``numpy``) computes nothing, and crops are NumPy's.
    items = _items(4)
    with _TorchCalls() as calls:
        rows = engine.run(items)
        crop_rows = engine.run(_crops(4))
    assert len(rows) == len(crop_rows) == 4
    assert set(calls.names) <= {"numpy"}, calls.names
    assert calls.names.count("numpy") == 4


def test_every_batch_size_runs_with_its_own_rows(engine: OpenVinoEngine) -> None:
    for size in (1, 2, 5, 8):
        assert [r.batch_size for r in engine.run(_items(size))] == [size] * size


def test_warm_up_runs_every_batch_size(engine: OpenVinoEngine, monkeypatch) -> None:
    batches: list[list] = []
    real = engine.run
    monkeypatch.setattr(
        engine, "run", lambda batch, alone=False: batches.append(batch) or real(batch, alone=alone)
    )
    engine.warm_up(4)
    assert [len(batch) for batch in batches] == [1, 2, 3, 4]
    # The graph uploads run: uint8 crops in.
    assert all(item.dtype == np.uint8 and item.shape == (224, 224, 3) for item in batches[0])


#: Whether this CPU computes bf16 natively (else OpenVINO runs a bf16 hint in f32).
NATIVE_BF16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@pytest.mark.parametrize(
    ("precision", "hint"), [("fp32", "f32"), ("bf16", "bf16" if NATIVE_BF16 else "f32")]
)
def test_the_precision_hint_is_always_set(converted, precision: str, hint: str) -> None:
    # OpenVINO would choose bf16 by itself on CPUs that have it: fp32 must be asked for. Where
    # the CPU has no bf16 (AVX2 only), OpenVINO keeps f32 whatever the hint says.
    compiled = compile_for_cpu(converted, precision, 1, 1)
    assert compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == hint


def test_workers_are_streams_sharing_the_plans_threads(converted) -> None:
    compiled = compile_for_cpu(converted, "fp32", 2, 1)
    assert int(compiled.get_property("NUM_STREAMS")) == 2
    assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == 2


def test_threads_run_batches_at_once_with_their_own_requests(model: LoadedModel, converted) -> None:
    engine = OpenVinoEngine(model, converted, "fp32", 2, 1)
    items = _items(2)
    expected = engine.logits(items)
    results: list[np.ndarray] = []
    threads = [
        threading.Thread(target=lambda: results.append(engine.logits(items))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 4
    assert all(np.allclose(result, expected) for result in results)
    assert engine.version.startswith("20")


def test_no_usage_data_is_sent(engine: OpenVinoEngine) -> None:
    """OpenVINO's converter would report to Google Analytics from a child process."""
    assert sys.modules["openvino_telemetry"] is None
    assert multiprocessing.active_children() == []


def test_streams_by_load_compile_a_latency_stream_beside_the_one_core_streams(
    model: LoadedModel, converted, monkeypatch
) -> None:
    engine = OpenVinoEngine(model, converted, "fp32", 2, 1, solo_threads=2).compile()
    assert engine._solo is not None
    solo, streams = engine._solo.compiled(), engine._crops.compiled()
    assert (
        int(solo.get_property("NUM_STREAMS")),
        int(solo.get_property("INFERENCE_NUM_THREADS")),
    ) == (1, 2)
    assert int(streams.get_property("NUM_STREAMS")) == 2
    crops = _crops(3)
    assert np.allclose(engine.logits(crops, alone=True), engine.logits(crops), atol=1e-4)
    layouts: list[bool] = []
    real = engine.run
    monkeypatch.setattr(
        engine, "run", lambda batch, alone=False: layouts.append(alone) or real(batch, alone=alone)
    )
    engine.warm_up(2)
    assert layouts == [False, False, True, True]  # every batch size on both layouts
