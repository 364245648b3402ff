"""One served model: its engine, batcher and inference workers, with a lifecycle.

It adapts the generic :class:`~batcher.MicroBatcher` to the model: items are
decoded images' uint8 crops (or a PIXELS request's normalised tensors),
results are :class:`~server.engines.Row` values, and a batch runs on a thread
of the unit's inference pool, through the process's
:class:`~server.service.compute.ComputeGate`, so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch

from batcher import MicroBatcher, QueueFullError
from server.config import Settings
from server.engines import Crop, Engine, ModelInput, Row
from server.models import preprocess
from server.models.image_errors import ImageError
from server.models.plan import RuntimePlan, resolve_plan
from server.models.torchvision_models import LoadedModel
from server.service.compute import ComputeGate, Held, init_compute_thread
from server.service.describe import describe, serving_limits
from server.service.door import (
    ModelDescription,
    NotReadyError,
    ServingLimits,
)
from server.service.memory import in_halves_when_out_of_memory
from server.service.preparation import Prepared, Preparer, prepare
from server.service.progress import Progress
from server.service.statistics import InferenceStatistics, RequestStages
from server.tracing import record_batch, record_queue, stage

if TYPE_CHECKING:  # the metrics are handed in; prometheus_client is the web layer's
    from server.metrics import ModelMetrics

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Job:
    """One batcher item: the model input and its request's progress."""

    item: ModelInput
    progress: Progress


@dataclass(frozen=True, slots=True)
class Classification:
    """One request's answer and where its time went (seconds)."""

    row: Row
    preprocess_s: float
    queue_s: float


def _classification(row: Row, preprocess_s: float, waited_s: float) -> Classification:
    """An answer whose queue time is the wait from submission minus its own forward pass."""
    return Classification(row, preprocess_s, max(0.0, waited_s - row.inference_s))


