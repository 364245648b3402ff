"""A closed-loop asyncio HTTP client: C users, each posting the next image when answered."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field

import httpx


def percentile_ms(latencies_s: list[float], q: int) -> float:
    """The q-th percentile of ``latencies_s`` in milliseconds (NaN when there are none)."""
    if len(latencies_s) < 2:
        return latencies_s[0] * 1000 if latencies_s else float("nan")
    return statistics.quantiles(latencies_s, n=100)[q - 1] * 1000


@dataclass
class LoadResult:
    """What one load level measured."""

    concurrency: int
    duration_s: float
    latencies_s: list[float] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    stage_ms: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return len(self.latencies_s) / self.duration_s if self.duration_s else 0.0

    def percentile_ms(self, q: int) -> float:
        """The q-th percentile latency in milliseconds."""
        return percentile_ms(self.latencies_s, q)

    def mean_stage_ms(self, stage: str) -> float:
        """The mean of a ``timing_ms`` stage the server reported."""
        values = self.stage_ms.get(stage, [])
        return statistics.fmean(values) if values else float("nan")

    @property
    def mean_batch_size(self) -> float:
        """The average batch size the server reported."""
        return statistics.fmean(self.batch_sizes) if self.batch_sizes else float("nan")


async def _user(
    client: httpx.AsyncClient, image: bytes, stop_at: float, result: LoadResult, path: str
) -> None:
    while time.monotonic() < stop_at:
        started = time.perf_counter()
        response = await client.post(path, files={"file": ("image.jpg", image, "image/jpeg")})
        if response.status_code == 200:
            result.latencies_s.append(time.perf_counter() - started)
            body = response.json()
            result.batch_sizes.append(body["batch_size"])
            for stage, ms in body["timing_ms"].items():
                result.stage_ms.setdefault(stage, []).append(ms)
        else:
            result.errors += 1


async def closed_loop(
    url: str, image: bytes, concurrency: int, duration_s: float, path: str = "/predict"
) -> LoadResult:
    """Run ``concurrency`` users posting to ``path`` for ``duration_s`` seconds after a warm-up."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        warm = LoadResult(concurrency, 0.0)
        warm_stop = time.monotonic() + min(3.0, duration_s / 4)
        await asyncio.gather(
            *(_user(client, image, warm_stop, warm, path) for _ in range(concurrency))
        )
        result = LoadResult(concurrency, duration_s)
        stop_at = time.monotonic() + duration_s
        started = time.monotonic()
        await asyncio.gather(
            *(_user(client, image, stop_at, result, path) for _ in range(concurrency))
        )
        result.duration_s = time.monotonic() - started
    return result


async def probe_health(url: str, stop_at: float, interval_s: float = 0.1) -> list[float]:
    """Time ``GET /health`` every ``interval_s`` until ``stop_at``; seconds per probe."""
    timings: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            await client.get("/health")
            timings.append(time.perf_counter() - started)
            await asyncio.sleep(interval_s)
    return timings
