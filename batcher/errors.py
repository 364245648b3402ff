"""Named errors a caller of :class:`~batcher.MicroBatcher` can meet.

Each one tells the caller *why* its item got no result, so that an adapter
(the web server) can map it to a response without guessing.
"""

from __future__ import annotations


class BatcherError(Exception):
    """Base class of every error the batcher raises to a caller."""


class QueueFullError(BatcherError):
    """The queue already holds ``max_queue_size`` items; the item was refused."""


class DeadlineExceededError(BatcherError):
    """The item's deadline passed while it was still queued; it was never computed."""


class BatcherClosedError(BatcherError):
    """The batcher is closing or closed and accepts no more work."""


class BatchFailedError(BatcherError):
    """The batch this item was part of failed; ``__cause__`` holds the original error."""
