"""The classification service: model, decode pool, batcher and worker pool, with a lifecycle.

It adapts the generic :class:`~batcher.MicroBatcher` to the model: items are
preprocessed tensors, results are :class:`~server.engines.Row` values, and a
batch runs on a thread of the inference pool so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

import torch

from batcher import MicroBatcher
from server import preprocess
from server.config import Settings
from server.engines import BuiltEngine, Engine, Row, build_engine
from server.metrics import Metrics
from server.model import LoadedModel, load_model, resolve_weights
from server.plan import RuntimePlan, resolve_plan

logger = logging.getLogger(__name__)


#: How much nicer than the event loop the compute threads are (Linux: per thread).
COMPUTE_NICENESS: Final = 5


def lower_thread_priority() -> None:
    """Make the calling thread (and the OpenMP threads it will spawn) yield to the event loop.

    With every core busy decoding and running the model, the event loop thread
    would otherwise wait for a time slice, and /health with it. Threads inherit
    their creator's niceness, so torch's OpenMP team started from an inference
    thread is lowered too.
    """
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        os.setpriority(
            os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + COMPUTE_NICENESS
        )


def init_compute_thread(threads: int) -> None:
    """An inference thread: lower priority, and torch's thread count set *in this thread*.

    OpenMP settings are per thread: set only in the event loop's thread, they do
    not reach the thread that runs the forward pass, which then starts with
    OpenMP's own default team.
    """
    lower_thread_priority()
    torch.set_num_threads(threads)


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's "can't allocate memory" RuntimeError."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    message = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in message or "can't allocate memory" in message
    )


class Progress:
    """Which stage a request is in: ``preprocess``, ``queue`` or ``inference``.

    Set by the service as the request moves on, read by the web layer when its
    client disconnects (to count where clients give up).
    """

    __slots__ = ("stage",)

    def __init__(self) -> None:
        self.stage = "preprocess"

    def __repr__(self) -> str:
        return f"<Progress {self.stage}>"


@dataclass(frozen=True, slots=True)
class Job:
    """One batcher item: the model input and its request's progress."""

    tensor: torch.Tensor
    progress: Progress


@dataclass(frozen=True, slots=True)
class Prepared:
    """A model and its engine built before the server starts (``batchserve serve`` does this)."""

    model: LoadedModel
    built: BuiltEngine


def prepare(settings: Settings, plan: RuntimePlan) -> Prepared:
    """Load the model and build its engine (conversion, int8, compilation): blocking, seconds."""
    model = load_model(resolve_weights(settings.model, settings.weights))
    return Prepared(model, build_engine(model, plan, settings))


def prepare_in_compute_thread(settings: Settings, plan: RuntimePlan) -> Prepared:
    """:func:`prepare` on a thread of lowered priority, which it hands down.

    OpenVINO starts its own thread pool while the model compiles; those threads
    run every later forward pass and inherit the priority of the thread that
    created them. Built from the main thread, which becomes the event loop,
    they would compete with it as equals and /health would wait behind them.
    A daemon thread: a Ctrl-C in the main thread never waits for it.
    """
    result: Future[Prepared] = Future()

    def run() -> None:
        lower_thread_priority()
        try:
            result.set_result(prepare(settings, plan))
        except BaseException as exc:  # handed to the caller, who decides
            result.set_exception(exc)

    threading.Thread(target=run, name="prepare", daemon=True).start()
    return result.result()


@dataclass(frozen=True, slots=True)
class Classification:
    """One request's answer and where its time went (seconds)."""

    row: Row
    preprocess_s: float
    queue_s: float


