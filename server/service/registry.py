"""The served models by name, with the process-wide pieces they share.

The registry starts every model's unit, answers readiness for all of them,
and drains them together. The decode pool and the compute gate are the
process's: several models never decode or compute on more threads than cores.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from server.config import Settings
from server.models.plan import RuntimePlan, resolve_plan
from server.models.repository import ModelSpec, default_model, model_specs
from server.service.compute import ComputeGate, lower_thread_priority
from server.service.preparation import Prepared, Preparer, prepare
from server.service.unit import ModelUnit

if TYPE_CHECKING:  # handed in: prometheus_client is the web layer's
    from server.metrics import Metrics


@dataclass(frozen=True, slots=True)
class ModelPlan:
    """A model to serve, its runtime plan, and its engine when built before serving."""

    spec: ModelSpec
    plan: RuntimePlan
    prepared: Prepared | None = None


def plan_models(settings: Settings) -> list[ModelPlan]:
    """Every model's plan; ModelLoadError or DeviceError naming what cannot work."""
    return [ModelPlan(spec, resolve_plan(spec.settings)) for spec in model_specs(settings)]


def build_registry(
    settings: Settings,
    metrics: Metrics,
    models: Sequence[ModelPlan],
    preparer: Preparer = prepare,
) -> ModelRegistry:
    """One unit per model version, sharing one compute gate; the default model checked.

    A model not prepared yet is prepared by ``preparer`` when its unit starts.
    """
    default = default_model(settings, list(dict.fromkeys(model.spec.name for model in models)))
    gate = ComputeGate(max(model.plan.cores for model in models))
    units = [
        ModelUnit(
            model.spec.name,
            model.spec.settings,
            metrics.for_model(model.spec.name, model.spec.version),
            model.plan,
            model.prepared,
            gate,
            preparer,
            model.spec.version,
        )
        for model in models
    ]
    return ModelRegistry(settings, units, default, gate)


class ModelRegistry:
    """Every served model version's :class:`~server.service.unit.ModelUnit`; which one answers.

    A request that names no version reaches the model's newest ready version.
    """

    def __init__(
        self, settings: Settings, units: Sequence[ModelUnit], default: str, gate: ComputeGate
    ) -> None:
        self.settings = settings
        self.gate = gate
        self._models: dict[str, list[ModelUnit]] = {}
        for unit in sorted(units, key=lambda u: (u.name, u.version)):
            self._models.setdefault(unit.name, []).append(unit)
        self.default_name = default
        self._decode_pool: ThreadPoolExecutor | None = None

    def __iter__(self) -> Iterator[ModelUnit]:
        """Every version of every model, by name then version."""
        return (unit for versions in self._models.values() for unit in versions)

    def __len__(self) -> int:
        """How many models (not versions) are served."""
        return len(self._models)

    @property
    def names(self) -> list[str]:
        """The served models' names, in order."""
        return list(self._models)

    def versions(self, name: str) -> list[ModelUnit]:
        """The served versions of ``name``, lowest first (none: not served)."""
        return list(self._models.get(name, ()))

    def get(self, name: str) -> ModelUnit | None:
        """The unit a request naming ``name`` and no version reaches, or None.

        The newest ready version; while none is ready, the newest, whose
        refusal says why.
        """
        versions = self._models.get(name)
        if not versions:
            return None
        ready = [unit for unit in versions if unit.ready]
        return (ready or versions)[-1]

    def get_version(self, name: str, version: int) -> ModelUnit | None:
        """The unit serving ``version`` of ``name``, or None."""
        return next((u for u in self._models.get(name, ()) if u.version == version), None)

    @property
    def default(self) -> ModelUnit:
        """The model version POST /predict serves."""
        unit = self.get(self.default_name)
        assert unit is not None, "the default model is served"
        return unit

    @property
    def ready(self) -> bool:
        """Every model is ready."""
        return all(unit.ready for unit in self)

    @property
    def draining(self) -> bool:
        """Shutdown has begun."""
        return any(unit.draining for unit in self)

    @property
    def not_ready_reason(self) -> str:
        """Why not every model is ready; each model named when there are several."""
        waiting = [unit for unit in self if not unit.ready]
        if sum(len(versions) for versions in self._models.values()) == 1:
            return waiting[0].not_ready_reason if waiting else "ready"
        return "; ".join(f"model {unit.label}: {unit.not_ready_reason}" for unit in waiting)

    async def start(self) -> None:
        """Start every model (loading those not prepared); each warms up in the background."""
        self._decode_pool = ThreadPoolExecutor(
            max(unit.plan.decode_threads for unit in self),
            thread_name_prefix="decode",
            initializer=lower_thread_priority,
        )
        for unit in self:
            await unit.start(self._decode_pool)

    async def wait_ready(self) -> None:
        """Wait for every model's warm-up to end."""
        await asyncio.gather(*(unit.wait_ready() for unit in self))

    def begin_drain(self) -> None:
        """Every model refuses new requests from now on; queued work continues."""
        for unit in self:
            unit.begin_drain()

    async def aclose(self) -> None:
        """Drain every model, then stop decoding."""
        self.begin_drain()
        await asyncio.gather(*(unit.aclose() for unit in self))
        if self._decode_pool is not None:
            self._decode_pool.shutdown(wait=False, cancel_futures=True)
