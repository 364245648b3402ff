"""``python -m loadtest.int8_fidelity``: int8 on real classifiers, by the server's own recipe."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest import int8_fidelity
from server.engines import calibration
from server.engines.int8 import FidelityReport
from tests.conftest import benchmark_environment, run_benchmark

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow


def _measured(variants: list[int], levers: list[str]) -> list[dict[str, object]]:
    """``measure()`` in a process of its own, outside coverage's tracer."""
    code = (
        "import dataclasses, json\nfrom loadtest import int8_fidelity as f\n"
        f"r = f.measure({variants!r}, {levers!r}, speed_s=0.3)\n"
        "print(json.dumps([dataclasses.asdict(m) for m in r]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=benchmark_environment(), capture_output=True,
        text=True, timeout=1500, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    measured: list[dict[str, object]] = json.loads(result.stdout.splitlines()[-1])
    return measured


def test_each_lever_is_judged_on_the_held_out_photos_with_its_interval() -> None:
    levers = [int8_fidelity.RECIPE, int8_fidelity.DEPTHWISE]
    everything, depthwise = _measured([2], levers)
    for measured in (everything, depthwise):
        report = FidelityReport(**measured["fidelity"])  # type: ignore[arg-type]
        assert report.photos >= calibration.MIN_HELD_OUT
        assert report.top1_low <= report.top1_agreement <= report.top1_high
        assert report.top1_high - report.top1_low > 0.1  # 22 photos measure roughly
        assert report.max_probability_difference < 0.5
        assert report.top5_overlap >= 0.6
        assert measured["images_per_s"] > 0  # type: ignore[operator]


def test_the_report_names_the_photos_and_the_noise_floor(tmp_path: Path) -> None:
    args = ["--variants", "1", "--levers", "recipe"]
    report = run_benchmark("loadtest.int8_fidelity", args, tmp_path)
    assert "python -m loadtest.int8_fidelity --variants 1 --levers recipe" in report
    assert "checked on the 22 shipped held-out photos" in report
    assert f"| EfficientNet-Lite1 | {int8_fidelity.RECIPE} |" in report
    floor = re.search(r"\(uniform, 3 seeds\): (\d+), (\d+), (\d+) of 22", report)
    assert floor, report
    assert all(0 <= int(n) <= 22 for n in floor.groups())


def test_the_table_gives_each_lever_its_interval() -> None:
    fidelity = FidelityReport(22, 0.9091, 0.8545, 0.1234, 0.7219, 0.9747)
    measured = int8_fidelity.Measured(2, int8_fidelity.RECIPE, fidelity, 61.2, 108.07)
    row = f"| EfficientNet-Lite2 | {int8_fidelity.RECIPE} | 91% (72%-97%) | 85% | 0.123 | 61 |"
    assert int8_fidelity.table([measured])[2] == f"{row} 108.1 |"


def test_both_variants_load_their_own_weights() -> None:
    lite1, lite2 = int8_fidelity.efficientnet_lite(1), int8_fidelity.efficientnet_lite(2)
    assert (lite1.preprocessing.crop_size, lite2.preprocessing.crop_size) == (240, 260)
    assert (lite1.preprocessing.resize_size, lite2.preprocessing.resize_size) == (274, 297)
    assert lite1.sha256 != lite2.sha256
