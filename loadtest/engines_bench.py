"""``python -m loadtest.engines_bench``: every engine and precision, and batchserve against the
baseline a user would write first, on this machine, in one run.

Sections (``--sections``, comma-separated, so one part can be rerun):

- ``preprocess``: each step from an upload's bytes to the engine's uint8 crop,
  per image on one core, for the benchmark JPEG and a 12-megapixel photo, with
  the routes not taken (full-size decode, normalising on the decode thread).
- ``raw``: forward throughput of every installed engine x precision x batch size
  (the engine alone, as the server builds it: uint8 crops in, no HTTP, no decode).
- ``servers``: closed-loop HTTP load from ``hey`` (:mod:`loadtest.hey`: the benchmark
  JPEG as multipart; errors count every answer but 200) on the naive baseline
  (:mod:`loadtest.naive_server`), LitServe with batchserve's own OpenVINO
  models (:mod:`loadtest.litserve_server`, defaults and int8), batchserve's
  defaults and batchserve int8, one after the other, with p50/p99 and /health
  p99 probed from another process, and each server's share of the bound the
  machine's cores allow.

int8's fidelity on real classifiers has a report of its own (:mod:`loadtest.int8_fidelity`).

Writes docs/benchmarks-engines.md (or ``--out``) and prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import httpx
import torch

from loadtest import hey, model_bench, report
from loadtest.process import free_port, main_thread_cpu_seconds, rss_mb, start_server
from server.config import Settings
from server.models.plan import cpu_has_fast_bf16, resolve_plan
from server.models.torchvision_models import resolve_weights, weights_preprocessing
from server.service.preparation import prepare

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("preprocess", "raw", "servers")
#: The second photo of the preprocessing table: large enough for JPEG draft scaling.
LARGE_PHOTO: Final = ROOT / "tests" / "data" / "rocket_12mp.jpg"


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--image", type=Path, default=ROOT / "tests" / "data" / "rocket.jpg")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--concurrency", default="1,10,32")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per load level")
    parser.add_argument("--raw-seconds", type=float, default=4.0)
    parser.add_argument(
        "--servers", default="all", help="comma-separated: naive, litserve, litserve-int8, "
        "defaults, int8, int8-throughput, int8-by-load (or all)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-engines.md")
    return parser.parse_args(argv)


def _variants() -> list[tuple[str, str]]:
    """(engine, precision) pairs this machine runs; bf16 only where the CPU computes it."""
    precisions = ["fp32", "bf16"] if cpu_has_fast_bf16() else ["fp32"]
    pairs = [(engine, p) for engine in ("torch", "openvino") for p in precisions]
    return [*pairs, ("openvino", "int8")]


def preprocess_table(model: str, photos: list[Path]) -> list[str]:
    """Markdown rows: each preprocessing step's milliseconds, one column per photo."""
    settings = Settings.model_validate({"model": model, "weights": "random"})
    spec = weights_preprocessing(resolve_weights(model, "random").entry)
    steps = [
        model_bench.preprocess_steps(spec, path.read_bytes(), settings.max_image_pixels)
        for path in photos
    ]
    rows = ["| step | " + " | ".join(f"{path.name} ms" for path in photos) + " |",
            "|---|" + "---:|" * len(photos)]  # fmt: skip
    for n, (name, _) in enumerate(steps[0]):
        rows.append(f"| {name} | " + " | ".join(f"{photo[n][1]:.2f}" for photo in steps) + " |")
    return rows


def raw_table(model: str, batch_sizes: list[int], seconds: float) -> list[str]:
    """Markdown rows: engine, precision, images/s per batch size."""
    rows = []
    for engine, precision in _variants():
        settings = Settings.model_validate(
            {"model": model, "weights": "random", "engine": engine, "precision": precision,
             "compile": "off", "max_batch_size": max(batch_sizes)}
        )  # fmt: skip
        plan = resolve_plan(settings)
        torch.set_num_threads(plan.threads_per_worker)
        built = prepare(settings, plan).built.engine
        rates = [
            model_bench.forward_throughput(built, n, seconds).images_per_s for n in batch_sizes
        ]
        rows.append(f"| {engine} | {precision} | " + " | ".join(f"{r:.1f}" for r in rates) + " |")
        print(rows[-1], flush=True)
    return rows


