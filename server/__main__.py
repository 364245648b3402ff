"""``batchserve`` / ``python -m server``: check the configuration and weights, then serve."""

from __future__ import annotations

import logging
import sys

from server.app import create_app
from server.config import Settings, SettingsError, load_settings
from server.inference import DeviceError, resolve_compile, resolve_device, resolve_precision
from server.logs import configure_logging
from server.model import ModelLoadError, ensure_weights, resolve_weights
from server.serving import serve

logger = logging.getLogger("batchserve")

#: Exit status for a configuration or weights problem found before serving.
EXIT_CONFIG = 2


def preflight(settings: Settings) -> None:
    """Fail before binding the port when the device or weights cannot work."""
    device = resolve_device(settings.device)
    precision = resolve_precision(settings.precision, device)
    resolve_compile(settings.compile, device, precision)
    ensure_weights(resolve_weights(settings.model, settings.weights))


def main() -> None:
    """Run the server until SIGINT/SIGTERM; exit 2 with a clear message on bad setup."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"batchserve: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    configure_logging(settings.log_level, settings.log_format)
    try:
        preflight(settings)
    except (ModelLoadError, DeviceError) as exc:
        logger.error("cannot start: %s", exc)
        sys.exit(EXIT_CONFIG)
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
