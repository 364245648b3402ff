"""Named errors a caller of :class:`~batcher.MicroBatcher` can meet.

Each one tells the caller *why* its item got no result, so that an adapter
(the web server) can map it to a response without guessing.
"""

from __future__ import annotations


class BatcherError(Exception):
    """Base class of every error the batcher raises to a caller."""


class QueueFullError(BatcherError):
    """The queue already holds ``max_queue_size`` items; the item was refused.

    ``drain_s`` is how long the queue now takes to drain at its measured rate
    (None while nothing has completed yet): when a retry may find room.
    """

    def __init__(self, message: str = "the queue is full", drain_s: float | None = None) -> None:
        super().__init__(message)
        self.drain_s = drain_s


class DeadlineExceededError(BatcherError):
    """The item's deadline passed while it was still queued; it was never computed."""


class BatcherClosedError(BatcherError):
    """The batcher is closing or closed and accepts no more work."""


class BatchFailedError(BatcherError):
    """The batch this item was part of failed; ``__cause__`` holds the original error."""
