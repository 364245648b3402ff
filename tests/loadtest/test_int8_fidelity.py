"""``python -m loadtest.int8_fidelity``: int8 on real classifiers, by the server's own recipe."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from loadtest import int8_fidelity
from server.engines.int8 import FidelityReport
from tests.conftest import run_benchmark

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow


#: A row of the report's table: agreement (interval), top-5, largest difference, s, images/s.
ROW = re.compile(
    r"\| EfficientNet-Lite1 \| (?P<lever>[^|]+) \| (?P<top1>\d+)% \((?P<low>\d+)%-(?P<high>\d+)%\) "
    r"\| (?P<top5>\d+)% \| (?P<diff>[\d.]+) \| \d+ \| (?P<speed>[\d.]+) \|"
)


def test_each_lever_is_judged_on_the_held_out_photos_beside_the_noise_floor(
    tmp_path: Path,
) -> None:
    args = ["--variants", "1", "--levers", "recipe,depthwise", "--speed-seconds", "0.3"]
    report = run_benchmark("loadtest.int8_fidelity", args, tmp_path)
    assert f"python -m loadtest.int8_fidelity {' '.join(args)}" in report
    assert "checked on the 22 shipped held-out photos" in report
    rows = {m["lever"].strip(): m for m in ROW.finditer(report)}
    assert set(rows) == {int8_fidelity.RECIPE, int8_fidelity.DEPTHWISE}, report
    for row in rows.values():
        low, top1, high = (int(row[k]) for k in ("low", "top1", "high"))
        assert low <= top1 <= high
        assert high - low > 10  # 22 photos measure roughly
        assert float(row["diff"]) < 0.5
        assert int(row["top5"]) >= 60
        assert float(row["speed"]) > 0
    floor = re.search(r"\(uniform, 3 seeds\): (\d+), (\d+), (\d+) of 22", report)
    assert floor, report
    assert all(0 <= int(n) <= 22 for n in floor.groups())


def test_an_unknown_lever_is_refused_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        int8_fidelity.main(["--levers", "recipe,sharpen"])
    assert stop.value.code == 2
    assert "unknown lever sharpen" in capsys.readouterr().err


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


def test_accuracy_control_returns_an_int8_model_within_its_drop_of_fp32() -> None:
    import openvino as ov
    import torch

    from server.engines.calibration import CalibrationSet

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10),
    ).eval()  # fmt: skip
    model = ov.convert_model(net, example_input=torch.zeros(1, 3, 32, 32))
    crops = tuple(torch.randn(3, 32, 32) for _ in range(12))
    quantized = int8_fidelity._accuracy_control(model, CalibrationSet(crops, (), "-", "test"))
    assert any(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops())
    f32 = {"INFERENCE_PRECISION_HINT": "f32"}
    fp32, int8 = (ov.Core().compile_model(m, "CPU", f32) for m in (model, quantized))
    inputs = [crop.unsqueeze(0).numpy() for crop in crops]
    agreeing = sum(int(fp32(x)[0].argmax()) == int(int8(x)[0].argmax()) for x in inputs)
    assert agreeing / len(inputs) >= 1 - 0.02 - 1 / len(inputs)
