"""Which models to serve: the one the settings name, or every folder of a model repository.

A repository is laid out like Triton's: one folder per model, named after it,
holding numbered version folders (``1/``, ``2/``) each with exactly one of
``model.pt``, ``model.ts``, ``model.pt2``, ``model.onnx`` and optionally its own
``labels.txt``; or, batchserve's first layout, that one model file directly in
the model's folder (version 1), or a ``config.toml`` naming a torchvision
``model``. Beside the versions: an optional ``labels.txt`` and an optional
``config.toml`` whose keys are the per-model settings in lower case, and
``version_policy`` (:mod:`server.models.versions`). Process-wide
``BATCHSERVE_*`` values are every model's defaults; the model's own files and
keys win.
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
from server.models.versions import parse_policy, version_folders

CONFIG_FILE: Final = "config.toml"
LABELS_FILE: Final = "labels.txt"
#: config.toml keys that name files: relative paths are read from the model's folder.
_PATH_KEYS: Final = ("model", "weights", "labels", "calibration_dir", "held_out_dir")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model version to serve: its name, its own settings and its version number."""

    name: str
    settings: Settings
    version: int = 1


def model_specs(settings: Settings) -> list[ModelSpec]:
    """Every model version to serve at startup, by name then version (one without a repository).

    Under ``BATCHSERVE_MODEL_CONTROL=explicit`` with ``BATCHSERVE_LOAD_MODELS``,
    only those models (each of which must have a folder).
    """
    if settings.model_dir is not None:
        return mounted_specs(settings, settings.model_dir)
    if settings.model_repository is None:
        return [ModelSpec(served_name(settings), settings)]
    names = [folder.name for folder in model_folders(settings)]
    if not names:
        raise ModelConfigError(
            f"BATCHSERVE_MODEL_REPOSITORY={settings.model_repository} has no model folders"
        )
    if settings.model_control == "explicit" and settings.load_models:
        missing = [name for name in settings.load_models if name not in names]
        if missing:
            raise ModelConfigError(
                f"BATCHSERVE_LOAD_MODELS names {', '.join(missing)}, which the repository "
                f"does not have; it has: {', '.join(names)}"
            )
        names = sorted(set(settings.load_models))
    return [spec for name in names for spec in specs_of(settings, name)]


def mounted_specs(settings: Settings, root: Path) -> list[ModelSpec]:
    """``BATCHSERVE_MODEL_DIR``: whatever a model store mounted there (KServe's /mnt/models).

    One model's folder (its model file, version folders or config.toml at the
    top) is served under BATCHSERVE_MODEL_NAME, else ``model``; a folder whose
    only model file has another name serves that file, with the folder's
    ``labels.txt``; anything else is a repository of model folders.
    """
    if not root.is_dir():
        raise ModelConfigError(f"BATCHSERVE_MODEL_DIR={root}: no such folder")
    if version_folders(root) or _model_files(root) or (root / CONFIG_FILE).is_file():
        return _folder_specs(root, settings, settings.model_name or "model")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix in MODEL_FILE_SUFFIXES)
    if len(files) > 1:
        raise ModelConfigError(
            f"BATCHSERVE_MODEL_DIR={root} holds several model files "
            f"({', '.join(p.name for p in files)}): keep one, or one folder per model"
        )
    if files:
        labels = root / LABELS_FILE
        overrides: dict[str, object] = {
            "model": str(files[0]),
            "labels": str(labels) if labels.is_file() else None,
        }
        own = with_model_settings(settings, overrides, str(root))
        return [ModelSpec(served_name(own), own)]
    fixed = with_model_settings(settings, {}, str(root), model_repository=root, model_dir=None)
    return model_specs(fixed)


