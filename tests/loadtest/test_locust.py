"""Locust, headless, against a real server: 20 s, 8 users, zero failures; then the plot."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.locust_plot import main as plot_main
from loadtest.locust_plot import read_history
from tests.conftest import RunningServer

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
LOCUST = str(Path(sys.executable).with_name("locust"))


def _run_locust(url: str, out: Path, *extra: str, env: dict[str, str] | None = None) -> None:
    command = [
        LOCUST, "-f", str(ROOT / "loadtest" / "locustfile.py"), "--headless", "-H", url,
        "--csv", str(out / "locust"), "--csv-full-history", "--html", str(out / "locust.html"),
        "--only-summary", *extra,
    ]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=180, env={**os.environ, **(env or {})}
    )
    assert result.returncode == 0, result.stderr[-3000:]


def _totals(out: Path) -> dict[str, dict[str, str]]:
    with (out / "locust_stats.csv").open(newline="") as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


def test_twenty_seconds_of_eight_users_has_no_failures_and_is_plotted(
    resnet_server: RunningServer, tmp_path: Path
) -> None:
    _run_locust(resnet_server.url, tmp_path, "-u", "8", "-r", "8", "-t", "20s")
    totals = _totals(tmp_path)
    aggregated = totals["Aggregated"]
    assert int(aggregated["Request Count"]) > 20
    assert int(aggregated["Failure Count"]) == 0
    assert int(totals["/predict"]["Request Count"]) > 0
    assert (tmp_path / "locust.html").stat().st_size > 0
    plot_main([str(tmp_path / "locust_stats_history.csv"), str(tmp_path / "locust.png")])
    assert (tmp_path / "locust.png").read_bytes()[:4] == b"\x89PNG"
    history = read_history(tmp_path / "locust_stats_history.csv")
    assert max(history.users) == 8


def test_bad_uploads_count_as_success_only_with_their_documented_answer(
    resnet_server: RunningServer, tmp_path: Path
) -> None:
    _run_locust(resnet_server.url, tmp_path, "-u", "4", "-r", "4", "-t", "6s", "--tags", "bad")
    totals = _totals(tmp_path)
    assert "/predict" not in totals
    bad = [row for name, row in totals.items() if name.startswith("/predict [")]
    assert sum(int(r["Request Count"]) for r in bad) > 0
    assert totals["Aggregated"]["Failure Count"] == "0"


def test_a_wrong_answer_is_a_failure(resnet_server: RunningServer, tmp_path: Path) -> None:
    # Photos that are not images: every "good" request must be counted as failed.
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "fake.jpg").write_bytes(b"not a photo")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(AssertionError):
        _run_locust(
            resnet_server.url, out, "-u", "2", "-r", "2", "-t", "3s", "--tags", "good",
            env={"LOCUST_PHOTOS": str(tmp_path / "photos")},
        )  # fmt: skip
    assert int(_totals(out)["Aggregated"]["Failure Count"]) > 0


def test_the_step_shape_adds_users_in_steps(resnet_server: RunningServer, tmp_path: Path) -> None:
    env = {"LOCUST_STEP_USERS": "2", "LOCUST_STEP_SECONDS": "2", "LOCUST_STEP_MAX_USERS": "4"}
    _run_locust(resnet_server.url, tmp_path, "--tags", "good", env=env)
    users = read_history(tmp_path / "locust_stats_history.csv").users
    assert 2 in users
    assert max(users) == 4
