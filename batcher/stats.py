"""Plain values that describe the batcher: a statistics snapshot and per-batch records.

The batcher depends on no metrics library. Observers (for instance the server's
Prometheus adapter) receive these values and turn them into whatever they need.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol


class DropReason(StrEnum):
    """Why an item left the batcher without being computed."""

    OVERLOADED = "overloaded"
    DEADLINE = "deadline"
    CANCELLED = "cancelled"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """What happened to one batch: its size, each item's queue wait, and run time."""

    size: int
    queue_waits_s: tuple[float, ...]
    run_s: float
    ok: bool


@dataclass(frozen=True, slots=True)
class BatcherStatistics:
    """A frozen snapshot of the batcher's state, returned by ``statistics()``."""

    queue_depth: int
    max_queue_size: int
    busy_workers: int
    workers: int
    batches_run: int
    batches_failed: int
    items_processed: int
    dropped: Mapping[DropReason, int] = field(default_factory=lambda: MappingProxyType({}))
    closed: bool = False
    #: Items completed per second, smoothed (None until a batch has completed).
    drain_rate_per_s: float | None = None

    @property
    def drain_s(self) -> float | None:
        """Seconds the queue takes to drain at ``drain_rate_per_s`` (None: not yet known)."""
        if not self.drain_rate_per_s:
            return None
        return self.queue_depth / self.drain_rate_per_s


class BatchObserver(Protocol):
    """Receives events from the batcher; called on the event loop, so keep it cheap."""

    def on_batch(self, record: BatchRecord) -> None:
        """Called once per batch after it ran (or failed)."""

    def on_drop(self, reason: DropReason) -> None:
        """Called once per item that leaves the batcher without being computed."""


class NullObserver:
    """An observer that ignores every event; the default."""

    def on_batch(self, record: BatchRecord) -> None:
        """Ignore the batch record."""

    def on_drop(self, reason: DropReason) -> None:
        """Ignore the drop."""
