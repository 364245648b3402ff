"""The cores the process may use: affinity and cgroup quotas, from fake /proc and cgroup trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from server.models.cores import cgroup_cpu_quota, usable_cores

V2_MOUNT = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
V1_MOUNT = (
    "31 23 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
    "32 23 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
)


def _tree(root: Path, mountinfo: str, membership: str, files: dict[str, str]) -> Path:
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/mountinfo").write_text("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n" + mountinfo)
    (root / "proc/self/cgroup").write_text(membership)
    for name, text in files.items():
        path = root / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_pod_limited_to_two_cpus_on_a_big_node_sizes_for_two(tmp_path: Path) -> None:
    pod = "/sys/fs/cgroup/kubepods/pod1/c1"
    root = _tree(tmp_path, V2_MOUNT, "0::/kubepods/pod1/c1\n", {
        f"{pod}/cpu.max": "200000 100000\n",
        "/sys/fs/cgroup/kubepods/pod1/cpu.max": "max 100000\n",
    })  # fmt: skip
    assert cgroup_cpu_quota(root) == 2.0
    assert usable_cores(root, affinity=64) == 2


def test_a_parents_tighter_limit_binds_and_fractions_round_down(tmp_path: Path) -> None:
    root = _tree(tmp_path, V2_MOUNT, "0::/a/b\n", {
        "/sys/fs/cgroup/a/b/cpu.max": "400000 100000\n",
        "/sys/fs/cgroup/a/cpu.max": "150000 100000\n",
    })  # fmt: skip
    assert cgroup_cpu_quota(root) == 1.5
    assert usable_cores(root, affinity=8) == 1


def test_a_cgroup_namespace_shows_the_container_at_the_mount_point(tmp_path: Path) -> None:
    root = _tree(tmp_path, V2_MOUNT, "0::/\n", {"/sys/fs/cgroup/cpu.max": "300000 100000\n"})
    assert usable_cores(root, affinity=16) == 3


def test_cgroup_v1_reads_the_cfs_quota_and_period(tmp_path: Path) -> None:
    folder = "/sys/fs/cgroup/cpu,cpuacct/docker/abc"
    root = _tree(tmp_path, V1_MOUNT, "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n", {
        f"{folder}/cpu.cfs_quota_us": "400000\n",
        f"{folder}/cpu.cfs_period_us": "100000\n",
    })  # fmt: skip
    assert cgroup_cpu_quota(root) == 4.0
    assert usable_cores(root, affinity=32) == 4
    assert usable_cores(root, affinity=2) == 2  # the affinity mask is tighter


@pytest.mark.parametrize("limit", ["v2 max", "v1 -1", "no cgroup", "no proc"])
def test_no_quota_leaves_the_affinity_mask(tmp_path: Path, limit: str) -> None:
    if limit == "v2 max":
        _tree(tmp_path, V2_MOUNT, "0::/\n", {"/sys/fs/cgroup/cpu.max": "max 100000\n"})
    elif limit == "v1 -1":
        _tree(tmp_path, V1_MOUNT, "4:cpu,cpuacct:/\n", {
            "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
            "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        })  # fmt: skip
    elif limit == "no cgroup":
        _tree(tmp_path, "", "0::/\n", {})
    assert cgroup_cpu_quota(tmp_path) is None
    assert usable_cores(tmp_path, affinity=6) == 6


def test_this_process_has_at_least_one_core_and_no_more_than_its_mask() -> None:
    assert 1 <= usable_cores() <= len(os.sched_getaffinity(0))
