"""``python -m loadtest.soak``: hours of mixed traffic against one server, watching its memory.

Closed-loop users post real photos (12-megapixel JPEGs among them) and a share
of bad uploads, each checked against the status it must get. The server's RSS
(``process_resident_memory_bytes`` from /metrics) is sampled throughout; a
leak shows as growth between the first sample after warm-up and the last.
Not part of ``make test``: run it for minutes or hours, e.g.
``python -m loadtest.soak --duration 600``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from loadtest.client import percentile_ms
from loadtest.process import start_server
from loadtest.samples import pixel_bomb, truncated

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"


@dataclass(frozen=True)
class Upload:
    """One kind of request: its bytes, how often it is sent, and the status it must get."""

    name: str
    data: bytes
    weight: int
    expected: int


def uploads(data_dir: Path = DATA) -> list[Upload]:
    """The traffic mix: mostly ordinary photos, some 12 MP ones, a few hostile uploads."""

    def photo(name: str) -> bytes:
        return (data_dir / name).read_bytes()

    cat = photo("cat.jpg")
    return [
        Upload("cat.jpg", cat, 20, 200),
        Upload("coffee.webp", photo("coffee.webp"), 10, 200),
        Upload("horse_rgba.png", photo("horse_rgba.png"), 10, 200),
        Upload("camera_gray.png", photo("camera_gray.png"), 10, 200),
        Upload("rocket_12mp.jpg", photo("rocket_12mp.jpg"), 10, 200),
        Upload("truncated.jpg", truncated(cat), 3, 400),
        Upload("text.txt", b"not an image at all", 3, 400),
        Upload("bomb.png", pixel_bomb(), 3, 422),
    ]


@dataclass
class SoakResult:
    """Counts per upload and status, latencies of the successes, and RSS samples."""

    outcomes: Counter[tuple[str, int]] = field(default_factory=Counter)
    unexpected: Counter[tuple[str, int]] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    rss_mb: list[tuple[float, float]] = field(default_factory=list)


async def _user(
    client: httpx.AsyncClient, mix: list[Upload], stop_at: float, result: SoakResult
) -> None:
    rng = random.Random()
    weights = [u.weight for u in mix]
    while time.monotonic() < stop_at:
        upload = rng.choices(mix, weights)[0]
        started = time.perf_counter()
        try:
            response = await client.post("/predict", files={"file": (upload.name, upload.data)})
            status = response.status_code
        except httpx.TransportError:
            status = 0
        result.outcomes[(upload.name, status)] += 1
        if status != upload.expected:
            result.unexpected[(upload.name, status)] += 1
        elif status == 200:
            result.latencies_s.append(time.perf_counter() - started)


async def _sample_rss(url: str, stop_at: float, every_s: float, result: SoakResult) -> None:
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while time.monotonic() < stop_at:
            text = (await client.get("/metrics")).text
            match = re.search(r"^process_resident_memory_bytes (\S+)$", text, re.MULTILINE)
            if match:
                rss = float(match.group(1)) / 2**20
                result.rss_mb.append((time.monotonic() - started, rss))
            await asyncio.sleep(every_s)


async def soak(url: str, concurrency: int, duration_s: float, every_s: float) -> SoakResult:
    """Run the mix with ``concurrency`` users for ``duration_s`` seconds."""
    result, mix = SoakResult(), uploads()
    stop_at = time.monotonic() + duration_s
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        users = [_user(client, mix, stop_at, result) for _ in range(concurrency)]
        await asyncio.gather(_sample_rss(url, stop_at, every_s, result), *users)
    return result


def report(result: SoakResult, duration_s: float, concurrency: int) -> str:
    """A markdown summary: traffic, unexpected answers, latency, and RSS over time."""
    total = sum(result.outcomes.values())
    ok = sorted(result.latencies_s)
    lines = [
        f"Soak: {duration_s:.0f} s, {concurrency} users, {total} requests "
        f"({total / duration_s:.1f}/s), unexpected answers: {sum(result.unexpected.values())}",
        "",
        "| upload | status | count |",
        "|---|---:|---:|",
        *(f"| {n} | {s} | {c} |" for (n, s), c in sorted(result.outcomes.items())),
        "",
        f"Latency of successes: p50 {percentile_ms(ok, 50):.0f} ms, "
        f"p99 {percentile_ms(ok, 99):.0f} ms",
        _rss_summary([mb for _, mb in result.rss_mb]),
        "",
        "| t (s) | RSS (MB) |",
        "|---:|---:|",
        *(
            f"| {t:.0f} | {mb:.0f} |"
            for t, mb in result.rss_mb[:: max(1, len(result.rss_mb) // 20)]
        ),
    ]
    return "\n".join(lines)


def _rss_summary(rss: list[float]) -> str:
    if not rss:
        return "RSS: no samples"
    # The first samples include the warm-up of allocator pools; growth is measured after them.
    settled = rss[min(len(rss) - 1, max(1, len(rss) // 10))]
    return (
        f"RSS: first {rss[0]:.0f} MB, after warm-up {settled:.0f} MB, max {max(rss):.0f} MB, "
        f"last {rss[-1]:.0f} MB (growth after warm-up {rss[-1] - settled:+.0f} MB)"
    )


def main(argv: list[str] | None = None) -> None:
    """Start a server (or use ``--url``), soak it, print the report; exit 1 on a wrong answer."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an already running server (default: start one)")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds between RSS")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    process = None
    url = args.url
    if url is None:
        process, url, _ = start_server({})
    try:
        result = asyncio.run(soak(url, args.concurrency, args.duration, args.sample_every))
    finally:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)
    text = report(result, args.duration, args.concurrency)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if result.unexpected:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
