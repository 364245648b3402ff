"""Loading a torchvision classifier: resolving its weights, labels and preprocessing.

``BATCHSERVE_WEIGHTS`` chooses where the parameters come from: ``DEFAULT`` (the
model's best registry weights), a registry enum name such as ``IMAGENET1K_V1``,
a path to a ``state_dict`` file, or ``random``. Labels and preprocessing always
come from a registry entry: the chosen one, or the model's default for
``random`` and files.
"""

from __future__ import annotations

import hashlib
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlparse

import torch
import torchvision.models
from torch import nn
from torchvision.models import Weights, WeightsEnum, get_model, get_model_weights, list_models

from server.models.errors import ModelConfigError, ModelLoadError
from server.models.preprocess import PreprocessSpec

logger = logging.getLogger(__name__)

RANDOM: Final = "random"
#: Random weights are drawn from this seed: the same model at every start.
RANDOM_SEED: Final = 0
_DOWNLOAD_TIMEOUT_S: Final = 60.0
_HASH_READ_BYTES: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class WeightsChoice:
    """Where the parameters come from, and the registry entry that gives labels/preprocessing."""

    model: str
    source: str  # "registry", "file" or "random"
    entry: Weights
    path: Path | None = None

    @property
    def label(self) -> str:
        """A name for /info and logs: the enum name, the file path, or ``random``."""
        if self.source == "file":
            return str(self.path)
        if self.source == RANDOM:
            return RANDOM
        if isinstance(self.entry, WeightsEnum):
            return f"{type(self.entry).__name__}.{self.entry.name}"
        return Path(urlparse(self.entry.url).path).name


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A classifier in eval mode with everything needed to serve it.

    ``source`` says what it was loaded from: ``torchvision`` (an architecture and
    its weights), ``torchscript``, ``exported`` (a torch.export ``.pt2``) or
    ``onnx``. ``module`` runs it in torch (None for ONNX, which only OpenVINO
    reads, from ``path``); ``exported`` is the ExportedProgram of a ``.pt2``.
    """

    module: nn.Module | None
    name: str
    categories: tuple[str, ...]
    preprocessing: PreprocessSpec
    source: str = "torchvision"
    weights_label: str = RANDOM
    path: Path | None = None
    sha256: str | None = None
    labels_source: str = "imagenet"
    output: str = "logits"
    exported: Any = None

    @property
    def num_classes(self) -> int:
        """How many classes the model scores."""
        return len(self.categories)

    @property
    def random_weights(self) -> bool:
        """True for a torchvision architecture with random (seeded) weights."""
        return self.sha256 is None

    @property
    def identity(self) -> str:
        """What the parameters are, for cache keys: the file's SHA-256, or the random seed."""
        return f"sha256:{self.sha256}" if self.sha256 else f"random:seed={RANDOM_SEED}"


def available_models() -> list[str]:
    """Every torchvision classification model name."""
    return list(list_models(module=torchvision.models))


def resolve_weights(model: str, weights: str) -> WeightsChoice:
    """Turn the ``MODEL``/``WEIGHTS`` settings into a :class:`WeightsChoice`, or explain why not."""
    if model not in available_models():
        raise ModelConfigError(
            f"unknown model {model!r}: BATCHSERVE_MODEL must be a torchvision classification "
            f"model, one of: {', '.join(available_models())}"
        )
    registry: type[WeightsEnum] = get_model_weights(model)
    default = registry.DEFAULT
    if weights.lower() == RANDOM:
        return WeightsChoice(model, RANDOM, default)
    if weights.upper() == "DEFAULT":
        return WeightsChoice(model, "registry", default)
    name = weights.rsplit(".", 1)[-1].upper()
    if name in registry.__members__:
        return WeightsChoice(model, "registry", registry[name])
    return _file_choice(model, weights, default, registry)


def _file_choice(model: str, weights: str, default: Weights, registry: Any) -> WeightsChoice:
    path = Path(weights).expanduser()
    if path.is_file():
        return WeightsChoice(model, "file", default, path)
    names = ", ".join(["DEFAULT", *(member.name for member in registry), RANDOM])
    raise ModelConfigError(
        f"BATCHSERVE_WEIGHTS={weights!r} is neither a weights name of {model} ({names}) "
        "nor an existing state_dict file"
    )


