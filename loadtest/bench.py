"""``make bench`` / ``python -m loadtest.bench``: the model alone, then the server end to end.

One run on one machine: raw batched forward throughput, the in-process
pipeline, and a real ``batchserve`` process under closed-loop HTTP load with
batching on and off. Prints the report and writes docs/benchmarks.md and a PNG.
The load comes from an asyncio httpx client in this process (about 1-2 ms of
CPU per request, a few percent of one core at these rates).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from loadtest import model_bench
from loadtest.client import LoadResult, closed_loop
from loadtest.process import rss_mb, start_server
from loadtest.report import Benchmark, ServerRun, markdown, plot
from server.config import Settings
from server.engines import Engine, TorchEngine
from server.models.plan import cpu_features, resolve_plan
from server.service.preparation import prepare

ROOT = Path(__file__).resolve().parents[1]


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=ROOT / "tests" / "data" / "rocket.jpg")
    parser.add_argument("--concurrency", default="1,4,16,32,64")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per load level")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--raw-seconds", type=float, default=4.0, help="seconds per model timing")
    parser.add_argument("--no-unbatched", action="store_true", help="skip MAX_BATCH_SIZE=1")
    return parser.parse_args(argv)


def _settings() -> Settings:
    # Throughput does not depend on the weights' values: random keeps the run offline.
    os.environ.setdefault("BATCHSERVE_WEIGHTS", "random")
    return Settings()


def _machine(settings: Settings, precision: str, compiled: bool) -> dict[str, str]:
    cpu, flags = cpu_features()
    return {
        "CPU": f"{cpu}, {os.cpu_count()} cores; flags: {' '.join(flags) or 'none of interest'}",
        "engine": resolve_plan(settings).engine,
        "torch": torch.__version__,
        "model": f"{settings.model} ({settings.weights} weights)",
        "precision / compiled": f"{precision} / {compiled}",
        "max batch size / wait": f"{settings.max_batch_size} / {settings.max_batch_wait_ms} ms",
        "date": time.strftime("%Y-%m-%d"),
    }


@dataclass
class ModelAlone:
    """What the model-only phase measured."""

    raw: list[model_bench.RawPoint]
    decode_ms: float
    pipeline_images_per_s: float
    precision: str
    compiled: bool


def _engine(settings: Settings) -> Engine:
    """The engine exactly as the server builds it, torch threads set in the calling thread."""
    plan = resolve_plan(settings)
    torch.set_num_threads(plan.threads_per_worker)
    return prepare(settings, plan).built.engine


def _model_alone(settings: Settings, image: bytes, seconds: float) -> ModelAlone:
    engine = _engine(settings)
    buckets = engine.buckets if isinstance(engine, TorchEngine) else None
    sizes = buckets or _powers_of_two(settings.max_batch_size)
    points = [model_bench.forward_throughput(engine, size, seconds) for size in sizes]
    if engine.precision != "fp32":
        reference = TorchEngine(engine.model, resolve_plan(settings).device, "fp32")
        points += [model_bench.forward_throughput(reference, size, seconds) for size in sizes]
    decode = model_bench.decode_ms(engine.model, image, settings.max_image_pixels)
    threads = resolve_plan(settings).decode_threads
    pipeline = model_bench.pipeline_throughput(
        engine, image, settings.max_batch_size, threads, 2 * seconds
    )
    return ModelAlone(points, decode, pipeline, engine.precision, buckets is not None)


def _powers_of_two(limit: int) -> list[int]:
    sizes = [1]
    while sizes[-1] * 2 <= limit:
        sizes.append(sizes[-1] * 2)
    return sizes if sizes[-1] == limit else [*sizes, limit]


def _measure_server(
    label: str,
    overrides: dict[str, str],
    args: argparse.Namespace,
    image: bytes,
    max_batch_size: int,
) -> ServerRun:
    process, url, startup_s = start_server(overrides)
    run = ServerRun(label, max_batch_size, startup_s)
    rss: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            rss.append(rss_mb(process.pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        for concurrency in [int(c) for c in args.concurrency.split(",")]:
            run.levels.append(_level(url, image, concurrency, args.duration, run))
            print(f"  {label}: concurrency {concurrency}: {run.levels[-1].throughput:.1f} req/s")
    finally:
        done.set()
        sampler.join()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    run.max_rss_mb = max(rss, default=0.0)
    return run


def _level(
    url: str, image: bytes, concurrency: int, duration_s: float, run: ServerRun
) -> LoadResult:
    probe_s = duration_s + min(3.0, duration_s / 4)
    probe = subprocess.Popen(
        [sys.executable, "-m", "loadtest.probe", url, str(probe_s)], stdout=subprocess.PIPE
    )
    result = asyncio.run(closed_loop(url, image, concurrency, duration_s))
    output, _ = probe.communicate(timeout=120)
    run.health_ms = json.loads(output)
    return result


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and write the report."""
    argv = sys.argv[1:] if argv is None else argv
    args = _arguments(argv)
    settings = _settings()
    image = args.image.read_bytes()
    print("measuring the model alone ...")
    alone = _model_alone(settings, image, args.raw_seconds)
    runs = [_measure_server("batching on", {}, args, image, settings.max_batch_size)]
    if not args.no_unbatched:
        runs.append(_measure_server("batching off", {"MAX_BATCH_SIZE": "1"}, args, image, 1))
    command = "python -m loadtest.bench " + shlex.join(argv) if argv else "make bench BENCH=server"
    machine = _machine(settings, alone.precision, alone.compiled)
    bench = Benchmark(
        command, machine, alone.raw, alone.decode_ms, alone.pipeline_images_per_s, runs
    )
    plot_path = args.out.with_suffix(".png")
    report = markdown(bench, plot_path.name)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    plot(bench, plot_path)
    print(report)


if __name__ == "__main__":
    main()
