"""The ``batchserve`` command: one module per subcommand, dispatched by :func:`main`."""

from __future__ import annotations

from server.cli.main import main

__all__ = ["main"]
