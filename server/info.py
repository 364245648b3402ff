"""``GET /info``: what this server runs, assembled from the model, the plan and the settings."""

from __future__ import annotations

import platform

import PIL
import torch
import torchvision

from server import __version__, preprocess
from server.config import Settings
from server.engines import MAX_TOP_K
from server.model import LoadedModel
from server.plan import openvino_version
from server.schemas import BatchingInfo, FidelityInfo, InfoResponse, PlanInfo, PreprocessingInfo
from server.service import ClassificationService


def describe(service: ClassificationService, model: LoadedModel) -> InfoResponse:
    """The /info answer for a loaded model."""
    plan, spec = service.plan, model.preprocess
    return InfoResponse(
        model=model.name,
        weights=model.weights.label,
        random_weights=model.weights.source == "random",
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
            max_queue_size=service.settings.max_queue_size,
            workers=plan.workers,
        ),
        engine=plan.engine,
        plan=_plan(service),
        int8_fidelity=FidelityInfo.model_validate(service.fidelity) if service.fidelity else None,
        limits=_limits(service.settings),
        versions=_versions(),
    )


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


def _plan(service: ClassificationService) -> PlanInfo:
    plan = service.plan
    return PlanInfo(
        engine=plan.engine,
        engine_version=service.engine_version,
        cpu=plan.cpu,
        cpu_flags=list(plan.cpu_flags),
        workers=plan.workers,
        threads_per_worker=plan.threads_per_worker,
    )


def _limits(settings: Settings) -> dict[str, object]:
    return {
        "max_upload_mb": settings.max_upload_mb,
        "max_image_pixels": settings.max_image_pixels,
        "request_timeout_s": settings.request_timeout_s,
        "max_top_k": MAX_TOP_K,
        "formats": list(preprocess.ALLOWED_FORMATS),
    }


def _versions() -> dict[str, str]:
    return {
        "batchserve": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pillow": PIL.__version__,
        "openvino": openvino_version() or "not installed",
        "python": platform.python_version(),
    }
