"""int8: NNCF quantization, the fidelity comparison, and the gate that refuses a bad model."""

from __future__ import annotations

import logging
import math
import sys

import openvino as ov
import pytest
import torch

from server.engines import calibration, int8
from server.engines.errors import CalibrationError, Int8FidelityError
from server.engines.openvino_engine import OpenVinoEngine, convert
from server.models.torchvision_models import load_torchvision_model, resolve_weights

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow


def test_identical_answers_agree_fully() -> None:
    logits = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))
    report = int8.compare(logits, logits.clone())
    assert (report.photos, report.top1_agreement, report.top5_overlap) == (4, 1.0, 1.0)
    assert report.max_probability_difference == 0.0


def test_a_changed_top_class_lowers_agreement() -> None:
    fp32 = torch.eye(4) * 10
    other = fp32.clone()
    other[0] = torch.tensor([0.0, 10.0, 0.0, 0.0])
    report = int8.compare(fp32, other)
    assert report.top1_agreement == 0.75
    assert report.max_probability_difference > 0.9


def test_the_agreement_comes_with_its_95_percent_wilson_interval() -> None:
    z, n, share = 1.959964, 22, 20 / 22  # Wilson's formula written out for 20 of 22
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    assert int8.wilson_interval(20, 22) == pytest.approx((centre - half, centre + half), abs=1e-5)
    everything = int8.wilson_interval(22, 22)
    assert everything[1] == 1.0
    assert 0.8 < everything[0] < 0.9  # 22 of 22 is not certainty
    report = int8.compare(torch.eye(4) * 10, torch.eye(4).roll(1, 0) * 10)
    assert (report.top1_agreement, report.top1_low) == (0.0, 0.0)
    assert report.top1_high == pytest.approx(int8.wilson_interval(0, 4)[1], abs=1e-4)
    assert "95% interval 0%-49%" in report.describe()


def test_the_gate_refuses_real_weights_and_only_warns_for_random_ones(caplog) -> None:
    report = int8.FidelityReport(3, 2 / 3, 0.8, 0.2)
    with pytest.raises(Int8FidelityError, match=r"BATCHSERVE_INT8_MIN_AGREEMENT=0\.8"):
        int8.check(report, 0.8, random_weights=False)
    with caplog.at_level(logging.WARNING):
        int8.check(report, 0.8, random_weights=True)
    assert "not enforced" in caplog.text
    int8.check(report, 0.6, random_weights=False)


def test_quantization_gives_an_int8_model_close_to_fp32() -> None:
    model = load_torchvision_model(resolve_weights("mobilenet_v2", "random"))
    samples = calibration.load(None, None, model.preprocessing)
    fp32 = convert(model)
    quantized = int8.quantize(fp32, samples)
    kinds = {op.get_type_name() for op in quantized.get_ops()}
    assert "FakeQuantize" in kinds  # what NNCF inserts; the CPU plugin runs them as int8
    reference = OpenVinoEngine(model, fp32, "fp32", 1, 2)
    candidate = OpenVinoEngine(model, quantized, "int8", 1, 2)
    report = int8.compare(reference.logits(samples.held_out), candidate.logits(samples.held_out))
    assert report.photos == len(samples.held_out) >= calibration.MIN_HELD_OUT
    assert report.top1_low <= report.top1_agreement <= report.top1_high
    assert 0.0 <= report.max_probability_difference < 0.5


def test_the_operations_named_for_fp32_stay_unquantized() -> None:
    model = load_torchvision_model(resolve_weights("mobilenet_v3_small", "random"))
    samples = calibration.load(None, None, model.preprocessing)
    fp32 = convert(model)

    def quantizers(quantized: ov.Model) -> int:
        return sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops())

    everything = quantizers(int8.quantize(fp32, samples))
    first_conv = next(op for op in fp32.get_ordered_ops() if op.get_type_name() == "Convolution")
    one_less = quantizers(int8.quantize(fp32, samples, (first_conv.get_friendly_name(),)))
    no_depthwise = quantizers(int8.quantize(fp32, samples, ("GroupConvolution",)))
    assert 0 < no_depthwise < one_less < everything
    ends = quantizers(int8.quantize(fp32, samples, (int8.FIRST_LAYER, int8.LAST_LAYER)))
    assert ends < one_less  # the first layer by position is the one named above, and the last
    with pytest.raises(CalibrationError, match=r"Depthwise is no operation type or name"):
        int8.quantize(fp32, samples, ("Depthwise",))


def test_without_nncf_quantizing_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "nncf", None)
    assert int8.nncf_version() is None
    samples = calibration.CalibrationSet((), (), "", "")
    with pytest.raises(CalibrationError, match=r"pip install 'batchserve\[int8\]'"):
        int8.quantize(None, samples)  # type: ignore[arg-type]
