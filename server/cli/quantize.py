"""``batchserve quantize``: quantize the model to int8 ahead of time, into the cache.

It runs what ``BATCHSERVE_PRECISION=int8`` runs at startup (calibration,
NNCF, the fidelity check against fp32) and stores the result where the server
looks for it, so that the server starts in seconds; a Docker build runs it to
bake the quantized model into the image.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Final

from server.cli.serve import EXIT_CONFIG
from server.cli.settings import SETTINGS_EPILOG, add_settings_options, settings_from
from server.config import SettingsError

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
    # NNCF, torch and the engines load only now that there is something to quantize.
    from server.cli.quantizing import quantize_all

    return quantize_all(settings)
