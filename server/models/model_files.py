"""Reading model files: TorchScript (``.ts``, ``.pt``), torch.export (``.pt2``) and ONNX.

Only trusted files should be served: TorchScript and ``.pt2`` archives carry
code that runs when they load. A ``.pt`` that is a pickled module is refused
without being unpickled (that would run arbitrary code); a ``.pt`` that is a
state_dict is refused with the settings that serve it.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from server.config import OPENVINO_FILE_SOURCES
from server.models.errors import ModelLoadError
from server.models.sources import source_of


@dataclass(frozen=True, slots=True)
class ModelFile:
    """A model file read from disk; which fields are set depends on ``source``."""

    path: Path
    source: str
    module: nn.Module | None = None
    exported: Any = None
    #: The input's height and width when the file fixes them (ExportedProgram, ONNX).
    fixed_size: tuple[int, int] | None = None
    #: The batch size when the file fixes it (an export without a dynamic batch dimension).
    fixed_batch: int | None = None


def read_model_file(path: Path) -> ModelFile:
    """Read ``path`` (CPU, eval mode) according to its extension."""
    source = source_of(path)
    if source == "torchscript":
        return ModelFile(path, source, module=_torchscript(path))
    if source == "exported":
        return _exported(path)
    return ModelFile(path, source, fixed_size=input_size(path), fixed_batch=_fixed_batch(path))


def companions(path: Path) -> list[Path]:
    """The files a model file needs beside it: an OpenVINO IR's weights (model.bin)."""
    return [path.with_suffix(".bin")] if source_of(path) == "openvino" else []


def _torchscript(path: Path) -> nn.Module:
    try:
        module: nn.Module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise ModelLoadError(_not_torchscript(path, exc)) from exc
    return module.eval()


def _not_torchscript(path: Path, exc: Exception) -> str:
    """Why a ``.pt``/``.ts`` is not TorchScript, and what to do instead."""
    if not zipfile.is_zipfile(path):
        return f"{path} is not a TorchScript file (corrupt or another format): {exc}"
    try:
        # weights_only never runs code: a pickled module fails here, a state_dict loads.
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return (
            f"{path} is a pickled module (torch.save(model)), which batchserve does not "
            "load: unpickling runs arbitrary code and depends on your classes. Save it as "
            "TorchScript (torch.jit.script(model).save('model.pt')) or as a torch.export "
            "archive (torch.export.save(torch.export.export(model, ...), 'model.pt2'))."
        )
    if isinstance(content, dict):
        return (
            f"{path} is a state_dict, not TorchScript: serve it with "
            f"BATCHSERVE_MODEL=<its torchvision architecture> and BATCHSERVE_WEIGHTS={path}"
        )
    return f"{path} is not TorchScript (it holds a {type(content).__name__}): {exc}"


def _exported(path: Path) -> ModelFile:
    if not zipfile.is_zipfile(path):  # torch would log a traceback before refusing it
        raise ModelLoadError(f"{path} is not a torch.export archive (corrupt?): not a zip file")
    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        raise ModelLoadError(f"{path} is not a torch.export archive (corrupt?): {exc}") from exc
    shape = _exported_shape(program)
    static = [int(d) if isinstance(d, int) else None for d in shape]
    height_width = (static[2], static[3]) if len(static) == 4 else (None, None)
    return ModelFile(
        path,
        "exported",
        module=program.module(),
        exported=program,
        fixed_size=height_width if None not in height_width else None,  # type: ignore[arg-type]
        fixed_batch=static[0] if static else None,
    )


def _exported_shape(program: Any) -> tuple[Any, ...]:
    """The first user input's shape: ints where the export fixed them, symbols elsewhere."""
    specs = program.graph_signature.input_specs
    names = {spec.arg.name for spec in specs if spec.kind.name == "USER_INPUT"}
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in names:
            return tuple(node.meta["val"].shape)
    return ()


def input_size(path: Path) -> tuple[int, int] | None:
    """An ONNX or IR file's fixed input height and width (read by OpenVINO), if it fixes them."""
    model = read_with_openvino(path)
    shape = model.inputs[0].partial_shape
    if shape.rank.is_static and len(shape) == 4 and shape[2].is_static and shape[3].is_static:
        return shape[2].get_length(), shape[3].get_length()
    return None


def _fixed_batch(path: Path) -> int | None:
    shape = read_with_openvino(path).inputs[0].partial_shape
    if shape.rank.is_static and len(shape) >= 1 and shape[0].is_static:
        return int(shape[0].get_length())
    return None


def read_with_openvino(path: Path) -> Any:
    """The ONNX or IR file as an OpenVINO model; OpenVINO is the engine that runs them."""
    kind = OPENVINO_FILE_SOURCES[source_of(path)]
    try:
        import openvino as ov
    except ImportError:
        raise ModelLoadError(
            f"{path}: {kind} models run on the OpenVINO engine: pip install 'batchserve[openvino]'"
        ) from None
    try:
        return ov.Core().read_model(str(path))
    except Exception as exc:
        raise ModelLoadError(f"{path} is not a readable {kind} model (corrupt?): {exc}") from exc
