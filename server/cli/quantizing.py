"""What ``batchserve quantize`` does once its options are parsed: every model quantized to
int8 (or found in the cache), its fidelity report printed as JSON.

Imported only when quantizing starts: it brings torch, NNCF and OpenVINO.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys

from server.cli.serve import EXIT_CONFIG
from server.cli.startup import STARTUP_ERRORS, exit_status
from server.config import Settings, SettingsError, with_model_settings
from server.engines import BuiltEngine
from server.models.loading import download_weights
from server.models.plan import resolve_plan
from server.models.repository import model_specs
from server.service.preparation import prepare_in_compute_thread
from server.web.logs import configure_logging

logger = logging.getLogger("batchserve")


def quantize_all(settings: Settings) -> int:
    """Quantize every model ``settings`` serve; 0, 2 (bad setup) or 3 (the model's fault)."""
    configure_logging(settings.log_level, settings.log_format)
    try:
        # stdout carries only the JSON report: NNCF's progress bars go to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            reports = {spec.name: _quantize(spec.settings) for spec in model_specs(settings)}
    except SettingsError as exc:
        logger.error("cannot quantize: %s", exc)
        return EXIT_CONFIG
    except STARTUP_ERRORS as exc:
        logger.error("cannot quantize: %s", exc)
        return exit_status(exc)
    if any(report is None for report in reports.values()):
        logger.error("the int8 model could not be cached under %s", settings.cache_dir)
        return EXIT_CONFIG
    single = settings.model_repository is None
    print(json.dumps(next(iter(reports.values())) if single else {"models": reports}, indent=2))
    return 0


def _quantize(settings: Settings) -> dict[str, object] | None:
    """One model quantized (or found in the cache): its report, None if it cannot be cached."""
    settings = with_model_settings(settings, {"precision": "int8"}, "batchserve quantize")
    plan = resolve_plan(settings)
    download_weights(settings)  # in the main thread: Ctrl-C stops it
    built: BuiltEngine = prepare_in_compute_thread(settings, plan).built
    if built.cache_entry is None:
        return None
    return {"cache_entry": str(built.cache_entry), "fidelity": built.fidelity}
