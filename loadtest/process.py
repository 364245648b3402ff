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


def start_server(
    overrides: dict[str, str], environment: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str, float]:
    """Start ``python -m server`` with ``BATCHSERVE_*`` overrides; wait until /ready.

    ``environment`` adds other variables (``OTEL_*``) to this process's own.

    Returns the process, its base URL and the seconds it took to become ready.
    """
    port = free_port()
    env = {
        **os.environ,
        "BATCHSERVE_PORT": str(port),
        # gRPC on, as served, on a port of its own: several servers may run side by side.
        "BATCHSERVE_GRPC_PORT": str(free_port()),
        "BATCHSERVE_LOG_LEVEL": "warning",
        **{f"BATCHSERVE_{k}": v for k, v in overrides.items()},
        **(environment or {}),
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
    """The resident memory of process ``pid`` and its descendants in MiB (Linux).

    Descendants count because a server may run its model in processes of its own
    (LitServe's inference workers); batchserve is one process.
    """
    statuses = _tree_files(pid, "status")
    return sum(int(status.split("VmRSS:")[1].split()[0]) for status in statuses) / 1024


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` and its descendants have used, in seconds."""
    return sum(_stat_cpu_seconds(stat) for stat in _tree_files(pid, "stat"))


def main_thread_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process ``pid``'s main thread alone, in seconds (Linux).

    batchserve's main thread runs the event loop: HTTP, the handlers, the batcher.
    """
    return _stat_cpu_seconds(Path(f"/proc/{pid}/task/{pid}/stat").read_text())


def _stat_cpu_seconds(stat: str) -> float:
    """utime + stime of one ``/proc/.../stat`` text, in seconds."""
    # Fields after the command name (which may hold spaces): utime and stime are 12th, 13th.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree_files(pid: int, name: str) -> list[str]:
    """``/proc/<member>/<name>`` of ``pid`` and each descendant still alive."""
    texts = []
    for member in [pid, *_descendants(pid)]:
        try:
            texts.append(Path(f"/proc/{member}/{name}").read_text())
        except FileNotFoundError:  # it exited between listing and reading
            continue
    return texts


def _descendants(pid: int) -> list[int]:
    try:
        children = [
            int(child)
            for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()
        ]
    except FileNotFoundError:  # it exited while being listed
        return []
    return [grand for child in children for grand in [child, *_descendants(child)]]
