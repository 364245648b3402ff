"""The model on its own: batched forward throughput, and the in-process decode+forward pipeline."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from server.engines import Crop, Engine
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
    """Time ``engine.run`` on uint8 crops at ``batch_size`` for at least ``min_s`` (3 batches)."""
    crop = engine.model.preprocessing.crop_size
    rng = np.random.default_rng(batch_size)
    batch = list(rng.integers(0, 256, (batch_size, crop, crop, 3), dtype=np.uint8))
    engine.run(batch)
    runs, started = 0, time.perf_counter()
    while runs < 3 or time.perf_counter() - started < min_s:
        engine.run(batch)
        runs += 1
    elapsed = time.perf_counter() - started
    return RawPoint(
        engine.precision, batch_size, runs * batch_size / elapsed, elapsed / runs * 1000
    )


def _ms(work: Callable[[], object], runs: int) -> float:
    """Milliseconds one call of ``work`` takes on this thread, after one call to warm up."""
    work()
    started = time.perf_counter()
    for _ in range(runs):
        work()
    return (time.perf_counter() - started) / runs * 1000


def decode_ms(model: LoadedModel, image: bytes, max_pixels: int, runs: int = 30) -> float:
    """Milliseconds of one decode pool task for ``image``: decode, resize and crop to uint8."""
    return _ms(lambda: preprocess.image_to_crop(image, model.preprocessing, max_pixels), runs)


def preprocess_steps(
    spec: preprocess.PreprocessSpec, image: bytes, max_pixels: int, runs: int = 30
) -> list[tuple[str, float]]:
    """Milliseconds of each step from bytes to the engine's input, and of the routes not taken.

    The decode pool runs the decode (with JPEG draft scaling where exact enough)
    and the resize and crop; the normalisation runs inside the engine's graph now,
    so its NumPy cost is what the decode threads no longer pay.
    """
    decoded = preprocess.decode(image, spec, max_pixels)
    crop = preprocess.crop_pixels(decoded, spec)

    def full_size() -> None:
        with Image.open(io.BytesIO(image)) as opened:
            opened.convert("RGB")  # loads every pixel at full size

    return [
        ("decode, JPEG draft scaling where exact enough (served)", _ms(
            lambda: preprocess.decode(image, spec, max_pixels), runs)),
        ("decode at full size (not taken)", _ms(full_size, runs)),
        ("resize and center crop to uint8 (served)", _ms(
            lambda: preprocess.crop_pixels(decoded, spec), runs)),
        ("normalise in NumPy (now in the engine's graph)", _ms(
            lambda: preprocess.normalise(crop, spec), runs)),
    ]  # fmt: skip


def pipeline_throughput(
    engine: Engine, image: bytes, batch_size: int, threads: int, min_s: float = 8.0
) -> float:
    """Images/s of decode + crop + forward with no HTTP: the next batch decodes meanwhile."""
    spec, limit = engine.model.preprocessing, 10**9

    def decode_batch(pool: ThreadPoolExecutor) -> Sequence[Crop]:
        return list(
            pool.map(lambda _: preprocess.image_to_crop(image, spec, limit), range(batch_size))
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
