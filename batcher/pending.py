"""One queued item together with the future its caller awaits."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(eq=False, slots=True)
class Pending(Generic[T, R]):
    """An item waiting in the batcher; identity equality so ``deque.remove`` finds *this* one."""

    item: T
    future: asyncio.Future[R]
    enqueued_at: float
    deadline: float | None = None
    timer: asyncio.TimerHandle | None = None

    def stop_timer(self) -> None:
        """Cancel the deadline timer, once the item left the queue."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
