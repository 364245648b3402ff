from __future__ import annotations

import asyncio

import pytest

from batcher.collect import ArrivalTracker, BatchCollector, wait_budget_s
from batcher.pending import Pending
from batcher.queue import PendingQueue


def test_tracker_has_no_gap_before_the_second_arrival() -> None:
    tracker = ArrivalTracker()
    assert tracker.median_gap() is None
    tracker.record(10.0)
    assert tracker.median_gap() is None
    assert tracker.last_arrival == 10.0


def test_tracker_reports_the_median_of_recent_gaps() -> None:
    tracker = ArrivalTracker(history=3)
    for t in (0.0, 1.0, 1.5, 1.6, 5.0):
        tracker.record(t)
    # Gaps kept: 0.5, 0.1, 3.4 (the first gap of 1.0 fell out of the history).
    assert tracker.median_gap() == pytest.approx(0.5)


def test_no_history_means_no_reason_to_wait() -> None:
    assert wait_budget_s(now=1.0, window_end=2.0, last_arrival=1.0, median_gap=None) == 0.0


def test_a_closed_window_means_send_now() -> None:
    assert wait_budget_s(now=2.0, window_end=2.0, last_arrival=1.99, median_gap=0.001) == 0.0


def test_company_predicted_inside_the_window_is_waited_for_until_the_stream_is_quiet() -> None:
    budget = wait_budget_s(now=1.0, window_end=1.010, last_arrival=1.0, median_gap=0.002)
    assert budget == pytest.approx(0.004)


def test_the_window_end_bounds_the_wait() -> None:
    budget = wait_budget_s(now=1.0, window_end=1.003, last_arrival=1.0, median_gap=0.002)
    assert budget == pytest.approx(0.003)


def test_company_predicted_after_the_window_is_not_waited_for() -> None:
    assert wait_budget_s(now=1.0, window_end=1.005, last_arrival=1.0, median_gap=0.01) == 0.0


def test_a_stream_that_went_quiet_is_not_waited_for() -> None:
    assert wait_budget_s(now=1.5, window_end=1.6, last_arrival=1.0, median_gap=0.01) == 0.0


async def test_collector_waits_while_company_is_expected_then_sends_a_full_batch() -> None:
    loop = asyncio.get_running_loop()
    queue = PendingQueue(16)
    tracker = ArrivalTracker()
    # A clock that stands still keeps "company expected" true until the batch is full.
    frozen_now = loop.time()
    collector = BatchCollector(
        queue, tracker, max_batch_size=3, max_wait_s=60.0, clock=lambda: frozen_now
    )
    for t in (frozen_now - 0.002, frozen_now - 0.001):
        tracker.record(t)
    queue.put(Pending(1, loop.create_future(), frozen_now))
    tracker.record(frozen_now)
    collecting = asyncio.create_task(collector.next_batch())
    await asyncio.sleep(0)
    assert not collecting.done()
    queue.put(Pending(2, loop.create_future(), frozen_now))
    await asyncio.sleep(0)
    assert not collecting.done()
    queue.put(Pending(3, loop.create_future(), frozen_now))
    batch = await collecting
    assert [p.item for p in batch] == [1, 2, 3]


async def test_collector_returns_nothing_once_closing_and_empty() -> None:
    queue = PendingQueue(4)
    collector = BatchCollector(
        queue, ArrivalTracker(), max_batch_size=2, max_wait_s=1.0, clock=lambda: 0.0
    )
    collecting = asyncio.create_task(collector.next_batch())
    await asyncio.sleep(0)
    collector.closing = True
    queue.notify()
    assert await collecting == []


async def test_collector_skips_items_whose_callers_already_left() -> None:
    loop = asyncio.get_running_loop()
    queue = PendingQueue(4)
    collector = BatchCollector(
        queue, ArrivalTracker(), max_batch_size=2, max_wait_s=0.0, clock=loop.time
    )
    gone = Pending(1, loop.create_future(), loop.time())
    gone.future.cancel()
    queue.put(gone)
    collecting = asyncio.create_task(collector.next_batch())
    await asyncio.sleep(0)
    assert not collecting.done()
    queue.put(Pending(2, loop.create_future(), loop.time()))
    assert [p.item for p in await collecting] == [2]


def _expecting_company(now: float, *, max_wait_s: float) -> tuple[PendingQueue, BatchCollector]:
    """A queue with one item that arrived at ``100.0`` amid a tight stream of arrivals."""
    loop = asyncio.get_running_loop()
    queue = PendingQueue(8)
    tracker = ArrivalTracker()
    for t in (99.998, 99.999, 100.0):
        tracker.record(t)
    queue.put(Pending(1, loop.create_future(), 100.0))
    collector = BatchCollector(
        queue, tracker, max_batch_size=8, max_wait_s=max_wait_s, clock=lambda: now
    )
    return queue, collector


async def test_max_wait_zero_never_waits_even_when_company_is_expected() -> None:
    _, collector = _expecting_company(100.0, max_wait_s=0.0)
    batch = await asyncio.wait_for(collector.next_batch(), timeout=5)
    assert [p.item for p in batch] == [1]


async def test_the_wait_clock_starts_at_the_first_item() -> None:
    # Inside the first item's window, with company expected: the collector waits.
    _, waiting = _expecting_company(100.0005, max_wait_s=0.01)
    collecting = asyncio.create_task(waiting.next_batch())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not collecting.done()
    collecting.cancel()
    # Once the first item has waited max_wait_s, the batch goes, company or not.
    _, expired = _expecting_company(100.0101, max_wait_s=0.01)
    batch = await asyncio.wait_for(expired.next_batch(), timeout=5)
    assert [p.item for p in batch] == [1]
