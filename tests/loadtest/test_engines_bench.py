"""``python -m loadtest.engines_bench``: every engine, the naive baseline and the bound."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from loadtest.naive_server import create_naive_app
from server.models.cores import usable_cores
from tests.conftest import photo, run_benchmark

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow


def test_the_engine_benchmark_measures_every_engine_and_server(tmp_path: Path) -> None:
    args = [
        "--sections", "raw,servers", "--model", "mobilenet_v3_small", "--batch-sizes", "1,2",
        "--raw-seconds", "0.2", "--concurrency", "1", "--duration", "1",
    ]  # fmt: skip
    report = run_benchmark("loadtest.engines_bench", args, tmp_path)
    assert "python -m loadtest.engines_bench --sections raw,servers" in report
    assert "- CPU: " in report
    for row in ("| torch | fp32 |", "| openvino | fp32 |", "| openvino | int8 |"):
        assert row in report, row
    for server in ("naive FastAPI", "batchserve defaults", "batchserve int8",
                   "batchserve int8, 2 streams x 1 thread"):  # fmt: skip
        assert f"| {server}" in report, server
    bound = report.split("## Against the machine's bound", 1)[1]
    rows = [line for line in bound.splitlines() if line.startswith("| batchserve")]
    assert len(rows) == 3, bound
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        preprocess_ms, engine_ms, images_per_s = (float(c) for c in cells[2:5])
        assert images_per_s == pytest.approx(usable_cores() * 1000 / (preprocess_ms + engine_ms),
                                             rel=0.02)  # fmt: skip
        assert 0 < float(cells[5]) < 1.5  # c=1's share of the bound


def test_the_naive_baseline_answers_like_batchserve() -> None:
    with TestClient(create_naive_app("mobilenet_v3_small")) as client:
        response = client.post("/predict", files={"file": ("c.jpg", photo("cat.jpg"))})
    body = response.json()
    assert response.status_code == httpx.codes.OK
    assert len(body["predictions"]) == 5
    assert body["batch_size"] == 1
