"""The OpenVINO engine (CPU): fp32, bf16 or int8, one stream per worker.

The torch model is converted to OpenVINO's representation with a dynamic batch
dimension, compiled once for the CPU with the precision, streams and threads
of the runtime plan, and run through one infer request per worker thread.
OpenVINO runs bf16 by default on CPUs that have it; the precision hint is
always set, so the plan's precision is what runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import openvino as ov
import torch

from server.config import Settings
from server.engines import calibration, int8
from server.engines.contract import MAX_TOP_K, BuiltEngine, Row, rows_from_logits
from server.engines.model_cache import ModelCache, cache_key
from server.models.errors import ModelLoadError
from server.models.plan import RuntimePlan
from server.models.torchvision_models import LoadedModel

logger = logging.getLogger(__name__)

#: OpenVINO's name for the precision the non-quantized operations compute in.
_PRECISION_HINT: Final = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
#: The largest batch the exported graph admits (BATCHSERVE_MAX_BATCH_SIZE's own limit).
_MAX_BATCH: Final = 1024


def convert(model: LoadedModel) -> ov.Model:
    """The model in OpenVINO's representation, batch dimension dynamic, weights in fp32.

    torchvision models go through ``torch.export`` (OpenVINO's own tracing path
    uses the deprecated ``torch.jit.trace``); ``.pt2`` archives are already
    exported; TorchScript is converted from its graph and ONNX read from its
    file. Then the spatial size is fixed to the crop size.
    """
    crop = model.preprocessing.crop_size
    converted = _read(model, crop)
    try:
        converted.reshape({converted.inputs[0]: ov.PartialShape([-1, 3, crop, crop])})
    except Exception as exc:
        raise ModelLoadError(
            f"{model.weights_label}: OpenVINO cannot give it a dynamic batch of {crop}x{crop} "
            f"images: {exc}"
        ) from exc
    return converted


def _read(model: LoadedModel, crop: int) -> ov.Model:
    if model.source == "onnx":
        return ov.Core().read_model(str(model.path))
    if model.source == "exported":
        return ov.convert_model(model.exported)
    assert model.module is not None
    if model.source == "torchscript":
        return ov.convert_model(model.module, example_input=torch.zeros(1, 3, crop, crop))
    batch = torch.export.Dim("batch", min=1, max=_MAX_BATCH)
    module = model.module.float().eval()
    exported = torch.export.export(
        module, (torch.zeros(2, 3, crop, crop),), dynamic_shapes=({0: batch},)
    )
    return ov.convert_model(exported)


def compile_for_cpu(
    model: ov.Model, precision: str, workers: int, threads_per_worker: int
) -> ov.CompiledModel:
    """Compile for the CPU: ``workers`` streams sharing ``workers x threads`` threads."""
    config: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": _PRECISION_HINT[precision],
        "NUM_STREAMS": workers,
        "INFERENCE_NUM_THREADS": workers * threads_per_worker,
    }
    return ov.Core().compile_model(model, "CPU", config)


class OpenVinoEngine:
    """Runs batches on a compiled OpenVINO model; thread-safe, one infer request per thread."""

    name = "openvino"

    def __init__(self, model: LoadedModel, compiled: ov.CompiledModel, precision: str) -> None:
        self.model = model
        self.precision = precision
        self._compiled = compiled
        self._top_k = min(MAX_TOP_K, model.num_classes)
        self._softmax = model.output == "logits"
        self._local = threading.local()

    @property
    def version(self) -> str:
        """OpenVINO's version."""
        return str(ov.__version__)

    def _request(self) -> ov.InferRequest:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        return request

    def logits(self, batch: Sequence[torch.Tensor]) -> npt.NDArray[np.float32]:
        """The model's raw output for a batch (``batch x classes``, float32).

        Stacked and copied out in NumPy: no torch call, so torch's OpenMP team
        never wakes up beside OpenVINO's threads.
        """
        inputs = np.stack([item.numpy() for item in batch])
        output = self._request().infer({0: inputs})[0]
        return np.array(output, dtype=np.float32, copy=True)

    def run(self, batch: Sequence[torch.Tensor]) -> list[Row]:
        """Classify a batch of preprocessed ``3 x H x W`` tensors; one row per item, in order."""
        started = time.perf_counter()
        logits = self.logits(batch)
        elapsed = time.perf_counter() - started
        return rows_from_logits(logits, len(batch), self._top_k, elapsed, softmax=self._softmax)

    def warm_up(self, max_batch_size: int) -> None:
        """Every batch size once: OpenVINO prepares kernels for each new input shape."""
        crop = self.model.preprocessing.crop_size
        example = torch.zeros(3, crop, crop)
        for size in range(1, max_batch_size + 1):
            self.run([example] * size)


