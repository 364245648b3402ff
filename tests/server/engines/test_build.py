"""Building the engine the plan asks for: torch or OpenVINO, and int8 through its cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models import get_model

from server.engines import TorchEngine, build_engine, int8, openvino_engine
from server.engines.errors import Int8FidelityError
from server.engines.openvino_engine import OpenVinoEngine
from server.models.plan import resolve_plan
from server.models.torchvision_models import load_torchvision_model, resolve_weights
from tests.conftest import make_settings

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow


def _build(tmp_path: Path, **overrides):
    values = {"model": "mobilenet_v2", "engine": "openvino", "cache_dir": tmp_path / "cache"}
    settings = make_settings(**{**values, **overrides})
    model = load_torchvision_model(resolve_weights(settings.model, settings.weights))
    return build_engine(model, resolve_plan(settings), settings)


def test_the_plan_chooses_the_engine(tmp_path: Path) -> None:
    assert isinstance(_build(tmp_path, engine="torch").engine, TorchEngine)
    built = _build(tmp_path, engine="openvino")
    assert isinstance(built.engine, OpenVinoEngine)
    assert (built.engine.precision, built.fidelity) == ("fp32", None)


def _forbid_converting(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_converting(*args: object) -> None:
        raise AssertionError("a cache hit must not convert")

    monkeypatch.setattr(openvino_engine, "convert", no_converting)


def test_the_converted_model_is_cached_and_a_restart_answers_the_same(
    tmp_path: Path, monkeypatch
) -> None:
    batch = [torch.rand(3, 224, 224) for _ in range(2)]
    first = _build(tmp_path, engine="openvino", precision="bf16")
    assert len(list((tmp_path / "cache" / "openvino").glob("*/model.xml"))) == 1
    _forbid_converting(monkeypatch)
    again = _build(tmp_path, engine="openvino", precision="bf16")
    assert np.array_equal(first.engine.logits(batch), again.engine.logits(batch))
    # Other weights are another model: they miss the cache (and must convert).
    path = tmp_path / "other.pth"
    torch.save(get_model("mobilenet_v2", weights=None).state_dict(), path)
    with pytest.raises(AssertionError, match="must not convert"):
        _build(tmp_path, engine="openvino", weights=str(path))


def test_int8_is_quantized_once_then_served_from_the_cache(tmp_path: Path, monkeypatch) -> None:
    first = _build(tmp_path, precision="int8")
    assert first.engine.precision == "int8"
    assert first.fidelity is not None
    assert first.cache_entry is not None
    assert (first.cache_entry / "model.xml").is_file()

    def no_quantizing(*args: object) -> None:
        raise AssertionError("a cache hit must not quantize")

    monkeypatch.setattr(int8, "quantize", no_quantizing)
    _forbid_converting(monkeypatch)
    second = _build(tmp_path, precision="int8")
    assert (second.fidelity, second.cache_entry) == (first.fidelity, first.cache_entry)


def test_real_weights_below_the_agreement_threshold_stop_the_start(
    tmp_path: Path, monkeypatch
) -> None:
    path = tmp_path / "trained.pth"
    torch.save(get_model("mobilenet_v2", weights=None).state_dict(), path)
    poor = int8.FidelityReport(3, 1 / 3, 0.5, 0.4)
    monkeypatch.setattr(int8, "compare", lambda *args: poor)
    with pytest.raises(Int8FidelityError, match="top-1 agreement 33% on 3 held-out photos"):
        _build(tmp_path, precision="int8", weights=str(path))
    # The report is cached with the model: the next start refuses as fast.
    with pytest.raises(Int8FidelityError):
        _build(tmp_path, precision="int8", weights=str(path))
    assert _build(tmp_path, precision="int8", weights=str(path), int8_min_agreement=0.3)
