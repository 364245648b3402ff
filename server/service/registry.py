"""The served models by name, with the process-wide pieces they share.

The registry starts every model's unit, answers readiness for all of them,
and drains them together. The decode pool and the compute gate are the
process's: several models never decode or compute on more threads than cores.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
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

    A model not prepared yet is prepared by ``preparer`` when its unit starts;
    models loaded later (model control) are made the same way.
    """
    default = default_model(settings, list(dict.fromkeys(model.spec.name for model in models)))
    gate = ComputeGate(max(model.plan.cores for model in models))

    def make_unit(model: ModelPlan) -> ModelUnit:
        spec = model.spec
        return ModelUnit(
            spec.name,
            spec.settings,
            metrics.for_model(spec.name, spec.version),
            model.plan,
            model.prepared,
            gate,
            preparer,
            spec.version,
        )

    registry = ModelRegistry(settings, [make_unit(model) for model in models], default, gate)
    registry.make_unit = make_unit
    registry.metrics = metrics
    return registry


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
        #: Makes a unit for a model loaded after startup (``build_registry`` sets it).
        self.make_unit: Callable[[ModelPlan], ModelUnit] | None = None
        self.metrics: Metrics | None = None
        #: Units replaced or unloaded and still finishing their requests, and new ones loading.
        self._leaving: set[asyncio.Task[None]] = set()
        self._loading: set[ModelUnit] = set()
        #: Each model's last failed load at run time, until one succeeds.
        self.load_failures: dict[str, str] = {}

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

    def loading(self, name: str) -> list[ModelUnit]:
        """The versions of ``name`` being loaded now, not serving yet."""
        return sorted((u for u in self._loading if u.name == name), key=lambda u: u.version)

    def get_version(self, name: str, version: int) -> ModelUnit | None:
        """The unit serving ``version`` of ``name``, or None."""
        return next((u for u in self._models.get(name, ()) if u.version == version), None)

    @property
    def default(self) -> ModelUnit | None:
        """The model version POST /predict serves; None once it is unloaded."""
        return self.get(self.default_name)

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

    async def launch(self, units: Sequence[ModelUnit]) -> str | None:
        """Start units not yet served and wait for their warm-up; why one failed, or None.

        Failed, every one of them is closed again: none is served.
        """
        assert self._decode_pool is not None, "the registry has started"
        self._loading.update(units)
        try:
            failure = await self._start_all(units, self._decode_pool)
        finally:
            self._loading.difference_update(units)
        if failure is not None:
            await asyncio.gather(*(unit.aclose() for unit in units))
        return failure

    @staticmethod
    async def _start_all(units: Sequence[ModelUnit], pool: ThreadPoolExecutor) -> str | None:
        for unit in units:
            try:
                await unit.start(pool)
                await unit.wait_ready()
            except Exception as exc:  # a load's failure is reported, never a crash
                return f"{unit.label}: {type(exc).__name__}: {exc}"
            if not unit.ready:
                return f"{unit.label}: {unit.not_ready_reason}"
        return None

    def replace(self, name: str, units: Sequence[ModelUnit]) -> asyncio.Task[None]:
        """Serve ``units`` as ``name`` from now on (none: unload); the old ones retire.

        The switch is one assignment on the event loop: every request after it
        reaches the new units; the old ones answer what had reached them, then
        stop (the task returned).
        """
        old = self._models.pop(name, [])
        if units:
            self._models[name] = sorted(units, key=lambda u: u.version)
            self._models = dict(sorted(self._models.items()))
        task = asyncio.create_task(self._retire(old), name=f"retire-{name}")
        self._leaving.add(task)
        task.add_done_callback(self._leaving.discard)
        return task

    async def _retire(self, units: Sequence[ModelUnit]) -> None:
        await asyncio.gather(*(unit.retire() for unit in units))
        for unit in units:
            if self.metrics is not None and self.get_version(unit.name, unit.version) is None:
                self.metrics.forget_model(unit.name, unit.version)

    def publish_model_info(self) -> None:
        """``batchserve_model_info``: every loaded version and its state, now."""
        if self.metrics is not None:
            loaded = (unit for unit in self if unit.description is not None)
            self.metrics.describe_models((unit.description, unit.state) for unit in loaded)

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
        for unit in self._loading:
            unit.begin_drain()
        await asyncio.gather(*(unit.aclose() for unit in [*self, *self._loading]))
        await asyncio.gather(*self._leaving, return_exceptions=True)
        if self._decode_pool is not None:
            self._decode_pool.shutdown(wait=False, cancel_futures=True)
