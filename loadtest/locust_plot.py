"""Turn Locust's ``*_stats_history.csv`` into a PNG: throughput and latency percentiles over time.

``python -m loadtest.locust_plot results/locust_stats_history.csv results/locust.png``
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PERCENTILES = ("50%", "95%", "99%")


@dataclass
class History:
    """The aggregated rows of one Locust run, as columns."""

    seconds: list[float] = field(default_factory=list)
    users: list[int] = field(default_factory=list)
    requests_per_s: list[float] = field(default_factory=list)
    failures_per_s: list[float] = field(default_factory=list)
    latency_ms: dict[str, list[float]] = field(default_factory=dict)


def _number(text: str) -> float:
    return float(text) if text not in ("", "N/A") else float("nan")


def read_history(path: Path) -> History:
    """The ``Aggregated`` rows of a stats-history CSV, time counted from the first row."""
    history = History(latency_ms={p: [] for p in PERCENTILES})
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["Name"] == "Aggregated"]
    if not rows:
        raise SystemExit(f"{path} has no Aggregated rows: is it a *_stats_history.csv?")
    start = int(rows[0]["Timestamp"])
    for row in rows:
        history.seconds.append(int(row["Timestamp"]) - start)
        history.users.append(int(row["User Count"]))
        history.requests_per_s.append(_number(row["Requests/s"]))
        history.failures_per_s.append(_number(row["Failures/s"]))
        for p in PERCENTILES:
            history.latency_ms[p].append(_number(row[p]))
    return history


def plot(history: History, out: Path) -> None:
    """Throughput (and users) above, latency percentiles below, sharing the time axis."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    top.plot(history.seconds, history.requests_per_s, label="requests/s")
    top.plot(history.seconds, history.failures_per_s, label="failures/s", color="tab:red")
    top.set_ylabel("per second")
    users = top.twinx()
    users.step(history.seconds, history.users, where="post", color="grey", alpha=0.5)
    users.set_ylabel("users")
    top.legend(loc="upper left")
    for p in PERCENTILES:
        bottom.plot(history.seconds, history.latency_ms[p], label=f"p{p.rstrip('%')}")
    bottom.set_ylabel("latency (ms)")
    bottom.set_xlabel("seconds since start")
    bottom.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """Read the CSV, write the PNG."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("history", type=Path, help="Locust's *_stats_history.csv")
    parser.add_argument("out", type=Path, help="the PNG to write")
    args = parser.parse_args(argv)
    plot(read_history(args.history), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
