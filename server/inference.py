"""Running batched forward passes: device and precision choice, warm-up, top-k rows."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import torch

from server.model import LoadedModel

logger = logging.getLogger(__name__)

#: The largest ``top_k`` a request may ask for.
MAX_TOP_K: Final = 20
_DTYPES: Final = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class DeviceError(Exception):
    """The configured device or precision is not available on this machine."""


@dataclass(frozen=True, slots=True)
class Row:
    """One item's answer: (class index, probability) pairs, most probable first."""

    top: tuple[tuple[int, float], ...]
    batch_size: int
    inference_s: float


def resolve_device(setting: str) -> torch.device:
    """``auto`` means CUDA when available, else the CPU."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(setting)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"BATCHSERVE_DEVICE={setting} but no CUDA device is available")
    return device


def resolve_precision(setting: str, device: torch.device) -> str:
    """``auto`` means bf16 (or fp16 on older GPUs) on CUDA and fp32 on the CPU."""
    if setting == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if setting == "fp16" and device.type != "cuda":
        raise DeviceError("BATCHSERVE_PRECISION=fp16 needs a CUDA device; use fp32 or bf16")
    return setting


def resolve_workers(setting: int | str, device: torch.device) -> int:
    """``auto`` means one worker using every core on the CPU, two (copy/compute overlap) on CUDA."""
    if setting == "auto":
        return 2 if device.type == "cuda" else 1
    return int(setting)


def configure_threads(device: torch.device, workers: int) -> int:
    """Split the cores between CPU workers so concurrent batches do not oversubscribe them."""
    threads = max(1, (os.cpu_count() or 1) // workers) if device.type == "cpu" else 1
    torch.set_num_threads(threads)
    return threads


class InferenceEngine:
    """Runs one batched forward pass at a time per calling thread; thread-safe in eval mode."""

    def __init__(self, model: LoadedModel, device: torch.device, precision: str) -> None:
        self.model = model
        self.device = device
        self.precision = precision
        self._dtype = _DTYPES[precision]
        self._top_k = min(MAX_TOP_K, model.num_classes)
        self._module = model.module.to(device=device, dtype=self._dtype)
        self._module = self._module.to(memory_format=torch.channels_last)

    def run(self, batch: Sequence[torch.Tensor]) -> list[Row]:
        """Classify a batch of preprocessed ``3 x H x W`` tensors; one row per item, in order."""
        started = time.perf_counter()
        with torch.inference_mode():
            inputs = torch.stack(list(batch)).to(self.device, self._dtype, non_blocking=True)
            logits = self._module(inputs.contiguous(memory_format=torch.channels_last))
            probabilities = logits.float().softmax(dim=1)
            values, indices = probabilities.topk(self._top_k, dim=1)
            # One copy back per batch, not per item.
            pairs = torch.stack([indices.to(torch.float64), values.to(torch.float64)], dim=2)
            host = pairs.cpu().tolist()
        elapsed = time.perf_counter() - started
        return [Row(tuple((int(i), p) for i, p in row), len(batch), elapsed) for row in host]

    def warm_up(self, max_batch_size: int) -> None:
        """Run one forward pass at every batch size the batcher can form."""
        crop = self.model.preprocess.crop_size
        example = torch.zeros(3, crop, crop)
        started = time.perf_counter()
        for size in range(1, max_batch_size + 1):
            self.run([example] * size)
        logger.info(
            "warmed up batch sizes 1..%d in %.1fs", max_batch_size, time.perf_counter() - started
        )
