"""The cores this process may really use: its CPU affinity and its cgroup's CPU quota.

``os.cpu_count()`` counts the machine's cores. A container limited to 2 CPUs on
a 64-core node (a Kubernetes ``resources.limits.cpu: 2``) gets a CFS quota of
two cores' time: sized for 64 threads, every pool would be throttled. The
quota is read from the cgroup the process is in, v2 (``cpu.max``) or v1
(``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), at each level up to the
cgroup mount's root, since a parent's limit binds its children too.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = ["CgroupMount", "cgroup_cpu_quota", "usable_cores"]

#: cgroup v1's quota and period, in microseconds (a quota of -1: unlimited).
_V1_FILES = ("cpu.cfs_quota_us", "cpu.cfs_period_us")


@dataclass(frozen=True, slots=True)
class CgroupMount:
    """A mounted cgroup hierarchy with the cpu controller: where, and which cgroup it shows."""

    version: int
    mount_point: PurePosixPath
    #: The cgroup at the mount point (``/`` unless the mount shows a subtree).
    mount_root: PurePosixPath


def usable_cores(root: Path = Path("/"), affinity: int | None = None) -> int:
    """Cores the process may use: its affinity mask, capped by its cgroup's quota (at least 1).

    A fractional quota rounds down (1.5 CPUs: 1 thread keeps under the quota).
    ``root`` and ``affinity`` are for tests (a fake ``/proc`` and cgroup tree).
    """
    cores = affinity if affinity is not None else _affinity()
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        cores = min(cores, math.floor(quota))
    return max(1, cores)


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def cgroup_cpu_quota(root: Path = Path("/")) -> float | None:
    """The tightest CPU quota on the process's cgroup and its ancestors, in cores; None: none."""
    try:
        mountinfo = (root / "proc/self/mountinfo").read_text()
        membership = (root / "proc/self/cgroup").read_text()
    except OSError:
        return None
    quotas = []
    for mount in _cpu_mounts(mountinfo):
        path = _cgroup_path(membership, mount.version)
        if path is None:
            continue
        folder = _inside(root, mount, path)
        quotas += _quotas_up_to(folder, root / _relative(mount.mount_point), mount.version)
    return min(quotas, default=None)


def _cpu_mounts(mountinfo: str) -> list[CgroupMount]:
    """cgroup2 mounts, and v1 mounts whose options name the cpu controller."""
    mounts = []
    for line in mountinfo.splitlines():
        fields, _, tail = line.partition(" - ")
        parts, extra = fields.split(), tail.split()
        if len(parts) < 5 or len(extra) < 3:
            continue
        fstype, options = extra[0], extra[2].split(",")
        version = 2 if fstype == "cgroup2" else 1 if fstype == "cgroup" and "cpu" in options else 0
        if version:
            mounts.append(CgroupMount(version, PurePosixPath(parts[4]), PurePosixPath(parts[3])))
    return mounts


def _cgroup_path(membership: str, version: int) -> PurePosixPath | None:
    """The process's cgroup in that hierarchy, from ``/proc/self/cgroup``."""
    for line in membership.splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if version == 2 and number == "0" and controllers == "":
            return PurePosixPath(path)
        if version == 1 and "cpu" in controllers.split(","):
            return PurePosixPath(path)
    return None


def _relative(path: PurePosixPath) -> PurePosixPath:
    return path.relative_to("/") if path.is_absolute() else path


def _inside(root: Path, mount: CgroupMount, path: PurePosixPath) -> Path:
    """The folder of cgroup ``path`` under the mount (which may show only a subtree)."""
    try:
        below = path.relative_to(mount.mount_root)
    except ValueError:  # the process's cgroup is outside what this mount shows
        below = PurePosixPath()
    return root / _relative(mount.mount_point) / below


def _quotas_up_to(folder: Path, top: Path, version: int) -> list[float]:
    """The quota at ``folder`` and at each parent up to ``top``, the mount point."""
    quotas = []
    while True:
        quota = _read_quota(folder, version)
        if quota is not None:
            quotas.append(quota)
        if folder == top or top not in folder.parents:
            return quotas
        folder = folder.parent


def _read_quota(folder: Path, version: int) -> float | None:
    """The quota set at ``folder`` in cores; None: unlimited there, or nothing to read."""
    try:
        if version == 2:
            quota, _, period = (folder / "cpu.max").read_text().strip().partition(" ")
            limit, period_us = (-1 if quota == "max" else int(quota)), int(period or 100_000)
        else:
            limit, period_us = (int((folder / name).read_text()) for name in _V1_FILES)
    except (OSError, ValueError):
        return None
    return None if limit <= 0 or period_us <= 0 else limit / period_us
