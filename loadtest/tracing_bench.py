"""``python -m loadtest.tracing_bench``: what OpenTelemetry tracing costs, off and on.

One server process per round, rounds alternating tracing off and on (every
span exported over OTLP/HTTP to a receiver in this process, which counts them),
each under closed-loop load from ``hey`` at each concurrency: throughput, p50
and p99, and the CPU its event loop (the main thread) spent per request. Off
against off shows the noise between rounds; on against off the cost of
tracing. The calls a request makes into the tracing code when tracing is off
are timed apart (nanoseconds per request).

Writes docs/benchmarks-tracing.md (or ``--out``) and prints it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import timeit
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from loadtest import hey, otlp_receiver, report
from loadtest.engines_bench import ServerResult, run_levels, stop_server
from loadtest.process import free_port, start_server
from server.tracing import Tracing, record_batch, record_queue, stage

ROOT = Path(__file__).resolve().parents[1]
#: The OTEL_* variables of a traced round, the endpoint added per round; the batch
#: processor keeps its defaults, as a server run without them would.
TRACED: Final = {"OTEL_SERVICE_NAME": "batchserve-bench"}


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--image", type=Path, default=ROOT / "tests" / "data" / "rocket.jpg")
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per level")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of off, then on")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-tracing.md")
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Round:
    """One server process under every level, and the spans its receiver got."""

    tracing: bool
    result: ServerResult
    spans: int


def _measure(args: argparse.Namespace, body: Path, traced: bool) -> Round:
    port = free_port()
    received, stop_receiver = otlp_receiver.start("http/protobuf", port)
    variables = {**TRACED, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
    result = ServerResult(f"tracing {'on' if traced else 'off'}")
    overrides = {"MODEL": args.model, "WEIGHTS": "random", "TRACING": str(traced).lower()}
    process, url, _ = start_server(overrides, variables if traced else None)
    try:
        run_levels(result.name, process, url, body, args, result, ours=True)
    finally:
        stop_server("batchserve", process, signal.SIGTERM)
        stop_receiver()
    return Round(traced, result, received.count())


def off_path_ns() -> float:
    """Nanoseconds per request of the calls into tracing a /predict makes when it is off."""
    off = Tracing()

    def one_request() -> None:
        # As the middleware, the unit and the batch do: each asks, none builds a span.
        trace = off.request("POST", {}, {}, "id") if off.enabled else None
        with stage(trace, "upload"):
            pass
        with stage(trace, "preprocess", **{"batchserve.image.bytes": 1}):
            pass
        record_queue(trace, 0, 0.0)
        if traces := [t for t in [trace] if t is not None]:
            record_batch(traces, 0.0, {})

    runs = 200_000
    return min(timeit.repeat(one_request, number=runs, repeat=5)) / runs * 1e9


def _table(rounds: list[Round], concurrency: list[int]) -> list[str]:
    rows = ["| round | tracing | c | req/s | p50 ms | p99 ms | loop CPU ms/request "
            "| /health p99 ms | spans |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for number, run in enumerate(rounds, 1):
        result = run.result
        for c, level, loop_ms, health_ms in zip(
            concurrency, result.levels, result.loop_ms, result.health_p99_ms, strict=True
        ):
            rows.append(
                f"| {number} | {'on' if run.tracing else 'off'} | {c} | {level.throughput:.1f} "
                f"| {level.percentile_ms(50):.2f} | {level.percentile_ms(99):.2f} "
                f"| {loop_ms:.3f} | {health_ms:.2f} | {run.spans if run.tracing else '-'} |"
            )
    return rows


def _mean_throughput(rounds: list[Round], traced: bool, index: int) -> float:
    chosen = [run.result.levels[index].throughput for run in rounds if run.tracing is traced]
    return sum(chosen) / len(chosen)


def _summary(rounds: list[Round], concurrency: list[int], off_ns: float) -> list[str]:
    lines = [f"- Off, the tracing calls of one request take {off_ns:.0f} ns (timed apart)."]
    for index, c in enumerate(concurrency):
        off = _mean_throughput(rounds, False, index)
        on = _mean_throughput(rounds, True, index)
        offs = [run.result.levels[index].throughput for run in rounds if not run.tracing]
        spread = (max(offs) - min(offs)) / off * 100 if off else 0.0
        lines.append(
            f"- c={c}: off {off:.1f} req/s (rounds {spread:.1f} % apart), "
            f"on {on:.1f} req/s ({(on / off - 1) * 100:+.1f} %)."
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    """Alternate rounds off and on, then write the report."""
    argv = sys.argv[1:] if argv is None else argv
    args = _arguments(argv)
    concurrency = [int(c) for c in args.concurrency.split(",")]
    rounds = []
    with tempfile.TemporaryDirectory() as folder:
        body = Path(folder) / "body"
        body.write_bytes(hey.multipart_body(args.image.read_bytes()))
        for _ in range(args.rounds):
            rounds += [_measure(args, body, False), _measure(args, body, True)]
    off_ns = off_path_ns()
    lines = [
        *report.header(
            "Benchmark: OpenTelemetry tracing off and on",
            "loadtest.tracing_bench",
            argv,
            f"model: {args.model} (random weights), the default engine and precision; "
            f"image {args.image.name} as multipart, hey, {args.duration:g} s per level",
            "on: BATCHSERVE_TRACING=true, every span kept (the default sampler) and sent over "
            "OTLP/HTTP (the SDK's default batching) to a receiver on loopback "
            "(loadtest/otlp_receiver.py); off: no OTEL_* variable set",
        ),
        "",
        *_table(rounds, concurrency),
        "",
        *_summary(rounds, concurrency, off_ns),
        "",
    ]
    text = "\n".join(lines)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
