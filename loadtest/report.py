"""Rendering benchmark results: a console table, docs/benchmarks.md, and a PNG plot."""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from loadtest.client import LoadResult
from loadtest.model_bench import RawPoint

_STAGES = ("preprocess", "queue", "inference", "total")


def header(title: str, module: str, argv: list[str], *facts: str) -> list[str]:
    """A report's opening: title, the command that made it, the CPU and its flags, the date."""
    from server.models.plan import cpu_features  # torch: only where a report is written

    cpu, flags = cpu_features()
    command = " ".join([f"python -m {module}", *map(shlex.quote, argv)])
    return [
        f"# {title}",
        "",
        f"Command: `{command}`",
        "",
        f"- CPU: {cpu}, {os.cpu_count()} cores; flags: {' '.join(flags) or 'none of interest'}",
        *(f"- {fact}" for fact in facts),
        f"- date: {time.strftime('%Y-%m-%d')}",
    ]


@dataclass
class ServerRun:
    """One server configuration under every load level."""

    label: str
    max_batch_size: int
    startup_s: float
    levels: list[LoadResult] = field(default_factory=list)
    health_ms: list[float] = field(default_factory=list)
    max_rss_mb: float = 0.0

    def at(self, concurrency: int) -> LoadResult | None:
        """The level measured at ``concurrency``, if any."""
        return next((r for r in self.levels if r.concurrency == concurrency), None)

    @property
    def saturation(self) -> LoadResult:
        """The level with the highest throughput."""
        return max(self.levels, key=lambda r: r.throughput)


@dataclass
class Benchmark:
    """Everything one ``make bench`` run measured."""

    command: str
    machine: dict[str, str]
    raw: list[RawPoint]
    decode_ms: float
    pipeline_images_per_s: float
    runs: list[ServerRun]

    def raw_at(self, batch_size: int, precision: str) -> RawPoint | None:
        """The raw measurement at a batch size and precision."""
        return next(
            (p for p in self.raw if p.batch_size == batch_size and p.precision == precision), None
        )


def _server_table(run: ServerRun) -> list[str]:
    lines = [
        f"**{run.label}** (`MAX_BATCH_SIZE={run.max_batch_size}`, ready in {run.startup_s:.1f} s)",
        "",
        "| concurrency | requests/s | p50 ms | p95 ms | p99 ms | mean batch | errors "
        "| mean preprocess / queue / inference / total ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in run.levels:
        stages = " / ".join(f"{r.mean_stage_ms(s):.0f}" for s in _STAGES)
        lines.append(
            f"| {r.concurrency} | {r.throughput:.1f} | {r.percentile_ms(50):.0f} | "
            f"{r.percentile_ms(95):.0f} | {r.percentile_ms(99):.0f} | "
            f"{r.mean_batch_size:.2f} | {r.errors} | {stages} |"
        )
    return [*lines, ""]


def ratios(bench: Benchmark) -> list[tuple[str, float]]:
    """The headline ratios of the run."""
    on = bench.runs[0]
    saturation = on.saturation
    precision = bench.raw[0].precision
    raw_max = bench.raw_at(on.max_batch_size, precision)
    raw_one = bench.raw_at(1, precision)
    result = [
        (
            "server at saturation / in-process pipeline",
            saturation.throughput / bench.pipeline_images_per_s,
        )
    ]
    if raw_max:
        result.append(
            (
                "server at saturation / raw forward at max batch",
                saturation.throughput / raw_max.images_per_s,
            )
        )
    if len(bench.runs) > 1:
        off = bench.runs[1]
        for c in (32, 64):
            level_on, level_off = on.at(c), off.at(c)
            if level_on and level_off and level_off.throughput:
                result.append(
                    (
                        f"batching on / off at concurrency {c}",
                        level_on.throughput / level_off.throughput,
                    )
                )
    one = on.at(1)
    if one and raw_one:
        floor = raw_one.batch_latency_ms + bench.decode_ms
        result.append(
            ("p50 at concurrency 1 / (raw bs=1 forward + decode)", one.percentile_ms(50) / floor)
        )
    return result


def markdown(bench: Benchmark, plot_name: str) -> str:
    """The whole report as Markdown."""
    lines = [
        "# Benchmarks",
        "",
        "Produced by one run of:",
        "",
        f"```sh\n{bench.command}\n```",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in bench.machine.items()),
        "",
        "## 1. The model alone (batched forward, random input)",
        "",
        "| precision | batch size | images/s | ms per batch |",
        "|---|---:|---:|---:|",
        *(
            f"| {p.precision} | {p.batch_size} | {p.images_per_s:.1f} | {p.batch_latency_ms:.0f} |"
            for p in bench.raw
        ),
        "",
        f"Decode + preprocess of the benchmark JPEG on one thread: {bench.decode_ms:.1f} ms.",
        f"In-process pipeline (decode pool + forward at the max batch size, no HTTP): "
        f"{bench.pipeline_images_per_s:.1f} images/s.",
        "",
        "## 2. The server end to end (closed-loop clients, real JPEG uploads over HTTP)",
        "",
    ]
    for run in bench.runs:
        lines += _server_table(run)
    lines += ["## 3. Ratios", "", "| ratio | value |", "|---|---:|"]
    lines += [f"| {name} | {value:.2f} |" for name, value in ratios(bench)]
    on = bench.runs[0]
    if on.health_ms:
        health = sorted(on.health_ms)
        p99 = health[min(len(health) - 1, int(len(health) * 0.99))]
        lines += ["", f"`GET /health` while saturated: p99 {p99:.1f} ms over {len(health)} probes."]
    lines += [f"Largest server RSS under load: {max(r.max_rss_mb for r in bench.runs):.0f} MB.", ""]
    lines += [f"![throughput and latency]({plot_name})", ""]
    return "\n".join(lines)


def plot(bench: Benchmark, path: Path) -> None:
    """Throughput and p99 against concurrency, and raw throughput against batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.5))
    for run in bench.runs:
        conc = [r.concurrency for r in run.levels]
        left.plot(conc, [r.throughput for r in run.levels], marker="o", label=run.label)
        middle.plot(conc, [r.percentile_ms(99) for r in run.levels], marker="o", label=run.label)
    left.axhline(bench.pipeline_images_per_s, linestyle="--", color="grey", label="pipeline")
    for ax, title in ((left, "requests/s"), (middle, "p99 latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_title(title)
        ax.legend()
    for precision in sorted({p.precision for p in bench.raw}):
        points = [p for p in bench.raw if p.precision == precision]
        right.plot(
            [p.batch_size for p in points],
            [p.images_per_s for p in points],
            marker="o",
            label=precision,
        )
    right.set_xscale("log", base=2)
    right.set_xlabel("batch size")
    right.set_title("raw forward images/s")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
