"""The micro-batcher: callers submit one item each, a pool of workers runs batches."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from types import MappingProxyType
from typing import Generic, TypeVar

from batcher import resolve
from batcher.collect import ArrivalTracker, BatchCollector
from batcher.drain import DrainRate
from batcher.errors import (
    BatcherClosedError,
    BatchFailedError,
    DeadlineExceededError,
    QueueFullError,
)
from batcher.pending import Pending
from batcher.queue import PendingQueue
from batcher.stats import BatcherStatistics, BatchObserver, BatchRecord, DropReason, NullObserver

T = TypeVar("T")
R = TypeVar("R")

HandleBatch = Callable[[Sequence[T]], Awaitable[Sequence[R]]]

logger = logging.getLogger(__name__)


def _validate(max_batch_size: int, max_wait_s: float, max_queue_size: int, workers: int) -> None:
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    if max_wait_s < 0:
        raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
    if max_queue_size < 1:
        raise ValueError(f"max_queue_size must be >= 1, got {max_queue_size}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")


class MicroBatcher(Generic[T, R]):
    """Gathers concurrently submitted items into batches for ``handle_batch``.

    ``await submit(item)`` returns that item's own result. Up to ``workers``
    batches run at once; each takes at most ``max_batch_size`` items. See
    :mod:`batcher.collect` for when a batch is sent. All methods must be called
    from the event loop the batcher was started on.
    """

    def __init__(
        self,
        handle_batch: HandleBatch[T, R],
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_queue_size: int,
        workers: int = 1,
        observer: BatchObserver | None = None,
    ) -> None:
        _validate(max_batch_size, max_wait_s, max_queue_size, workers)
        self._handle_batch = handle_batch
        self._workers = workers
        self._observer: BatchObserver = observer or NullObserver()
        self._queue = PendingQueue(max_queue_size)
        self._tracker = ArrivalTracker()
        self._collector = BatchCollector(
            self._queue,
            self._tracker,
            max_batch_size=max_batch_size,
            max_wait_s=max_wait_s,
            clock=self._now,
        )
        self._form_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._busy = 0
        self._batches_run = 0
        self._batches_failed = 0
        self._items_processed = 0
        self._dropped: Counter[DropReason] = Counter()
        self._drain = DrainRate()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._tasks else "new")
        return f"<MicroBatcher {state} queue={len(self._queue)} busy={self._busy}/{self._workers}>"

    @property
    def running(self) -> bool:
        """True while started, not closed, and every worker is alive."""
        return bool(self._tasks) and not self._closed and not any(t.done() for t in self._tasks)

    def start(self) -> None:
        """Start the worker pool on the running event loop."""
        if self._tasks or self._closed:
            raise RuntimeError("MicroBatcher.start() may be called once")
        self._tasks = [
            asyncio.create_task(self._worker_loop(), name=f"batcher-worker-{i}")
            for i in range(self._workers)
        ]
        for task in self._tasks:
            task.add_done_callback(self._on_worker_exit)

    def _on_worker_exit(self, task: asyncio.Task[None]) -> None:
        """A worker that ends before ``aclose`` breaks the batcher: fail fast, never hang."""
        if self._closed:
            return
        cause = "cancelled" if task.cancelled() else repr(task.exception())
        logger.error("batcher worker %s died (%s); refusing new items", task.get_name(), cause)
        self._closed = True
        self._collector.closing = True
        self._fail_queued()

    async def submit(self, item: T, deadline: float | None = None) -> R:
        """Queue ``item`` and return its result.

        ``deadline`` is a time on the event loop's clock (``loop.time()``); an
        item still queued then is never computed and its caller gets
        :class:`DeadlineExceededError` at that moment. Raises
        :class:`QueueFullError` at once when the queue is full,
        :class:`BatcherClosedError` once closing, and :class:`BatchFailedError`
        when the batch failed.
        """
        (pending,) = self._enqueue([item], deadline)
        try:
            return await pending.future
        except asyncio.CancelledError:
            # The caller went away: drop its item before it costs any compute.
            self._withdraw([pending])
            raise

    async def submit_many(self, items: Sequence[T], deadline: float | None = None) -> list[R]:
        """Queue every item of one request, all or none, and return their results in order.

        Admission is all or nothing: :class:`QueueFullError` at once (nothing
        queued) unless the queue has room for every item. The items may be
        computed in different batches. The first item to fail (deadline, failed
        batch) fails the whole call: the items still queued are withdrawn
        before they cost any compute, and that error is raised. Counted like
        ``submit``, one drop per item.
        """
        if not items:
            return []
        pendings = self._enqueue(items, deadline)
        try:
            return list(await asyncio.gather(*(p.future for p in pendings)))
        except BaseException:
            self._withdraw(pendings)
            raise

    def _withdraw(self, pendings: Sequence[Pending[T, R]]) -> None:
        """Take back items whose caller no longer waits: out of the queue, never computed."""
        for pending in pendings:
            if self._queue.discard(pending):
                self._drop(DropReason.CANCELLED)
            pending.future.cancel()

    def statistics(self) -> BatcherStatistics:
        """A frozen snapshot of the queue, the workers and the counters."""
        return BatcherStatistics(
            queue_depth=len(self._queue),
            max_queue_size=self._queue.max_size,
            busy_workers=self._busy,
            workers=self._workers,
            batches_run=self._batches_run,
            batches_failed=self._batches_failed,
            items_processed=self._items_processed,
            dropped=MappingProxyType(dict(self._dropped)),
            closed=self._closed,
            drain_rate_per_s=self._drain.per_s,
        )

    async def aclose(self, timeout_s: float | None = None) -> None:
        """Stop accepting items, finish what is queued and running, then stop.

        After ``timeout_s`` the workers are cancelled and every caller still
        waiting gets :class:`BatcherClosedError`.
        """
        self._closed = True
        self._collector.closing = True
        self._queue.notify()
        if not self._tasks:
            self._fail_queued()
            return
        _, pending = await asyncio.wait(self._tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pending, return_exceptions=True)
        self._fail_queued()
        if pending:
            logger.warning("batcher closed after %.1fs with work unfinished", timeout_s or 0.0)

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _enqueue(self, items: Sequence[T], deadline: float | None) -> list[Pending[T, R]]:
        if self._closed:
            self._drop(DropReason.CLOSED, len(items))
            raise BatcherClosedError("the batcher is closed")
        loop = asyncio.get_running_loop()
        now = loop.time()
        if deadline is not None and deadline <= now:
            self._drop(DropReason.DEADLINE, len(items))
            raise DeadlineExceededError("the deadline passed before the item was queued")
        pendings: list[Pending[T, R]] = [
            Pending(item, loop.create_future(), now, deadline) for item in items
        ]
        try:
            self._queue.put_all(pendings)
        except QueueFullError as exc:
            self._drop(DropReason.OVERLOADED, len(items))
            exc.drain_s = self._drain.seconds_for(len(self._queue))
            raise
        for pending in pendings:
            self._tracker.record(now)
            if deadline is not None:
                pending.timer = loop.call_at(deadline, self._expire, pending)
        return pendings

    def _expire(self, pending: Pending[T, R]) -> None:
        if self._queue.discard(pending) and not pending.future.done():
            pending.future.set_exception(
                DeadlineExceededError("the deadline passed while the item was queued")
            )
            self._drop(DropReason.DEADLINE)

    def _drop(self, reason: DropReason, count: int = 1) -> None:
        self._dropped[reason] += count
        for _ in range(count):
            self._observer.on_drop(reason)

    def _fail_queued(self) -> None:
        failed = resolve.fail(
            self._queue.drain(), lambda: BatcherClosedError("the batcher closed first")
        )
        for _ in range(failed):
            self._drop(DropReason.CLOSED)

    async def _worker_loop(self) -> None:
        while True:
            # One batch forms at a time, so the first free worker takes it whole.
            async with self._form_lock:
                batch = await self._collector.next_batch()
            if not batch:
                return
            await self._run(batch)

    async def _run(self, batch: list[Pending[T, R]]) -> None:
        started = self._now()
        self._busy += 1
        ok = False
        try:
            # Every failure must reach the callers: otherwise their futures hang forever.
            results = await self._handle_batch([p.item for p in batch])
            if len(results) != len(batch):
                raise BatchFailedError(
                    f"handle_batch returned {len(results)} results for {len(batch)} items"
                )
            resolve.deliver(batch, results)
            ok = True
        except asyncio.CancelledError:
            resolve.fail(batch, lambda: BatcherClosedError("the batcher closed mid-batch"))
            raise
        except Exception as exc:
            logger.exception("batch of %d failed", len(batch))
            resolve.fail(batch, functools.partial(_batch_failed, exc))
        except BaseException as exc:
            # Fatal for this worker, but its callers still get an answer.
            resolve.fail(batch, functools.partial(_batch_failed, exc))
            raise
        finally:
            self._busy -= 1
            self._record(batch, started, ok)

    def _record(self, batch: list[Pending[T, R]], started: float, ok: bool) -> None:
        self._batches_run += 1
        self._items_processed += len(batch)
        if not ok:
            self._batches_failed += 1
        waits = tuple(started - p.enqueued_at for p in batch)
        now = self._now()
        run_s = now - started
        if ok:
            self._drain.record(now, len(batch), run_s)
        self._observer.on_batch(BatchRecord(len(batch), waits, run_s, ok))


def _batch_failed(cause: BaseException) -> BatchFailedError:
    if isinstance(cause, BatchFailedError):
        return BatchFailedError(str(cause))
    error = BatchFailedError(f"batch failed: {type(cause).__name__}: {cause}")
    error.__cause__ = cause
    return error
