"""``python -m loadtest.engines_bench``: every engine, the naive baseline and int8 fidelity."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from loadtest.naive_server import create_naive_app
from server.config import Settings
from server.engines.int8 import FidelityReport
from server.models.plan import cpu_features
from tests.conftest import benchmark_environment, photo, run_benchmark

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
    for server in ("naive FastAPI", "batchserve defaults", "batchserve int8"):
        assert f"| {server}" in report, server
    assert "## int8 against fp32" not in report


def test_the_naive_baseline_answers_like_batchserve() -> None:
    with TestClient(create_naive_app("mobilenet_v3_small")) as client:
        response = client.post("/predict", files={"file": ("c.jpg", photo("cat.jpg"))})
    body = response.json()
    assert response.status_code == httpx.codes.OK
    assert len(body["predictions"]) == 5
    assert body["batch_size"] == 1


#: int8 dot products in hardware (VNNI or AMX). Without them OpenVINO's AVX2 int8 kernels
#: can saturate intermediate 16-bit sums (oneDNN documents it) and answer further from fp32.
INT8_DOT_PRODUCTS = bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(cpu_features()[1]))


def _measured_fidelity() -> list[FidelityReport]:
    """``int8_fidelity.measure()`` in a process of its own, outside coverage's tracer."""
    code = (
        "import dataclasses, json\nfrom loadtest import int8_fidelity\n"
        "print(json.dumps([dataclasses.asdict(r) for r in int8_fidelity.measure()]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=benchmark_environment(), capture_output=True,
        text=True, timeout=900, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return [FidelityReport(**report) for report in json.loads(result.stdout.splitlines()[-1])]


def test_int8_fidelity_on_the_real_classifier_holds_out_every_photo_once() -> None:
    reports = _measured_fidelity()
    assert [r.photos for r in reports] == [3, 2, 2]
    assert all(r.max_probability_difference < 0.5 for r in reports)
    # With VNNI the split the server itself uses (every third photo from the first) passes the
    # default gate with a real model. On an AVX2-only CPU one of its three photos (a near tie
    # in fp32) flips: the gate then refuses, as it should (issue 19 is the recipe's fix).
    gate = Settings.model_fields["int8_min_agreement"].default
    if INT8_DOT_PRODUCTS:
        assert reports[0].top1_agreement >= gate
    else:
        assert reports[0].top1_agreement >= 2 / 3 - 1e-3
        assert reports[0].top5_overlap >= 0.8
