"""``batchserve serve``: its options; serving itself is :mod:`server.cli.startup`'s.

This module imports no torch, engine or web code, so that ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Final

from server.cli.settings import SETTINGS_EPILOG, add_settings_options, settings_from
from server.config import SettingsError

#: Exit status for a usage or configuration problem found before serving (argparse's own too).
EXIT_CONFIG: Final = 2
#: Exit status for a model that exists but fails to load, convert, quantize or warm up, or
#: whose int8 version the fidelity gate refuses.
EXIT_MODEL: Final = 3


def register(subparsers: Any) -> None:
    """Add ``serve`` and a kebab-case option for every setting."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="serve the model over HTTP (the default)",
        description="Load the model, warm it up and serve it until SIGTERM or Ctrl-C, "
        "which drain the queue and the batches in flight.",
        epilog=SETTINGS_EPILOG,
    )
    add_settings_options(parser, "batchserve serve")
    parser.set_defaults(handler=run, parser=parser)


def run(args: argparse.Namespace) -> int:
    """Serve with the parsed options; 0 after a drained shutdown, 2 or 3 when it cannot start."""
    try:
        settings = settings_from(args)
    except SettingsError as exc:
        print(f"batchserve: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    from server.cli.precheck import refusal

    if (status := refusal(settings)) is not None:
        return status
    # Torch, the engines and the app load only now that there is something to serve.
    from server.cli.startup import serve_until_stopped

    return serve_until_stopped(settings)