def return_freed_memory() -> None:
    """Collect, then hand glibc's freed heap back to the system (RSS falls after an unload).

    glibc keeps freed small allocations in its arenas; ``malloc_trim`` returns
    what is free at their tops. Elsewhere (musl, macOS) only the collection runs.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class ModelUnit:
    """One served model: everything between its preprocessed images and their rows.

    ``settings`` are this model's (a repository's ``config.toml`` applied); the
    decode pool and the compute gate are the process's, handed in by the
    :class:`~server.service.registry.ModelRegistry`.
    """

    def __init__(
        self,
        name: str,
        settings: Settings,
        metrics: ModelMetrics,
        plan: RuntimePlan | None = None,
        prepared: Prepared | None = None,
        gate: ComputeGate | None = None,
        preparer: Preparer = prepare,
        version: int = 1,
    ) -> None:
        self.name = name
        self.version = version
        self.settings = settings
        self.metrics = metrics
        self.plan = plan or resolve_plan(settings)
        self.model: LoadedModel | None = None
        self.fidelity: dict[str, float] | None = None
        self._prepared = prepared
        self._preparer = preparer
        self._gate = gate or ComputeGate(self.plan.cores)
        self._engine: Engine | None = None
        self._description: ModelDescription | None = None
        self._batcher: MicroBatcher[Job, Row] | None = None
        self._decode_pool: ThreadPoolExecutor | None = None
        self._reset()

    def _reset(self) -> None:
        """Fresh lifecycle state and workers: an app's lifespan may run more than once."""
        #: What the protocol's statistics extension reports of this version since its start.
        self.statistics = InferenceStatistics()
        self.warm = False
        self.draining = False
        #: Replaced or unloaded: it finishes the requests that reached it, then stops.
        self.retiring = False
        #: Requests that reached this unit and have not been answered (see ``hold``).
        self._held = 0
        self._released = asyncio.Event()
        self._released.set()
        self.failure: str | None = None
        self._drain_started: float | None = None
        #: This model's forward passes submitted and not finished (streams by load).
        self._in_flight = 0
        self._warm_up_task: asyncio.Task[None] | None = None
        self._inference_pool = ThreadPoolExecutor(
            self.plan.workers,
            thread_name_prefix=f"inference-{self.name}-{self.version}",
            initializer=init_compute_thread,
            initargs=(self.plan.torch_threads,),
        )

    @property
    def label(self) -> str:
        """The model's name, with its version when that is not 1 (for logs and reasons)."""
        return self.name if self.version == 1 else f"{self.name} version {self.version}"

    @property
    def ready(self) -> bool:
        """Loaded, warmed up, batcher alive, and not draining."""
        alive = self._batcher is not None and self._batcher.running
        return self.warm and alive and not self.draining

    @property
    def state(self) -> str:
        """Triton's word for it: READY, LOADING, UNLOADING or UNAVAILABLE (failed)."""
        if self.retiring:
            return "UNLOADING"
        if self.ready:
            return "READY"
        if self.failure or (self.warm and not self.draining):
            return "UNAVAILABLE"
        return "UNLOADING" if self.draining else "LOADING"

    @property
    def not_ready_reason(self) -> str:
        """Why the unit is not ready (for 503 answers), in words."""
        if self.failure:
            return self.failure
        if self.draining:
            return "the server is shutting down"
        if self.warm:
            return "the batcher stopped after a fatal error; restart the server"
        return "the model is loading or warming up"

    @property
    def batcher(self) -> MicroBatcher[Job, Row]:
        """The running batcher; only valid after ``start``."""
        if self._batcher is None:
            raise RuntimeError("the model unit has not been started")
        return self._batcher

    async def start(self, decode_pool: ThreadPoolExecutor) -> None:
        """Load the model (failing fast), start the batcher, and warm up in the background."""
        if self._batcher is not None:
            self._reset()
        self._decode_pool = decode_pool
        prepared = self._prepared
        if prepared is None:
            loop = asyncio.get_running_loop()
            prepared = await loop.run_in_executor(
                self._inference_pool, self._preparer, self.settings, self.plan
            )
        self.model, self._engine = prepared.model, prepared.built.engine
        self._description = None
        self.fidelity = prepared.built.fidelity
        logger.info("model %s: runtime plan: %s", self.label, self.plan.describe())
        self._batcher = MicroBatcher(
            self._run_batch,
            max_batch_size=self.plan.max_batch_size,
            max_wait_s=self.plan.max_batch_wait_ms / 1000.0,
            max_queue_size=self.settings.max_queue_size,
            workers=self.plan.workers,
            observer=self.metrics,
        )
        self.metrics.watch_batcher(self._batcher.statistics)
        self._batcher.start()
        self._warm_up_task = asyncio.create_task(self._warm_up(), name=f"warm-up-{self.name}")

    async def _warm_up(self) -> None:
        engine = self._engine
        assert engine is not None
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(
                self._inference_pool, self._gated, engine.warm_up, self.plan.max_batch_size
            )
        except Exception as exc:
            self.failure = f"warm-up failed: {type(exc).__name__}: {exc}"
            logger.exception("model %s: warm-up failed; it will never be ready", self.label)
            return
        self.warm = True
        plan = self.plan
        logger.info(
            "model %s ready: %s, %s engine on %s (%s)",
            self.label,
            self.describe_weights(),
            plan.engine,
            plan.device,
            plan.precision,
        )

    async def wait_ready(self) -> None:
        """Wait for the warm-up to end (used by tests and tools)."""
        if self._warm_up_task is not None:
            await asyncio.shield(self._warm_up_task)

    @property
    def engine_version(self) -> str:
        """The running engine's library version, or a placeholder before loading."""
        return self._engine.version if self._engine is not None else "not loaded"

    def describe_weights(self) -> str:
        """The weights label, or a placeholder before loading."""
        return self.model.weights_label if self.model else "not loaded"

    @property
    def description(self) -> ModelDescription | None:
        """What the model is and how it runs; None until it is loaded."""
        if self.model is None:
            return None
        if self._description is None:
            self._description = describe(self)
        return self._description

    @property
    def limits(self) -> ServingLimits:
        """What one request to this model may carry, from its settings."""
        return serving_limits(self.settings)

    def ensure_accepting(self) -> None:
        """Raise when a request would be refused anyway: not ready, or the queue is full.

        NotReadyError says why; QueueFullError carries how long the queue takes to
        drain. Checked before a body is read or decoded.
        """
        if not self.ready:
            raise NotReadyError(self.not_ready_reason)
        stats = self.batcher.statistics()
        if stats.queue_depth >= stats.max_queue_size:
            raise QueueFullError(drain_s=stats.drain_s)

    async def classify(
        self, data: bytes, arrived_at: float, deadline: float, progress: Progress | None = None
    ) -> Classification:
        """Preprocess ``data`` off the loop, then queue it for a batch and await its row."""
        progress = progress or Progress()
        loop = asyncio.get_running_loop()
        with self._counted(arrived_at) as answered:
            crop = await self._preprocess(data, progress)
            submitted_at, submitted_ns = loop.time(), time.time_ns()
            preprocess_s = submitted_at - arrived_at
            self.metrics.preprocess_duration.observe(preprocess_s)
            progress.stage = "queue"
            row = await self.batcher.submit(Job(crop, progress), deadline=deadline)
            queue_s = max(0.0, loop.time() - submitted_at - row.inference_s)
            record_queue(progress.trace, submitted_ns, queue_s)
            result = Classification(row, preprocess_s, queue_s)
            answered.append(result)
        return result

    async def classify_many(
        self,
        images: Sequence[bytes],
        arrived_at: float,
        deadline: float,
        progress: Progress | None = None,
    ) -> list[Classification | ImageError]:
        """Several images of one request: decoded side by side, queued together, all or none.

        An image that cannot be decoded is answered with its error and never
        queued; the others are admitted to the queue together or refused
        together (QueueFullError), and the first of them to fail fails all.
        """
        progress = progress or Progress()
        with self._counted(arrived_at) as answered:
            decoded = await asyncio.gather(
                *(self._preprocess(data, progress) for data in images), return_exceptions=True
            )
            for outcome in decoded:
                if isinstance(outcome, BaseException) and not isinstance(outcome, ImageError):
                    raise outcome
            crops = [c for c in decoded if isinstance(c, np.ndarray)]
            results = await self._submit_many(crops, arrived_at, deadline, progress)
            answered.extend(results)
        answers = iter(results)
        return [o if isinstance(o, ImageError) else next(answers) for o in decoded]

    async def classify_pixels(
        self,
        pixels: bytes,
        count: int,
        arrived_at: float,
        deadline: float,
        progress: Progress | None = None,
    ) -> list[Classification]:
        """``count`` preprocessed images: little-endian float32 ``[count, 3, crop, crop]``.

        They skip decoding and go to the queue together, all or none.
        """
        assert self.model is not None
        crop = self.model.preprocessing.crop_size
        batch = torch.frombuffer(bytearray(pixels), dtype=torch.float32)
        tensors = list(batch.reshape(count, 3, crop, crop))
        with self._counted(arrived_at) as answered:
            results = await self._submit_many(tensors, arrived_at, deadline, progress or Progress())
            answered.extend(results)
        return results

    @contextlib.contextmanager
    def _counted(self, arrived_at: float) -> Iterator[list[Classification]]:
        """Count one request in the statistics: answered with the results put in the list, or not.

        A request that raises (refused, past its deadline, cancelled, a bad image)
        or answers no image at all counts as failed.
        """
        loop = asyncio.get_running_loop()
        answered: list[Classification] = []
        try:
            yield answered
        except BaseException:
            self.statistics.failed(loop.time() - arrived_at)
            raise
        total_s = loop.time() - arrived_at
        if not answered:
            self.statistics.failed(total_s)
            return
        stages = RequestStages(
            input_s=answered[0].preprocess_s,
            queue_s=max(a.queue_s for a in answered),
            infer_s=max(a.row.inference_s for a in answered),
            output_s=max(a.row.output_s for a in answered),
        )
        self.statistics.succeeded(len(answered), total_s, stages)

    async def _submit_many(
        self, items: Sequence[ModelInput], arrived_at: float, deadline: float, progress: Progress
    ) -> list[Classification]:
        loop = asyncio.get_running_loop()
        submitted_at, submitted_ns = loop.time(), time.time_ns()
        preprocess_s = submitted_at - arrived_at
        for _ in items:
            self.metrics.preprocess_duration.observe(preprocess_s)
        progress.stage = "queue"
        jobs = [Job(item, progress) for item in items]
        rows = await self.batcher.submit_many(jobs, deadline=deadline)
        waited_s = loop.time() - submitted_at
        results = [_classification(row, preprocess_s, waited_s) for row in rows]
        record_queue(progress.trace, submitted_ns, max((r.queue_s for r in results), default=0.0))
        return results

    async def _preprocess(self, data: bytes, progress: Progress) -> Crop:
        """Decode, resize and crop ``data`` on the decode pool, off the event loop."""
        assert self.model is not None
        loop = asyncio.get_running_loop()
        with stage(progress.trace, "preprocess", **{"batchserve.image.bytes": len(data)}):
            return await loop.run_in_executor(
                self._decode_pool,
                preprocess.image_to_crop,
                data,
                self.model.preprocessing,
                self.settings.max_image_pixels,
            )

    async def _run_batch(self, jobs: Sequence[Job]) -> list[Row]:
        """One forward pass; out of memory, retried once as two halves (smaller activations)."""
        for job in jobs:
            job.progress.stage = "inference"
        items = [job.item for job in jobs]
        rows = await in_halves_when_out_of_memory(self._forward, items, self._release_cached_memory)
        # One line per forward pass: two when an out-of-memory batch ran as halves.
        passes = dict.fromkeys((row.batch_size, row.inference_s, row.output_s) for row in rows)
        # Tracing off, nothing below builds a span's attributes: one check per job.
        traces = [job.progress.trace for job in jobs if job.progress.trace is not None]
        for size, infer_s, output_s in passes:
            self.statistics.executed(size, infer_s, output_s)
            if traces:
                record_batch(traces, infer_s + output_s, self._batch_attributes(size))
        return rows

    def _batch_attributes(self, size: int) -> dict[str, str | int]:
        """What the ``inference`` span of a forward pass says about it."""
        return {
            "batchserve.model": self.name, "batchserve.model.version": str(self.version),
            "batchserve.batch.size": size, "batchserve.engine": self.plan.engine,
            "batchserve.precision": self.plan.precision, "batchserve.device": str(self.plan.device),
        }  # fmt: skip

    async def _forward(self, items: Sequence[ModelInput]) -> list[Row]:
        engine = self._engine
        assert engine is not None
        loop = asyncio.get_running_loop()
        alone = self._runs_alone()
        threads = self.plan.solo_threads if alone else None
        self._in_flight += 1
        try:
            return await loop.run_in_executor(
                self._inference_pool, self._gated, partial(engine.run, alone=alone), items, threads
            )
        finally:
            self._in_flight -= 1

    def _runs_alone(self) -> bool:
        """Streams by load: no other batch of this model in flight or queued, no other model's.

        Such a batch takes the stream of every core (latency); with company, each
        batch takes a one-core stream beside the others (throughput).
        """
        if self.plan.solo_threads is None or self._in_flight:
            return False
        idle = self._gate.free == self._gate.budget and not self._gate.waiting
        return idle and self.batcher.statistics().queue_depth == 0

    def _gated(self, work: Callable[[T], R], argument: T, threads: int | None = None) -> R:
        """Run ``work`` holding ``threads`` (the worker's) of the process's compute budget.

        It waits for this model's turn among the busy models (by compute used per
        weight); what the pass used is counted, failed or not.
        """
        threads, weight = threads or self.plan.threads_per_worker, self.settings.weight
        held: Held | None = None
        try:
            with self._gate.hold(threads, self.name, weight) as held:
                return work(argument)
        finally:
            if held is not None:
                self.metrics.count_compute(held.compute_s)

    def _release_cached_memory(self) -> None:
        if self.plan.device.type == "cuda":
            torch.cuda.empty_cache()

    def hold(self) -> Callable[[], None]:
        """A request reached this unit: it stays open for it until the returned release.

        A reload moves new requests to the new version at once; the old one
        keeps serving the requests that had already reached it (their body may
        still be arriving) and stops only when every one has been released.
        """
        self._held += 1
        self._released.clear()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._held -= 1
                if self._held == 0:
                    self._released.set()

        return release

    async def retire(self) -> None:
        """Stop once the requests that reached it are answered: a reload's or unload's drain.

        No request reaches it any more (the registry no longer lists it); those
        that had are served as usual, within their deadlines, which bound the wait.
        """
        self.retiring = True
        limits = self.limits
        grace_s = max(limits.request_timeout_s, limits.body_timeout_s) + 1.0
        try:
            await asyncio.wait_for(self._released.wait(), grace_s)
        except TimeoutError:
            logger.warning(
                "model %s: %d requests still open after %.0fs", self.label, self._held, grace_s
            )
        await self.aclose()
        await self._free()

    async def _free(self) -> None:
        """Let go of the engine and the model, and wait for the inference threads to end."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, partial(self._inference_pool.shutdown, wait=True))
        self._engine = self._prepared = self.model = self._description = None
        self._batcher = None
        await loop.run_in_executor(None, return_freed_memory)

    def begin_drain(self) -> None:
        """Refuse new requests (/ready 503) from now on; queued and running work continues."""
        if self._drain_started is None:
            self._drain_started = time.monotonic()
        self.draining = True

    async def aclose(self) -> None:
        """Stop taking work, finish queued and running batches, free the workers.

        The whole drain, counted from ``begin_drain``, is bounded by
        ``BATCHSERVE_SHUTDOWN_TIMEOUT_S``.
        """
        self.begin_drain()
        assert self._drain_started is not None
        started = self._drain_started
        if self._warm_up_task is not None and not self._warm_up_task.done():
            self._warm_up_task.cancel()
        if self._batcher is not None:
            left = self.settings.shutdown_timeout_s - (time.monotonic() - started)
            await self._batcher.aclose(timeout_s=max(0.5, left))
        self._inference_pool.shutdown(wait=False, cancel_futures=True)
        logger.info(
            "model %s: drained and stopped in %.2fs", self.label, time.monotonic() - started
        )