def cached_weights_path(entry: Weights) -> Path:
    """Where torch.hub keeps the downloaded file (under ``$TORCH_HOME/hub/checkpoints``)."""
    filename = Path(urlparse(entry.url).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def expected_hash_prefix(entry: Weights) -> str | None:
    """The SHA-256 prefix torchvision publishes in the file name (``resnet50-11ad3fa6.pth``)."""
    match = torch.hub.HASH_REGEX.search(Path(urlparse(entry.url).path).name)
    return match.group(1) if match and match.group(1) else None


def sha256_of(*paths: Path) -> str:
    """The SHA-256 of the files' bytes one after the other, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as file:
            while piece := file.read(_HASH_READ_BYTES):
                digest.update(piece)
    return digest.hexdigest()


def ensure_weights(choice: WeightsChoice) -> Path | None:
    """Make the weights file available locally, downloading registry weights once.

    Registry files are checked against the hash in their name, as torchvision's
    own loader does, whether just downloaded or found in the cache: a damaged
    file is deleted and never loaded.
    """
    if choice.source == RANDOM:
        return None
    if choice.source == "file":
        return choice.path
    target = cached_weights_path(choice.entry)
    prefix = expected_hash_prefix(choice.entry)
    if target.is_file() and prefix and not sha256_of(target).startswith(prefix):
        logger.warning("%s does not match its SHA-256 prefix %s: deleted", target, prefix)
        target.unlink()
    if not target.is_file():
        _download(choice, target, prefix)
    return target


def _download(choice: WeightsChoice, target: Path, hash_prefix: str | None) -> None:
    logger.info("downloading %s weights from %s to %s", choice.label, choice.entry.url, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)  # urllib inside torch.hub sets none
    try:
        # Into a temporary file, checked, then moved: a partial or corrupt download never
        # appears at ``target`` (torch.hub deletes the temporary file on any failure).
        torch.hub.download_url_to_file(
            choice.entry.url, str(target), hash_prefix=hash_prefix, progress=False
        )
    except Exception as exc:
        raise ModelLoadError(_download_remedy(choice, target, exc)) from exc
    finally:
        socket.setdefaulttimeout(previous)


def _download_remedy(choice: WeightsChoice, target: Path, exc: Exception) -> str:
    return (
        f"could not download the {choice.label} weights for {choice.model} from "
        f"{choice.entry.url}: {exc}\n"
        "Remedies:\n"
        f"  - allow this machine to reach download.pytorch.org once (the file is cached in "
        f"{target.parent}, set TORCH_HOME to move it), or copy the file there;\n"
        "  - or set BATCHSERVE_WEIGHTS=/path/to/state_dict.pth to load a local file;\n"
        "  - or set BATCHSERVE_WEIGHTS=random for an offline trial (predictions are meaningless)."
    )


def generated_labels(count: int) -> tuple[str, ...]:
    """``class_0`` ... ``class_<count-1>``: the labels of a model that comes without any."""
    return tuple(f"class_{i}" for i in range(count))


def load_torchvision_model(choice: WeightsChoice) -> LoadedModel:
    """Build the model, load its parameters, and put it in eval mode (on the CPU).

    A state_dict file may have any number of classes: the head is sized from
    the file. Random weights are seeded: every start builds the same model, so
    a quantized copy of it can be cached like any other.
    """
    path = ensure_weights(choice)
    state = _read_state_dict(path, choice) if path is not None else None
    imagenet = tuple(choice.entry.meta["categories"])
    classes = head_size(state) if state is not None else len(imagenet)
    with torch.random.fork_rng():
        torch.manual_seed(RANDOM_SEED)
        module = get_model(choice.model, weights=None, num_classes=classes)
    if state is not None and path is not None:
        _load_state_dict(module, state, path, choice)
    else:
        logger.warning("serving %s with RANDOM weights: predictions are meaningless", choice.model)
    module.eval()
    categories = imagenet if classes == len(imagenet) else generated_labels(classes)
    return LoadedModel(
        module,
        choice.model,
        categories,
        weights_preprocessing(choice.entry),
        weights_label=choice.label,
        path=path,
        sha256=sha256_of(path) if path is not None else None,
        labels_source="imagenet" if categories is imagenet else "generated",
    )


def head_size(state: dict[str, torch.Tensor]) -> int:
    """The number of classes of a state_dict: the rows of its last weight matrix (the head)."""
    for key in reversed(list(state)):
        tensor = state[key]
        if key.endswith("weight") and isinstance(tensor, torch.Tensor) and tensor.ndim >= 2:
            return int(tensor.shape[0])
    raise ModelLoadError("the state_dict has no weight matrix: it is not a classifier's")


def _read_state_dict(path: Path, choice: WeightsChoice) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise TypeError(f"it holds a {type(state).__name__}, not a dict of tensors")
        return state
    except Exception as exc:
        raise ModelLoadError(_state_dict_remedy(path, choice, exc)) from exc


def _load_state_dict(
    module: nn.Module, state: dict[str, torch.Tensor], path: Path, choice: WeightsChoice
) -> None:
    try:
        module.load_state_dict(state)
    except Exception as exc:
        raise ModelLoadError(_state_dict_remedy(path, choice, exc)) from exc


def _state_dict_remedy(path: Path, choice: WeightsChoice, exc: Exception) -> str:
    return (
        f"could not load weights for {choice.model} from {path}: {exc}\n"
        "The file must be a state_dict saved with torch.save(model.state_dict(), path) "
        f"for torchvision's {choice.model}; delete a damaged download to fetch it again, "
        "or set BATCHSERVE_WEIGHTS=random for an offline trial."
    )


def weights_preprocessing(entry: Weights) -> PreprocessSpec:
    """Read resize/crop sizes, normalisation and interpolation from the weights' transforms."""
    transform = entry.transforms()
    return PreprocessSpec(
        resize_size=int(transform.resize_size[0]),
        crop_size=int(transform.crop_size[0]),
        mean=tuple(float(m) for m in transform.mean),  # type: ignore[arg-type]
        std=tuple(float(s) for s in transform.std),  # type: ignore[arg-type]
        interpolation=str(transform.interpolation.value),
    )
