"""A loaded unit's door values: its frozen description and its request limits."""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.config import Settings
from server.models import preprocess
from server.service.door import ModelDescription, ServingLimits

if TYPE_CHECKING:
    from server.service.unit import ModelUnit


def describe(unit: ModelUnit) -> ModelDescription:
    """A loaded unit's frozen description."""
    model, plan = unit.model, unit.plan
    assert model is not None
    return ModelDescription(
        name=unit.name,
        version=unit.version,
        source=model.source,
        file=str(model.path) if model.path else None,
        file_sha256=model.sha256,
        labels_source=model.labels_source,
        output=model.output,
        weights=model.weights_label,
        random_weights=model.random_weights,
        labels=model.categories,
        preprocessing=model.preprocessing,
        background=preprocess.BACKGROUND_RGB,
        engine=plan.engine,
        engine_version=unit.engine_version,
        device=str(plan.device),
        precision=plan.precision,
        compiled=plan.compiled,
        cpu=plan.cpu,
        cpu_flags=plan.cpu_flags,
        cores=plan.cores,
        workers=plan.workers,
        threads_per_worker=plan.threads_per_worker,
        torch_threads=plan.torch_threads,
        decode_threads=plan.decode_threads,
        streams=plan.streams,
        solo_threads=plan.solo_threads,
        max_batch_size=plan.max_batch_size,
        max_batch_wait_ms=plan.max_batch_wait_ms,
        max_queue_size=unit.settings.max_queue_size,
        fidelity=unit.fidelity,
    )  # fmt: skip


def serving_limits(settings: Settings) -> ServingLimits:
    """The request limits ``settings`` set."""
    return ServingLimits(
        max_upload_bytes=settings.max_upload_bytes,
        max_request_bytes=settings.max_request_bytes,
        max_upload_mb=settings.max_upload_mb,
        max_request_mb=settings.max_request_mb,
        max_files=settings.max_files,
        max_image_pixels=settings.max_image_pixels,
        request_timeout_s=settings.request_timeout_s,
        body_timeout_s=settings.body_timeout_s,
        formats=preprocess.ALLOWED_FORMATS,
    )
