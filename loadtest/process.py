"""A real ``batchserve`` process for the benchmark and the soak: start it, watch its memory."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(overrides: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, float]:
    """Start ``python -m server`` with ``BATCHSERVE_*`` overrides; wait until /ready.

    Returns the process, its base URL and the seconds it took to become ready.
    """
    port = free_port()
    env = {
        **os.environ,
        "BATCHSERVE_PORT": str(port),
        "BATCHSERVE_LOG_LEVEL": "warning",
        **{f"BATCHSERVE_{k}": v for k, v in overrides.items()},
    }
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "server"], env=env)
    url = f"http://127.0.0.1:{port}"
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with status {process.returncode}")
        try:
            if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                return process, url, time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.2)


def rss_mb(pid: int) -> float:
    """The resident memory of process ``pid`` in MiB (Linux)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024
