"""The PyTorch engine: eager or ``torch.compile``d, on the CPU or CUDA, fp32/bf16/fp16.

Decoded images arrive as uint8 crops and are scaled and normalised inside the
module (:class:`FromCrops`), on the device: a compiled engine fuses that into
one kernel, and CUDA copies a quarter of the bytes float32 would take.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final, cast

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from server.engines.contract import (
    MAX_TOP_K,
    Crop,
    ModelInput,
    Row,
    logits_by_kind,
    rows_from_logits,
)
from server.models.plan import batch_buckets
from server.models.preprocess import PreprocessSpec
from server.models.torchvision_models import LoadedModel

logger = logging.getLogger(__name__)

_DTYPES: Final = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def compile_module(module: nn.Module, cache_dir: Path, graphs: int) -> nn.Module:
    """``torch.compile`` with inductor freezing, caching compiled code under ``cache_dir``.

    The cache makes a restart skip most of the compile time; it is keyed by the
    code, torch version and CPU features, so a different CPU compiles anew.
    """
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir / "inductor")
    import torch._dynamo.config as dynamo_config
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    inductor_config.fx_graph_cache = True
    dynamo_config.cache_size_limit = max(dynamo_config.cache_size_limit, graphs + 2)
    # Static shapes, one graph per bucket: the fastest kernels for each size.
    return cast(nn.Module, torch.compile(module, dynamic=False))


class FromCrops(nn.Module):
    """A model behind its input normalisation: uint8 ``N x crop x crop x 3`` RGB crops in.

    torchvision's ``x / 255``, ``(x - mean) / std`` computed in float32 as one
    subtraction and one division by 255-scaled constants (equal up to float
    rounding), then cast to the model's dtype. The NHWC crops viewed as NCHW
    are already channels_last, the layout the CPU kernels prefer.
    """

    def __init__(self, module: nn.Module, spec: PreprocessSpec, dtype: torch.dtype) -> None:
        super().__init__()
        self.module = module
        self.input_dtype = dtype
        device = next(module.parameters(), torch.empty(0)).device
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", _channel_constants(spec.mean, device))
        self.register_buffer("std", _channel_constants(spec.std, device))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """The model's output for a ``N x crop x crop x 3`` uint8 batch."""
        pixels = crops.permute(0, 3, 1, 2).float()
        return cast(
            torch.Tensor, self.module(((pixels - self.mean) / self.std).to(self.input_dtype))
        )


def _channel_constants(values: tuple[float, float, float], device: torch.device) -> torch.Tensor:
    return (torch.tensor(values, dtype=torch.float32, device=device) * 255.0).view(1, 3, 1, 1)


