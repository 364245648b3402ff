"""``python -m loadtest.models_bench``: model files on the OpenVINO engine, and a repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_models_benchmark_measures_each_file_and_two_models_sharing_a_server(
    tmp_path: Path,
) -> None:
    out = tmp_path / "models.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHSERVE_")}
    env["BATCHSERVE_CACHE_DIR"] = str(tmp_path / "cache")
    args = [
        "--batch-sizes", "1,2", "--raw-seconds", "0.2", "--concurrency", "2", "--duration", "1",
        "--out", str(out),
    ]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "loadtest.models_bench", *args],
        env=env, capture_output=True, text=True, timeout=900, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = out.read_text()
    assert "python -m loadtest.models_bench --batch-sizes 1,2" in report
    assert "- CPU: " in report
    for name in ("model.ts", "model.pt2", "model.onnx"):
        assert f"| {name} | fp32 |" in report, name
    for row in ("| resnet50 |", "| effnet |", "| both (sum) |"):
        assert row in report, row
    rows = [line for line in report.splitlines() if line.startswith(("| resnet50", "| effnet"))]
    assert all(line.rstrip().endswith("| 0 |") for line in rows), rows  # no errors under load
