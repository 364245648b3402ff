"""How fast the queue drains: an estimate of items completed per second, for Retry-After.

A refused caller should come back when the queue has room again, not after a
fixed second that sends every refused client back at the same moment. The
estimate is an exponentially weighted rate of completions: each batch's items
over the time since the previous completion (or, for the first, its own run).
Under overload, the only time it is asked for, the workers are busy without a
pause, so these intervals are the service rate.
"""

from __future__ import annotations

from typing import Final

#: Weight of the newest interval: about the last ten batches count.
SMOOTHING: Final = 0.2


class DrainRate:
    """Items completed per second, smoothed; None until the first batch has completed."""

    def __init__(self, smoothing: float = SMOOTHING) -> None:
        if not 0 < smoothing <= 1:
            raise ValueError(f"smoothing must be in (0, 1], got {smoothing}")
        self._smoothing = smoothing
        self._last: float | None = None
        self.per_s: float | None = None

    def __repr__(self) -> str:
        return f"<DrainRate {self.per_s if self.per_s is not None else '?'}/s>"

    def record(self, now: float, items: int, run_s: float) -> None:
        """A batch of ``items`` completed at ``now`` (monotonic) after running ``run_s``."""
        interval = run_s if self._last is None else now - self._last
        self._last = now
        if interval <= 0 or items <= 0:
            return
        sample = items / interval
        if self.per_s is None:
            self.per_s = sample
        else:
            self.per_s += self._smoothing * (sample - self.per_s)

    def seconds_for(self, items: int) -> float | None:
        """How long ``items`` queued items take to drain at the current rate (None: unknown)."""
        if self.per_s is None or self.per_s <= 0:
            return None
        return items / self.per_s
