"""Whether the ports the settings name can be listened on, asked before any model loads.

Loading and warming a model takes seconds to minutes; finding only then that
another process holds port 8000 or 8001 wastes them and ends in uvicorn's
traceback. Each port is bound once here and released at once: a port taken in
the moment between is still refused when serving binds it (exit 3, with the
reason), so this is a courtesy, not the guard.
"""

from __future__ import annotations

import socket

from server.config import Settings


def _bind_error(host: str, port: int) -> OSError | None:
    """The error binding ``host:port`` raises, as the servers bind it; None when it binds."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        # As uvicorn and gRPC bind: a port left in TIME_WAIT by the last run is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            return exc
    return None


def unavailable_ports(settings: Settings) -> list[str]:
    """A sentence for each of the HTTP and gRPC ports that cannot be bound; 0 is not checked."""
    named = {"BATCHSERVE_PORT": settings.port, "BATCHSERVE_GRPC_PORT": settings.grpc_port}
    problems = []
    for variable, port in named.items():
        if port and (error := _bind_error(settings.host, port)) is not None:
            reason = error.strerror or str(error)
            problems.append(
                f"cannot listen on {settings.host}:{port} ({variable}): {reason}; "
                f"stop what holds it or choose another port"
                + ("" if variable == "BATCHSERVE_PORT" else " (0 turns gRPC off)")
            )
    return problems
