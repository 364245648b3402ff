"""The OpenVINO engine (CPU): fp32, bf16 or int8, one stream per worker.

The torch model is converted to OpenVINO's representation with a dynamic batch
dimension, compiled for the CPU with the precision, streams and threads of the
runtime plan, and run through one infer request per worker thread. OpenVINO
runs bf16 by default on CPUs that have it; the precision hint is always set,
so the plan's precision is what runs.

Decoded images arrive as uint8 crops: the served graph takes ``N x crop x crop
x 3`` uint8 and converts, normalises and transposes inside itself (OpenVINO's
preprocessing API), so the decode threads do no float work. Normalised float
tensors (the Open Inference Protocol's PIXELS input) run the graph without
that step, compiled the first time one arrives.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import openvino as ov
import torch
from openvino.preprocess import PrePostProcessor

from server.config import OPENVINO_FILE_SOURCES, Settings
from server.engines import calibration, int8
from server.engines.contract import (
    MAX_TOP_K,
    BuiltEngine,
    ModelInput,
    Row,
    logits_by_kind,
    rows_from_logits,
)
from server.engines.model_cache import ModelCache, cache_key
from server.models.errors import ModelLoadError
from server.models.plan import RuntimePlan
from server.models.preprocess import PreprocessSpec
from server.models.torchvision_models import LoadedModel

logger = logging.getLogger(__name__)


def _bind_numpy_once() -> None:
    """Make OpenVINO's bindings look NumPy's C API up now, on the importing thread.

    pybind11 does that lookup on first use inside a C++ static initialiser that
    waits for the GIL; two inference threads making their first tensor copy at
    once (two models warming up together) then deadlock, one holding the GIL and
    waiting on the initialiser, the other inside it waiting for the GIL (seen
    with py-spy --native in a two-model server that never became ready). An
    import runs on one thread, under the import lock.
    """
    tensor = ov.Tensor(np.zeros((1,), dtype=np.float32))
    tensor.data[:] = np.ones((1,), dtype=np.float32)


_bind_numpy_once()

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
    if model.source in OPENVINO_FILE_SOURCES:
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


def with_crop_input(graph: ov.Model, spec: PreprocessSpec) -> ov.Model:
    """A copy of ``graph`` that takes uint8 ``N x crop x crop x 3`` RGB crops.

    The added steps compute torchvision's ``x / 255``, ``(x - mean) / std`` as
    one subtraction and one division by 255-scaled constants (the same values
    up to float rounding), then the NHWC to NCHW transpose; the CPU plugin
    fuses them into the first layer's work.
    """
    processor = PrePostProcessor(graph.clone())
    item = processor.input(0)
    item.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    item.model().set_layout(ov.Layout("NCHW"))
    item.preprocess().convert_element_type(ov.Type.f32).mean([255.0 * m for m in spec.mean]).scale(
        [255.0 * s for s in spec.std]
    )
    return processor.build()


class _Compiled:
    """A graph compiled for the CPU the first time it runs; one infer request per thread."""

    def __init__(
        self, graph: Callable[[], ov.Model], precision: str, workers: int, threads: int
    ) -> None:
        self._graph = graph
        self._settings = (precision, workers, threads)
        self._compiled: ov.CompiledModel | None = None
        self._lock = threading.Lock()
        self._local = threading.local()

    def infer(self, inputs: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """The graph's first output for ``inputs``, copied out of OpenVINO's buffer."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled().create_infer_request()
        output = request.infer({0: inputs})[0]
        return np.array(output, dtype=np.float32, copy=True)

    def compiled(self) -> ov.CompiledModel:
        """The compiled model, compiling it now if nothing has run yet."""
        with self._lock:
            if self._compiled is None:
                self._compiled = compile_for_cpu(self._graph(), *self._settings)
            return self._compiled


