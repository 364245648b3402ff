"""Engines: the same contract (a batch in, one row per item out) on torch or OpenVINO.

:func:`build_engine` turns a loaded model and the runtime plan into a ready
engine: converted, quantized (int8, through the cache) and compiled. It is
blocking and may take seconds; the command line runs it before uvicorn starts.
"""

from __future__ import annotations

from server.config import Settings
from server.engines.contract import MAX_TOP_K, BuiltEngine, Crop, Engine, ModelInput, Row
from server.engines.torch_engine import TorchEngine
from server.models.plan import RuntimePlan
from server.models.torchvision_models import LoadedModel

__all__ = [
    "MAX_TOP_K",
    "BuiltEngine",
    "Crop",
    "Engine",
    "ModelInput",
    "Row",
    "TorchEngine",
    "build_engine",
]


def build_engine(model: LoadedModel, plan: RuntimePlan, settings: Settings) -> BuiltEngine:
    """The engine the plan asks for; int8 raises when its fidelity check fails."""
    if plan.engine == "torch":
        engine = TorchEngine(
            model,
            plan.device,
            plan.precision,
            compiled=plan.compiled,
            max_batch_size=plan.max_batch_size,
            cache_dir=settings.cache_dir,
        )
        return BuiltEngine(engine)
    # OpenVINO is an optional extra: imported only when the plan asks for it.
    from server.engines import openvino_engine

    return openvino_engine.build(model, plan, settings)
