"""The OpenVINO model cache: hits found, stale, damaged or unwritable entries never trusted."""

from __future__ import annotations

import logging
from pathlib import Path

import openvino as ov
import pytest

from server.engines.int8 import FidelityReport
from server.engines.model_cache import ModelCache, cache_key

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow

REPORT = FidelityReport(3, 1.0, 0.9, 0.05)
PARTS = {"model": "m", "weights": "sha256:abc", "calibration": "f00", "openvino": "x"}
NNCF = {"nncf": "3.4.0"}


@pytest.fixture(scope="module")
def model() -> ov.Model:
    parameter = ov.opset13.parameter([1, 4], ov.Type.f32, name="x")
    return ov.Model([ov.opset13.relu(parameter)], [parameter], "tiny")


def test_a_stored_entry_is_found_with_its_report(tmp_path: Path, model) -> None:
    cache, key = ModelCache(tmp_path, "int8"), cache_key(PARTS)
    assert cache.load(key, NNCF) is None
    entry = cache.store(key, model, {**PARTS, **NNCF}, fidelity=REPORT.as_dict())
    assert entry == cache.entry(key) == tmp_path / "int8" / key[:32]
    loaded = cache.load(key, NNCF)
    assert loaded is not None
    assert FidelityReport(**loaded[1]["fidelity"]) == REPORT
    assert loaded[1]["depends_on"] == {**PARTS, **NNCF}
    assert loaded[0].get_friendly_name() == "tiny"
    assert cache.load(key) is not None  # a server without NNCF takes any entry


def test_anything_the_model_depends_on_changes_the_key() -> None:
    keys = {cache_key({**PARTS, name: "changed"}) for name in PARTS}
    assert len(keys) == len(PARTS)
    assert cache_key(PARTS) not in keys


@pytest.mark.parametrize("damage", ["bin", "meta", "key", "nncf"])
def test_a_damaged_or_stale_entry_is_deleted_never_trusted(
    tmp_path: Path, model, damage: str, caplog
) -> None:
    cache, key = ModelCache(tmp_path, "int8"), cache_key(PARTS)
    entry = cache.store(key, model, {**PARTS, **NNCF})
    assert entry is not None
    if damage == "bin":
        (entry / "model.bin").write_bytes(b"\0" * 8)
    elif damage == "meta":
        (entry / "meta.json").write_text("{not json")
    elif damage == "key":
        (entry / "meta.json").write_text((entry / "meta.json").read_text().replace(key, "0" * 64))
    with caplog.at_level(logging.WARNING):
        assert cache.load(key, {"nncf": "3.5.0"} if damage == "nncf" else NNCF) is None
    assert "stale or damaged" in caplog.text
    assert not entry.exists()


def test_a_cache_that_cannot_be_written_is_a_warning(tmp_path: Path, model, caplog) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING):
        assert ModelCache(blocked, "openvino").store(cache_key(PARTS), model, PARTS) is None
    assert "continuing without it" in caplog.text
