"""``batchserve [serve] ...``: parse the command line and run one subcommand.

``batchserve`` alone, or followed only by options, serves; ``--help`` and
``--version`` answer without loading anything. Each subcommand module has a
``register(subparsers)`` that adds its parser and sets its ``handler``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Final

from server import __version__
from server.cli import interrupt, predict, quantize, serve
from server.cli.interrupt import Interrupted

#: Options that belong to the top-level parser, not to the implied ``serve``.
_TOP_LEVEL_OPTIONS: Final = frozenset({"-h", "--help", "--version"})
_SUBCOMMANDS: Final = (serve, quantize, predict)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="batchserve",
        description="A dynamic-batching HTTP inference server for image classifiers. "
        "Without a subcommand, batchserve serves.",
    )
    parser.add_argument("--version", action="version", version=f"batchserve {__version__}")
    subparsers = parser.add_subparsers(title="subcommands", dest="command", metavar="COMMAND")
    for module in _SUBCOMMANDS:
        module.register(subparsers)
    return parser


def with_default_command(argv: Sequence[str]) -> list[str]:
    """``batchserve`` and ``batchserve --port 9000`` mean ``batchserve serve ...``."""
    if not argv or (argv[0].startswith("-") and argv[0] not in _TOP_LEVEL_OPTIONS):
        return ["serve", *argv]
    return list(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run one subcommand and exit with its status; a signal before serving exits 128+N."""
    arguments = with_default_command(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(arguments)
    interrupt.install()
    try:
        status: int = args.handler(args)
    except Interrupted as stop:
        print(f"batchserve: stopped by {stop}", file=sys.stderr)
        status = 128 + stop.signum
    sys.exit(status)
