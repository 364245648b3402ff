"""What each served model is and how it runs (``GET /info``, ``GET /models``).

Assembled from each unit's frozen description and limits; the libraries'
versions come from the installed distributions' metadata, so /info imports
neither torch nor Pillow.
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

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
    VersionState,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from server.service.registry import ModelRegistry
    from server.service.unit import ModelUnit

#: The libraries /info reports, by distribution name.
LIBRARIES = ("torch", "torchvision", "pillow", "openvino")


def describe(unit: ModelUnit, registry: ModelRegistry) -> ModelInfo | None:
    """One loaded model version's description, every served version of it listed.

    None before it is loaded.
    """
    model = unit.description
    if model is None:
        return None
    return ModelInfo(
        **{
            **_same_named(model, ModelInfo),
            # Two names mean other things in /info: the labels' source, the spec as lists.
            "model": model.name,
            "version": str(model.version),
            "model_versions": version_states(registry.versions(unit.name)),
            "load_error": registry.load_failures.get(unit.name),
            "labels": model.labels_source,
            "preprocessing": _preprocessing(model),
            "batching": BatchingInfo(**_same_named(model, BatchingInfo)),
            "plan": PlanInfo(**_same_named(model, PlanInfo)),
            "int8_fidelity": _fidelity(model),
            "limits": _limits(unit.limits),
            "versions": versions(model),
        }
    )


def version_states(units: Sequence[ModelUnit]) -> list[VersionState]:
    """Each version's state and, when not ready, why."""
    return [
        VersionState(
            version=str(unit.version),
            state=unit.state,
            reason="" if unit.ready else unit.not_ready_reason,
        )
        for unit in units
    ]


def summaries(registry: ModelRegistry) -> list[ModelSummary]:
    """Every served model, in name order, as the version a request naming none reaches."""
    return [_summary(registry, name) for name in registry.names]


def _summary(registry: ModelRegistry, name: str) -> ModelSummary:
    unit = registry.get(name)
    assert unit is not None, "a served name"
    model = unit.description
    return ModelSummary(
        name=unit.name,
        ready=unit.ready,
        version=str(unit.version),
        model_versions=version_states(registry.versions(name)),
        load_error=registry.load_failures.get(name),
        default=name == registry.default_name,
        engine=model.engine if model else unit.plan.engine,
        precision=model.precision if model else unit.plan.precision,
        classes=model.num_classes if model else 0,
    )


def info(registry: ModelRegistry, tracing: str = "off") -> InfoResponse | None:
    """``GET /info``: the default model's description, the list of models, where spans go."""
    unit = registry.default
    default = None if unit is None else describe(unit, registry)
    if default is None:
        return None
    return InfoResponse(
        **default.model_dump(), models=summaries(registry), tracing=tracing,
        grpc_port=registry.settings.grpc_port,
    )  # fmt: skip


def _preprocessing(model: ModelDescription) -> PreprocessingInfo:
    spec = _same_named(model.preprocessing, PreprocessingInfo)
    return PreprocessingInfo(**spec, background=list(model.background))


def _fidelity(model: ModelDescription) -> FidelityInfo | None:
    return FidelityInfo.model_validate(model.fidelity) if model.fidelity else None


def _limits(limits: ServingLimits) -> Limits:
    """The limits /info shows: the unit's, under the same names, and the top-k ceiling."""
    return Limits(**_same_named(limits, Limits), max_top_k=MAX_TOP_K)


def _same_named(source: object, schema: type[BaseModel]) -> dict[str, Any]:
    """``source``'s attributes that ``schema`` has fields of the same name for."""
    return {name: getattr(source, name) for name in schema.model_fields if hasattr(source, name)}


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