class ClassificationService:
    """Owns everything between an uploaded image and its top-k answer."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        plan: RuntimePlan | None = None,
        prepared: Prepared | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.plan = plan or resolve_plan(settings)
        self.device = self.plan.device
        self.precision = self.plan.precision
        self.workers = self.plan.workers
        self.compiled = self.plan.compiled
        self.threads_per_worker = self.plan.threads_per_worker
        self.model: LoadedModel | None = None
        self.fidelity: dict[str, float] | None = None
        self._prepared = prepared
        self._engine: Engine | None = None
        self._batcher: MicroBatcher[Job, Row] | None = None
        self._reset()

    def _reset(self) -> None:
        """Fresh lifecycle state and pools: an app's lifespan may run more than once."""
        self.warm = False
        self.draining = False
        self.failure: str | None = None
        self._drain_started: float | None = None
        self._warm_up_task: asyncio.Task[None] | None = None
        self._decode_pool = ThreadPoolExecutor(
            self.settings.resolved_preprocess_threads(),
            thread_name_prefix="decode",
            initializer=lower_thread_priority,
        )
        self._inference_pool = ThreadPoolExecutor(
            self.workers,
            thread_name_prefix="inference",
            initializer=init_compute_thread,
            initargs=(self.threads_per_worker,),
        )

    @property
    def ready(self) -> bool:
        """Loaded, warmed up, batcher alive, and not draining."""
        alive = self._batcher is not None and self._batcher.running
        return self.warm and alive and not self.draining

    @property
    def batcher(self) -> MicroBatcher[Job, Row]:
        """The running batcher; only valid after ``start``."""
        if self._batcher is None:
            raise RuntimeError("the service has not been started")
        return self._batcher

    async def start(self) -> None:
        """Load the model (failing fast), start the batcher, and warm up in the background."""
        if self._batcher is not None:
            self._reset()
        prepared = self._prepared
        if prepared is None:
            loop = asyncio.get_running_loop()
            prepared = await loop.run_in_executor(
                self._inference_pool, prepare, self.settings, self.plan
            )
        self.model, self._engine = prepared.model, prepared.built.engine
        self.fidelity = prepared.built.fidelity
        logger.info("runtime plan: %s", self.plan.describe())
        self._batcher = MicroBatcher(
            self._run_batch,
            max_batch_size=self.plan.max_batch_size,
            max_wait_s=self.plan.max_batch_wait_ms / 1000.0,
            max_queue_size=self.settings.max_queue_size,
            workers=self.workers,
            observer=self.metrics,
        )
        self.metrics.watch_batcher(self._batcher.statistics)
        self._batcher.start()
        self._warm_up_task = asyncio.create_task(self._warm_up(), name="warm-up")

    async def _warm_up(self) -> None:
        assert self._engine is not None
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(
                self._inference_pool, self._engine.warm_up, self.plan.max_batch_size
            )
        except Exception as exc:
            self.failure = f"warm-up failed: {type(exc).__name__}: {exc}"
            logger.exception("warm-up failed; the server will never report ready")
            return
        self.warm = True
        logger.info(
            "ready: %s, %s engine on %s (%s)",
            self.describe_weights(),
            self.plan.engine,
            self.device,
            self.precision,
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
        return self.model.weights.label if self.model else "not loaded"

    async def classify(
        self, data: bytes, arrived_at: float, deadline: float, progress: Progress | None = None
    ) -> Classification:
        """Preprocess ``data`` off the loop, then queue it for a batch and await its row."""
        progress = progress or Progress()
        loop = asyncio.get_running_loop()
        assert self.model is not None
        tensor = await loop.run_in_executor(
            self._decode_pool,
            preprocess.preprocess,
            data,
            self.model.preprocess,
            self.settings.max_image_pixels,
        )
        submitted_at = loop.time()
        preprocess_s = submitted_at - arrived_at
        self.metrics.preprocess_duration.observe(preprocess_s)
        progress.stage = "queue"
        row = await self.batcher.submit(Job(tensor, progress), deadline=deadline)
        queue_s = max(0.0, loop.time() - submitted_at - row.inference_s)
        return Classification(row, preprocess_s, queue_s)

    async def _run_batch(self, jobs: Sequence[Job]) -> list[Row]:
        """One forward pass; out of memory, retried once as two halves (smaller activations)."""
        for job in jobs:
            job.progress.stage = "inference"
        items = [job.tensor for job in jobs]
        try:
            return await self._forward(items)
        except Exception as exc:
            if len(items) < 2 or not is_out_of_memory(exc):
                raise
            logger.warning("out of memory on a batch of %d; retrying as two halves", len(items))
            self._release_cached_memory()
            half = len(items) // 2
            return [*await self._forward(items[:half]), *await self._forward(items[half:])]

    async def _forward(self, items: Sequence[torch.Tensor]) -> list[Row]:
        assert self._engine is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._inference_pool, self._engine.run, items)

    def _release_cached_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def begin_drain(self) -> None:
        """Refuse new requests (/ready 503) from now on; queued and running work continues."""
        if self._drain_started is None:
            self._drain_started = time.monotonic()
        self.draining = True

    async def aclose(self) -> None:
        """Stop taking work, finish queued and running batches, free the pools.

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
        self._decode_pool.shutdown(wait=False, cancel_futures=True)
        self._inference_pool.shutdown(wait=False, cancel_futures=True)
        logger.info("drained and stopped in %.2fs", time.monotonic() - started)
