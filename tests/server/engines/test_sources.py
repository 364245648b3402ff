"""Every source on every engine and precision that docs/models.md says runs it.

Each row builds the engine the way the server does (plan, load, build) from a
file of the tiny 12-class network and compares its probabilities with the
network's own in eager PyTorch.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from server.engines import build_engine
from server.models.loading import load_model
from server.models.plan import DeviceError, resolve_plan
from tests.conftest import make_settings, tiny_classifier

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow

#: source file, engine, precision, largest probability difference allowed.
ROWS = [
    ("ts", "torch", "fp32", 1e-4),
    ("pt2", "torch", "fp32", 1e-4),
    ("ts", "openvino", "fp32", 1e-4),
    ("pt2", "openvino", "fp32", 1e-4),
    ("onnx", "openvino", "fp32", 1e-4),
    ("xml", "openvino", "fp32", 1e-4),
    ("ts", "openvino", "bf16", 0.05),
    ("pt2", "openvino", "bf16", 0.05),
    ("onnx", "openvino", "bf16", 0.05),
    ("xml", "openvino", "bf16", 0.05),
    ("ts", "openvino", "int8", 0.1),
    ("pt2", "openvino", "int8", 0.1),
    ("onnx", "openvino", "int8", 0.1),
    ("xml", "openvino", "int8", 0.1),
]


def _inputs() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(3, 224, 224, generator=generator) for _ in range(3)]


@pytest.mark.parametrize(("kind", "engine", "precision", "tolerance"), ROWS)
def test_each_documented_row_runs_and_agrees_with_eager_pytorch(
    tiny_files: dict[str, Path],
    tmp_path: Path,
    kind: str,
    engine: str,
    precision: str,
    tolerance: float,
) -> None:
    settings = make_settings(
        model=str(tiny_files[kind]), engine=engine, precision=precision,
        cache_dir=tmp_path, int8_min_agreement=0.0, max_batch_size=4,
    )  # fmt: skip
    plan = resolve_plan(settings)
    assert (plan.engine, plan.precision) == (engine, precision)
    built = build_engine(load_model(settings), plan, settings)
    built.engine.warm_up(4)
    rows = built.engine.run(_inputs())
    with torch.inference_mode():
        expected = tiny_classifier()(torch.stack(_inputs())).softmax(dim=1)
    assert len(rows) == 3
    for row, probabilities in zip(rows, expected, strict=True):
        for index, probability in row.top:
            assert abs(probability - float(probabilities[index])) <= tolerance
    if precision == "fp32":
        assert [row.top[0][0] for row in rows] == expected.argmax(dim=1).tolist()


@pytest.mark.parametrize(("kind", "engine", "precision", "message"), [
    ("onnx", "torch", "auto", "cannot run an ONNX file"),
    ("xml", "torch", "auto", "cannot run an OpenVINO IR file"),
    ("ts", "torch", "bf16", "model files run in fp32 on the torch engine"),
    ("pt2", "torch", "int8", "model files run in fp32 on the torch engine"),
])  # fmt: skip
def test_rows_the_docs_say_no_to_are_refused_at_startup(
    tiny_files: dict[str, Path], kind: str, engine: str, precision: str, message: str
) -> None:
    with pytest.raises(DeviceError, match=message):
        resolve_plan(make_settings(model=str(tiny_files[kind]), engine=engine, precision=precision))


def test_the_torch_engine_never_compiles_a_file(tiny_files: dict[str, Path]) -> None:
    assert not resolve_plan(make_settings(model=str(tiny_files["pt2"]), compile="auto")).compiled
    with pytest.raises(DeviceError, match="BATCHSERVE_COMPILE=on compiles torchvision models"):
        resolve_plan(make_settings(model=str(tiny_files["pt2"]), compile="on"))


class _SoftmaxHead(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = tiny_classifier()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).softmax(dim=1)


@pytest.mark.parametrize("engine", ["torch", "openvino"])
def test_a_model_that_outputs_probabilities_is_not_softmaxed_again(
    tmp_path: Path, engine: str
) -> None:
    path = tmp_path / "probabilities.ts"
    torch.jit.trace(_SoftmaxHead().eval(), torch.zeros(1, 3, 224, 224)).save(str(path))
    settings = make_settings(model=str(path), engine=engine, output="probabilities")
    built = build_engine(load_model(settings), resolve_plan(settings), settings)
    row = built.engine.run(_inputs()[:1])[0]
    with torch.inference_mode():
        expected = _SoftmaxHead().eval()(torch.stack(_inputs()[:1]))[0]
    index, probability = row.top[0]
    assert abs(probability - float(expected[index])) < 1e-4
    assert abs(sum(p for _, p in row.top) - float(expected.topk(len(row.top)).values.sum())) < 1e-4