class TorchEngine:
    """Runs one batched forward pass at a time per calling thread; thread-safe in eval mode.

    A compiled engine pads each batch to the next of ``batch_buckets`` so that
    only a few shapes are ever compiled; padding rows are never returned.
    """

    def __init__(
        self,
        model: LoadedModel,
        device: torch.device,
        precision: str,
        *,
        compiled: bool = False,
        max_batch_size: int = 1,
        cache_dir: Path | None = None,
    ) -> None:
        self.name = "torch"
        self.model = model
        self.device = device
        self.precision = precision
        self.compiled = compiled
        self._dtype = _DTYPES[precision]
        self._top_k = min(MAX_TOP_K, model.num_classes)
        self._softmax = model.output == "logits"
        if model.module is None:
            raise ValueError(f"the torch engine cannot run a {model.source} model")
        module = model.module.to(device=device, dtype=self._dtype)
        if model.source == "torchvision":  # files keep the memory format they were made for
            module = module.to(memory_format=torch.channels_last)
        self._module: nn.Module = module
        self._crop_module: nn.Module = FromCrops(module, model.preprocessing, self._dtype)
        self.buckets = batch_buckets(max_batch_size) if compiled else None
        self._local = threading.local()
        if compiled and self.buckets is not None:
            # Both compile lazily, each bucket once: the PIXELS graph only if such input comes.
            graphs, cache = 2 * len(self.buckets), cache_dir or Path(".cache")
            self._crop_module = compile_module(self._crop_module, cache, graphs)
            self._module = compile_module(self._module, cache, graphs)

    def _padded_size(self, n: int) -> int:
        if self.buckets is None:
            return n
        return next((b for b in self.buckets if b >= n), n)

    def _assemble(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        """Copy the items once, straight into a channels_last buffer of the model's dtype.

        Compiled engines get the buffer at the bucket size, padding rows zeroed.
        On CUDA the buffer is pinned so that the copy to the device is asynchronous.
        """
        size = self._padded_size(len(batch))
        cuda = self.device.type == "cuda"
        buffer = torch.empty(
            (size, *batch[0].shape),
            dtype=torch.float32 if cuda else self._dtype,
            pin_memory=cuda,
        ).contiguous(memory_format=torch.channels_last)
        for row, item in zip(buffer, batch, strict=False):
            row.copy_(item)
        if size > len(batch):
            buffer[len(batch) :].zero_()
        if cuda:
            return buffer.to(self.device, self._dtype, non_blocking=True)
        return buffer

    def _assemble_crops(self, crops: Sequence[Crop]) -> torch.Tensor:
        """Stack the crops once into a uint8 buffer (pinned on CUDA), padded as ``_assemble``."""
        size = self._padded_size(len(crops))
        cuda = self.device.type == "cuda"
        buffer = torch.empty((size, *crops[0].shape), dtype=torch.uint8, pin_memory=cuda)
        np.stack(crops, out=buffer.numpy()[: len(crops)])
        if size > len(crops):
            buffer[len(crops) :].zero_()
        return buffer.to(self.device, non_blocking=True) if cuda else buffer

    def _crop_logits(self, crops: Sequence[Crop]) -> npt.NDArray[np.float32]:
        output = self._crop_module(self._assemble_crops(crops))
        return cast(npt.NDArray[np.float32], output[: len(crops)].float().cpu().numpy())

    def _tensor_logits(self, tensors: Sequence[torch.Tensor]) -> npt.NDArray[np.float32]:
        output = self._module(self._assemble(tensors))
        return cast(npt.NDArray[np.float32], output[: len(tensors)].float().cpu().numpy())

    def _stream(self) -> contextlib.AbstractContextManager[object]:
        """On CUDA, each worker thread issues its copies and kernels on a stream of its own.

        Two workers then overlap one batch's host-to-device copy with the other's
        compute. The final ``.cpu()`` waits for this stream only, which also keeps
        the pinned source buffer alive until its copy has finished.
        """
        if self.device.type != "cuda":
            return contextlib.nullcontext()
        stream = getattr(self._local, "stream", None)
        if stream is None:
            stream = self._local.stream = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
        return torch.cuda.stream(stream)

    def run(self, batch: Sequence[ModelInput], *, alone: bool = False) -> list[Row]:
        """Classify crops or normalised tensors; one row per item, in order.

        ``alone`` changes nothing: each worker's thread count is fixed by the plan.
        """
        started = time.perf_counter()
        with torch.inference_mode(), self._stream():
            logits = logits_by_kind(batch, self._crop_logits, self._tensor_logits)
        elapsed = time.perf_counter() - started
        return rows_from_logits(logits, len(batch), self._top_k, elapsed, softmax=self._softmax)

    @property
    def version(self) -> str:
        """torch's version."""
        return str(torch.__version__)

    def warm_up(self, max_batch_size: int) -> None:
        """One forward pass of crops at every batch size the batcher can form (or each bucket)."""
        crop = self.model.preprocessing.crop_size
        example = np.zeros((crop, crop, 3), dtype=np.uint8)
        sizes = self.buckets or range(1, max_batch_size + 1)
        started = time.perf_counter()
        for size in sizes:
            self.run([example] * size)
        logger.info(
            "warmed up batch sizes %s%s in %.1fs",
            ",".join(map(str, sizes)),
            " (compiled)" if self.compiled else "",
            time.perf_counter() - started,
        )
