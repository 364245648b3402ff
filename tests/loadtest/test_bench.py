"""``python -m loadtest.bench`` end to end, on a small model and short levels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_the_benchmark_runs_and_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHSERVE_")}
    env |= {
        "BATCHSERVE_MODEL": "mobilenet_v3_small",
        "BATCHSERVE_WEIGHTS": "random",
        "BATCHSERVE_MAX_BATCH_SIZE": "2",
        "BATCHSERVE_PRECISION": "fp32",
        "BATCHSERVE_COMPILE": "off",
    }
    args = ["--duration", "1", "--concurrency", "1,2", "--raw-seconds", "0.3", "--out", str(out)]
    result = subprocess.run(
        [sys.executable, "-m", "loadtest.bench", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr
    report = out.read_text()
    assert "python -m loadtest.bench --duration 1" in report
    assert "**batching on**" in report
    assert "**batching off**" in report
    assert out.with_suffix(".png").is_file()
