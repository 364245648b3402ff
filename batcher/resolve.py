"""Handing outcomes to callers' futures, guarded so that a late cancel never raises."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from batcher.pending import Pending


def deliver(batch: Sequence[Pending[Any, Any]], results: Sequence[Any]) -> None:
    """Give each caller its own result; ``results[i]`` belongs to ``batch[i]``."""
    for pending, result in zip(batch, results, strict=True):
        if not pending.future.done():
            pending.future.set_result(result)


def fail(batch: Sequence[Pending[Any, Any]], make_error: Callable[[], BaseException]) -> int:
    """Give every caller of ``batch`` that still waits its own error; return how many."""
    failed = 0
    for pending in batch:
        if not pending.future.done():
            # One instance per caller: a shared exception would collect every caller's traceback.
            pending.future.set_exception(make_error())
            failed += 1
    return failed
