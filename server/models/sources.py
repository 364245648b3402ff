"""What the settings alone say about a model, without torch: its name and its file's kind.

The CLI checks these before it loads torch (a typo is answered at once); the
loading steps use the same functions, so both report a problem alike.
"""

from __future__ import annotations

from pathlib import Path

from server.config import (
    FILE_SOURCES,
    MODEL_FILE_SUFFIXES,
    MODEL_NAME_PATTERN,
    Settings,
    is_model_path,
)
from server.models.errors import ModelConfigError, ModelLoadError


def served_name(settings: Settings) -> str:
    """BATCHSERVE_MODEL_NAME, else the torchvision name or the file's stem (checked)."""
    if settings.model_name:
        return settings.model_name
    name = Path(settings.model).stem if is_model_path(settings.model) else settings.model
    if not MODEL_NAME_PATTERN.match(name):
        raise ModelLoadError(
            f"the file name {name!r} is not a valid model name (letters, digits, '_', '.', "
            "'-'): set BATCHSERVE_MODEL_NAME"
        )
    return name


def source_of(path: Path) -> str:
    """The source kind for a path; a clear error for a missing file or unknown extension."""
    suffix = path.suffix.lower()
    if suffix not in FILE_SOURCES:
        raise ModelConfigError(
            f"BATCHSERVE_MODEL={path}: unknown model file type {suffix or '(none)'!r}; "
            f"expected one of {', '.join(MODEL_FILE_SUFFIXES)} (TorchScript, torch.export, "
            "ONNX, OpenVINO IR). A state_dict (.pth) is served with BATCHSERVE_MODEL="
            "<torchvision architecture> and BATCHSERVE_WEIGHTS=<the file>."
        )
    if not path.is_file():
        raise ModelConfigError(f"BATCHSERVE_MODEL={path}: no such file")
    if FILE_SOURCES[suffix] == "openvino" and not path.with_suffix(".bin").is_file():
        raise ModelConfigError(
            f"BATCHSERVE_MODEL={path}: an OpenVINO IR needs its weights beside it, "
            f"{path.with_suffix('.bin').name} (ov.save_model writes both)"
        )
    return FILE_SOURCES[suffix]
