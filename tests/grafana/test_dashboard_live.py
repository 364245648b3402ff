"""A real Prometheus scrapes a real batchserve under traffic; every dashboard query shows data.

Prometheus is Debian's package (installed by ``make test`` when missing). A
query that returns nothing, or only NaN, is a panel that would show nothing.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from loadtest.process import free_port
from tests.conftest import RunningServer, photo, require_tool
from tests.grafana.dashboard import concrete, load, metric_names, queries

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow

JOB = "batchserve"


@pytest.fixture(scope="module")
def prometheus(resnet_server: RunningServer, tmp_path_factory) -> Iterator[str]:
    """Prometheus scraping the shared server every second; yields its URL."""
    folder: Path = tmp_path_factory.mktemp("prometheus")
    target = resnet_server.url.removeprefix("http://")
    (folder / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs:\n  - job_name: {JOB}\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [require_tool("prometheus"), f"--config.file={folder / 'prometheus.yml'}",
         f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_target(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_for_target(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            # Until its storage is open, Prometheus answers 503 in plain text.
            if httpx.get(f"{url}/-/ready", timeout=5).status_code == 200:
                up = _query(url, f'up{{job="{JOB}"}}')
                if up and up[0]["value"][1] == "1":
                    return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail("Prometheus never scraped batchserve")


def _query(url: str, expr: str) -> list[dict]:
    response = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=30)
    body = response.json()
    assert body["status"] == "success", (expr, body)
    return list(body["data"]["result"])


def _traffic(server: RunningServer, seconds: float) -> None:
    """Good photos from four clients, plus bad uploads, for ``seconds``."""
    stop_at = time.monotonic() + seconds

    def client(good: bool) -> None:
        with server.client() as http:
            while time.monotonic() < stop_at:
                data = photo("cat.jpg") if good else b"not an image"
                http.post("/predict", files={"file": ("x.jpg", data)})

    with ThreadPoolExecutor(5) as pool:
        list(pool.map(client, [True, True, True, True, False]))


def test_every_dashboard_query_returns_data_from_a_real_prometheus(
    prometheus: str, resnet_server: RunningServer
) -> None:
    _traffic(resnet_server, seconds=10)
    time.sleep(2)  # one more scrape after the last request
    empty = []
    model = resnet_server.service.name  # the model variable set to the served model
    for title, expr in queries(load()):
        result = _query(prometheus, concrete(expr, JOB, rate_interval="30s", model=model))
        values = [float(s["value"][1]) for s in result]
        if not any(math.isfinite(v) for v in values):
            empty.append((title, expr, values))
    assert not empty, empty


def test_the_variables_find_the_job_the_instance_and_the_model(
    prometheus: str, resnet_server: RunningServer
) -> None:
    jobs = httpx.get(
        f"{prometheus}/api/v1/label/job/values", params={"match[]": "batchserve_model_info"}
    ).json()["data"]
    assert jobs == [JOB]
    instances = httpx.get(
        f"{prometheus}/api/v1/label/instance/values",
        params={"match[]": f'batchserve_model_info{{job=~"{JOB}"}}'},
    ).json()["data"]
    assert instances == [resnet_server.url.removeprefix("http://")]
    models = httpx.get(
        f"{prometheus}/api/v1/label/model/values",
        params={"match[]": f'batchserve_model_info{{job=~"{JOB}", instance=~".*"}}'},
    ).json()["data"]
    assert models == [resnet_server.service.name]


def test_every_metric_the_dashboard_names_is_exported(resnet_server: RunningServer) -> None:
    with resnet_server.client() as client:
        exposition = client.get("/metrics").text
    exported = {
        line.split("{")[0].split(" ")[0] for line in exposition.splitlines() if line[:1] != "#"
    }
    for _, expr in queries(load()):
        for name in metric_names(expr):
            assert name in exported, name
