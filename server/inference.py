"""Running batched forward passes: device and precision choice, warm-up, top-k rows."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, cast

import torch
from torch import nn

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


def cpu_has_fast_bf16() -> bool:
    """True on CPUs that compute bf16 natively (AMX or AVX-512 BF16); elsewhere it is emulated.

    Measured here on an AVX2-only AMD EPYC: eager bf16 ResNet-50 ran at 1.5
    images/s against 10 in fp32, so bf16 must never be chosen without them.
    """
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def resolve_precision(setting: str, device: torch.device) -> str:
    """``auto``: bf16 (fp16 on old GPUs) on CUDA, bf16 on CPUs with AMX/AVX-512 BF16, else fp32."""
    if setting == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    if setting == "fp16" and device.type != "cuda":
        raise DeviceError("BATCHSERVE_PRECISION=fp16 needs a CUDA device; use fp32 or bf16")
    return setting


def has_cxx_compiler() -> bool:
    """Inductor compiles CPU kernels with a C++ compiler (and triton its CUDA launchers with
    the same toolchain); slim containers have none."""
    names = (os.environ.get("CXX", ""), "g++", "c++", "clang++")
    return any(shutil.which(name) for name in names if name)


def resolve_compile(setting: str, device: torch.device, precision: str) -> bool:
    """``auto`` compiles where it was measured to pay off: bf16 on the CPU, given a compiler."""
    if setting == "auto":
        wanted = device.type == "cpu" and precision == "bf16"
        if wanted and not has_cxx_compiler():
            logger.warning("BATCHSERVE_COMPILE=auto: no C++ compiler (g++), serving eager")
            return False
        return wanted
    if setting == "on" and not has_cxx_compiler():
        raise DeviceError(
            "BATCHSERVE_COMPILE=on needs a C++ compiler (g++): install it (the image: "
            "--build-arg COMPILER=1), or set BATCHSERVE_COMPILE=off"
        )
    return setting == "on"


def batch_buckets(max_batch_size: int) -> tuple[int, ...]:
    """The batch sizes a compiled model runs: powers of two, and the maximum itself."""
    sizes = {max_batch_size}
    size = 1
    while size < max_batch_size:
        sizes.add(size)
        size *= 2
    return tuple(sorted(sizes))


def compile_module(module: nn.Module, cache_dir: Path, buckets: int) -> nn.Module:
    """``torch.compile`` with inductor freezing, caching compiled code under ``cache_dir``.

    The cache makes a restart skip most of the compile time; it is keyed by the
    code, torch version and CPU features, so a different CPU compiles anew.
    """
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir / "inductor")
    import torch._dynamo.config as dynamo_config
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    inductor_config.fx_graph_cache = True
    dynamo_config.cache_size_limit = max(dynamo_config.cache_size_limit, buckets + 2)
    # Static shapes, one graph per bucket: the fastest kernels for each size.
    return cast(nn.Module, torch.compile(module, dynamic=False))


def resolve_workers(setting: int | str, device: torch.device) -> int:
    """``auto`` means one worker using every core on the CPU, two (copy/compute overlap) on CUDA."""
    if setting == "auto":
        return 2 if device.type == "cuda" else 1
    return int(setting)


def configure_threads(device: torch.device, workers: int, setting: int | str = "auto") -> int:
    """Torch's intra-op threads per worker: ``auto`` splits the cores between CPU workers.

    On CUDA the host side only launches kernels, so one thread per worker is enough.
    """
    if setting != "auto":
        threads = int(setting)
    elif device.type == "cpu":
        threads = max(1, (os.cpu_count() or 1) // workers)
    else:
        threads = 1
    torch.set_num_threads(threads)
    return threads


class InferenceEngine:
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
        self.model = model
        self.device = device
        self.precision = precision
        self.compiled = compiled
        self._dtype = _DTYPES[precision]
        self._top_k = min(MAX_TOP_K, model.num_classes)
        module = model.module.to(device=device, dtype=self._dtype)
        self._module = module.to(memory_format=torch.channels_last)
        self.buckets = batch_buckets(max_batch_size) if compiled else None
        self._local = threading.local()
        if compiled and self.buckets is not None:
            self._module = compile_module(
                self._module, cache_dir or Path(".cache"), len(self.buckets)
            )

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

    def run(self, batch: Sequence[torch.Tensor]) -> list[Row]:
        """Classify a batch of preprocessed ``3 x H x W`` tensors; one row per item, in order."""
        started = time.perf_counter()
        with torch.inference_mode(), self._stream():
            logits = self._module(self._assemble(batch))[: len(batch)]
            probabilities = logits.float().softmax(dim=1)
            values, indices = probabilities.topk(self._top_k, dim=1)
            # One copy back per batch, not per item.
            pairs = torch.stack([indices.to(torch.float64), values.to(torch.float64)], dim=2)
            host = pairs.cpu().tolist()
        elapsed = time.perf_counter() - started
        return [Row(tuple((int(i), p) for i, p in row), len(batch), elapsed) for row in host]

    def warm_up(self, max_batch_size: int) -> None:
        """Run one forward pass at every batch size the batcher can form (compiled: each bucket)."""
        crop = self.model.preprocess.crop_size
        example = torch.zeros(3, crop, crop)
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
