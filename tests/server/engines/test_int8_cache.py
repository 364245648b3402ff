"""The int8 cache: hits found, stale, damaged or unwritable entries never trusted."""

from __future__ import annotations

import logging
from pathlib import Path

import openvino as ov
import pytest

from server.engines.int8 import FidelityReport
from server.engines.int8_cache import Int8Cache, cache_key

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow

REPORT = FidelityReport(3, 1.0, 0.9, 0.05)
PARTS = {"model": "m", "weights": "sha256:abc", "calibration": "f00", "openvino": "x"}


@pytest.fixture(scope="module")
def model() -> ov.Model:
    parameter = ov.opset13.parameter([1, 4], ov.Type.f32, name="x")
    return ov.Model([ov.opset13.relu(parameter)], [parameter], "tiny")


def test_a_stored_entry_is_found_with_its_report(tmp_path: Path, model) -> None:
    cache, key = Int8Cache(tmp_path), cache_key(PARTS)
    assert cache.load(key, "3.4.0") is None
    entry = cache.store(key, model, REPORT, {**PARTS, "nncf": "3.4.0"})
    assert entry == cache.entry(key)
    loaded = cache.load(key, "3.4.0")
    assert loaded is not None
    assert loaded[1] == REPORT
    assert loaded[0].get_friendly_name() == "tiny"
    assert cache.load(key, None) is not None  # a server without NNCF takes any entry


def test_anything_the_model_depends_on_changes_the_key() -> None:
    keys = {cache_key({**PARTS, name: "changed"}) for name in PARTS}
    assert len(keys) == len(PARTS)
    assert cache_key(PARTS) not in keys


@pytest.mark.parametrize("damage", ["bin", "meta", "key", "nncf"])
def test_a_damaged_or_stale_entry_is_deleted_never_trusted(
    tmp_path: Path, model, damage: str, caplog
) -> None:
    cache, key = Int8Cache(tmp_path), cache_key(PARTS)
    entry = cache.store(key, model, REPORT, {**PARTS, "nncf": "3.4.0"})
    assert entry is not None
    if damage == "bin":
        (entry / "model.bin").write_bytes(b"\0" * 8)
    elif damage == "meta":
        (entry / "meta.json").write_text("{not json")
    elif damage == "key":
        (entry / "meta.json").write_text((entry / "meta.json").read_text().replace(key, "0" * 64))
    with caplog.at_level(logging.WARNING):
        assert cache.load(key, "3.5.0" if damage == "nncf" else "3.4.0") is None
    assert "stale or damaged" in caplog.text
    assert not entry.exists()


def test_a_cache_that_cannot_be_written_is_a_warning(tmp_path: Path, model, caplog) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING):
        assert Int8Cache(blocked).store(cache_key(PARTS), model, REPORT, PARTS) is None
    assert "continuing without it" in caplog.text
