from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.client import LoadResult
from loadtest.model_bench import RawPoint
from loadtest.report import Benchmark, ServerRun, markdown, plot, ratios


def _level(concurrency: int, rate: float, batch: int) -> LoadResult:
    latencies = [concurrency / rate] * int(rate * 10)
    return LoadResult(concurrency, 10.0, latencies, [batch] * len(latencies))


def _bench() -> Benchmark:
    on = ServerRun("batching on", 8, 12.0, [_level(1, 5, 1), _level(32, 9, 8)], [2.0, 4.0], 900)
    off = ServerRun("batching off", 1, 11.0, [_level(1, 5, 1), _level(32, 6, 1)], [], 800)
    raw = [RawPoint("fp32", 1, 9.0, 111.0), RawPoint("fp32", 8, 10.0, 800.0)]
    return Benchmark("make bench", {"CPU": "test"}, raw, 20.0, 9.5, [on, off])


def test_ratios_compare_saturation_pipeline_raw_and_batching() -> None:
    values = dict(ratios(_bench()))
    assert values["server at saturation / in-process pipeline"] == pytest.approx(9 / 9.5)
    assert values["server at saturation / raw forward at max batch"] == pytest.approx(0.9)
    assert values["batching on / off at concurrency 32"] == pytest.approx(1.5)
    assert values["p50 at concurrency 1 / (raw bs=1 forward + decode)"] == pytest.approx(
        200 / 131, rel=0.01
    )


def test_markdown_holds_the_command_tables_and_plot(tmp_path: Path) -> None:
    text = markdown(_bench(), "benchmarks.png")
    assert "```sh\nmake bench\n```" in text
    assert "| 32 | 9.0 |" in text
    assert "![throughput and latency](benchmarks.png)" in text
    assert "Largest server RSS under load: 900 MB." in text
    plot(_bench(), tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes().startswith(b"\x89PNG")
