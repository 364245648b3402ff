"""The unit's door: what the web layer may know of a model, filled in from a loaded unit."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from server.metrics import Metrics
from server.service.describe import describe, serving_limits
from server.service.unit import ModelUnit
from tests.conftest import make_settings
from tests.engine import describe_without_weights


def test_a_loaded_units_description_names_what_it_serves_and_how() -> None:
    settings = make_settings(model="mobilenet_v2", crop_size=192, resize_size=220)
    metrics = Metrics(batch_sizes=(1,), endpoints=(), error_codes=())
    unit = ModelUnit("mobilenet_v2", settings, metrics.for_model("mobilenet_v2"))
    unit.model = describe_without_weights(settings)
    try:
        description = describe(unit)
    finally:
        asyncio.run(unit.aclose())
    assert (description.name, description.num_classes) == ("mobilenet_v2", 1000)
    assert description.input_size == (3, 192, 192)
    assert description.labels[0] == "tench"
    assert description.preprocessing.resize_size == 220
    assert (description.engine, description.precision) == ("torch", "fp32")
    assert description.weights == "random"
    assert description.max_queue_size == settings.max_queue_size
    with pytest.raises(dataclasses.FrozenInstanceError):
        description.precision = "int8"  # type: ignore[misc]


def test_the_limits_follow_the_settings() -> None:
    limits = serving_limits(make_settings(max_upload_mb=2, max_files=3, request_timeout_s=4))
    assert limits.max_upload_bytes == 2 * 1024 * 1024
    assert (limits.max_files, limits.request_timeout_s) == (3, 4)
    assert "JPEG" in limits.formats


def test_the_door_imports_no_torch() -> None:
    code = "import sys, server.service.door; print(sorted(sys.modules))"
    root = Path(__file__).parents[3]
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True
    ).stdout
    assert "'torch'" not in loaded
    assert "'PIL'" not in loaded
