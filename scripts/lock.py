"""Regenerate the container's pinned dependencies: requirements/runtime-{cpu,cuda}.txt.

    python3.11 scripts/lock.py            # both variants, from PyTorch's and PyPI's indexes

pip resolves pyproject's runtime dependencies (no dev extras; both images add
the ``tracing`` extra, the CPU image ``openvino`` too) for this Python
with PyTorch's CPU or CUDA wheel index first, without installing anything
(``pip install --dry-run --report``), and the exact versions are written out.
Offline or behind a mirror, set ``LOCK_PIP_ARGS_CPU`` / ``LOCK_PIP_ARGS_CUDA``
to the pip arguments that reach the wheels (e.g. a local torch wheel file).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPI = ["--extra-index-url", "https://pypi.org/simple"]
VARIANTS = {
    "cpu": ["--index-url", "https://download.pytorch.org/whl/cpu", *PYPI],
    # PyPI's Linux torch wheels are the CUDA builds, with the CUDA runtime as nvidia-* wheels.
    "cuda": ["--index-url", "https://pypi.org/simple"],
}


#: The optional extras each image carries: the CPU image serves with OpenVINO; both can trace
#: (off unless BATCHSERVE_TRACING or an OTLP endpoint is set).
EXTRAS = {"cpu": "[openvino,tracing]", "cuda": "[tracing]"}


def resolve(pip_args: list[str], extras: str = "") -> list[str]:
    """``name==version`` for every runtime dependency pip would install, sorted."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
         "--quiet", "--report", "-", *pip_args, f"{ROOT}{extras}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    report = json.loads(result.stdout)
    pins = {
        f"{item['metadata']['name'].lower()}=={item['metadata']['version']}"
        for item in report["install"]
        if item["metadata"]["name"].lower() != "batchserve"
    }
    return sorted(pins)


def main() -> None:
    """Write one lock file per variant (or only those named on the command line)."""
    for variant in sys.argv[1:] or list(VARIANTS):
        override = os.environ.get(f"LOCK_PIP_ARGS_{variant.upper()}")
        args = shlex.split(override) if override else VARIANTS[variant]
        pins = resolve(args, EXTRAS[variant])
        header = [
            f"# Runtime dependencies of the {variant} image, Python "
            f"{sys.version_info.major}.{sys.version_info.minor}, linux x86_64.",
            f"# Regenerate: python3.11 scripts/lock.py {variant}",
        ]
        path = ROOT / "requirements" / f"runtime-{variant}.txt"
        path.write_text("\n".join([*header, *pins]) + "\n")
        print(f"{path.relative_to(ROOT)}: {len(pins)} pins")


if __name__ == "__main__":
    main()
