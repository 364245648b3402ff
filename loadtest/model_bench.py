"""The model on its own: batched forward throughput, and the in-process decode+forward pipeline."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from server.engines import Engine
from server.models import preprocess
from server.models.torchvision_models import LoadedModel


@dataclass(frozen=True)
class RawPoint:
    """Forward-pass throughput at one batch size."""

    precision: str
    batch_size: int
    images_per_s: float
    batch_latency_ms: float


def forward_throughput(engine: Engine, batch_size: int, min_s: float = 3.0) -> RawPoint:
    """Time ``engine.run`` at ``batch_size`` for at least ``min_s`` (and 3 batches)."""
    crop = engine.model.preprocessing.crop_size
    batch = [torch.randn(3, crop, crop) for _ in range(batch_size)]
    engine.run(batch)
    runs, started = 0, time.perf_counter()
    while runs < 3 or time.perf_counter() - started < min_s:
        engine.run(batch)
        runs += 1
    elapsed = time.perf_counter() - started
    return RawPoint(
        engine.precision, batch_size, runs * batch_size / elapsed, elapsed / runs * 1000
    )


def decode_ms(model: LoadedModel, image: bytes, max_pixels: int, runs: int = 30) -> float:
    """Milliseconds to decode and preprocess ``image`` once, on one thread."""
    preprocess.image_to_tensor(image, model.preprocessing, max_pixels)
    started = time.perf_counter()
    for _ in range(runs):
        preprocess.image_to_tensor(image, model.preprocessing, max_pixels)
    return (time.perf_counter() - started) / runs * 1000


def pipeline_throughput(
    engine: Engine, image: bytes, batch_size: int, threads: int, min_s: float = 8.0
) -> float:
    """Images/s of decode + preprocess + forward with no HTTP: the next batch decodes meanwhile."""
    spec, limit = engine.model.preprocessing, 10**9

    def decode_batch(pool: ThreadPoolExecutor) -> Sequence[torch.Tensor]:
        return list(
            pool.map(lambda _: preprocess.image_to_tensor(image, spec, limit), range(batch_size))
        )

    with ThreadPoolExecutor(threads) as pool, ThreadPoolExecutor(1) as ahead:
        pending = ahead.submit(decode_batch, pool)
        images, started = 0, time.perf_counter()
        while images < 3 * batch_size or time.perf_counter() - started < min_s:
            batch = pending.result()
            pending = ahead.submit(decode_batch, pool)
            engine.run(batch)
            images += batch_size
        elapsed = time.perf_counter() - started
        pending.result()
    return images / elapsed
