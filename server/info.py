"""What each served model is and how it runs (``GET /info``, ``GET /models``).

Assembled from the model, the runtime plan and the settings; here rather
than in routes.py, so the web layer imports neither torch nor Pillow.
"""

from __future__ import annotations

import platform

import PIL
import torch
import torchvision

from server import __version__, preprocess
from server.config import MAX_TOP_K, Settings
from server.model import LoadedModel
from server.plan import openvino_version
from server.registry import ModelRegistry
from server.schemas import (
    BatchingInfo,
    FidelityInfo,
    InfoResponse,
    Limits,
    ModelInfo,
    ModelSummary,
    PlanInfo,
    PreprocessingInfo,
)
from server.unit import ModelUnit


def describe(unit: ModelUnit) -> ModelInfo | None:
    """One loaded model's description; None before it is loaded."""
    model = unit.model
    if model is None:
        return None
    plan, spec = unit.plan, model.preprocess
    return ModelInfo(
        model=unit.name,
        source=model.source,
        file=str(model.path) if model.path else None,
        file_sha256=model.sha256,
        labels=model.labels_source,
        output=model.output,
        weights=model.weights_label,
        random_weights=model.random_weights,
        num_classes=model.num_classes,
        input_size=[3, spec.crop_size, spec.crop_size],
        preprocessing=_preprocessing(model),
        device=str(plan.device),
        precision=plan.precision,
        compiled=plan.compiled,
        threads_per_worker=plan.threads_per_worker,
        batching=BatchingInfo(
            max_batch_size=plan.max_batch_size,
            max_batch_wait_ms=plan.max_batch_wait_ms,
            max_queue_size=unit.settings.max_queue_size,
            workers=plan.workers,
        ),
        engine=plan.engine,
        plan=_plan(unit),
        int8_fidelity=FidelityInfo.model_validate(unit.fidelity) if unit.fidelity else None,
        limits=_limits(unit.settings),
        versions=_versions(),
    )


def summaries(registry: ModelRegistry) -> list[ModelSummary]:
    """Every served model, in name order."""
    return [
        ModelSummary(
            name=unit.name,
            ready=unit.ready,
            default=unit.name == registry.default_name,
            engine=unit.plan.engine,
            precision=unit.plan.precision,
            classes=unit.model.num_classes if unit.model else 0,
        )
        for unit in registry
    ]


def info(registry: ModelRegistry) -> InfoResponse | None:
    """``GET /info``: the default model's description and the list of models."""
    default = describe(registry.default)
    if default is None:
        return None
    return InfoResponse(**default.model_dump(), models=summaries(registry))


def _preprocessing(model: LoadedModel) -> PreprocessingInfo:
    spec = model.preprocess
    return PreprocessingInfo(
        resize_size=spec.resize_size,
        crop_size=spec.crop_size,
        mean=list(spec.mean),
        std=list(spec.std),
        interpolation=spec.interpolation,
        background=list(preprocess.BACKGROUND_RGB),
    )


def _plan(unit: ModelUnit) -> PlanInfo:
    plan = unit.plan
    return PlanInfo(
        engine=plan.engine,
        engine_version=unit.engine_version,
        cpu=plan.cpu,
        cpu_flags=list(plan.cpu_flags),
        workers=plan.workers,
        threads_per_worker=plan.threads_per_worker,
    )


def _limits(settings: Settings) -> Limits:
    return Limits(
        max_upload_mb=settings.max_upload_mb,
        max_request_mb=settings.max_request_mb,
        max_files=settings.max_files,
        max_image_pixels=settings.max_image_pixels,
        request_timeout_s=settings.request_timeout_s,
        max_top_k=MAX_TOP_K,
        formats=list(preprocess.ALLOWED_FORMATS),
    )


def _versions() -> dict[str, str]:
    return {
        "batchserve": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pillow": PIL.__version__,
        "openvino": openvino_version() or "not installed",
        "python": platform.python_version(),
    }