@dataclass
class ServerResult:
    """One server under every load level."""

    name: str
    levels: list[hey.HeyResult] = field(default_factory=list)
    health_p99_ms: list[float] = field(default_factory=list)
    max_rss_mb: float = 0.0
    ready_s: float = 0.0
    #: batchserve's event loop (its main thread): CPU ms per answered request, per level.
    loop_ms: list[float] = field(default_factory=list)


def _load(url: str, body: Path, concurrency: int, duration_s: float,
          loop_pid: int | None = None) -> tuple[hey.HeyResult, float, float | None]:  # fmt: skip
    """One level: hey's result, /health p99 from another process, and with ``loop_pid`` the
    CPU ms its main thread spent per answered request (the /health probes' included)."""
    probe = subprocess.Popen(
        [sys.executable, "-m", "loadtest.probe", url, str(duration_s + 3)], stdout=subprocess.PIPE
    )
    hey.warm_up(url, body, concurrency, duration_s)
    loop_before = main_thread_cpu_seconds(loop_pid) if loop_pid else 0.0
    result = hey.run(f"{url}/predict", body, concurrency, duration_s)
    loop_s = main_thread_cpu_seconds(loop_pid) - loop_before if loop_pid else None
    output, _ = probe.communicate(timeout=120)
    health = sorted(json.loads(output))
    p99 = health[min(len(health) - 1, int(len(health) * 0.99))] if health else float("nan")
    loop_ms = None if loop_s is None else loop_s * 1000 / max(1, result.answered)
    return result, p99, loop_ms


def _drive(name: str, process: subprocess.Popen[bytes], url: str, args: argparse.Namespace,
           ready_s: float, stop: signal.Signals = signal.SIGTERM,
           ours: bool = False) -> ServerResult:  # fmt: skip
    """Every load level against a started server, then stop it with ``stop``.

    ``ours``: a batchserve process, whose main thread is the event loop.
    """
    result = ServerResult(name, ready_s=ready_s)
    try:
        with tempfile.TemporaryDirectory() as folder:
            body = Path(folder) / "body"
            body.write_bytes(hey.multipart_body(args.image.read_bytes()))
            run_levels(name, process, url, body, args, result, ours)
    finally:
        stop_server(name, process, stop)
    return result


def run_levels(name: str, process: subprocess.Popen[bytes], url: str, body: Path,
               args: argparse.Namespace, result: ServerResult, ours: bool) -> None:  # fmt: skip
    """Each of ``args.concurrency``'s levels for ``args.duration`` s, added to ``result``."""
    for concurrency in [int(c) for c in args.concurrency.split(",")]:
        loop_pid = process.pid if ours else None
        level, health, loop_ms = _load(url, body, concurrency, args.duration, loop_pid)
        result.levels.append(level)
        result.health_p99_ms.append(health)
        if loop_ms is not None:
            result.loop_ms.append(loop_ms)
        result.max_rss_mb = max(result.max_rss_mb, rss_mb(process.pid))
        print(f"  {name} c={concurrency}: {level.throughput:.1f} req/s", flush=True)


