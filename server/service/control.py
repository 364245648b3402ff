"""Models that change while the server runs: load, reload and unload, and the repository's index.

``BATCHSERVE_MODEL_CONTROL=explicit`` or ``poll`` lets a repository's models
change at run time. A load builds the model's served versions beside what is
served now (engine, int8 cache and fidelity gate, warm-up) and switches to them
only once every one is ready; until then, and for good when they fail, the old
versions keep serving. The old ones then finish the requests that had reached
them and are released. One change runs at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from server.config import Settings
from server.models.errors import ModelConfigError
from server.models.plan import resolve_plan
from server.models.repository import model_folders, specs_of
from server.service.door import ModelLoadFailedError, ModelNotServedError
from server.service.registry import ModelPlan, ModelRegistry

if TYPE_CHECKING:
    from server.service.unit import ModelUnit

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One line of the repository index: a model version, or a model with none served."""

    name: str
    #: Empty for a model with no version served (never loaded, unloaded, or failed).
    version: str
    #: READY, LOADING, UNLOADING or UNAVAILABLE (Triton's words).
    state: str
    reason: str


class ModelControl:
    """Loads and unloads the repository's models on request, and lists them."""

    def __init__(self, registry: ModelRegistry, settings: Settings) -> None:
        if settings.model_control != "none" and settings.model_repository is None:
            raise ModelConfigError(
                f"BATCHSERVE_MODEL_CONTROL={settings.model_control} needs a model repository: "
                "set BATCHSERVE_MODEL_REPOSITORY"
            )
        self.registry = registry
        self.settings = settings
        self._unloaded: set[str] = set()
        self._lock = asyncio.Lock()

    async def load(self, name: str) -> None:
        """Load, or reload, ``name`` from the repository as it is now; it serves once ready.

        ModelLoadFailedError says why it failed; what served before still serves.
        """
        async with self._lock:
            started = time.monotonic()
            try:
                units = await self._ready_units(name)
            except ModelLoadFailedError as exc:
                self._failed(name, str(exc), time.monotonic() - started)
                raise
            self.registry.replace(name, units)
            self.registry.load_failures.pop(name, None)
            self._unloaded.discard(name)
            self._observe(name, "success", time.monotonic() - started)
            logger.info(
                "model %s: versions %s loaded in %.2fs; they serve from now on",
                name,
                ", ".join(str(unit.version) for unit in units),
                time.monotonic() - started,
            )
            self.registry.publish_model_info()

    async def _ready_units(self, name: str) -> list[ModelUnit]:
        """The model's served versions, built and warmed up beside what serves now."""
        make_unit = self.registry.make_unit
        assert make_unit is not None, "the registry was built by build_registry"
        try:
            plans = [ModelPlan(s, resolve_plan(s.settings)) for s in specs_of(self.settings, name)]
        except Exception as exc:  # a bad folder or file is reported, never a crash
            raise ModelLoadFailedError(f"{type(exc).__name__}: {exc}") from exc
        units = [make_unit(plan) for plan in plans]
        failure = await self.registry.launch(units)
        if failure is not None:
            raise ModelLoadFailedError(failure)
        return units

    def _failed(self, name: str, reason: str, duration_s: float) -> None:
        self.registry.load_failures[name] = reason
        self._observe(name, "failure", duration_s)
        served = [str(unit.version) for unit in self.registry.versions(name)]
        keeps = f"; versions {', '.join(served)} keep serving" if served else ""
        logger.error("model %s: load failed: %s%s", name, reason, keeps)

    def _observe(self, name: str, outcome: str, duration_s: float) -> None:
        if self.registry.metrics is not None:
            self.registry.metrics.observe_load(name, outcome, duration_s)

    async def unload(self, name: str) -> None:
        """Stop serving ``name``: new requests get 404 at once; returns once its queue drained."""
        async with self._lock:
            if not self.registry.versions(name):
                raise ModelNotServedError(f"no model named {name[:64]!r} is served")
            started = time.monotonic()
            await self.registry.replace(name, [])
            self._unloaded.add(name)
            if self.registry.metrics is not None:
                self.registry.metrics.unloads.labels(model=name, outcome="drained").inc()
            logger.info("model %s: unloaded (drained) in %.2fs", name, time.monotonic() - started)
            self.registry.publish_model_info()

    def index(self) -> list[IndexEntry]:
        """Every model of the repository and every served one, each version with its state."""
        names = set(self.registry.names) | set(self.registry.load_failures)
        if self.settings.model_repository is not None and self.settings.model_repository.is_dir():
            names |= {folder.name for folder in model_folders(self.settings)}
        return [entry for name in sorted(names) for entry in self._entries(name)]

    def _entries(self, name: str) -> list[IndexEntry]:
        entries = [
            IndexEntry(name, str(u.version), u.state, "" if u.ready else u.not_ready_reason)
            for u in [*self.registry.versions(name), *self.registry.loading(name)]
        ]
        if name in self.registry.load_failures:
            entries.append(IndexEntry(name, "", "UNAVAILABLE", self.registry.load_failures[name]))
        elif not entries:
            reason = "unloaded" if name in self._unloaded else "not loaded"
            entries.append(IndexEntry(name, "", "UNAVAILABLE", reason))
        return entries


