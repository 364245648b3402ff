"""Model files for tests: a module exported as TorchScript, torch.export (.pt2) and ONNX."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

SOURCES = ("ts", "pt2", "onnx")


def example(crop: int, batch: int = 2) -> torch.Tensor:
    return torch.zeros(batch, 3, crop, crop)


def export(
    module: nn.Module, folder: Path, crop: int, kinds: tuple[str, ...] = SOURCES
) -> dict[str, Path]:
    """``module`` saved in each of ``kinds`` under ``folder``, with a dynamic batch dimension."""
    folder.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    paths = {}
    for kind in kinds:
        path = folder / f"model.{kind}"
        {"ts": _torchscript, "pt2": _exported, "onnx": _onnx}[kind](module, path, crop)
        paths[kind] = path
    return paths


def _torchscript(module: nn.Module, path: Path, crop: int) -> None:
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.jit.trace(module, example(crop)).save(str(path))


def _exported(module: nn.Module, path: Path, crop: int, batch: Any = "dynamic") -> None:
    shapes = ({0: torch.export.Dim("batch", min=1, max=1024)},) if batch == "dynamic" else None
    size = 2 if batch == "dynamic" else batch
    program = torch.export.export(module, (example(crop, size),), dynamic_shapes=shapes)
    torch.export.save(program, str(path))


def exported_with_fixed_batch(module: nn.Module, path: Path, crop: int, batch: int) -> Path:
    _exported(module.eval(), path, crop, batch)
    return path


def _onnx(module: nn.Module, path: Path, crop: int) -> None:
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
            external_data=False,  # one file: the repository test links it alone
        )