class OpenVinoEngine:
    """Runs batches of a converted model on the CPU; thread-safe, one infer request per thread.

    ``graph`` takes normalised float input; the crops' graph is built from it.
    Each is compiled with ``workers`` streams of ``threads_per_worker`` threads
    when it first runs (:meth:`warm_up` runs the crops' one). With
    ``solo_threads`` (streams by load), the crops' graph is also compiled as one
    stream of that many threads, which a batch run ``alone`` takes.
    """

    name = "openvino"

    def __init__(
        self,
        model: LoadedModel,
        graph: ov.Model,
        precision: str,
        workers: int = 1,
        threads_per_worker: int = 1,
        solo_threads: int | None = None,
    ) -> None:
        self.model = model
        self.precision = precision
        self._top_k = min(MAX_TOP_K, model.num_classes)
        self._softmax = model.output == "logits"
        spec, settings = model.preprocessing, (precision, workers, threads_per_worker)

        def crop_graph() -> ov.Model:
            return with_crop_input(graph, spec)

        self._tensors = _Compiled(lambda: graph, *settings)
        self._crops = _Compiled(crop_graph, *settings)
        self._solo = (
            None if solo_threads is None else _Compiled(crop_graph, precision, 1, solo_threads)
        )

    @property
    def version(self) -> str:
        """OpenVINO's version."""
        return str(ov.__version__)

    def compile(self) -> OpenVinoEngine:
        """Compile the crops' graphs now (they would be compiled when they first run)."""
        self._crops.compiled()
        if self._solo is not None:
            self._solo.compiled()
        return self

    def logits(
        self, batch: Sequence[ModelInput], *, alone: bool = False
    ) -> npt.NDArray[np.float32]:
        """The model's raw output for a batch (``batch x classes``, float32).

        Stacked and copied out in NumPy: no torch call, so torch's OpenMP team
        never wakes up beside OpenVINO's threads. ``alone``: crops run on the
        stream of every core, where there is one.
        """
        crops = self._solo if alone and self._solo is not None else self._crops
        return logits_by_kind(
            batch, lambda items: crops.infer(np.stack(items)), self._tensor_logits
        )

    def _tensor_logits(self, tensors: Sequence[torch.Tensor]) -> npt.NDArray[np.float32]:
        return self._tensors.infer(np.stack([item.numpy() for item in tensors]))

    def run(self, batch: Sequence[ModelInput], *, alone: bool = False) -> list[Row]:
        """Classify crops or normalised tensors; one row per item, in order."""
        started = time.perf_counter()
        logits = self.logits(batch, alone=alone)
        elapsed = time.perf_counter() - started
        return rows_from_logits(logits, len(batch), self._top_k, elapsed, softmax=self._softmax)

    def warm_up(self, max_batch_size: int) -> None:
        """Every batch size once on each stream layout: OpenVINO prepares kernels per shape."""
        crop = self.model.preprocessing.crop_size
        example = np.zeros((crop, crop, 3), dtype=np.uint8)
        for alone in (False, True) if self._solo is not None else (False,):
            for size in range(1, max_batch_size + 1):
                self.run([example] * size, alone=alone)


def build(model: LoadedModel, plan: RuntimePlan, settings: Settings) -> BuiltEngine:
    """Converted (or read from the cache), quantized for int8, compiled: ready to warm up.

    The crops' graph, which serves uploads, is compiled here, so a model the CPU
    plugin refuses fails the start; the PIXELS graph compiles when first used.
    """
    streams = (plan.workers, plan.threads_per_worker, plan.solo_threads)
    if plan.precision != "int8":
        engine = OpenVinoEngine(
            model, converted(model, settings.cache_dir), plan.precision, *streams
        )
        return BuiltEngine(engine.compile())
    quantized, report, entry = int8_model(model, plan, settings)
    engine = OpenVinoEngine(model, quantized, "int8", *streams)
    return BuiltEngine(engine.compile(), report.as_dict(), entry)


def converted(model: LoadedModel, cache_dir: Path) -> ov.Model:
    """:func:`convert`'s model, read from the cache when an earlier start converted it.

    An ONNX or IR file is read as it is: there is nothing to convert.
    """
    if model.source in OPENVINO_FILE_SOURCES:
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
    reference = OpenVinoEngine(model, fp32, "fp32", 1, threads)
    candidate = OpenVinoEngine(model, quantized, "int8", 1, threads)
    held_out = samples.held_out
    return quantized, int8.compare(reference.logits(held_out), candidate.logits(held_out))
