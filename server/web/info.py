"""What each served model is and how it runs (``GET /info``, ``GET /models``).

Assembled from each unit's frozen description and limits; the libraries'
versions come from the installed distributions' metadata, so /info imports
neither torch nor Pillow.
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import TYPE_CHECKING

from server import __version__
from server.config import MAX_TOP_K
from server.service.door import ModelDescription, ServingLimits
from server.web.schemas import (
    BatchingInfo,
    FidelityInfo,
    InfoResponse,
    Limits,
    ModelInfo,
    ModelSummary,
    PlanInfo,
    PreprocessingInfo,
)

if TYPE_CHECKING:
    from server.service.registry import ModelRegistry
    from server.service.unit import ModelUnit

#: The libraries /info reports, by distribution name.
LIBRARIES = ("torch", "torchvision", "pillow", "openvino")


def describe(unit: ModelUnit) -> ModelInfo | None:
    """One loaded model's description; None before it is loaded."""
    model = unit.description
    if model is None:
        return None
    return ModelInfo(
        model=model.name,
        source=model.source,
        file=model.file,
        file_sha256=model.file_sha256,
        labels=model.labels_source,
        output=model.output,
        weights=model.weights,
        random_weights=model.random_weights,
        num_classes=model.num_classes,
        input_size=list(model.input_size),
        preprocessing=_preprocessing(model),
        device=model.device,
        precision=model.precision,
        compiled=model.compiled,
        threads_per_worker=model.threads_per_worker,
        batching=BatchingInfo(
            max_batch_size=model.max_batch_size,
            max_batch_wait_ms=model.max_batch_wait_ms,
            max_queue_size=model.max_queue_size,
            workers=model.workers,
        ),
        engine=model.engine,
        plan=_plan(model),
        int8_fidelity=FidelityInfo.model_validate(model.fidelity) if model.fidelity else None,
        limits=_limits(unit.limits),
        versions=versions(model),
    )


def summaries(registry: ModelRegistry) -> list[ModelSummary]:
    """Every served model, in name order."""
    return [_summary(unit, unit.name == registry.default_name) for unit in registry]


def _summary(unit: ModelUnit, default: bool) -> ModelSummary:
    model = unit.description
    return ModelSummary(
        name=unit.name,
        ready=unit.ready,
        default=default,
        engine=model.engine if model else unit.plan.engine,
        precision=model.precision if model else unit.plan.precision,
        classes=model.num_classes if model else 0,
    )


def info(registry: ModelRegistry) -> InfoResponse | None:
    """``GET /info``: the default model's description and the list of models."""
    default = describe(registry.default)
    if default is None:
        return None
    return InfoResponse(**default.model_dump(), models=summaries(registry))


def _preprocessing(model: ModelDescription) -> PreprocessingInfo:
    spec = model.preprocessing
    return PreprocessingInfo(
        resize_size=spec.resize_size,
        crop_size=spec.crop_size,
        mean=list(spec.mean),
        std=list(spec.std),
        interpolation=spec.interpolation,
        background=list(model.background),
    )


def _plan(model: ModelDescription) -> PlanInfo:
    return PlanInfo(
        engine=model.engine,
        engine_version=model.engine_version,
        cpu=model.cpu,
        cpu_flags=list(model.cpu_flags),
        workers=model.workers,
        threads_per_worker=model.threads_per_worker,
    )


def _limits(limits: ServingLimits) -> Limits:
    """The limits /info shows: the unit's, under the same names, and the top-k ceiling."""
    shared = {name: getattr(limits, name) for name in Limits.model_fields if hasattr(limits, name)}
    return Limits(**{**shared, "formats": list(limits.formats), "max_top_k": MAX_TOP_K})


def versions(model: ModelDescription | None = None) -> dict[str, str]:
    """batchserve's, the libraries' (or ``not installed``) and Python's versions.

    Read from the installed distributions, so nothing is imported; the engine a
    model runs on reports its runtime's own version, build included.
    """
    found = {"batchserve": __version__}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    if model is not None and model.engine in found:
        found[model.engine] = model.engine_version
    return {**found, "python": platform.python_version()}
