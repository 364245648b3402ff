"""batchserve's web service: the FastAPI app around the generic micro-batcher."""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("batchserve")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

# A server never reports on its users: OpenVINO's converter and NNCF send usage data to
# Google Analytics from a child process when ``openvino_telemetry`` imports; both fall back
# to their own no-op stubs when it cannot. Blocked before anything imports OpenVINO.
sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]

__all__ = ["__version__"]
