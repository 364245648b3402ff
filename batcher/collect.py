"""Forming batches: when to send what is queued, and when waiting for company can pay.

The policy, in full:

1. A batch is sent at once when ``max_batch_size`` items are queued, when
   ``max_wait_s`` is 0, or when the batcher is closing.
2. Otherwise the first (oldest) queued item opens a window that ends
   ``max_wait_s`` after it was submitted; the batch is sent when the window ends.
3. Inside the window the collector waits only while company is expected. The
   next arrival is predicted from the median of the recent gaps between
   arrivals (:class:`ArrivalTracker`). The batch is sent early when that
   prediction falls after the window's end, when there is no history yet,
   or when the stream has gone quiet (no arrival for two median gaps).

So an idle server answers a lone request without added latency, and a busy one
fills batches; the first item never waits for company longer than ``max_wait_s``.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable
from typing import Any

from batcher.pending import Pending
from batcher.queue import PendingQueue

_GAP_HISTORY = 16


class ArrivalTracker:
    """Remembers the last arrival time and the recent gaps between arrivals."""

    def __init__(self, history: int = _GAP_HISTORY) -> None:
        self._gaps: deque[float] = deque(maxlen=history)
        self.last_arrival: float | None = None

    def record(self, now: float) -> None:
        """Note an arrival at time ``now`` (a monotonic clock)."""
        if self.last_arrival is not None:
            self._gaps.append(max(0.0, now - self.last_arrival))
        self.last_arrival = now

    def median_gap(self) -> float | None:
        """The median of the recent gaps, or None before the second arrival."""
        return statistics.median(self._gaps) if self._gaps else None


def wait_budget_s(
    now: float, window_end: float, last_arrival: float | None, median_gap: float | None
) -> float:
    """How long it is worth waiting for more items now; 0.0 means send the batch.

    Waiting pays only while the next arrival is predicted inside the window
    and the stream of arrivals has not gone quiet.
    """
    if now >= window_end or last_arrival is None or median_gap is None:
        return 0.0
    if last_arrival + median_gap > window_end:
        return 0.0
    quiet_at = last_arrival + 2 * median_gap
    return max(0.0, min(window_end, quiet_at) - now)


class BatchCollector:
    """Takes batches off a :class:`PendingQueue` according to the module's policy."""

    def __init__(
        self,
        queue: PendingQueue,
        tracker: ArrivalTracker,
        *,
        max_batch_size: int,
        max_wait_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._queue = queue
        self._tracker = tracker
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_wait_s
        self._clock = clock
        self.closing = False

    async def next_batch(self) -> list[Pending[Any, Any]]:
        """Wait for and return the next batch; an empty list once closing and empty."""
        while True:
            if not self._queue:
                if self.closing:
                    return []
                await self._queue.wait_for_change(None)
                continue
            budget = self._wait_budget()
            if budget <= 0.0:
                batch = self._queue.take(self._max_batch_size)
                if batch:
                    return batch
                continue
            await self._queue.wait_for_change(budget)

    def _wait_budget(self) -> float:
        if self.closing or len(self._queue) >= self._max_batch_size:
            return 0.0
        window_end = self._queue.oldest().enqueued_at + self._max_wait_s
        return wait_budget_s(
            self._clock(), window_end, self._tracker.last_arrival, self._tracker.median_gap()
        )
