"""The runtime plan: engine, device, precision, compilation, workers and threads, resolved once."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pytest
import torch

from server.models import plan as plan_module
from server.models.cores import usable_cores
from server.models.plan import (
    DeviceError,
    batch_buckets,
    cpu_features,
    cpu_has_fast_bf16,
    openvino_version,
    resolve_compile,
    resolve_device,
    resolve_engine,
    resolve_plan,
    resolve_precision,
    resolve_streams,
    resolve_threads,
    resolve_workers,
)
from tests.conftest import make_settings

CPU = torch.device("cpu")


def test_auto_device_is_cuda_when_available_else_cpu() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == CPU


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_cuda_without_it_is_a_clear_error() -> None:
    with pytest.raises(DeviceError, match=r"^BATCHSERVE_DEVICE=cuda but no CUDA device"):
        resolve_device("cuda")


def test_precision_auto_on_the_cpu_follows_its_bf16_support_and_fp16_needs_cuda() -> None:
    # The CPU differs between machines (AVX2 only, AVX-512 BF16, AMX): auto follows it.
    assert resolve_precision("auto", CPU) == ("bf16" if cpu_has_fast_bf16() else "fp32")
    assert resolve_precision("bf16", CPU) == "bf16"
    with pytest.raises(DeviceError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", CPU)


def test_workers_auto_is_one_on_the_cpu_and_two_on_cuda() -> None:
    assert resolve_workers("auto", CPU) == 1
    assert resolve_workers("auto", torch.device("cuda")) == 2
    assert resolve_workers(3, CPU) == 3


def test_cpu_threads_are_split_between_workers() -> None:
    assert resolve_threads(CPU, 1) == usable_cores()
    assert resolve_threads(CPU, 64) == 1
    assert resolve_threads(CPU, 1, 3) == 3
    assert resolve_threads(torch.device("cuda"), 2) == 1


def test_bf16_is_chosen_on_the_cpu_only_where_the_hardware_has_it(monkeypatch) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert resolve_precision("auto", CPU) == "fp32"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert resolve_precision("auto", CPU) == "bf16"


def test_compile_auto_is_on_for_cpu_bf16_only() -> None:
    assert resolve_compile("auto", CPU, "bf16")
    assert not resolve_compile("auto", CPU, "fp32")
    assert not resolve_compile("auto", torch.device("cuda"), "bf16")
    assert resolve_compile("on", CPU, "fp32")
    assert not resolve_compile("off", CPU, "bf16")


def test_without_a_cxx_compiler_auto_stays_eager_and_on_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr("server.models.plan.shutil.which", lambda name: None)
    assert not resolve_compile("auto", CPU, "bf16")
    with pytest.raises(DeviceError, match="needs a C\\+\\+ compiler"):
        resolve_compile("on", CPU, "fp32")
    assert not resolve_compile("off", CPU, "bf16")


def test_batch_buckets_are_powers_of_two_and_the_maximum() -> None:
    assert batch_buckets(1) == (1,)
    assert batch_buckets(8) == (1, 2, 4, 8)
    assert batch_buckets(12) == (1, 2, 4, 8, 12)


def test_auto_engine_is_openvino_on_the_cpu_when_installed_and_torch_on_cuda() -> None:
    assert openvino_version() is not None  # a dev dependency: installed by make test
    assert resolve_engine("auto", CPU) == "openvino"
    assert resolve_engine("auto", torch.device("cuda")) == "torch"
    assert resolve_engine("torch", CPU) == "torch"
    with pytest.raises(DeviceError, match="runs on the CPU, not cuda"):
        resolve_engine("openvino", torch.device("cuda"))


def test_without_openvino_auto_is_torch_and_asking_for_it_says_how_to_install(
    monkeypatch,
) -> None:
    monkeypatch.setattr("server.models.plan.openvino_version", lambda: None)
    assert resolve_engine("auto", CPU) == "torch"
    with pytest.raises(DeviceError, match=r"pip install 'batchserve\[openvino\]'"):
        resolve_engine("openvino", CPU)


def test_int8_is_never_automatic_and_needs_openvino_on_the_cpu() -> None:
    assert resolve_precision("auto", CPU, "openvino") in {"fp32", "bf16"}
    assert resolve_precision("int8", CPU, "openvino") == "int8"
    with pytest.raises(DeviceError, match="int8 runs on the OpenVINO engine"):
        resolve_precision("int8", CPU, "torch")


def test_the_plan_is_resolved_once_from_settings_and_hardware() -> None:
    plan = resolve_plan(make_settings(engine="openvino", precision="fp32", workers=2))
    assert (plan.engine, plan.device, plan.precision, plan.compiled) == (
        "openvino",
        CPU,
        "fp32",
        False,
    )
    assert plan.workers == 2
    assert plan.cores == usable_cores()
    assert plan.threads_per_worker == max(1, plan.cores // 2)
    assert (plan.decode_threads, plan.torch_threads) == (2, 1)  # make_settings: 2 decoders
    assert plan.batch_buckets == (1, 2, 4)  # make_settings: batches of up to 4
    assert "openvino on cpu" in plan.describe()
    assert f"{plan.cores} usable core(s)" in plan.describe()
    assert "(torch: 1; streams: latency), 2 decode thread(s)" in plan.describe()
    with pytest.raises(DeviceError, match="compiles torchvision models on the torch engine"):
        resolve_plan(make_settings(engine="openvino", compile="on"))


def test_every_pool_is_sized_for_the_pods_two_cpus_not_the_nodes_cores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text("30 1 0:26 / /sys/fs/cgroup rw - cgroup2 c rw\n")
    (tmp_path / "proc/self/cgroup").write_text("0::/kubepods/pod\n")
    (tmp_path / "sys/fs/cgroup/kubepods/pod").mkdir(parents=True)
    (tmp_path / "sys/fs/cgroup/kubepods/pod/cpu.max").write_text("200000 100000\n")
    monkeypatch.setattr(plan_module, "usable_cores", lambda: usable_cores(tmp_path, affinity=64))
    auto = {"preprocess_threads": "auto", "workers": "auto", "threads_per_worker": "auto"}
    on_openvino = resolve_plan(make_settings(engine="openvino", **auto))
    assert (on_openvino.cores, on_openvino.threads_per_worker) == (2, 2)
    assert (on_openvino.decode_threads, on_openvino.torch_threads) == (2, 1)
    on_torch = resolve_plan(make_settings(engine="torch", **auto))
    assert (on_torch.threads_per_worker, on_torch.torch_threads) == (2, 2)
    two_workers = resolve_plan(make_settings(engine="torch", **{**auto, "workers": 2}))
    assert (two_workers.threads_per_worker, two_workers.torch_threads) == (1, 1)


def test_cpu_features_name_the_cpu_and_the_flags_that_matter(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Example CPU 9000\n"
        "flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_tile\n"
    )
    assert cpu_features(cpuinfo) == (
        "Example CPU 9000",
        ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile"),
    )
    name, _ = cpu_features(tmp_path / "missing")
    assert name


AMX: Final = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def test_cpu_streams_auto_choose_by_load_for_openvino_on_amx_only() -> None:
    assert resolve_streams("auto", CPU, "openvino", AMX) == "by-load"
    assert resolve_streams("auto", CPU, "openvino", AMX[:4]) == "latency"  # AVX-512, no AMX
    assert resolve_streams("auto", CPU, "torch", AMX) == "latency"
    assert resolve_streams("auto", torch.device("cuda"), "torch", AMX) == "latency"
    assert resolve_streams("latency", CPU, "openvino", AMX) == "latency"


def test_the_plan_passes_the_cpus_flags_to_the_streams_choice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(plan_module, "usable_cores", lambda: 2)
    monkeypatch.setattr(plan_module, "cpu_features", lambda: ("Example AMX CPU", AMX))
    auto = {"workers": "auto", "threads_per_worker": "auto", "cpu_streams": "auto"}
    on_amx = resolve_plan(make_settings(engine="openvino", **auto))
    assert (on_amx.streams, on_amx.workers, on_amx.solo_threads) == ("by-load", 2, 2)
    monkeypatch.setattr(plan_module, "cpu_features", lambda: ("Example CPU", AMX[:4]))
    elsewhere = resolve_plan(make_settings(engine="openvino", **auto))
    assert (elsewhere.streams, elsewhere.workers, elsewhere.solo_threads) == ("latency", 1, None)


def test_cpu_streams_lay_out_openvinos_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan_module, "usable_cores", lambda: 4)
    auto = {"workers": "auto", "threads_per_worker": "auto"}
    latency = resolve_plan(make_settings(engine="openvino", **auto))
    assert (latency.streams, latency.workers, latency.threads_per_worker) == ("latency", 1, 4)
    assert latency.solo_threads is None
    throughput = resolve_plan(make_settings(engine="openvino", cpu_streams="throughput", **auto))
    assert (throughput.workers, throughput.threads_per_worker, throughput.solo_threads) == (
        4,
        1,
        None,
    )
    by_load = resolve_plan(make_settings(engine="openvino", cpu_streams="by-load", **auto))
    assert (by_load.workers, by_load.threads_per_worker, by_load.solo_threads) == (4, 1, 4)
    assert "4 worker(s) x 1 thread(s), a batch alone on 4" in by_load.describe()
    assert "streams: by-load" in by_load.describe()
    two = resolve_plan(make_settings(engine="openvino", cpu_streams="by-load", workers=2))
    assert (two.workers, two.threads_per_worker, two.solo_threads) == (2, 2, 4)
    with pytest.raises(DeviceError, match=r"BATCHSERVE_CPU_STREAMS=by-load .* not the torch"):
        resolve_plan(make_settings(engine="torch", cpu_streams="by-load"))
