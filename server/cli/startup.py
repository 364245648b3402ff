"""What ``batchserve serve`` does once its options are parsed: check the configuration,
weights and engines of every model before binding the port, then serve until a signal.

Imported only when serving starts: it brings torch, the engines and the web app, which
``--help`` and the other subcommands do without.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Final

from server.cli.interrupt import Interrupted
from server.cli.serve import EXIT_CONFIG, EXIT_MODEL
from server.config import Settings
from server.engines.errors import CalibrationError, Int8FidelityError
from server.models.errors import ModelConfigError, ModelLoadError
from server.models.loading import download_weights
from server.models.plan import DeviceError, resolve_plan
from server.models.repository import ModelSpec, default_model, model_specs
from server.service.preparation import prepare_in_compute_thread
from server.service.registry import ModelPlan
from server.web.app import create_app
from server.web.serving import serve

logger = logging.getLogger("batchserve")

#: What can stop a start before serving, each with a message that says what to do.
STARTUP_ERRORS: Final = (ModelLoadError, DeviceError, CalibrationError, Int8FidelityError)
#: Of those, the configuration's (exit 2): a model, weights, repository, device or calibration
#: folder that the settings name wrongly. The others are the model's own (exit 3).
CONFIG_ERRORS: Final = (ModelConfigError, DeviceError, CalibrationError)


def exit_status(exc: BaseException) -> int:
    """2 for a configuration problem, 3 for a model that cannot be loaded or is refused."""
    return EXIT_CONFIG if isinstance(exc, CONFIG_ERRORS) else EXIT_MODEL


def preflight(settings: Settings) -> list[ModelPlan]:
    """Everything that can fail before binding the port, for every model: plans, weights, engines.

    Loading, conversion, quantization and int8's fidelity check all happen here,
    so a problem stops the start with exit status 2 and a message naming the
    model, never a server that is up but never ready.
    """
    specs = model_specs(settings)
    default_model(settings, [spec.name for spec in specs])
    return [_prepare(spec, several=len(specs) > 1) for spec in specs]


def _prepare(spec: ModelSpec, *, several: bool) -> ModelPlan:
    try:
        plan = resolve_plan(spec.settings)
        logger.info("model %s: runtime plan: %s", spec.name, plan.describe())
        # The download in this (the main) thread: a Ctrl-C during it stops it at once.
        download_weights(spec.settings)
        return ModelPlan(spec, plan, prepare_in_compute_thread(spec.settings, plan))
    except STARTUP_ERRORS as exc:
        if not several:
            raise
        raise type(exc)(f"model {spec.name}: {exc}") from exc


def serve_until_stopped(settings: Settings) -> int:
    """Preflight every model, then serve; 0 after a drained shutdown, else :func:`exit_status`.

    Logging is set up already (:func:`server.cli.precheck.refusal`).
    """
    try:
        models = preflight(settings)
    except STARTUP_ERRORS as exc:
        logger.error("cannot start: %s", exc)
        return exit_status(exc)
    # uvicorn drains, then raises the signal that stopped it again: then all is done.
    with contextlib.suppress(Interrupted):
        serve(create_app(settings, models=models), settings)
    return 0
