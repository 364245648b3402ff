"""Out of memory on a batch: recognised on CUDA and on the CPU, and retried as two halves.

Smaller batches need smaller activations: a batch that did not fit may fit as two.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import torch

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's "can't allocate memory" RuntimeError."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    message = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in message or "can't allocate memory" in message
    )


async def in_halves_when_out_of_memory(
    forward: Callable[[Sequence[T]], Awaitable[list[R]]],
    items: Sequence[T],
    release: Callable[[], None],
) -> list[R]:
    """``forward(items)``; out of memory, ``release()`` caches and retry once as two halves."""
    try:
        return await forward(items)
    except Exception as exc:
        if len(items) < 2 or not is_out_of_memory(exc):
            raise
        logger.warning("out of memory on a batch of %d; retrying as two halves", len(items))
        release()
        half = len(items) // 2
        return [*await forward(items[:half]), *await forward(items[half:])]
