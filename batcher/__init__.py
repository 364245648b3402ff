"""A generic asyncio micro-batcher: standard library only, no HTTP, torch or metrics."""

from __future__ import annotations

from batcher.errors import (
    BatcherClosedError,
    BatcherError,
    BatchFailedError,
    DeadlineExceededError,
    QueueFullError,
)
from batcher.micro import HandleBatch, MicroBatcher
from batcher.stats import BatcherStatistics, BatchObserver, BatchRecord, DropReason, NullObserver

__all__ = [
    "BatchFailedError",
    "BatchObserver",
    "BatchRecord",
    "BatcherClosedError",
    "BatcherError",
    "BatcherStatistics",
    "DeadlineExceededError",
    "DropReason",
    "HandleBatch",
    "MicroBatcher",
    "NullObserver",
    "QueueFullError",
]
