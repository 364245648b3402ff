"""Per-model inference statistics, as the Open Inference Protocol's statistics extension
reports them (Triton's ``/v2/models/{name}/stats``): counts and cumulative nanoseconds.

Every figure is counted on the event loop, where requests are answered and batches
come back, so no lock is needed. A request counts once however many images it
carries (``inference_count`` counts the images); each forward pass counts once in
``execution_count`` and in its batch size's line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Duration:
    """How many times something happened, and its cumulative time in nanoseconds."""

    count: int = 0
    ns: int = 0

    def add(self, seconds: float) -> None:
        """One more occurrence that took ``seconds``."""
        self.count += 1
        self.ns += max(0, round(seconds * 1e9))

    def as_dict(self) -> dict[str, int]:
        """``{"count", "ns"}``."""
        return {"count": self.count, "ns": self.ns}


@dataclass(slots=True)
class BatchStatistics:
    """The forward passes of one batch size: their model time and their output time."""

    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass(slots=True)
class InferenceStatistics:
    """One model version's statistics since it was loaded.

    Per request: ``success`` and ``fail`` (arrival to answer), ``queue`` (waiting
    for a batch), ``compute_input`` (decoding and preprocessing the request's
    images, the input preparation batchserve does), ``compute_infer`` (its
    batch's forward pass) and ``compute_output`` (its batch's softmax and top-k).
    """

    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    inference_count: int = 0
    execution_count: int = 0
    #: Milliseconds since the epoch of the last answered request (0: none yet).
    last_inference_ms: int = 0
    batches: dict[int, BatchStatistics] = field(default_factory=dict)

    def succeeded(self, images: int, total_s: float, stages: RequestStages) -> None:
        """An answered request of ``images`` images and where its time went."""
        self.success.add(total_s)
        self.queue.add(stages.queue_s)
        self.compute_input.add(stages.input_s)
        self.compute_infer.add(stages.infer_s)
        self.compute_output.add(stages.output_s)
        self.inference_count += images
        self.last_inference_ms = time.time_ns() // 1_000_000

    def failed(self, total_s: float) -> None:
        """A request that reached the model and was not answered with results."""
        self.fail.add(total_s)

    def executed(self, batch_size: int, infer_s: float, output_s: float) -> None:
        """One forward pass of ``batch_size`` items."""
        self.execution_count += 1
        line = self.batches.setdefault(batch_size, BatchStatistics())
        line.compute_infer.add(infer_s)
        line.compute_output.add(output_s)

    def as_dict(self, name: str, version: str) -> dict[str, Any]:
        """The protocol's JSON for this model version (one item of ``model_stats``)."""
        stages = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")
        inference = {stage: getattr(self, stage).as_dict() for stage in stages}
        # No response cache: batchserve computes every request (zeros, as Triton's without one).
        inference |= {"cache_hit": Duration().as_dict(), "cache_miss": Duration().as_dict()}
        batches = [
            {
                "batch_size": size,
                "compute_infer": line.compute_infer.as_dict(),
                "compute_output": line.compute_output.as_dict(),
            }
            for size, line in sorted(self.batches.items())
        ]
        return {
            "name": name,
            "version": version,
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": inference,
            "batch_stats": batches,
            "memory_usage": [],
        }


@dataclass(frozen=True, slots=True)
class RequestStages:
    """Where one answered request's time went, in seconds."""

    input_s: float
    queue_s: float
    infer_s: float
    output_s: float
