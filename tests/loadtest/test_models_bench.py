"""``python -m loadtest.models_bench``: model files on the OpenVINO engine, and a repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import run_benchmark

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow


def test_the_models_benchmark_measures_each_file_and_two_models_sharing_a_server(
    tmp_path: Path,
) -> None:
    args = ["--batch-sizes", "1,2", "--raw-seconds", "0.2", "--concurrency", "2", "--duration", "1"]
    report = run_benchmark("loadtest.models_bench", args, tmp_path)
    assert "python -m loadtest.models_bench --batch-sizes 1,2" in report
    assert "- CPU: " in report
    for name in ("model.ts", "model.pt2", "model.onnx", "model.xml"):
        assert f"| {name} | fp32 |" in report, name
    for row in ("| resnet50 |", "| effnet |", "| both (sum) |"):
        assert row in report, row
    rows = [line for line in report.splitlines() if line.startswith(("| resnet50", "| effnet"))]
    assert all(line.rstrip().endswith("| 0 |") for line in rows), rows  # no errors under load
    shares = re.search(r"its throughput alone: resnet50 ([\d.]+), effnet ([\d.]+)\.", report)
    assert shares is not None, report
    assert all(0 < float(share) < 2 for share in shares.groups())
    busy = re.search(r"the server used (\d+)% of the machine \(([\d.]+) of (\d+) cores", report)
    assert busy is not None, report
    percent, used, cores = int(busy[1]), float(busy[2]), int(busy[3])
    assert 0 < used <= cores * 1.05  # CPU time cannot exceed the cores (tick rounding aside)
    assert abs(percent - 100 * used / cores) <= 1  # the same figure, rounded twice
