"""The Dockerfile: hadolint-clean, multi-stage, non-root, health-checked, pinned dependencies."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
HADOLINT = str(Path(sys.executable).with_name("hadolint"))


def test_hadolint_has_no_warnings() -> None:
    result = subprocess.run(
        [HADOLINT, "--failure-threshold", "info", "Dockerfile"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_the_image_is_multi_stage_on_python_311_slim_and_runs_as_a_user() -> None:
    stages = re.findall(r"^FROM (\S+) AS (\w+)$", DOCKERFILE, re.MULTILINE)
    assert [name for _, name in stages] == ["build", "weights", "runtime"]
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in DOCKERFILE
    assert re.search(r"^USER 10001", DOCKERFILE, re.MULTILINE)
    assert "useradd" in DOCKERFILE


def test_it_serves_on_8000_from_every_interface_with_a_health_check() -> None:
    """HTTP on 8000, gRPC on 8001."""
    assert re.search(r"^EXPOSE 8000 8001$", DOCKERFILE, re.MULTILINE)
    assert "BATCHSERVE_GRPC_PORT=8001" in DOCKERFILE
    assert "BATCHSERVE_HOST=0.0.0.0" in DOCKERFILE
    assert re.search(r"^HEALTHCHECK .*\n.*/ready'", DOCKERFILE, re.MULTILINE)
    assert DOCKERFILE.rstrip().endswith('CMD ["batchserve"]')


def test_weights_are_baked_at_build_time_with_the_server_s_own_loader() -> None:
    assert "ARG BAKE_WEIGHTS=1" in DOCKERFILE
    assert "ensure_weights(resolve_weights(" in DOCKERFILE
    assert "TORCH_HOME=/opt/torch" in DOCKERFILE


def test_the_lock_files_pin_every_runtime_dependency_exactly() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {
        re.split(r"[<>=\[ ]", d)[0].lower().replace("_", "-") for d in project["dependencies"]
    }
    assert "runtime-${VARIANT}.txt" in DOCKERFILE
    for variant in ("cpu", "cuda"):
        lines = (ROOT / "requirements" / f"runtime-{variant}.txt").read_text().splitlines()
        pins = [line for line in lines if line and not line.startswith("#")]
        assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==\S+", p) for p in pins), variant
        names = {p.split("==")[0].lower().replace("_", "-") for p in pins}
        assert wanted <= names, wanted - names
    cpu = (ROOT / "requirements" / "runtime-cpu.txt").read_text()
    assert re.search(r"^torch==[\d.]+\+cpu$", cpu, re.MULTILINE)
    # The CPU image serves with OpenVINO (the openvino extra), without NNCF.
    extra = re.split(r"[<>=\[ ]", project["optional-dependencies"]["openvino"][0])[0]
    assert re.search(rf"^{extra}==", cpu, re.MULTILINE)
    assert "nncf" not in cpu
    # Both images can trace (the tracing extra, off until asked for).
    for variant in ("cpu", "cuda"):
        lock = (ROOT / "requirements" / f"runtime-{variant}.txt").read_text()
        for extra in project["optional-dependencies"]["tracing"]:
            assert re.search(rf"^{re.split(r'[<>=]', extra)[0]}==", lock, re.MULTILINE), extra


def test_int8_can_be_baked_into_the_image_by_the_quantize_command() -> None:
    assert "ARG PRECISION=auto" in DOCKERFILE
    assert "batchserve quantize" in DOCKERFILE
    assert "COPY --from=weights --chown=10001:10001 /opt/batchserve-cache" in DOCKERFILE


def test_the_build_context_leaves_out_the_venv_git_tests_and_caches() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for entry in (".git", ".venv", "tests", "**/__pycache__", ".pytest_cache", "results", ".env"):
        assert entry in ignored, entry


def test_the_images_torch_is_the_torch_the_tests_ran_on() -> None:
    """A .pt2 exported with the tested torch must load in the image, and back: same versions."""
    import torch
    import torchvision

    tested = {"torch": torch.__version__, "torchvision": torchvision.__version__}
    for variant in ("cpu", "cuda"):
        text = (ROOT / "requirements" / f"runtime-{variant}.txt").read_text()
        for name, version in tested.items():
            pinned = re.search(rf"^{name}==([^\s+]+)", text, re.MULTILINE)
            assert pinned, (variant, name)
            assert pinned.group(1) == version.split("+")[0], (variant, name, pinned.group(1))


def test_the_int8_build_installs_the_nncf_and_scipy_the_tests_ran_on() -> None:
    """``batchserve quantize`` in the image must quantize and report as the tested versions do."""
    import nncf
    import scipy

    assert f"ARG NNCF_VERSION={nncf.__version__}\n" in DOCKERFILE
    assert f"ARG SCIPY_VERSION={scipy.__version__}\n" in DOCKERFILE
