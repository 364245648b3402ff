"""Which models to serve: the one the settings name, or every folder of a model repository.

A repository is laid out like Triton's: one folder per model, named after it,
holding exactly one of ``model.pt``, ``model.ts``, ``model.pt2``, ``model.onnx``
(or a ``config.toml`` naming a torchvision ``model``), an optional
``labels.txt`` and an optional ``config.toml`` whose keys are the per-model
settings in lower case. Process-wide ``BATCHSERVE_*`` values are every model's
defaults; the model's own files and keys win.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from server.config import (
    MODEL_FILE_SUFFIXES,
    MODEL_NAME_PATTERN,
    Settings,
    SettingsError,
    with_model_settings,
)
from server.models.errors import ModelConfigError
from server.models.sources import served_name

CONFIG_FILE: Final = "config.toml"
LABELS_FILE: Final = "labels.txt"
#: config.toml keys that name files: relative paths are read from the model's folder.
_PATH_KEYS: Final = ("model", "weights", "labels", "calibration_dir", "held_out_dir")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model to serve: its name and its own settings."""

    name: str
    settings: Settings


def model_specs(settings: Settings) -> list[ModelSpec]:
    """Every model the settings ask for, in name order (one without a repository)."""
    if settings.model_repository is None:
        return [ModelSpec(served_name(settings), settings)]
    root = settings.model_repository
    if not root.is_dir():
        raise ModelConfigError(f"BATCHSERVE_MODEL_REPOSITORY={root}: no such folder")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ModelConfigError(f"BATCHSERVE_MODEL_REPOSITORY={root} has no model folders")
    return [_folder_spec(folder, settings) for folder in folders]


def default_model(settings: Settings, names: list[str]) -> str:
    """BATCHSERVE_DEFAULT_MODEL (checked), else the only model; several and none: an error."""
    if settings.default_model:
        if settings.default_model not in names:
            raise ModelConfigError(
                f"BATCHSERVE_DEFAULT_MODEL={settings.default_model} is not served; the models "
                f"are: {', '.join(names)}"
            )
        return settings.default_model
    if len(names) > 1:
        raise ModelConfigError(
            f"several models are served ({', '.join(names)}) and BATCHSERVE_DEFAULT_MODEL does "
            "not say which one POST /predict serves: set it"
        )
    return names[0]


def _folder_spec(folder: Path, settings: Settings) -> ModelSpec:
    name = folder.name
    if not MODEL_NAME_PATTERN.match(name):
        raise ModelConfigError(
            f"{folder}: a model folder's name is the model's name: letters, digits, '_', '.', "
            "'-', at most 64"
        )
    overrides = _read_config(folder)
    files = [folder / f"model{suffix}" for suffix in MODEL_FILE_SUFFIXES]
    found = [path for path in files if path.is_file()]
    if len(found) > 1:
        names = ", ".join(path.name for path in found)
        raise ModelConfigError(
            f"model {name}: {folder} holds several model files ({names}); keep one"
        )
    if found and "model" in overrides:
        raise ModelConfigError(
            f"model {name}: {found[0]} and `model =` in {CONFIG_FILE} both say what to serve"
        )
    if found:
        overrides["model"] = str(found[0])
    elif "model" not in overrides:
        raise ModelConfigError(
            f"model {name}: {folder} has no model file (model.pt, model.ts, model.pt2 or "
            f"model.onnx) and its {CONFIG_FILE} names no torchvision `model`"
        )
    if (folder / LABELS_FILE).is_file() and "labels" not in overrides:
        overrides["labels"] = str(folder / LABELS_FILE)
    overrides.setdefault("labels", None)  # never another model's BATCHSERVE_LABELS
    try:
        own = with_model_settings(settings, overrides, str(folder), model_name=name)
    except SettingsError as exc:
        raise ModelConfigError(f"model {name}: {exc}") from exc
    return ModelSpec(name, own)


def _read_config(folder: Path) -> dict[str, object]:
    path = folder / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ModelConfigError(f"{path}: {exc}") from exc
    for key in _PATH_KEYS:
        value = config.get(key)
        if isinstance(value, str) and _is_relative_file(value, key):
            config[key] = str(_inside(folder, value, f"{path}: {key} = {value!r}"))
    return config


def _inside(folder: Path, relative: str, where: str) -> Path:
    """``folder / relative``, refused when it leads out of the model's folder (``../``, links).

    A relative path in config.toml belongs to the model; one that leaves its
    folder would let a model folder read files it does not own. Absolute paths
    are the operator's explicit choice and stay allowed.
    """
    target = folder / relative
    if not target.resolve().is_relative_to(folder.resolve()):
        raise ModelConfigError(
            f"{where} leads out of the model's folder {folder}; keep relative paths inside "
            "it, or give an absolute path"
        )
    return target


def _is_relative_file(value: str, key: str) -> bool:
    """A relative path (``weights = "best.pth"``), not a name such as resnet50 or DEFAULT."""
    if key == "model" and "." not in value and "/" not in value:
        return False
    if key == "weights" and not Path(value).suffix:
        return False
    return not Path(value).expanduser().is_absolute()
