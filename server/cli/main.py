"""``batchserve [serve] ...``: parse the command line and run one subcommand.

``batchserve`` alone, or followed only by options, serves; ``--help`` and
``--version`` answer without loading anything. Each subcommand module has a
``register(subparsers)`` that adds its parser and sets its ``handler``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import sys
from collections.abc import Sequence
from typing import Final

from server import __version__
from server.cli import interrupt, predict, quantize, serve
from server.cli.interrupt import Interrupted

#: Options that belong to the top-level parser, not to the implied ``serve``.
_TOP_LEVEL_OPTIONS: Final = frozenset({"-h", "--help", "--version"})
_SUBCOMMANDS: Final = (serve, quantize, predict)
EXIT_STATUSES: Final = """exit statuses:
  0       a clean stop (after draining)
  1       predict: an image not classified, or no answer from the server
  2       a usage or configuration error
  3       a model that fails to load, or whose int8 version the fidelity gate refuses
  128+N   signal N before serving"""
#: The libraries whose versions decide what a model computes, shown by --version.
ENGINE_LIBRARIES: Final = ("torch", "torchvision", "openvino", "nncf")


def version_text() -> str:
    """batchserve's version, then Python's and each engine library's (read, not imported)."""
    lines = [f"batchserve {__version__}", f"python {platform.python_version()}"]
    for name in ENGINE_LIBRARIES:
        try:
            lines.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            lines.append(f"{name} (not installed)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="batchserve",
        description="A dynamic-batching HTTP inference server for image classifiers.\n"
        "Without a subcommand, batchserve serves.",
        epilog=EXIT_STATUSES,
        # Kept as written: --version prints one library per line, the epilog one status each.
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=version_text())
    subparsers = parser.add_subparsers(title="subcommands", dest="command", metavar="COMMAND")
    for module in _SUBCOMMANDS:
        module.register(subparsers)
    return parser


def with_default_command(argv: Sequence[str]) -> list[str]:
    """``batchserve`` and ``batchserve --port 9000`` mean ``batchserve serve ...``."""
    if not argv or (argv[0].startswith("-") and argv[0] not in _TOP_LEVEL_OPTIONS):
        return ["serve", *argv]
    return list(argv)


def parse(parser: argparse.ArgumentParser, arguments: list[str]) -> argparse.Namespace:
    """The arguments; an unknown one is reported with its subcommand's usage, exit 2."""
    args, unknown = parser.parse_known_args(arguments)
    if unknown:
        subparser: argparse.ArgumentParser = args.parser
        subparser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Run one subcommand and exit with its status; a signal before serving exits 128+N."""
    arguments = with_default_command(sys.argv[1:] if argv is None else argv)
    args = parse(build_parser(), arguments)
    interrupt.install()
    try:
        status: int = args.handler(args)
    except Interrupted as stop:
        print(f"batchserve: stopped by {stop}", file=sys.stderr)
        status = 128 + stop.signum
    sys.exit(status)
