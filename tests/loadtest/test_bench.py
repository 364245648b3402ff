"""``python -m loadtest.bench`` end to end, on a small model and short levels."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import benchmark_environment

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow


def test_the_benchmark_runs_and_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    env = benchmark_environment()
    env |= {
        "BATCHSERVE_MODEL": "mobilenet_v3_small",
        "BATCHSERVE_WEIGHTS": "random",
        "BATCHSERVE_MAX_BATCH_SIZE": "2",
        "BATCHSERVE_PRECISION": "fp32",
        "BATCHSERVE_COMPILE": "off",
        # The program is under test, not the engine: torch starts without a conversion.
        "BATCHSERVE_ENGINE": "torch",
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
    assert re.search(r"\| CPU \| .+; flags: \S", report), "the CPU and its flags are named"
    raw = _rows(report.partition("## 1.")[2].partition("## 2.")[0])
    assert [(row[0], row[1]) for row in raw] == [("fp32", "1"), ("fp32", "2")]
    assert all(float(row[2]) > 0 for row in raw), raw
    for heading, largest_batch in (("**batching on**", 2.0), ("**batching off**", 1.0)):
        section = report.partition(heading)[2].partition("**batching")[0].partition("## 3.")[0]
        rows = _rows(section)
        assert [row[0] for row in rows] == ["1", "2"], section
        for row in rows:
            requests_per_s, mean_batch, errors = float(row[1]), float(row[5]), int(row[6])
            assert requests_per_s > 0, row
            assert errors == 0, row
            assert 1.0 <= mean_batch <= largest_batch, row
    assert out.with_suffix(".png").stat().st_size > 0


def _rows(markdown: str) -> list[list[str]]:
    """The body rows of the first table in ``markdown``, as cells."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
