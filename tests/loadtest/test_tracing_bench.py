"""``python -m loadtest.tracing_bench``: rounds off and on, every span of an "on" round received."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import run_benchmark

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow


def test_the_tracing_benchmark_alternates_rounds_and_counts_the_spans_received(
    tmp_path: Path,
) -> None:
    args = ["--model", "mobilenet_v3_small", "--concurrency", "1", "--duration", "1",
            "--rounds", "1"]  # fmt: skip
    report = run_benchmark("loadtest.tracing_bench", args, tmp_path)
    assert "python -m loadtest.tracing_bench --model mobilenet_v3_small" in report
    assert "- CPU: " in report
    rows = [line.strip("|").split("|") for line in report.splitlines()
            if re.match(r"\| \d+ \| (on|off) \|", line)]  # fmt: skip
    assert [(row[0].strip(), row[1].strip()) for row in rows] == [("1", "off"), ("2", "on")]
    off, on = rows
    assert off[-1].strip() == "-"
    # Warm-up and measured requests, 4 spans each and a batch's: far more than the level's few.
    assert int(on[-1]) > 4 * float(on[3])
    for row in rows:
        assert float(row[3]) > 0  # req/s
        assert 0 < float(row[6]) < 50  # the event loop's CPU ms per request, measured
    off_ns = re.search(r"Off, the tracing calls of one request take (\d+) ns", report)
    assert off_ns is not None
    assert 0 < int(off_ns[1]) < 100_000
    assert re.search(r"- c=1: off [\d.]+ req/s \(rounds [\d.]+ % apart\), on [\d.]+ req/s", report)
