"""A model's versions: Triton's numbered folders, and the policy that picks which to serve.

A model folder holding numbered folders (``resnet50/1/model.onnx``,
``resnet50/2/model.pt2``) has those versions; one with its model file directly
inside (batchserve's first layout) has one, version 1. ``version_policy`` in
the model's config.toml says which are served, as Triton's names them:

- ``version_policy = { latest = 2 }``: the two highest (the default is 1);
- ``version_policy = { all = true }``: every version;
- ``version_policy = { specific = [1, 3] }``: exactly those, each of which must exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from server.models.errors import ModelConfigError

PolicyKind = Literal["latest", "all", "specific"]
#: What ``version_policy`` may hold, one of them.
POLICY_KINDS: Final[tuple[PolicyKind, ...]] = ("latest", "all", "specific")


@dataclass(frozen=True, slots=True)
class VersionPolicy:
    """Which of a model's versions are served."""

    kind: PolicyKind = "latest"
    #: ``latest``: how many of the highest versions.
    count: int = 1
    #: ``specific``: the versions, in order.
    versions: tuple[int, ...] = ()

    def select(self, available: list[int], model: str) -> list[int]:
        """The versions served out of ``available``, lowest first; an error when none or missing."""
        ordered = sorted(available)
        if self.kind == "all":
            chosen = ordered
        elif self.kind == "latest":
            chosen = ordered[-self.count :]
        else:
            missing = [v for v in self.versions if v not in ordered]
            if missing:
                raise ModelConfigError(
                    f"model {model}: version_policy {self.describe()} names version(s) "
                    f"{', '.join(map(str, missing))}, which have no folder; it has "
                    f"{', '.join(map(str, ordered))}"
                )
            chosen = sorted(self.versions)
        if not chosen:
            raise ModelConfigError(f"model {model}: no version to serve")
        return chosen

    def describe(self) -> str:
        """The policy as config.toml writes it: ``{ latest = 2 }``."""
        if self.kind == "all":
            return "{ all = true }"
        if self.kind == "latest":
            return f"{{ latest = {self.count} }}"
        return f"{{ specific = [{', '.join(map(str, self.versions))}] }}"


def parse_policy(value: object, where: str) -> VersionPolicy:
    """config.toml's ``version_policy`` (absent: the latest version only)."""
    if value is None:
        return VersionPolicy()
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in POLICY_KINDS:
        raise ModelConfigError(
            f"{where}: version_policy = {value!r}; write one of {{ latest = N }}, "
            "{ all = true }, { specific = [1, 3] }"
        )
    ((kind, setting),) = value.items()
    if kind == "all" and setting is True:
        return VersionPolicy("all")
    if kind == "latest" and _positive(setting):
        assert isinstance(setting, int)
        return VersionPolicy("latest", count=setting)
    if (
        kind == "specific"
        and isinstance(setting, list)
        and setting
        and all(map(_positive, setting))
    ):
        return VersionPolicy("specific", versions=tuple(dict.fromkeys(setting)))
    raise ModelConfigError(
        f"{where}: version_policy {kind} = {setting!r}: latest takes a count of at least 1, "
        "all takes true, specific a list of version numbers (1 or more)"
    )


def _positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def version_folders(folder: Path) -> dict[int, Path]:
    """The model's numbered version folders by number (``1``, ``2``; not ``01`` or ``0``)."""
    found: dict[int, Path] = {}
    for child in folder.iterdir():
        numbered = child.name.isdigit() and str(int(child.name)) == child.name
        if child.is_dir() and numbered and int(child.name) >= 1:
            found[int(child.name)] = child
    return dict(sorted(found.items()))
