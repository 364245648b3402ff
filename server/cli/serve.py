"""``batchserve serve``: check the configuration and weights, then serve until a signal."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from typing import Any, Final

from pydantic_settings import CliSettingsSource

from server.app import create_app
from server.cli.interrupt import Interrupted
from server.config import Settings, SettingsError, load_settings, unknown_variables, variable_names
from server.inference import DeviceError, resolve_compile, resolve_device, resolve_precision
from server.logs import configure_logging
from server.model import ModelLoadError, ensure_weights, resolve_weights
from server.serving import serve

logger = logging.getLogger("batchserve")

#: Exit status for a configuration or weights problem found before serving.
EXIT_CONFIG: Final = 2

_EPILOG: Final = (
    "Every option is also an environment variable: --max-batch-size is "
    "BATCHSERVE_MAX_BATCH_SIZE. An option wins over the environment, which wins over "
    "a .env file in the working directory. docs/configuration.md explains each setting."
)


def register(subparsers: Any) -> None:
    """Add ``serve`` and a kebab-case option for every setting (derived by pydantic-settings)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="serve the model over HTTP (the default)",
        description="Load the model, warm it up and serve it until SIGTERM or Ctrl-C, "
        "which drain the queue and the batches in flight.",
        epilog=_EPILOG,
    )
    source: CliSettingsSource[Settings] = CliSettingsSource(
        Settings,
        root_parser=parser,
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_prog_name="batchserve serve",
    )
    parser.set_defaults(handler=run, settings_source=source)


def preflight(settings: Settings) -> None:
    """Fail before binding the port when the device or weights cannot work."""
    device = resolve_device(settings.device)
    precision = resolve_precision(settings.precision, device)
    resolve_compile(settings.compile, device, precision)
    ensure_weights(resolve_weights(settings.model, settings.weights))


def run(args: argparse.Namespace) -> int:
    """Serve with the parsed options; 2 on a bad setup, 0 after a drained shutdown."""
    try:
        settings = load_settings(args.settings_source(parsed_args=args))
    except SettingsError as exc:
        print(f"batchserve: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log_level, settings.log_format)
    for warning in unknown_variables(variable_names()):
        logger.warning(warning)
    try:
        preflight(settings)
    except (ModelLoadError, DeviceError) as exc:
        logger.error("cannot start: %s", exc)
        return EXIT_CONFIG
    # uvicorn drains, then raises the signal that stopped it again: then all is done.
    with contextlib.suppress(Interrupted):
        serve(create_app(settings), settings)
    return 0
