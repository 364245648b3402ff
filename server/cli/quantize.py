"""``batchserve quantize``: quantize the model to int8 ahead of time, into the cache.

It runs what ``BATCHSERVE_PRECISION=int8`` runs at startup (calibration,
NNCF, the fidelity check against fp32) and stores the result where the server
looks for it, so that the server starts in seconds; a Docker build runs it to
bake the quantized model into the image.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from typing import Any, Final

from server.cli.serve import EXIT_CONFIG, STARTUP_ERRORS, exit_status
from server.cli.settings import SETTINGS_EPILOG, add_settings_options, settings_from
from server.config import Settings, SettingsError, with_model_settings
from server.engines import BuiltEngine
from server.models.loading import download_weights
from server.models.plan import resolve_plan
from server.models.repository import model_specs
from server.service.preparation import prepare_in_compute_thread
from server.web.logs import configure_logging

logger = logging.getLogger("batchserve")

#: The settings quantizing reads: not batching, limits, security, network.
QUANTIZE_GROUPS: Final = ("model", "engine", "logging")
#: Fixed by quantizing itself (int8, on OpenVINO), or used only when serving.
QUANTIZE_OMITS: Final = ("precision", "compile", "workers", "preprocess_threads")


def register(subparsers: Any) -> None:
    """Add ``quantize``, with the same options as ``serve`` (precision is int8)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "quantize",
        help="quantize the model to int8 into the cache, and report its fidelity",
        description="Calibrate on BATCHSERVE_CALIBRATION_DIR (or the photos shipped with "
        "batchserve), quantize with NNCF, compare with fp32 on held-out photos and store "
        "the int8 model under BATCHSERVE_CACHE_DIR, where `batchserve serve` with "
        "BATCHSERVE_PRECISION=int8 finds it. Prints the fidelity report as JSON.",
        epilog=SETTINGS_EPILOG,
    )
    add_settings_options(parser, "batchserve quantize", QUANTIZE_GROUPS, QUANTIZE_OMITS)
    parser.set_defaults(handler=run, parser=parser)


def run(args: argparse.Namespace) -> int:
    """Quantize (or find in the cache) and print the report.

    Exits 2 on a bad setup (an unwritable cache included), 3 when the model cannot
    be loaded or quantized, or the fidelity gate refuses it.

    With a model repository every model is quantized, whatever precision its
    ``config.toml`` names, and the report has one entry per model.
    """
    try:
        settings = settings_from(args, precision="int8")
    except SettingsError as exc:
        print(f"batchserve: {exc}", file=sys.stderr)
        return EXIT_CONFIG
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
