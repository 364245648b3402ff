"""Model files for tests and benchmarks: a module as TorchScript, .pt2, ONNX and OpenVINO IR.

Every export has a dynamic batch dimension, as docs/models.md asks of users,
except :func:`exported_with_fixed_batch`, which makes the file the server refuses.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Final

import torch
from torch import nn

#: The file kinds, by extension.
SOURCES: Final = ("ts", "pt2", "onnx", "xml")


def example(crop: int, batch: int = 2) -> torch.Tensor:
    """A zero batch of ``batch`` RGB images of ``crop`` x ``crop``."""
    return torch.zeros(batch, 3, crop, crop)


def export(
    module: nn.Module, folder: Path, crop: int, kinds: tuple[str, ...] = SOURCES
) -> dict[str, Path]:
    """``module`` saved as ``folder/model.<kind>`` for each of ``kinds``."""
    writers: dict[str, Callable[[nn.Module, Path, int], None]] = {
        "ts": torchscript,
        "pt2": exported,
        "onnx": onnx,
        "xml": openvino_ir,
    }
    folder.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    paths = {}
    for kind in kinds:
        paths[kind] = folder / f"model.{kind}"
        writers[kind](module, paths[kind], crop)
    return paths


def torchscript(module: nn.Module, path: Path, crop: int) -> None:
    """Traced TorchScript (tracing, unlike scripting, takes any module)."""
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # torch deprecates TorchScript in favour of export
        traced = torch.jit.trace(module, example(crop))  # type: ignore[no-untyped-call]
        traced.save(str(path))


def exported(module: nn.Module, path: Path, crop: int) -> None:
    """A torch.export archive with a dynamic batch dimension."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(module, (example(crop),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))


def exported_with_fixed_batch(module: nn.Module, path: Path, crop: int, batch: int) -> Path:
    """A torch.export archive that takes batches of exactly ``batch`` images."""
    torch.export.save(torch.export.export(module.eval(), (example(crop, batch),)), str(path))
    return path


def onnx(module: nn.Module, path: Path, crop: int) -> None:
    """ONNX from the dynamo exporter, weights inside the one file."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    # The exporter reports its progress on stdout.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example(crop),),
            str(path),
            dynamic_shapes=({0: batch},),
            dynamo=True,
            external_data=False,
        )


def openvino_ir(module: nn.Module, path: Path, crop: int) -> None:
    """OpenVINO IR (``path`` and its .bin), fp32 weights, a dynamic batch dimension."""
    import openvino as ov

    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        model = ov.convert_model(module, example_input=example(crop))
    model.reshape({model.inputs[0]: ov.PartialShape([-1, 3, crop, crop])})
    ov.save_model(model, str(path), compress_to_fp16=False)
