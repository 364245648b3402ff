from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from batcher import BatchRecord, DropReason, MicroBatcher


class GatedHandler:
    """A batch handler whose calls block on a gate, recording every batch it saw."""

    def __init__(self, fn: Callable[[int], object] = lambda x: x * 10) -> None:
        self.fn = fn
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.active = 0
        self.max_active = 0

    async def __call__(self, items: Sequence[int]) -> list[object]:
        self.batches.append(list(items))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.started.set()
        try:
            await self.gate.wait()
            return [self.fn(x) for x in items]
        finally:
            self.active -= 1

    async def wait_started(self) -> None:
        await self.started.wait()
        self.started.clear()

    @property
    def seen(self) -> list[int]:
        return [x for batch in self.batches for x in batch]


class RecordingObserver:
    def __init__(self) -> None:
        self.records: list[BatchRecord] = []
        self.drops: list[DropReason] = []

    def on_batch(self, record: BatchRecord) -> None:
        self.records.append(record)

    def on_drop(self, reason: DropReason) -> None:
        self.drops.append(reason)


@pytest.fixture
def handler() -> GatedHandler:
    return GatedHandler()


@pytest.fixture
def observer() -> RecordingObserver:
    return RecordingObserver()


@pytest.fixture
async def batcher(
    handler: GatedHandler, observer: RecordingObserver
) -> AsyncIterator[MicroBatcher[int, object]]:
    b: MicroBatcher[int, object] = MicroBatcher(
        handler, max_batch_size=4, max_wait_s=0.0, max_queue_size=8, workers=1, observer=observer
    )
    b.start()
    yield b
    handler.gate.set()
    await b.aclose(timeout_s=5)


async def until(predicate: Callable[[], bool]) -> None:
    """Yield to the loop until ``predicate`` holds (bounded by the test timeout)."""
    while not predicate():  # noqa: ASYNC110 - sleep(0) is a yield to the loop, not a timed wait
        await asyncio.sleep(0)
