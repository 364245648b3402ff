"""docker-compose.yml: valid, built here, pinned images, health checks, provisioning mounted."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import require_tool

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]


def _config() -> dict:
    result = subprocess.run(
        [require_tool("docker-compose"), "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def _mounts(service: dict) -> dict[str, str]:
    """target -> source of the bind mounts, whichever syntax docker-compose printed."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        if source.startswith("/"):
            mounts[target] = source
    return mounts


def test_compose_is_valid_and_has_the_three_services_with_health_checks() -> None:
    services = _config()["services"]
    assert set(services) == {"batchserve", "prometheus", "grafana"}
    for name, service in services.items():
        assert service["healthcheck"]["test"], name


def test_batchserve_is_built_here_and_the_images_are_pinned() -> None:
    services = _config()["services"]
    assert Path(services["batchserve"]["build"]["context"]).resolve() == ROOT
    for name in ("prometheus", "grafana"):
        image = services[name]["image"]
        assert ":" in image, image
        assert not image.endswith(":latest"), image


def test_grafana_gets_the_provisioning_and_the_dashboard_as_home() -> None:
    grafana = _config()["services"]["grafana"]
    mounts = _mounts(grafana)
    assert Path(mounts["/etc/grafana/provisioning"]) == ROOT / "grafana" / "provisioning"
    assert Path(mounts["/var/lib/grafana/dashboards"]) == ROOT / "grafana" / "dashboards"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == "/var/lib/grafana/dashboards/batchserve.json"
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def test_prometheus_gets_its_config_and_scrapes_the_batchserve_service() -> None:
    prometheus = _config()["services"]["prometheus"]
    assert Path(_mounts(prometheus)["/etc/prometheus"]) == ROOT / "deploy" / "prometheus"
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == ["batchserve:8000"]


def test_compose_and_the_image_probe_the_same_readiness_endpoint() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    image_probe = json.loads(re.search(r"^HEALTHCHECK .*\n\s+CMD (.*)$", dockerfile, re.M)[1])
    compose_probe = _config()["services"]["batchserve"]["healthcheck"]["test"]
    assert compose_probe == ["CMD", *image_probe]
    assert "/ready'" in image_probe[-1]
