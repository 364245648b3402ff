"""Load from ``hey`` (Debian's package): C workers posting one image as multipart for D seconds.

The engines and models benchmarks drive servers with it rather than with
:mod:`loadtest.client`: the client shares the machine with the server under test,
and the asyncio+httpx client costs far more CPU per request than hey, CPU the
server then does not get.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

BOUNDARY: Final = "batchserve-benchmark-boundary"
_TOTAL: Final = re.compile(r"^\s*Total:\s+([\d.]+) secs", re.MULTILINE)
_PERCENTILE: Final = re.compile(r"^\s*(\d+)% in ([\d.]+) secs", re.MULTILINE)
_SLOWEST: Final = re.compile(r"^\s*Slowest:\s+([\d.]+) secs", re.MULTILINE)
_STATUS: Final = re.compile(r"^\s*\[(\d{3})\]\s+(\d+) responses", re.MULTILINE)
_ERROR: Final = re.compile(r"^\s*\[(\d+)\]\s+\D", re.MULTILINE)


class HeyError(RuntimeError):
    """hey is missing, failed, or printed no summary."""


@dataclass(frozen=True, slots=True)
class HeyResult:
    """One load level as hey summarised it."""

    concurrency: int
    duration_s: float
    answered: int
    #: Answers other than 200, and requests that got no answer at all.
    errors: int
    percentiles_ms: dict[int, float] = field(default_factory=dict)
    slowest_ms: float = math.nan
    #: Answers hey timed (any status; a request that got no answer has no time).
    timed: int = 0

    @property
    def throughput(self) -> float:
        """Requests answered 200 per second."""
        return self.answered / self.duration_s if self.duration_s else 0.0

    def percentile_ms(self, q: int) -> float:
        """hey's q-th latency percentile in ms (it prints 10, 25, 50, 75, 90, 95, 99).

        hey leaves out a percentile its few answers do not reach (the 99th of
        fewer than 100); by nearest rank that one is the slowest answer.
        """
        if q in self.percentiles_ms:
            return self.percentiles_ms[q]
        last_rank = self.timed and math.ceil(q * self.timed / 100) >= self.timed
        return self.slowest_ms if last_rank else math.nan


def multipart_body(image: bytes, boundary: str = BOUNDARY) -> bytes:
    """``image`` as the one ``file`` field of a multipart/form-data body."""
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        'filename="image.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
    )
    return head.encode() + image + f"\r\n--{boundary}--\r\n".encode()


def parse(summary: str, concurrency: int) -> HeyResult:
    """hey's printed summary as a :class:`HeyResult`."""
    total = _TOTAL.search(summary)
    if total is None:
        raise HeyError(f"hey printed no summary:\n{summary}")
    slowest = _SLOWEST.search(summary)
    statuses = {int(code): int(n) for code, n in _STATUS.findall(summary)}
    _, _, errors_part = summary.partition("Error distribution:")
    unanswered = sum(int(n) for n in _ERROR.findall(errors_part))
    return HeyResult(
        concurrency=concurrency,
        duration_s=float(total.group(1)),
        answered=statuses.get(200, 0),
        errors=sum(n for code, n in statuses.items() if code != 200) + unanswered,
        percentiles_ms={int(q): float(s) * 1000 for q, s in _PERCENTILE.findall(summary)},
        slowest_ms=float(slowest.group(1)) * 1000 if slowest else math.nan,
        timed=sum(statuses.values()),
    )


def run(url: str, body_file: Path, concurrency: int, duration_s: float) -> HeyResult:
    """Post ``body_file`` to ``url`` from ``concurrency`` workers for ``duration_s`` seconds."""
    hey = shutil.which("hey")
    if hey is None:
        raise HeyError("the engines benchmark needs hey: apt-get install hey (make tools)")
    command = [
        hey, "-z", f"{duration_s:g}s", "-c", str(concurrency), "-t", "120", "-m", "POST",
        "-D", str(body_file), "-T", f"multipart/form-data; boundary={BOUNDARY}", url,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + 180)
    if done.returncode != 0:
        raise HeyError(f"hey exited with status {done.returncode}: {done.stderr.strip()}")
    return parse(done.stdout, concurrency)


def warm_up(
    url: str, body_file: Path, concurrency: int, duration_s: float, path: str = "/predict"
) -> None:
    """The load of :func:`closed_loop` for up to 3 s, not counted."""
    run(f"{url}{path}", body_file, concurrency, min(3.0, duration_s / 4))


def closed_loop(
    url: str, body_file: Path, concurrency: int, duration_s: float, path: str = "/predict"
) -> HeyResult:
    """A warm-up of up to 3 s (not counted), then ``duration_s`` seconds measured."""
    warm_up(url, body_file, concurrency, duration_s, path)
    return run(f"{url}{path}", body_file, concurrency, duration_s)
