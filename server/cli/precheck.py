"""What ``batchserve serve`` checks before it loads torch: the settings' own mistakes, at once.

A model file of an unknown type or missing, a repository laid out wrongly, no
default among several models, tracing asked for without its extra, a port
another process holds: each is found from the settings, the environment, the
file system and the network alone, so the command says so in a fraction of a
second instead of after importing torch and the engines. Loading makes the same
checks again (they are the same functions) and serving binds the ports itself,
so nothing depends on this having run.
"""

from __future__ import annotations

import logging
from pathlib import Path

from server.cli.ports import unavailable_ports
from server.cli.serve import EXIT_CONFIG, EXIT_MODEL
from server.config import Settings, is_model_path, unknown_variables, variable_names
from server.models.errors import ModelConfigError, ModelLoadError
from server.models.repository import default_model, model_specs
from server.models.sources import source_of
from server.tracing import TracingUnavailableError
from server.tracing import check as check_tracing
from server.web.logs import configure_logging

logger = logging.getLogger("batchserve")


def check_settings(settings: Settings) -> None:
    """Raise what the settings get wrong about which models to serve and their files."""
    specs = model_specs(settings)
    default_model(settings, [spec.name for spec in specs])
    for spec in specs:
        if is_model_path(spec.settings.model):
            source_of(Path(spec.settings.model))


def refusal(settings: Settings) -> int | None:
    """Set up logging, warn of mistyped variables, check the settings.

    None when they pass; else the problem logged and the exit status (2 or 3).
    """
    configure_logging(settings.log_level, settings.log_format)
    for warning in unknown_variables(variable_names()):
        logger.warning(warning)
    try:
        check_settings(settings)
    except ModelLoadError as exc:
        logger.error("cannot start: %s", exc)
        return EXIT_CONFIG if isinstance(exc, ModelConfigError) else EXIT_MODEL
    try:
        check_tracing(settings)
    except TracingUnavailableError as exc:
        logger.error("cannot start: %s", exc)
        return EXIT_CONFIG
    if problems := unavailable_ports(settings):
        for problem in problems:
            logger.error("cannot start: %s", problem)
        return EXIT_CONFIG
    return None
