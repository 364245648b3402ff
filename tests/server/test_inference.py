"""Device, precision and worker choice, and batched forward passes that give per-item rows."""

from __future__ import annotations

import os

import pytest
import torch

from server.inference import (
    MAX_TOP_K,
    DeviceError,
    InferenceEngine,
    batch_buckets,
    configure_threads,
    cpu_has_fast_bf16,
    resolve_compile,
    resolve_device,
    resolve_precision,
    resolve_workers,
)
from server.model import load_model, resolve_weights

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def engine() -> InferenceEngine:
    torch.manual_seed(0)
    return InferenceEngine(load_model(resolve_weights("mobilenet_v2", "random")), CPU, "fp32")


def test_auto_device_is_cuda_when_available_else_cpu() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == CPU


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_cuda_without_it_is_a_clear_error() -> None:
    with pytest.raises(DeviceError, match=r"^BATCHSERVE_DEVICE=cuda but no CUDA device"):
        resolve_device("cuda")


def test_precision_auto_on_the_cpu_follows_its_bf16_support_and_fp16_needs_cuda() -> None:
    # The CPU differs between machines (AVX2 only, AVX-512 BF16, AMX): auto follows it.
    assert resolve_precision("auto", CPU) == ("bf16" if cpu_has_fast_bf16() else "fp32")
    assert resolve_precision("bf16", CPU) == "bf16"
    with pytest.raises(DeviceError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", CPU)


def test_workers_auto_is_one_on_the_cpu_and_two_on_cuda() -> None:
    assert resolve_workers("auto", CPU) == 1
    assert resolve_workers("auto", torch.device("cuda")) == 2
    assert resolve_workers(3, CPU) == 3


def test_cpu_threads_are_split_between_workers() -> None:
    previous = torch.get_num_threads()
    try:
        assert configure_threads(CPU, 1) == (os.cpu_count() or 1)
        assert configure_threads(CPU, 64) == 1
        assert configure_threads(CPU, 1, 3) == 3
        assert torch.get_num_threads() == 3
        assert configure_threads(torch.device("cuda"), 2) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)


def test_a_batch_gives_one_sorted_row_per_item_in_order(engine: InferenceEngine) -> None:
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


def test_a_bf16_engine_answers_in_fp32_rows_close_to_fp32() -> None:
    torch.manual_seed(0)
    model = load_model(resolve_weights("mobilenet_v2", "random"))
    items = [torch.randn(3, 224, 224) for _ in range(2)]
    fp32 = InferenceEngine(model, CPU, "fp32").run(items)
    bf16 = InferenceEngine(model, CPU, "bf16").run(items)
    for reference, row in zip(fp32, bf16, strict=True):
        assert row.batch_size == 2
        assert all(isinstance(p, float) for _, p in row.top)
        bf16_probability = dict(row.top).get(reference.top[0][0], 0.0)
        # The tolerance documented in docs/performance.md (tests/server/test_fidelity.py).
        assert abs(bf16_probability - reference.top[0][1]) < 0.08


def test_warm_up_runs_every_batch_size(engine: InferenceEngine, monkeypatch) -> None:
    sizes: list[int] = []
    real_run = engine.run
    monkeypatch.setattr(engine, "run", lambda batch: sizes.append(len(batch)) or real_run(batch))
    engine.warm_up(3)
    assert sizes == [1, 2, 3]


def test_bf16_is_chosen_on_the_cpu_only_where_the_hardware_has_it(monkeypatch) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert resolve_precision("auto", CPU) == "fp32"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert resolve_precision("auto", CPU) == "bf16"


def test_compile_auto_is_on_for_cpu_bf16_only() -> None:
    assert resolve_compile("auto", CPU, "bf16")
    assert not resolve_compile("auto", CPU, "fp32")
    assert not resolve_compile("auto", torch.device("cuda"), "bf16")
    assert resolve_compile("on", CPU, "fp32")
    assert not resolve_compile("off", CPU, "bf16")


def test_without_a_cxx_compiler_auto_stays_eager_and_on_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr("server.inference.shutil.which", lambda name: None)
    assert not resolve_compile("auto", CPU, "bf16")
    with pytest.raises(DeviceError, match="needs a C\\+\\+ compiler"):
        resolve_compile("on", CPU, "fp32")
    assert not resolve_compile("off", CPU, "bf16")


def test_batch_buckets_are_powers_of_two_and_the_maximum() -> None:
    assert batch_buckets(1) == (1,)
    assert batch_buckets(8) == (1, 2, 4, 8)
    assert batch_buckets(12) == (1, 2, 4, 8, 12)


def test_the_compiled_path_pads_to_buckets_and_matches_eager(tmp_path) -> None:
    torch.manual_seed(0)
    model = load_model(resolve_weights("mobilenet_v3_small", "random"))
    eager = InferenceEngine(model, CPU, "fp32")
    items = [torch.randn(3, 224, 224) for _ in range(3)]
    expected = eager.run(items)
    compiled = InferenceEngine(
        model, CPU, "fp32", compiled=True, max_batch_size=4, cache_dir=tmp_path
    )
    assert compiled.buckets == (1, 2, 4)
    rows = compiled.run(items)  # three real items, padded to a batch of four
    assert [row.batch_size for row in rows] == [3, 3, 3]
    for row, reference in zip(rows, expected, strict=True):
        assert [i for i, _ in row.top[:5]] == [i for i, _ in reference.top[:5]]
        for (_, p), (_, q) in zip(row.top, reference.top, strict=True):
            assert p == pytest.approx(q, abs=1e-4)
    assert any((tmp_path / "inductor").iterdir())
