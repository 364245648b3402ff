"""``python -m loadtest.probe URL SECONDS``: time GET /health in its own process.

The benchmark's load generator keeps its own event loop busy; probing from a
separate process keeps the client's delays out of the server's /health timing.
Prints one JSON list of milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from loadtest.client import probe_health


def main(argv: list[str] | None = None) -> None:
    """Probe until the given number of seconds has passed, then print the timings."""
    url, seconds = (argv if argv is not None else sys.argv[1:])[:2]
    timings = asyncio.run(probe_health(url, time.monotonic() + float(seconds)))
    print(json.dumps([t * 1000 for t in timings]))


if __name__ == "__main__":
    main()
