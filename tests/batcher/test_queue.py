from __future__ import annotations

import asyncio

import pytest

from batcher import QueueFullError
from batcher.pending import Pending
from batcher.queue import PendingQueue


def _pending(loop: asyncio.AbstractEventLoop, item: int) -> Pending[int, int]:
    return Pending(item, loop.create_future(), loop.time())


async def test_put_refuses_past_max_size_with_a_named_error() -> None:
    loop = asyncio.get_running_loop()
    queue = PendingQueue(1)
    queue.put(_pending(loop, 1))
    with pytest.raises(QueueFullError, match=r"^queue is full \(1 items waiting\)$"):
        queue.put(_pending(loop, 2))
    assert repr(queue) == "<PendingQueue 1/1>"


async def test_discard_removes_only_what_is_still_queued_and_stops_its_timer() -> None:
    loop = asyncio.get_running_loop()
    queue = PendingQueue(4)
    kept, removed = _pending(loop, 1), _pending(loop, 2)
    removed.timer = loop.call_later(3600, lambda: None)
    timer = removed.timer
    queue.put(kept)
    queue.put(removed)
    assert queue.discard(removed)
    assert timer.cancelled()
    assert not queue.discard(removed)
    assert len(queue) == 1
    assert queue.oldest() is kept


async def test_take_pops_oldest_first_up_to_n() -> None:
    loop = asyncio.get_running_loop()
    queue = PendingQueue(8)
    for i in range(5):
        queue.put(_pending(loop, i))
    assert [p.item for p in queue.take(3)] == [0, 1, 2]
    assert [p.item for p in queue.drain()] == [3, 4]
    assert len(queue) == 0


async def test_wait_for_change_returns_on_notify_or_timeout() -> None:
    queue = PendingQueue(1)
    waiting = asyncio.create_task(queue.wait_for_change(None))
    await asyncio.sleep(0)
    queue.notify()
    await asyncio.wait_for(waiting, timeout=5)
    await asyncio.wait_for(queue.wait_for_change(0.001), timeout=5)