def build(model: LoadedModel, plan: RuntimePlan, settings: Settings) -> BuiltEngine:
    """Converted (or read from the cache), quantized for int8, compiled: ready to warm up."""
    if plan.precision != "int8":
        fp32 = converted(model, settings.cache_dir)
        compiled = compile_for_cpu(fp32, plan.precision, plan.workers, plan.threads_per_worker)
        return BuiltEngine(OpenVinoEngine(model, compiled, plan.precision))
    quantized, report, entry = int8_model(model, plan, settings)
    compiled = compile_for_cpu(quantized, "int8", plan.workers, plan.threads_per_worker)
    return BuiltEngine(OpenVinoEngine(model, compiled, "int8"), report.as_dict(), entry)


def converted(model: LoadedModel, cache_dir: Path) -> ov.Model:
    """:func:`convert`'s model, read from the cache when an earlier start converted it.

    An ONNX file is read as it is: there is nothing to convert.
    """
    if model.source == "onnx":
        return convert(model)
    parts = {
        "model": model.name,
        "weights": model.identity,
        "source": model.source,
        "input": str(model.preprocessing.crop_size),
        "openvino": str(ov.__version__),
        "torch": torch.__version__,
    }
    cache, key = ModelCache(cache_dir, "openvino"), cache_key(parts)
    if (cached := cache.load(key)) is not None:
        logger.info("OpenVINO model from the cache: %s", cache.entry(key))
        return cached[0]
    started = time.perf_counter()
    fp32 = convert(model)
    logger.info("converted %s to OpenVINO in %.1fs", model.name, time.perf_counter() - started)
    if (entry := cache.store(key, fp32, parts)) is not None:
        logger.info("OpenVINO model cached in %s", entry)
    return fp32


def int8_model(
    model: LoadedModel, plan: RuntimePlan, settings: Settings
) -> tuple[ov.Model, int8.FidelityReport, Path | None]:
    """The quantized model, from the cache or quantized now (and cached), checked for fidelity.

    Also returns its cache entry (None when the cache cannot be written). A cache
    hit needs no fp32 model, so nothing is converted.
    """
    *_, fingerprint = calibration.identify(settings.calibration_dir, settings.held_out_dir)
    parts = {
        "model": model.name,
        "weights": model.identity,
        "source": model.source,
        "preprocess": repr(model.preprocessing),
        "calibration": fingerprint,
        "fp32_ops": ",".join(settings.int8_fp32_ops),
        "openvino": str(ov.__version__),
    }
    cache, key = ModelCache(settings.cache_dir, "int8"), cache_key(parts)
    nncf = int8.nncf_version()
    cached = cache.load(key, {"nncf": nncf} if nncf else None)
    entry: Path | None = cache.entry(key)
    if cached is not None:
        logger.info("int8 model from the cache: %s", entry)
        quantized, report = cached[0], int8.FidelityReport(**cached[1]["fidelity"])
    else:
        fp32 = converted(model, settings.cache_dir)
        quantized, report = _quantize_and_measure(model, fp32, plan, settings)
        made_by = {**parts, "nncf": nncf or "unknown"}
        entry = cache.store(key, quantized, made_by, fidelity=report.as_dict())
        if entry is not None:
            logger.info("int8 model cached in %s", entry)
    int8.check(report, settings.int8_min_agreement, model.random_weights)
    return quantized, report, entry


def _quantize_and_measure(
    model: LoadedModel, fp32: ov.Model, plan: RuntimePlan, settings: Settings
) -> tuple[ov.Model, int8.FidelityReport]:
    samples = calibration.load(settings.calibration_dir, settings.held_out_dir, model.preprocessing)
    started = time.perf_counter()
    logger.info(
        "quantizing %s to int8 on %d samples from %s",
        model.name,
        len(samples.calibration),
        samples.source,
    )
    quantized = int8.quantize(fp32, samples, settings.int8_fp32_ops)
    logger.info("quantized in %.1fs", time.perf_counter() - started)
    threads = plan.threads_per_worker * plan.workers
    reference = OpenVinoEngine(model, compile_for_cpu(fp32, "fp32", 1, threads), "fp32")
    candidate = OpenVinoEngine(model, compile_for_cpu(quantized, "int8", 1, threads), "int8")
    held_out = samples.held_out
    return quantized, int8.compare(reference.logits(held_out), candidate.logits(held_out))