def model_folders(settings: Settings) -> list[Path]:
    """The repository's model folders, by name (hidden ones skipped)."""
    root = settings.model_repository
    if root is None or not root.is_dir():
        raise ModelConfigError(f"BATCHSERVE_MODEL_REPOSITORY={root}: no such folder")
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def specs_of(settings: Settings, name: str) -> list[ModelSpec]:
    """The versions of the repository's model ``name`` that its policy serves, as they are now."""
    assert settings.model_repository is not None, "a repository is configured"
    folder = settings.model_repository / name
    if folder.parent != settings.model_repository or name.startswith(".") or not folder.is_dir():
        raise ModelConfigError(f"the repository has no model {name[:64]!r} (no folder {folder})")
    return _folder_specs(folder, settings)


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


def _folder_specs(folder: Path, settings: Settings, name: str | None = None) -> list[ModelSpec]:
    """The versions of one model folder that its version policy serves (named after it)."""
    name = name or folder.name
    if not MODEL_NAME_PATTERN.match(name):
        raise ModelConfigError(
            f"{folder}: a model folder's name is the model's name: letters, digits, '_', '.', "
            "'-', at most 64"
        )
    overrides = _read_config(folder)
    policy = parse_policy(overrides.pop("version_policy", None), str(folder / CONFIG_FILE))
    versions = version_folders(folder)
    if not versions:
        policy.select([1], name)  # the first layout is version 1: the policy must allow it
        return [_version_spec(name, folder, folder, overrides, settings, 1)]
    if _model_files(folder) or "model" in overrides:
        raise ModelConfigError(
            f"model {name}: {folder} has version folders and a model of its own (a model "
            f"file or `model =` in {CONFIG_FILE}); keep the model files in the versions"
        )
    return [
        _version_spec(name, folder, versions[v], overrides, settings, v)
        for v in policy.select(list(versions), name)
    ]


def _model_files(folder: Path) -> list[Path]:
    return [p for p in (folder / f"model{suffix}" for suffix in MODEL_FILE_SUFFIXES) if p.is_file()]


def _version_spec(
    name: str,
    folder: Path,
    version_folder: Path,
    config: dict[str, object],
    settings: Settings,
    version: int,
) -> ModelSpec:
    """One version: its folder's model file (or config's ``model``) and the nearest labels."""
    overrides = dict(config)
    where = f"model {name}" if version_folder == folder else f"model {name} version {version}"
    _add_model_file(overrides, version_folder, where)
    _add_labels(overrides, folder, version_folder)
    overrides.setdefault("labels", None)  # never another model's BATCHSERVE_LABELS
    try:
        own = with_model_settings(settings, overrides, str(folder), model_name=name)
    except SettingsError as exc:
        raise ModelConfigError(f"{where}: {exc}") from exc
    return ModelSpec(name, own, version)


def _add_model_file(overrides: dict[str, object], folder: Path, where: str) -> None:
    """The folder's one model file as ``model``, unless config.toml names a torchvision one."""
    found = _model_files(folder)
    if len(found) > 1:
        names = ", ".join(path.name for path in found)
        raise ModelConfigError(f"{where}: {folder} holds several model files ({names}); keep one")
    if found and "model" in overrides:
        raise ModelConfigError(
            f"{where}: {found[0]} and `model =` in {CONFIG_FILE} both say what to serve"
        )
    if found:
        overrides["model"] = str(found[0])
    elif "model" not in overrides:
        raise ModelConfigError(
            f"{where}: {folder} has no model file (model.pt, model.ts, model.pt2 or "
            f"model.onnx), nor does its {CONFIG_FILE} name a torchvision `model`"
        )


def _add_labels(overrides: dict[str, object], folder: Path, version_folder: Path) -> None:
    """A version's own labels.txt first, then config.toml's ``labels``, then the model's."""
    own = version_folder / LABELS_FILE
    if version_folder != folder and own.is_file():
        overrides["labels"] = str(own)
    elif (folder / LABELS_FILE).is_file() and "labels" not in overrides:
        overrides["labels"] = str(folder / LABELS_FILE)


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
