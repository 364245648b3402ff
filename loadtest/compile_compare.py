"""Compiled batch shapes: static graphs per padded bucket against one graph with a dynamic batch.

``python -m loadtest.compile_compare [--model resnet50] [--max-batch-size 8]``
compiles the model both ways (inductor, freezing, fp32 unless ``--precision``),
times every batch size the batcher can form, and prints compile time and
images/s side by side. The server uses the static-bucket variant because this
comparison measured it faster (docs/performance.md).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from server.models.plan import batch_buckets


@dataclass(frozen=True)
class Variant:
    """One way of compiling: compile seconds and images/s per real batch size."""

    name: str
    compile_s: float
    images_per_s: dict[int, float]


def _padded(n: int, buckets: tuple[int, ...]) -> int:
    return next(b for b in buckets if b >= n)


def _buffer(n: int, crop: int) -> torch.Tensor:
    return torch.empty(n, 3, crop, crop).contiguous(memory_format=torch.channels_last)


def _time(
    forward: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor, min_s: float
) -> float:
    """Images/s of ``forward`` on ``batch`` over at least ``min_s`` and three calls."""
    runs, started = 0, time.perf_counter()
    while runs < 3 or time.perf_counter() - started < min_s:
        forward(batch)
        runs += 1
    return runs * batch.shape[0] / (time.perf_counter() - started)


def measure(
    module: nn.Module,
    crop: int,
    max_batch_size: int,
    *,
    dynamic: bool,
    min_s: float,
    backend: str = "inductor",
) -> Variant:
    """Compile ``module`` one way, warm every shape it needs, then time batch sizes 1..max."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    torch._dynamo.reset()
    # Static: one graph per bucket. Dynamic: one graph, only the batch dimension symbolic.
    compiled = torch.compile(module, dynamic=False if not dynamic else None, backend=backend)
    buckets = batch_buckets(max_batch_size)
    sizes = range(1, max_batch_size + 1)
    shapes = sizes if dynamic else buckets

    def forward(batch: torch.Tensor) -> torch.Tensor:
        n = batch.shape[0]
        if dynamic:
            torch._dynamo.mark_dynamic(batch, 0)
        elif n not in buckets:
            # As the server does: one buffer of the bucket's size, padding rows zeroed.
            padded = _buffer(_padded(n, buckets), crop)
            padded[:n].copy_(batch)
            padded[n:].zero_()
            batch = padded
        out: torch.Tensor = compiled(batch)
        return out[:n]

    def example(n: int) -> torch.Tensor:
        return _buffer(n, crop).normal_()

    started = time.perf_counter()
    with torch.inference_mode():
        for n in shapes:
            forward(example(n))
        compile_s = time.perf_counter() - started
        rates = {n: _time(forward, example(n), min_s) for n in sizes}
    return Variant("dynamic batch" if dynamic else "static, padded", compile_s, rates)


def table(variants: list[Variant]) -> str:
    """A markdown table: one row per variant, compile time and images/s per batch size."""
    sizes = sorted(variants[0].images_per_s)
    head = "| variant | compile + warm-up | " + " | ".join(f"bs {n}" for n in sizes) + " |"
    rule = "|---|---:|" + "---:|" * len(sizes)
    rows = [
        f"| {v.name} | {v.compile_s:.0f} s | "
        + " | ".join(f"{v.images_per_s[n]:.1f}" for n in sizes)
        + " |"
        for v in variants
    ]
    return "\n".join([head, rule, *rows])


def main(argv: list[str] | None = None) -> None:
    """Compile both ways and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per batch size")
    args = parser.parse_args(argv)
    from torchvision import models

    module = models.get_model(args.model, weights=None).eval()
    module = module.to(memory_format=torch.channels_last)
    variants = [
        measure(module, 224, args.max_batch_size, dynamic=dynamic, min_s=args.seconds)
        for dynamic in (False, True)
    ]
    print(f"{args.model}, fp32, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(table(variants))


if __name__ == "__main__":
    main()