def stop_server(
    name: str, process: subprocess.Popen[bytes], stop: signal.Signals, grace_s: float = 60.0
) -> None:
    """Stop ``process`` with ``stop``; a server still up after ``grace_s`` is killed.

    A server in a process group of its own gets the signal as a terminal's Ctrl-C would
    give it, every process of the group at once: LitServe 0.2.19 signalled alone can hang
    in its shutdown waiting for its workers, and a benchmark must not hang with it.
    """
    own_group = os.getpgid(process.pid) == process.pid
    signal_all = os.killpg if own_group else os.kill
    signal_all(process.pid, stop)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        print(f"  {name} did not stop on {stop.name} within {grace_s:g} s: killed", flush=True)
        with contextlib.suppress(ProcessLookupError):
            signal_all(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def _other(name: str, command: list[str], ready: str, args: argparse.Namespace,
           stop: signal.Signals = signal.SIGTERM) -> ServerResult:  # fmt: skip
    """Start a server that is not batchserve (``python -m`` ``command``), wait for ``ready``."""
    port = free_port()
    started = time.monotonic()
    # Its own process group, so that a hung shutdown can be killed with every worker it forked.
    process = subprocess.Popen(
        [sys.executable, "-m", *command, "--port", str(port)], start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    while process.poll() is None:
        try:
            if httpx.get(f"{url}{ready}", timeout=5).status_code == 200:
                return _drive(name, process, url, args, time.monotonic() - started, stop)
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{name} exited with status {process.returncode}")


#: The baseline a user would write first (:mod:`loadtest.naive_server`).
NAIVE: Final = "naive FastAPI (eager fp32, no batching)"


def _naive(args: argparse.Namespace) -> ServerResult:
    command = ["loadtest.naive_server", "--model", args.model]
    return _other(NAIVE, command, "/ready", args)


#: The peer: LitServe batching batchserve's own engine, by precision (``auto``: the defaults').
LITSERVE: Final = {
    "LitServe + the same OpenVINO model (defaults)": "auto",
    "LitServe + the same OpenVINO int8 model": "int8",
}


def _litserve(name: str, precision: str, args: argparse.Namespace) -> ServerResult:
    command = ["loadtest.litserve_server", "--model", args.model, "--precision", precision]
    # LitServe shuts down on Ctrl-C (its workers with it); SIGTERM leaves it running.
    return _other(name, command, "/health", args, signal.SIGINT)


def _batchserve(name: str, overrides: dict[str, str], args: argparse.Namespace) -> ServerResult:
    process, url, ready_s = start_server({"MODEL": args.model, "WEIGHTS": "random", **overrides})
    return _drive(name, process, url, args, ready_s, ours=True)


#: batchserve's variants under load: its defaults, int8, int8 as one throughput stream per
#: core (each worker runs its own batch) instead of one latency stream, and int8 choosing
#: between the two per batch (streams by load).
SERVERS: Final = {
    "batchserve defaults": {},
    "batchserve int8": {"PRECISION": "int8"},
    "batchserve int8, throughput streams": {"PRECISION": "int8", "CPU_STREAMS": "throughput"},
    "batchserve int8, streams by load": {"PRECISION": "int8", "CPU_STREAMS": "by-load"},
}  # fmt: skip


#: ``--servers``' keys for the servers' names, in the order they run.
SERVER_CHOICES: Final = dict(
    zip(
        ("naive", "litserve", "litserve-int8", "defaults", "int8", "int8-throughput",
         "int8-by-load"),
        (NAIVE, *LITSERVE, *SERVERS),
        strict=True,
    )
)  # fmt: skip


def selected_servers(choice: str) -> list[str]:
    """The full names ``--servers`` picks (comma-separated keys of SERVER_CHOICES, or all)."""
    keys = list(SERVER_CHOICES) if choice == "all" else choice.split(",")
    unknown = [key for key in keys if key not in SERVER_CHOICES]
    if unknown:
        raise SystemExit(f"unknown --servers {unknown}: choose from {', '.join(SERVER_CHOICES)}")
    return [name for key, name in SERVER_CHOICES.items() if key in keys]


def server_results(args: argparse.Namespace) -> list[ServerResult]:
    """The naive baseline, the LitServe peers, then batchserve's variants, one after another."""
    chosen = selected_servers(args.servers)
    naive = [_naive(args)] if NAIVE in chosen else []
    peers = [_litserve(n, precision, args) for n, precision in LITSERVE.items() if n in chosen]
    ours = [_batchserve(n, env, args) for n, env in SERVERS.items() if n in chosen]
    return [*naive, *peers, *ours]


def server_table(results: list[ServerResult]) -> list[str]:
    """Markdown rows: each server's req/s, p50 and p99 per concurrency, /health, RSS, ready."""
    rows = []
    for result in results:
        cells = [
            # hey times to 0.1 ms: whole ms could not say whether a c=1 p50 meets a ceiling.
            f"{lvl.throughput:.1f} ({lvl.percentile_ms(50):.1f} / {lvl.percentile_ms(99):.1f} ms)"
            for lvl in result.levels
        ]
        health = max(result.health_p99_ms, default=float("nan"))
        errors = sum(level.errors for level in result.levels)
        rows.append(
            f"| {result.name} | " + " | ".join(cells)
            + f" | {health:.1f} | {errors} | {result.max_rss_mb:.0f} | {result.ready_s:.1f} |"
        )  # fmt: skip
    return rows


@dataclass(frozen=True)
class Bound:
    """What the machine's cores allow: each image costs its decode plus its share of a pass."""

    precision: str
    preprocess_ms: float
    engine_core_ms: float
    cores: int

    @property
    def images_per_s(self) -> float:
        """Cores over the core-time one image needs, before any HTTP."""
        return self.cores * 1000 / (self.preprocess_ms + self.engine_core_ms)


def measure_bound(model: str, overrides: dict[str, str], image: bytes, seconds: float) -> Bound:
    """Preprocessing core-time of ``image`` and engine core-time per image at the batch size."""
    settings = Settings.model_validate(
        {"model": model, "weights": "random", **{k.lower(): v for k, v in overrides.items()}}
    )
    plan = resolve_plan(settings)
    built = prepare(settings, plan).built.engine
    rate = model_bench.forward_throughput(built, settings.max_batch_size, seconds).images_per_s
    decode = model_bench.decode_ms(built.model, image, settings.max_image_pixels)
    # The pass runs on all the plan's cores: each image holds them for 1/rate seconds.
    return Bound(plan.precision, decode, plan.cores * 1000 / rate, plan.cores)


def bound_table(results: list[ServerResult], bounds: dict[str, Bound]) -> list[str]:
    """Markdown rows: each server's bound (its model's) and its throughput as a share of it."""
    rows = []
    for result in results:
        if (bound := bounds.get(result.name)) is None:
            continue
        shares = " | ".join(f"{lvl.throughput / bound.images_per_s:.2f}" for lvl in result.levels)
        loop = f"{result.loop_ms[-1]:.2f}" if result.loop_ms else "—"
        rows.append(
            f"| {result.name} | {bound.precision} | {bound.preprocess_ms:.2f} | "
            f"{bound.engine_core_ms:.2f} | {bound.images_per_s:.1f} | {shares} | {loop} |"
        )
    return rows


def _bounds(args: argparse.Namespace) -> dict[str, Bound]:
    """The defaults' and int8's bounds, shared by every server that runs the same model."""
    image = args.image.read_bytes()
    int8 = measure_bound(args.model, {"PRECISION": "int8"}, image, args.raw_seconds)
    defaults = measure_bound(args.model, {}, image, args.raw_seconds)
    peers = {
        name: int8 if precision == "int8" else defaults for name, precision in LITSERVE.items()
    }
    return {
        **peers,
        "batchserve defaults": defaults,
        **{name: int8 for name in SERVERS if "int8" in name},
    }


def main(argv: list[str] | None = None) -> None:
    """Run the selected sections and write the report."""
    argv = sys.argv[1:] if argv is None else argv
    args = _arguments(argv)
    sections = args.sections.split(",")
    lines = report.header(
        "Engines and baselines on this machine", "loadtest.engines_bench", argv,
        f"model: {args.model} (random weights; speed does not depend on their values)",
    )  # fmt: skip
    if "preprocess" in sections:
        lines += ["", "## Preprocessing, step by step (one core, per image)", "",
                  *preprocess_table(args.model, [args.image, LARGE_PHOTO])]  # fmt: skip
    if "raw" in sections:
        sizes = [int(n) for n in args.batch_sizes.split(",")]
        lines += ["", "## Raw engines (images/s, no HTTP, no decode)", "",
                  "| engine | precision | " + " | ".join(f"bs {n}" for n in sizes) + " |",
                  "|---|---|" + "---:|" * len(sizes),
                  *raw_table(args.model, sizes, args.raw_seconds)]  # fmt: skip
    if "servers" in sections:
        lines += _servers_section(args)
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    print(text)


def _servers_section(args: argparse.Namespace) -> list[str]:
    levels = args.concurrency.split(",")
    bounds = _bounds(args)  # before the servers: the machine is quiet
    results = server_results(args)
    return ["", "## Servers under load: req/s (p50 / p99)", "",
            "| server | " + " | ".join(f"c={c}" for c in levels)
            + " | /health p99 ms | errors | max RSS MB | ready s |",
            "|---|" + "---:|" * (len(levels) + 4), *server_table(results),
            "", "## Against the machine's bound", "",
            f"Bound: cores / (decode and preprocess of {args.image.name} on one core + the "
            "engine's core-time per image at the server's batch size). Shares are req/s / bound. "
            f"Event loop: the CPU ms batchserve's main thread (HTTP, handlers, batcher) spent "
            f"per answered request at c={levels[-1]}, which the bound does not count.",
            "", "| server | precision | preprocess ms | engine core-ms / image | bound images/s | "
            + " | ".join(f"c={c}" for c in levels) + " | event loop core-ms / request |",
            "|---|---|---:|---:|---:|" + "---:|" * (len(levels) + 1),
            *bound_table(results, bounds)]  # fmt: skip


if __name__ == "__main__":
    main()
