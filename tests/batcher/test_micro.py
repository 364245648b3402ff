from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Sequence

import pytest

from batcher import (
    BatcherClosedError,
    BatchFailedError,
    DeadlineExceededError,
    DropReason,
    MicroBatcher,
    QueueFullError,
)
from tests.batcher.conftest import GatedHandler, RecordingObserver, until


def _submit_all(b: MicroBatcher[int, object], items: Sequence[int]) -> list[asyncio.Task[object]]:
    return [asyncio.create_task(b.submit(x)) for x in items]


async def _busy_with_first_item(
    b: MicroBatcher[int, object], handler: GatedHandler
) -> asyncio.Task[object]:
    """Occupy the single worker with item 0, so later items have to queue."""
    first = asyncio.create_task(b.submit(0))
    await handler.wait_started()
    return first


async def test_results_reach_their_own_callers(handler) -> None:
    b: MicroBatcher[int, object] = MicroBatcher(
        handler, max_batch_size=4, max_wait_s=0.01, max_queue_size=64, workers=2
    )
    b.start()
    handler.gate.set()
    results = await asyncio.gather(*_submit_all(b, range(1, 40)))
    await b.aclose()
    assert results == [x * 10 for x in range(1, 40)]
    assert max(len(batch) for batch in handler.batches) > 1


async def test_order_of_results_matches_order_of_items_within_a_batch() -> None:
    seen: list[list[str]] = []

    async def reverse_labels(items: Sequence[str]) -> list[str]:
        seen.append(list(items))
        return [f"{item}!" for item in items]

    b: MicroBatcher[str, str] = MicroBatcher(
        reverse_labels, max_batch_size=8, max_wait_s=0.0, max_queue_size=16
    )
    b.start()
    results = await asyncio.gather(*(b.submit(s) for s in "abcdef"))
    await b.aclose()
    assert results == [f"{s}!" for s in "abcdef"]
    assert [s for batch in seen for s in batch] == list("abcdef")


async def test_items_that_queue_while_the_worker_is_busy_form_full_batches(
    batcher, handler
) -> None:
    first = await _busy_with_first_item(batcher, handler)
    rest = _submit_all(batcher, [1, 2, 3, 4, 5, 6])
    await until(lambda: batcher.statistics().queue_depth == 6)
    handler.gate.set()
    await asyncio.gather(first, *rest)
    assert handler.batches == [[0], [1, 2, 3, 4], [5, 6]]


async def test_a_lone_item_on_an_idle_batcher_does_not_wait_for_company(handler) -> None:
    # A window of an hour: the test only finishes if the idle batcher sends at once.
    b: MicroBatcher[int, object] = MicroBatcher(
        handler, max_batch_size=8, max_wait_s=3600.0, max_queue_size=8
    )
    b.start()
    handler.gate.set()
    assert await asyncio.wait_for(b.submit(7), timeout=10) == 70
    await b.aclose()


async def test_a_burst_under_a_wait_window_leaves_no_item_stranded(handler) -> None:
    # The window's bound itself is pinned in test_collect with a controlled clock.
    handler.gate.set()
    b: MicroBatcher[int, object] = MicroBatcher(
        handler, max_batch_size=64, max_wait_s=0.05, max_queue_size=64
    )
    b.start()
    # A tight burst gives the tracker a tiny median gap, so the collector expects company.
    results = await asyncio.wait_for(asyncio.gather(*_submit_all(b, range(5))), timeout=10)
    await b.aclose()
    assert results == [0, 10, 20, 30, 40]
    assert sorted(handler.seen) == list(range(5))


async def test_a_full_queue_refuses_at_once(handler, observer) -> None:
    b: MicroBatcher[int, object] = MicroBatcher(
        handler, max_batch_size=4, max_wait_s=0.0, max_queue_size=2, observer=observer
    )
    b.start()
    first = await _busy_with_first_item(b, handler)
    queued = _submit_all(b, [1, 2])
    await until(lambda: b.statistics().queue_depth == 2)
    with pytest.raises(QueueFullError, match=r"^queue is full \(2 items waiting\)$"):
        await b.submit(3)
    handler.gate.set()
    assert await asyncio.gather(first, *queued) == [0, 10, 20]
    assert b.statistics().dropped == {DropReason.OVERLOADED: 1}
    assert observer.drops == [DropReason.OVERLOADED]
    await b.aclose()


