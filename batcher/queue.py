"""A bounded FIFO of pending items that wakes the batch collector on every change."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

from batcher.errors import QueueFullError
from batcher.pending import Pending


class PendingQueue:
    """Items submitted but not yet taken into a batch, oldest first.

    Expired and cancelled items are removed at once (``discard``), so the
    length is always the number of items still waiting for compute.
    """

    def __init__(self, max_size: int) -> None:
        self._items: deque[Pending[Any, Any]] = deque()
        self._max_size = max_size
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"<PendingQueue {len(self._items)}/{self._max_size}>"

    @property
    def max_size(self) -> int:
        """The most items the queue holds before ``put`` refuses."""
        return self._max_size

    def oldest(self) -> Pending[Any, Any]:
        """The item that has waited longest; the queue must not be empty."""
        return self._items[0]

    def put(self, pending: Pending[Any, Any]) -> None:
        """Append an item, or raise :class:`QueueFullError` if the queue is full."""
        self.put_all([pending])

    def put_all(self, pendings: Sequence[Pending[Any, Any]]) -> None:
        """Append every item, or none and raise :class:`QueueFullError` if they do not all fit."""
        if len(self._items) + len(pendings) > self._max_size:
            if len(pendings) == 1:
                raise QueueFullError(f"queue is full ({self._max_size} items waiting)")
            free = self._max_size - len(self._items)
            raise QueueFullError(
                f"no room for {len(pendings)} items ({free} of {self._max_size} free)"
            )
        self._items.extend(pendings)
        self.notify()

    def discard(self, pending: Pending[Any, Any]) -> bool:
        """Remove ``pending`` if it is still queued; say whether it was."""
        try:
            self._items.remove(pending)
        except ValueError:
            return False
        pending.stop_timer()
        return True

    def take(self, n: int) -> list[Pending[Any, Any]]:
        """Pop up to ``n`` items whose callers still wait, oldest first."""
        batch: list[Pending[Any, Any]] = []
        while self._items and len(batch) < n:
            pending = self._items.popleft()
            pending.stop_timer()
            # A caller that already has an outcome (cancelled) must not be computed.
            if not pending.future.done():
                batch.append(pending)
        return batch

    def drain(self) -> list[Pending[Any, Any]]:
        """Remove and return every queued item."""
        items = list(self._items)
        self._items.clear()
        for pending in items:
            pending.stop_timer()
        return items

    def notify(self) -> None:
        """Wake whoever waits in ``wait_for_change``."""
        self._changed.set()

    async def wait_for_change(self, timeout_s: float | None) -> None:
        """Wait until the next ``notify`` or until ``timeout_s`` passed (None: no limit)."""
        self._changed.clear()
        try:
            async with asyncio.timeout(timeout_s):
                await self._changed.wait()
        except TimeoutError:
            pass