#: A folder whose files changed (their inode change time) within this many poll intervals is
#: still being written: it is not loaded yet.
QUIET_INTERVALS: Final = 2


def fingerprint(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """What a folder holds now: every file's relative path, size and change time."""
    entries = []
    for path in sorted(folder.rglob("*")):
        with contextlib.suppress(OSError):  # a file removed while we look
            stat = path.stat()
            if path.is_file():
                entries.append((str(path.relative_to(folder)), stat.st_size, stat.st_ctime_ns))
    return tuple(entries)


def quiet(print_: tuple[tuple[str, int, int], ...], quiet_s: float) -> bool:
    """No file of the folder changed within ``quiet_s`` (a copy in progress keeps changing)."""
    newest_ns = max((changed for _, _, changed in print_), default=0)
    return time.time_ns() - newest_ns >= quiet_s * 1e9


class RepositoryPoller:
    """``BATCHSERVE_MODEL_CONTROL=poll``: the repository's folders decide what is served.

    Each scan loads a model whose folder changed since it was loaded (or that
    is new) once the folder has been quiet for two poll intervals, so a
    half-copied model is never loaded; a folder that fails is reported and tried
    again only when it changes; a deleted folder is unloaded, drained.
    """

    def __init__(self, control: ModelControl) -> None:
        self.control = control
        settings = control.settings
        self.interval_s = settings.poll_interval_s
        #: The fingerprint of each model folder as last loaded, or last tried.
        self._applied: dict[str, tuple[tuple[str, int, int], ...]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Remember the folders as they are served now, then scan every interval."""
        for name in self.control.registry.names:
            self._applied[name] = self._print_of(name)
        if self.control.settings.model_control == "poll":
            self._task = asyncio.create_task(self._loop(), name="repository-poll")

    def _print_of(self, name: str) -> tuple[tuple[str, int, int], ...]:
        root = self.control.settings.model_repository
        return fingerprint(root / name) if root is not None else ()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.scan()
            except Exception:  # one bad scan is logged; the next one runs
                logger.exception("repository poll failed")

    async def scan(self) -> None:
        """Apply what changed in the repository (one poll; also what SIGHUP runs)."""
        folders = {folder.name: folder for folder in model_folders(self.control.settings)}
        for name in [n for n in self.control.registry.names if n not in folders]:
            logger.info("model %s: its folder was removed; unloading", name)
            await self.control.unload(name)
            self._applied.pop(name, None)
        for name, folder in folders.items():
            await self._apply(name, fingerprint(folder))

    async def _apply(self, name: str, now: tuple[tuple[str, int, int], ...]) -> None:
        if self._applied.get(name) == now:
            return
        if not quiet(now, QUIET_INTERVALS * self.interval_s):
            logger.debug("model %s: its folder is changing; waiting for it to settle", name)
            return
        self._applied[name] = now  # tried once per change: a broken folder never loops
        with contextlib.suppress(ModelLoadFailedError):  # reported by the control
            await self.control.load(name)

    async def aclose(self) -> None:
        """Stop polling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