async def test_an_expired_item_fails_when_its_deadline_passes_and_is_never_computed(
    batcher, handler
) -> None:
    first = await _busy_with_first_item(batcher, handler)
    loop = asyncio.get_running_loop()
    with pytest.raises(DeadlineExceededError, match="while the item was queued"):
        await batcher.submit(1, deadline=loop.time() + 0.05)
    # The worker is still busy with item 0: the error came before any next batch formed.
    assert handler.active == 1
    assert batcher.statistics().queue_depth == 0
    handler.gate.set()
    await first
    await batcher.submit(2)
    assert handler.seen == [0, 2]
    assert batcher.statistics().dropped == {DropReason.DEADLINE: 1}


async def test_an_item_past_its_deadline_on_arrival_is_refused(batcher, handler) -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(DeadlineExceededError, match="before the item was queued"):
        await batcher.submit(1, deadline=loop.time() - 1)
    assert handler.seen == []


async def test_an_item_already_in_a_running_batch_completes_past_its_deadline(
    batcher, handler
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 0.02
    task = asyncio.create_task(batcher.submit(3, deadline=deadline))
    await handler.wait_started()
    # Open the gate only after the deadline has passed.
    loop.call_at(deadline + 0.02, handler.gate.set)
    assert await task == 30
    assert batcher.statistics().dropped == {}


async def test_a_cancelled_caller_is_dropped_before_compute(batcher, handler, observer) -> None:
    first = await _busy_with_first_item(batcher, handler)
    leaving = asyncio.create_task(batcher.submit(1))
    staying = asyncio.create_task(batcher.submit(2))
    await until(lambda: batcher.statistics().queue_depth == 2)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert batcher.statistics().queue_depth == 1
    handler.gate.set()
    assert await asyncio.gather(first, staying) == [0, 20]
    assert handler.seen == [0, 2]
    assert observer.drops == [DropReason.CANCELLED]


async def test_a_cancel_during_the_batch_does_not_break_the_batch(batcher, handler) -> None:
    leaving = asyncio.create_task(batcher.submit(1))
    staying = asyncio.create_task(batcher.submit(2))
    await handler.wait_started()
    leaving.cancel()
    handler.gate.set()
    assert await staying == 20
    assert leaving.cancelled()


async def test_a_failing_batch_fails_only_its_own_callers(observer) -> None:
    async def fails_on_13(items: Sequence[int]) -> list[int]:
        if 13 in items:
            raise RuntimeError("unlucky")
        return [x + 1 for x in items]

    b: MicroBatcher[int, int] = MicroBatcher(
        fails_on_13, max_batch_size=1, max_wait_s=0.0, max_queue_size=8, observer=observer
    )
    b.start()
    outcomes = await asyncio.gather(*(b.submit(x) for x in (12, 13, 14)), return_exceptions=True)
    assert outcomes[0] == 13
    assert outcomes[2] == 15
    error = outcomes[1]
    assert isinstance(error, BatchFailedError)
    assert str(error) == "batch failed: RuntimeError: unlucky"
    assert isinstance(error.__cause__, RuntimeError)
    assert await b.submit(1) == 2
    assert [r.ok for r in observer.records] == [True, False, True, True]
    assert b.statistics().batches_failed == 1
    await b.aclose()


async def test_a_wrong_result_count_is_an_error_for_that_batch_not_a_hang() -> None:
    async def drops_one(items: Sequence[int]) -> list[int]:
        return list(items)[1:] if len(items) > 1 else list(items)

    b: MicroBatcher[int, int] = MicroBatcher(
        drops_one, max_batch_size=8, max_wait_s=0.0, max_queue_size=8
    )
    b.start()
    outcomes = await asyncio.gather(*(b.submit(x) for x in (1, 2, 3)), return_exceptions=True)
    assert all(isinstance(o, BatchFailedError) for o in outcomes)
    assert "returned 2 results for 3 items" in str(outcomes[0])
    assert await b.submit(9) == 9
    await b.aclose()


class _WorkerKiller(BaseException):
    """Not an Exception: escapes the worker's error handling like a fatal fault would."""


async def test_a_worker_that_dies_fails_its_batch_and_the_queue_fast_and_refuses_new_items(
    handler,
) -> None:
    async def dies_on_first_batch(items: Sequence[int]) -> list[int]:
        await handler(items)
        raise _WorkerKiller

    b: MicroBatcher[int, int] = MicroBatcher(
        dies_on_first_batch, max_batch_size=1, max_wait_s=0.0, max_queue_size=8
    )
    b.start()
    first = asyncio.create_task(b.submit(1))
    await handler.wait_started()
    queued = asyncio.create_task(b.submit(2))
    await asyncio.sleep(0)
    handler.gate.set()
    with pytest.raises(BatchFailedError, match="_WorkerKiller"):
        await first
    with pytest.raises(BatcherClosedError):
        await queued
    assert not b.running
    with pytest.raises(BatcherClosedError):
        await b.submit(3)
    assert handler.seen == [1]
    await b.aclose()


async def test_worker_concurrency_never_exceeds_workers(handler) -> None:
    b: MicroBatcher[int, object] = MicroBatcher(
        handler, max_batch_size=1, max_wait_s=0.0, max_queue_size=32, workers=3
    )
    b.start()
    tasks = _submit_all(b, range(12))
    await until(lambda: handler.active == 3)
    assert b.statistics().busy_workers == 3
    assert b.statistics().queue_depth == 9
    handler.gate.set()
    await asyncio.gather(*tasks)
    assert handler.max_active == 3
    await b.aclose()


async def test_a_free_worker_takes_up_to_max_batch_size_at_once(handler) -> None:
    b: MicroBatcher[int, object] = MicroBatcher(
        handler, max_batch_size=3, max_wait_s=0.0, max_queue_size=32, workers=2
    )
    b.start()
    first = await _busy_with_first_item(b, handler)
    second = asyncio.create_task(b.submit(1))
    await handler.wait_started()
    rest = _submit_all(b, range(2, 9))
    await until(lambda: b.statistics().queue_depth == 7)
    handler.gate.set()
    await asyncio.gather(first, second, *rest)
    assert handler.batches[:2] == [[0], [1]]
    assert [len(batch) for batch in handler.batches[2:]] == [3, 3, 1]
    await b.aclose()


async def test_every_submitted_item_gets_exactly_one_outcome() -> None:
    rng = random.Random(1234)
    computed: list[int] = []

    async def sometimes_fails(items: Sequence[int]) -> list[int]:
        computed.extend(items)
        await asyncio.sleep(0)
        if any(x % 7 == 0 for x in items):
            raise ValueError("seven")
        return list(items)

    b: MicroBatcher[int, int] = MicroBatcher(
        sometimes_fails, max_batch_size=4, max_wait_s=0.001, max_queue_size=20, workers=2
    )
    b.start()
    loop = asyncio.get_running_loop()
    tasks = []
    for x in range(200):
        deadline = loop.time() + 0.0005 if rng.random() < 0.2 else None
        tasks.append(asyncio.create_task(b.submit(x, deadline=deadline)))
        if rng.random() < 0.3:
            await asyncio.sleep(0)
    for task in rng.sample(tasks, 20):
        task.cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    await b.aclose()
    stats = b.statistics()
    for x, outcome in enumerate(outcomes):
        assert outcome == x or isinstance(outcome, BaseException)
        if outcome == x:
            assert computed.count(x) == 1
    assert len(computed) == len(set(computed)) == stats.items_processed
    assert stats.items_processed + sum(stats.dropped.values()) == 200


async def test_aclose_finishes_queued_and_running_work_and_refuses_new_items(
    batcher, handler, observer
) -> None:
    first = await _busy_with_first_item(batcher, handler)
    queued = _submit_all(batcher, [1, 2])
    await until(lambda: batcher.statistics().queue_depth == 2)
    closing = asyncio.create_task(batcher.aclose(timeout_s=10))
    await until(lambda: batcher.statistics().closed)
    with pytest.raises(BatcherClosedError):
        await batcher.submit(3)
    assert not batcher.running
    handler.gate.set()
    assert await asyncio.gather(first, *queued) == [0, 10, 20]
    await closing
    assert handler.seen == [0, 1, 2]
    assert observer.drops == [DropReason.CLOSED]


async def test_aclose_is_bounded_and_fails_what_it_could_not_finish(handler) -> None:
    b: MicroBatcher[int, object] = MicroBatcher(
        handler, max_batch_size=1, max_wait_s=0.0, max_queue_size=8
    )
    b.start()
    first = await _busy_with_first_item(b, handler)
    queued = asyncio.create_task(b.submit(1))
    await until(lambda: b.statistics().queue_depth == 1)
    await b.aclose(timeout_s=0.05)
    for task in (first, queued):
        with pytest.raises(BatcherClosedError):
            await task
    assert b.statistics().dropped == {DropReason.CLOSED: 1}


async def test_aclose_before_start_fails_nothing_and_returns(handler) -> None:
    b: MicroBatcher[int, object] = MicroBatcher(
        handler, max_batch_size=1, max_wait_s=0.0, max_queue_size=8
    )
    await b.aclose()
    assert b.statistics().closed


async def test_statistics_is_a_frozen_snapshot(batcher, handler) -> None:
    first = await _busy_with_first_item(batcher, handler)
    queued = asyncio.create_task(batcher.submit(1))
    await until(lambda: batcher.statistics().queue_depth == 1)
    snapshot = batcher.statistics()
    assert (snapshot.queue_depth, snapshot.busy_workers, snapshot.workers) == (1, 1, 1)
    assert snapshot.max_queue_size == 8
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.queue_depth = 5  # type: ignore[misc]
    handler.gate.set()
    await asyncio.gather(first, queued)
    after = batcher.statistics()
    assert (after.batches_run, after.items_processed, after.busy_workers) == (2, 2, 0)
    assert snapshot.queue_depth == 1


async def test_the_observer_sees_each_batch_with_its_queue_waits(
    batcher, handler, observer: RecordingObserver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queued items' waits cover the time they sat behind the busy worker, the first's not.

    The loop's clock jumps 5 s while the three wait (no sleep): their waits must
    include the jump, and the first item, taken at once, must not.
    """
    loop = asyncio.get_running_loop()
    real_time, skipped = loop.time, [0.0]
    monkeypatch.setattr(loop, "time", lambda: real_time() + skipped[0])
    first = await _busy_with_first_item(batcher, handler)
    queued = _submit_all(batcher, [1, 2, 3])
    await until(lambda: batcher.statistics().queue_depth == 3)
    skipped[0] = 5.0
    handler.gate.set()
    await asyncio.gather(first, *queued)
    assert [r.size for r in observer.records] == [1, 3]
    assert all(r.ok for r in observer.records)
    (first_wait,) = observer.records[0].queue_waits_s
    assert first_wait < 5.0
    assert all(5.0 <= wait < 5.0 + 60 for wait in observer.records[1].queue_waits_s)
    assert observer.records[0].run_s >= 5.0  # the jump happened while item 0 ran


async def test_start_twice_is_an_error(batcher) -> None:
    assert batcher.running
    with pytest.raises(RuntimeError, match="once"):
        batcher.start()


def test_repr_names_state_and_load(handler) -> None:
    b: MicroBatcher[int, object] = MicroBatcher(
        handler, max_batch_size=1, max_wait_s=0.0, max_queue_size=8, workers=2
    )
    assert repr(b) == "<MicroBatcher new queue=0 busy=0/2>"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch_size": 0}, r"^max_batch_size must be >= 1, got 0$"),
        ({"max_wait_s": -0.5}, r"^max_wait_s must be >= 0, got -0.5$"),
        ({"max_queue_size": 0}, r"^max_queue_size must be >= 1, got 0$"),
        ({"workers": 0}, r"^workers must be >= 1, got 0$"),
    ],
)
def test_settings_are_validated_with_the_bad_value_in_the_message(handler, kwargs, message) -> None:
    settings = {"max_batch_size": 4, "max_wait_s": 0.0, "max_queue_size": 4, "workers": 1}
    with pytest.raises(ValueError, match=message):
        MicroBatcher(handler, **{**settings, **kwargs})


# --- submit_many: one request's items, admitted all or nothing ----------------------------


async def test_submit_many_returns_results_in_order_across_batches(handler) -> None:
    b: MicroBatcher[int, object] = MicroBatcher(
        handler, max_batch_size=2, max_wait_s=0.0, max_queue_size=8
    )
    b.start()
    handler.gate.set()
    assert await b.submit_many([1, 2, 3, 4, 5]) == [10, 20, 30, 40, 50]
    assert await b.submit_many([]) == []
    await b.aclose()
    assert sorted(len(batch) for batch in handler.batches) == [1, 2, 2]


async def test_submit_many_is_admitted_whole_or_refused_whole(batcher, handler, observer) -> None:
    first = await _busy_with_first_item(batcher, handler)
    queued = _submit_all(batcher, range(1, 7))
    await until(lambda: batcher.statistics().queue_depth == 6)
    with pytest.raises(QueueFullError, match=r"^no room for 3 items \(2 of 8 free\)$"):
        await batcher.submit_many([7, 8, 9])
    assert batcher.statistics().queue_depth == 6  # nothing of the refused request was queued
    assert observer.drops == [DropReason.OVERLOADED] * 3
    two = asyncio.create_task(batcher.submit_many([7, 8]))
    await until(lambda: batcher.statistics().queue_depth == 8)
    handler.gate.set()
    assert await asyncio.gather(first, *queued) == [0, 10, 20, 30, 40, 50, 60]
    assert await two == [70, 80]


async def test_submit_many_fails_whole_at_its_deadline_and_computes_nothing(
    batcher, handler
) -> None:
    first = await _busy_with_first_item(batcher, handler)
    loop = asyncio.get_running_loop()
    with pytest.raises(DeadlineExceededError):
        await batcher.submit_many([1, 2, 3], deadline=loop.time() + 0.05)
    assert batcher.statistics().queue_depth == 0
    handler.gate.set()
    await first
    assert handler.seen == [0]
    assert sum(batcher.statistics().dropped.values()) == 3


async def test_a_failed_batch_fails_the_call_and_withdraws_its_queued_items(observer) -> None:
    seen: list[int] = []
    gate = asyncio.Event()

    async def handle(items: Sequence[int]) -> list[int]:
        seen.extend(items)
        if 2 in items:
            raise ZeroDivisionError("item 2")
        await gate.wait()  # item 3 stays in flight; 4 stays queued
        return [x * 10 for x in items]

    b: MicroBatcher[int, int] = MicroBatcher(
        handle, max_batch_size=1, max_wait_s=0.0, max_queue_size=8, observer=observer
    )
    b.start()
    with pytest.raises(BatchFailedError, match="ZeroDivisionError"):
        await b.submit_many([2, 3, 4])
    assert b.statistics().queue_depth == 0
    gate.set()
    await b.aclose()
    # 4 was withdrawn before compute (3 may have started; its late result is discarded).
    assert seen[0] == 2
    assert 4 not in seen
    assert DropReason.CANCELLED in observer.drops


async def test_a_caller_that_leaves_withdraws_all_its_queued_items(batcher, handler) -> None:
    first = await _busy_with_first_item(batcher, handler)
    call = asyncio.create_task(batcher.submit_many([1, 2, 3]))
    await until(lambda: batcher.statistics().queue_depth == 3)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert batcher.statistics().queue_depth == 0
    handler.gate.set()
    await first
    assert handler.seen == [0]
    assert batcher.statistics().dropped == {DropReason.CANCELLED: 3}


async def test_a_refusal_says_how_long_the_queue_takes_to_drain(handler) -> None:
    b: MicroBatcher[int, object] = MicroBatcher(
        handler, max_batch_size=2, max_wait_s=0.0, max_queue_size=2
    )
    b.start()
    first = await _busy_with_first_item(b, handler)
    queued = _submit_all(b, [1, 2])
    await until(lambda: b.statistics().queue_depth == 2)
    with pytest.raises(QueueFullError) as unknown:
        await b.submit(3)
    assert unknown.value.drain_s is None  # nothing has completed yet: no rate to go by
    handler.gate.set()
    await asyncio.gather(first, *queued)
    handler.gate.clear()
    handler.started.clear()  # set again by the batch of 1 and 2
    rate = b.statistics().drain_rate_per_s
    assert rate is not None
    assert rate > 0
    busy = await _busy_with_first_item(b, handler)
    more = _submit_all(b, [4, 5])
    await until(lambda: b.statistics().queue_depth == 2)
    with pytest.raises(QueueFullError) as measured:
        await b.submit(6)
    assert measured.value.drain_s == pytest.approx(2 / rate)
    assert b.statistics().drain_s == pytest.approx(2 / rate)
    handler.gate.set()
    await asyncio.gather(busy, *more)
    await b.aclose()
